"""Convergence, read from the graph: what a change of history invalidates downstream, what is
still missing, and how complete and current every asset is.

A partition is a ``(window, ticker)`` part: ``window`` is the key of its date window (or
cut-off), ``ticker`` its ticker (None for a date-only asset); an unpartitioned asset has the
one part ``(None, None)``. One step downstream follows the declared partition mappings
(Dagster computes the date windows; the ticker dimension is identity or all tickers), plus
three facts the assets carry where a mapping cannot say it:

- ``lookback_windows`` metadata: the asset reads that many windows before its own (a change
  of window ``u`` reaches windows ``u .. u + k``);
- the tag ``quant_assets/path_dependent``: each window continues from the stored state of the
  window before (a book, a filtered recursion), so a change reaches every later window;
- the tag ``quant_assets/cutoff_model``: a cut-off partition reads only rows before its
  cut-off, so a change of window ``u`` reaches the cut-offs after ``u`` (never the current
  one: a daily update retrains nothing).

:func:`affected` is the closure of a change (what a backfill must recompute to end equal to a
full rerun); :func:`completeness` is what ``quant-assets status`` prints; :func:`backfill_target`
is what the sensors request: the closure, any missing partition it needs (a model of a new
cut-off), each asset's set rounded to one rectangle (the single-run shape of the CLI).
"""

from __future__ import annotations

import itertools
from collections.abc import Collection, Iterable, Mapping, Sequence
from dataclasses import dataclass

import dagster as dg

from quant_assets.defs.common import CUTOFF_MODEL_TAG, LOOKBACK_METADATA, PATH_DEPENDENT_TAG
from quant_assets.defs.partitions import DATE_DIMENSION, TICKER_DIMENSION

Part = tuple[str | None, str | None]
Parts = dict[dg.AssetKey, set[Part]]


class GraphView:
    """The asset graph with its date windows and a fixed ticker list (the universe after the
    change being planned: dynamic partitions may not hold it yet)."""

    def __init__(self, asset_graph, tickers: Sequence[str]):
        self.graph = asset_graph
        self.tickers = list(tickers)
        self.keys = [k for k in asset_graph.toposorted_asset_keys if self._materializable(k)]
        self.windows: dict[dg.AssetKey, list[str]] = {}
        self._steps: dict[tuple, tuple[str, ...]] = {}
        for key in self.keys:
            date_def = self.date_def(key)
            self.windows[key] = list(date_def.get_partition_keys()) if date_def is not None else []

    def _materializable(self, key: dg.AssetKey) -> bool:
        return key in self.graph.materializable_asset_keys

    def node(self, key: dg.AssetKey):
        return self.graph.get(key)

    def per_ticker(self, key: dg.AssetKey) -> bool:
        return isinstance(self.node(key).partitions_def, dg.MultiPartitionsDefinition)

    def date_def(self, key: dg.AssetKey) -> dg.TimeWindowPartitionsDefinition | None:
        partitions_def = self.node(key).partitions_def
        if isinstance(partitions_def, dg.MultiPartitionsDefinition):
            partitions_def = partitions_def.get_partitions_def_for_dimension(DATE_DIMENSION)
        assert partitions_def is None or isinstance(
            partitions_def, dg.TimeWindowPartitionsDefinition
        )
        return partitions_def

    def roots(self) -> list[dg.AssetKey]:
        """Assets no other asset feeds (what schedules and sensors ingest)."""
        return [k for k in self.keys if not any(self._materializable(p) for p in self.parents(k))]

    def parents(self, key: dg.AssetKey) -> list[dg.AssetKey]:
        return sorted(self.node(key).parent_keys, key=lambda k: k.to_user_string())

    def parents_in_graph(self, key: dg.AssetKey) -> list[dg.AssetKey]:
        """The materialisable assets ``key`` reads."""
        return [p for p in self.parents(key) if self._materializable(p)]

    def all_parts(self, key: dg.AssetKey, tickers: Sequence[str] | None = None) -> set[Part]:
        """Every partition the asset should have (for ``tickers``, default all)."""
        if self.node(key).partitions_def is None:
            return {(None, None)}
        if self.per_ticker(key):
            chosen = self.tickers if tickers is None else tickers
            return set(itertools.product(self.windows[key], chosen))
        return {(w, None) for w in self.windows[key]}

    # --- one step downstream ---------------------------------------------------------------

    def step(self, parent: dg.AssetKey, child: dg.AssetKey, parts: Collection[Part]) -> set[Part]:
        """The child partitions that read any of the parent's ``parts``."""
        if not parts:
            return set()
        node = self.node(child)
        if node.partitions_def is None:
            return {(None, None)}
        child_windows = self.windows[child]
        tickers_of = self._ticker_rule(parent, child)
        if node.tags.get(CUTOFF_MODEL_TAG) == "true":
            # ISO dates compare as strings: the cut-offs strictly after the first change.
            first = min((w for w, _ in parts if w is not None), default=None)
            return {(w, None) for w in child_windows if first is None or w > first}
        out: set[Part] = set()
        by_window: dict[str | None, set[str | None]] = {}
        for window, ticker in parts:
            by_window.setdefault(window, set()).add(ticker)
        lookback = int(node.metadata.get(LOOKBACK_METADATA, 0) or 0)
        index = {w: i for i, w in enumerate(child_windows)}
        for window, tickers in by_window.items():
            reached = set(self._window_step(parent, child, window))
            if window is not None and lookback and window in index:
                reached.update(child_windows[index[window] : index[window] + lookback + 1])
            for w in reached:
                for t in tickers_of(tickers):
                    out.add((w, t))
        if node.tags.get(PATH_DEPENDENT_TAG) == "true" and out:
            earliest = min(index[w] for w, _ in out if w is not None and w in index)
            touched = {t for _, t in out}
            out = {(w, t) for w in child_windows[earliest:] for t in touched}
        return out

    def _ticker_rule(self, parent: dg.AssetKey, child: dg.AssetKey):
        if not self.per_ticker(child):
            return lambda tickers: {None}
        if not self.per_ticker(parent):
            return lambda tickers: set(self.tickers)
        mapping = self.graph.get_partition_mapping(child, parent)
        by_dimension = getattr(mapping, "downstream_mappings_by_upstream_dimension", {})
        ticker_mapping = by_dimension.get(TICKER_DIMENSION)
        if ticker_mapping is not None and isinstance(
            ticker_mapping.partition_mapping, dg.AllPartitionMapping
        ):
            return lambda tickers: set(self.tickers)
        return lambda tickers: set(tickers)

    def _window_step(self, parent: dg.AssetKey, child: dg.AssetKey, window: str | None):
        memo = (parent, child, window)
        if memo not in self._steps:
            self._steps[memo] = window_step(self, parent, child, window)
        return self._steps[memo]

    # --- closures ---------------------------------------------------------------------------

    def affected(self, changed: Mapping[dg.AssetKey, Collection[Part]]) -> Parts:
        """``changed`` and every partition downstream that reads it, transitively."""
        out: Parts = {k: set(v) for k, v in changed.items() if v}
        for key in self.keys:
            for parent in self.parents(key):
                if parent in out and self._materializable(parent):
                    hit = self.step(parent, key, out[parent])
                    if hit:
                        out.setdefault(key, set()).update(hit)
        return out


def window_step(view: GraphView, parent, child, window) -> tuple[str, ...]:
    """Child windows reading the parent's ``window`` (the mapping's date dimension)."""
    child_def, parent_def = view.date_def(child), view.date_def(parent)
    child_windows = view.windows[child]
    if parent_def is None or window is None:
        return tuple(child_windows)
    mapping = date_mapping(view, parent, child)
    if isinstance(mapping, dg.AllPartitionMapping):
        return tuple(child_windows)
    assert child_def is not None
    if parent_def.cron_schedule == child_def.cron_schedule:
        # One grid of windows (the same cron): child w reads parent windows w + start_offset
        # .. w + end_offset, so parent u is read by u - end_offset .. u - start_offset. The
        # same answer as Dagster's mapping, without its cron iteration (~13 ms a call).
        grid = sorted(set(view.windows[parent]) | set(child_windows))
        at = grid.index(window)
        first, last = at - mapping.end_offset, at - mapping.start_offset
        chosen = set(child_windows)
        return tuple(w for w in grid[max(first, 0) : max(last + 1, 0)] if w in chosen)
    return dagster_window_step(view, parent, child, window, mapping)


def date_mapping(
    view: GraphView, parent: dg.AssetKey, child: dg.AssetKey
) -> dg.AllPartitionMapping | dg.TimeWindowPartitionMapping:
    """The date dimension of the child's mapping of the parent: every window, or a window
    mapping (by time overlap when the asset declares none: Dagster's default)."""
    mapping = view.graph.get_partition_mapping(child, parent)
    by_dimension = getattr(mapping, "downstream_mappings_by_upstream_dimension", None)
    if by_dimension is not None:
        mapping = by_dimension[DATE_DIMENSION].partition_mapping
    if isinstance(mapping, dg.AllPartitionMapping | dg.TimeWindowPartitionMapping):
        return mapping
    return dg.TimeWindowPartitionMapping(allow_nonexistent_upstream_partitions=True)


def dagster_window_step(view: GraphView, parent, child, window, mapping=None) -> tuple[str, ...]:
    """:func:`window_step` by Dagster's own mapping (the reference of the fast path)."""
    child_def, parent_def = view.date_def(child), view.date_def(parent)
    assert child_def is not None and parent_def is not None
    mapping = mapping or date_mapping(view, parent, child)
    subset = parent_def.subset_with_partition_keys([window])
    hit = mapping.get_downstream_partitions_for_partitions(subset, parent_def, child_def)
    return tuple(k for k in hit.get_partition_keys() if k in set(view.windows[child]))


# --- partition keys ------------------------------------------------------------------------


def to_key(view: GraphView, key: dg.AssetKey, part: Part) -> str | dg.MultiPartitionKey | None:
    window, ticker = part
    if view.node(key).partitions_def is None:
        return None
    if view.per_ticker(key):
        return dg.MultiPartitionKey({DATE_DIMENSION: str(window), TICKER_DIMENSION: str(ticker)})
    return window


def from_key(view: GraphView, key: dg.AssetKey, partition: str | None) -> Part | None:
    """The part of a stored partition key (None when it is no longer expected)."""
    if view.node(key).partitions_def is None:
        return (None, None)
    if partition is None:
        return None
    if view.per_ticker(key):
        window, _, ticker = str(partition).partition("|")
        return (window, ticker)
    return (str(partition), None)


def rounded(view: GraphView, parts: Parts) -> Parts:
    """Each asset's parts as one rectangle: its first to last window × its first to last
    ticker (partition order): the shape one range run writes."""
    out: Parts = {}
    for key, chosen in parts.items():
        if view.node(key).partitions_def is None:
            out[key] = {(None, None)}
            continue
        windows = view.windows[key]
        index = [windows.index(w) for w, _ in chosen if w in windows]
        if not index:
            continue
        span = windows[min(index) : max(index) + 1]
        if view.per_ticker(key):
            order = [view.tickers.index(t) for _, t in chosen if t in view.tickers]
            tickers = view.tickers[min(order) : max(order) + 1] if order else []
            out[key] = set(itertools.product(span, tickers))
        else:
            out[key] = {(w, None) for w in span}
    return out


def describe(parts: Parts) -> dict[str, str]:
    """Per asset, its windows (first..last) and tickers: for logs, tags and tests."""
    out = {}
    for key in sorted(parts, key=lambda k: k.to_user_string()):
        windows = sorted({w for w, _ in parts[key] if w is not None})
        tickers = sorted({t for _, t in parts[key] if t is not None})
        span = f"{windows[0]}..{windows[-1]}" if windows else "whole history"
        out[key.to_user_string()] = span + (f" × {','.join(tickers)}" if tickers else "")
    return out


# --- the instance's state ------------------------------------------------------------------


@dataclass
class GraphState:
    """What the instance says of every expected partition: the storage id of its latest
    materialisation, the newest input it reads, and its latest failed attempt (a planned
    materialisation no materialisation followed, in a finished run)."""

    view: GraphView
    ids: dict[dg.AssetKey, dict[Part, int]]
    newest_input: dict[dg.AssetKey, dict[Part, int]]
    missing_inputs: dict[dg.AssetKey, set[Part]]
    failed: dict[dg.AssetKey, dict[Part, int]]
    failed_runs: dict[dg.AssetKey, dict[Part, str]]

    def materialized(self, key: dg.AssetKey) -> set[Part]:
        return set(self.ids.get(key, {}))

    def outdated(self) -> Parts:
        """Materialised partitions older than an input they read (directly)."""
        out: Parts = {}
        for key in self.view.keys:
            mine, newest = self.ids.get(key, {}), self.newest_input.get(key, {})
            # A path-dependent window re-run alone (inputs unchanged) is rewritten identical,
            # so its later windows stay current: only inputs make a partition outdated.
            stale = {p for p, i in mine.items() if newest.get(p, -1) > i}
            if stale:
                out[key] = stale
        return out

    def blocked(self) -> Parts:
        """Partitions whose latest attempt failed after their newest input: re-running them
        would fail the same way, so they wait for a change of their inputs."""
        out: Parts = {}
        for key, attempts in self.failed.items():
            newest = self.newest_input.get(key, {})
            stuck = {p for p, i in attempts.items() if newest.get(p, -1) < i}
            if stuck:
                out[key] = stuck
        return out

    def missing_ready(self) -> Parts:
        """Expected partitions never materialised whose inputs are all materialised."""
        out: Parts = {}
        for key in self.view.keys:
            missing = self.view.all_parts(key) - self.materialized(key)
            if self.view.parents_in_graph(key):
                missing -= self.missing_inputs.get(key, set())
            if missing:
                out[key] = missing
        return out

    def stale(self) -> Parts:
        """Materialised partitions that are outdated, directly or through an input."""
        closure = self.view.affected(self.outdated())
        return {k: v & self.materialized(k) for k, v in closure.items() if v & self.materialized(k)}


def graph_state(view: GraphView, instance: dg.DagsterInstance) -> GraphState:
    """Read :class:`GraphState` from the instance (a query per asset and kind of event)."""
    ids: dict[dg.AssetKey, dict[Part, int]] = {}
    failed: dict[dg.AssetKey, dict[Part, int]] = {}
    failed_runs: dict[dg.AssetKey, dict[Part, str]] = {}
    running = _runs_in_progress(instance)
    for key in view.keys:
        expected = view.all_parts(key)
        if view.node(key).partitions_def is None:
            records = instance.fetch_materializations(key, limit=1).records
            ids[key] = {(None, None): records[0].storage_id} if records else {}
            continue
        latest = instance.get_latest_storage_id_by_partition(
            key, dg.DagsterEventType.ASSET_MATERIALIZATION
        )
        ids[key] = _parts(view, key, latest.items(), expected)
        attempts = instance.event_log_storage.get_latest_asset_partition_materialization_attempts_without_materializations(  # noqa: E501
            key
        )
        finished = {k: (r, i) for k, (r, i) in attempts.items() if r not in running}
        failed[key] = _parts(view, key, ((k, i) for k, (_, i) in finished.items()), expected)
        failed_runs[key] = {
            part: finished[k][0]
            for k in finished
            if (part := from_key(view, key, k)) is not None and part in failed[key]
        }
    newest: dict[dg.AssetKey, dict[Part, int]] = {}
    missing: dict[dg.AssetKey, set[Part]] = {}
    for key in view.keys:
        mine_newest = newest.setdefault(key, {})
        mine_missing = missing.setdefault(key, set())
        for parent in view.parents_in_graph(key):
            done = ids.get(parent, {})
            for part in view.all_parts(parent):
                reached = view.step(parent, key, {part})
                if part in done:
                    for child_part in reached:
                        if mine_newest.get(child_part, -1) < done[part]:
                            mine_newest[child_part] = done[part]
                else:
                    mine_missing.update(reached)
    return GraphState(view, ids, newest, missing, failed, failed_runs)


def _parts(view: GraphView, key, pairs: Iterable[tuple], expected: set[Part]) -> dict[Part, int]:
    out = {}
    for partition, storage_id in pairs:
        part = from_key(view, key, partition)
        if part is not None and part in expected:
            out[part] = storage_id
    return out


_ACTIVE = [
    dg.DagsterRunStatus.QUEUED,
    dg.DagsterRunStatus.NOT_STARTED,
    dg.DagsterRunStatus.STARTING,
    dg.DagsterRunStatus.STARTED,
    dg.DagsterRunStatus.CANCELING,
]


def _runs_in_progress(instance: dg.DagsterInstance) -> set[str]:
    return {r.run_id for r in instance.get_runs(dg.RunsFilter(statuses=_ACTIVE))}


def runs_in_progress(instance: dg.DagsterInstance) -> list[str]:
    """Ids of the runs not finished yet (queued, starting, started or cancelling)."""
    return sorted(_runs_in_progress(instance))


# --- the plan: what to run next ------------------------------------------------------------


def convergence_target(state: GraphState, seeds: Mapping[dg.AssetKey, Collection[Part]]) -> Parts:
    """Everything that must run for the graph to be complete and current: ``seeds`` (new or
    changed history), missing partitions whose inputs are there (roots included: a fresh
    deployment, a new ticker, a new cut-off), outdated partitions, and everything that reads
    any of them; minus what failed since its inputs last changed."""
    start: Parts = {k: set(v) for k, v in seeds.items() if v}
    for source in (state.missing_ready(), state.outdated()):
        for key, parts in source.items():
            start.setdefault(key, set()).update(parts)
    blocked = state.blocked()
    for key, parts in blocked.items():
        if key in start:
            start[key] -= parts - set(seeds.get(key, ()))
    target = state.view.affected(start)
    return {k: v for k, v in target.items() if v}


@dataclass(frozen=True)
class Step:
    """One run: assets of one partitions definition over one rectangle."""

    assets: tuple[dg.AssetKey, ...]
    parts: frozenset[Part]
    partitions_def: dg.PartitionsDefinition | None

    @property
    def windows(self) -> list[str]:
        return sorted({str(w) for w, _ in self.parts if w is not None})

    @property
    def tickers(self) -> list[str]:
        return sorted({str(t) for _, t in self.parts if t is not None})

    def describe(self) -> str:
        names = ", ".join(a.to_user_string() for a in self.assets)
        windows = self.windows
        span = f" {windows[0]}..{windows[-1]}" if windows else ""
        tickers = self.tickers
        return names + span + (f" × {len(tickers)} ticker(s)" if tickers else "")


def _rank(view: GraphView, key: dg.AssetKey) -> int:
    partitions_def = view.node(key).partitions_def
    if partitions_def is None:
        return 2
    return 1 if view.per_ticker(key) else 0


def next_step(view: GraphView, target: Parts) -> Step | None:
    """The first run of ``target``: the first asset whose inputs are not in the target
    (date-window and cut-off assets first, like the CLI's stages), with every asset of the same
    partitions definition and the same rectangle whose targeted inputs are in the run."""
    shaped = rounded(view, target)
    keys = [k for k in view.keys if shaped.get(k)]
    if not keys:
        return None
    order = {k: i for i, k in enumerate(view.keys)}

    def waiting(key: dg.AssetKey, run: set[dg.AssetKey]) -> bool:
        return any(p in shaped and p not in run for p in view.parents_in_graph(key))

    ready = [k for k in keys if not waiting(k, set())]
    first = min(ready, key=lambda k: (_rank(view, k), order[k]))
    partitions_def = view.node(first).partitions_def
    run = {first}
    grew = True
    while grew:
        grew = False
        for key in keys:
            if key in run or view.node(key).partitions_def != partitions_def:
                continue
            if shaped[key] == shaped[first] and not waiting(key, run):
                run.add(key)
                grew = True
    assets = tuple(sorted(run, key=order.__getitem__))
    return Step(assets, frozenset(shaped[first]), partitions_def)


def step_run_request(step: Step, tags: Mapping[str, str]) -> dg.RunRequest:
    """The step as a Dagster run request: a partition-range run like the CLI's."""
    run_tags = dict(tags)
    windows, tickers = step.windows, step.tickers
    if step.partitions_def is not None and windows:
        if tickers:
            first = dg.MultiPartitionKey({DATE_DIMENSION: windows[0], TICKER_DIMENSION: tickers[0]})
            last = dg.MultiPartitionKey(
                {DATE_DIMENSION: windows[-1], TICKER_DIMENSION: tickers[-1]}
            )
            run_tags["dagster/asset_partition_range_start"] = str(first)
            run_tags["dagster/asset_partition_range_end"] = str(last)
        else:
            run_tags["dagster/asset_partition_range_start"] = windows[0]
            run_tags["dagster/asset_partition_range_end"] = windows[-1]
    return dg.RunRequest(asset_selection=list(step.assets), tags=run_tags)


# --- completeness --------------------------------------------------------------------------


@dataclass(frozen=True)
class Completeness:
    """How complete and current one asset is (what ``quant-assets status`` prints)."""

    asset: str
    expected: int
    materialized: int
    stale: int
    failed: int
    oldest_stale: str | None
    failed_partitions: tuple[str, ...]

    @property
    def missing(self) -> int:
        return self.expected - self.materialized

    @property
    def complete(self) -> bool:
        return self.materialized == self.expected and not self.stale and not self.failed


def completeness(state: GraphState) -> list[Completeness]:
    """Per asset, in dependency order: partitions expected, materialised, stale (older than
    what they read, directly or through a stale input), failed (the latest attempt failed
    and nothing it reads changed since), and the oldest stale window."""
    view = state.view
    stale, blocked = state.stale(), state.blocked()
    out = []
    for key in view.keys:
        stale_parts = stale.get(key, set())
        windows = sorted(w for w, _ in stale_parts if w is not None)
        failed = sorted(str(to_key(view, key, p)) for p in blocked.get(key, set()))
        out.append(
            Completeness(
                asset=key.to_user_string(),
                expected=len(view.all_parts(key)),
                materialized=len(state.materialized(key)),
                stale=len(stale_parts),
                failed=len(failed),
                oldest_stale=windows[0] if windows else ("whole" if stale_parts else None),
                failed_partitions=tuple(failed[:20]),
            )
        )
    return out


def parts_of(view: GraphView, key: dg.AssetKey, windows: Iterable[str], tickers: Iterable[str]):
    """Parts of ``key`` for ``windows`` × ``tickers`` (tickers ignored for a date-only asset)."""
    if view.per_ticker(key):
        return set(itertools.product(windows, tickers))
    return {(w, None) for w in windows}
