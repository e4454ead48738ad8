"""The run plan, read from the graph: which runs materialise a selection over a date range.

Nothing here names an asset. A request (assets, date range, tickers) becomes as few runs as
Dagster allows, from facts the assets carry:

- **Stages** (:func:`stages`): the selected assets in dependency order, grouped into runs of
  one partitions definition each. Ready assets (every input done) sharing a partitions
  definition start a stage, which then takes every asset of the same definition whose inputs
  are done or in the stage. Date-window and cut-off stages go before date × ticker ones, so a
  per-ticker stage can take in the assets that read the benchmark or regimes.
- **Ranges**: a date × ticker stage is one run per contiguous block of tickers over the whole
  range (the ``dagster/asset_partition_range_*`` tags: a single-run backfill); a date-window
  stage one run over its own windows of the range; an unpartitioned stage one run.
- **Look-backs**: a root stage of date windows (one the schedules drive, e.g. the benchmark)
  also covers the windows its selected children read before the range (their
  ``lookback_windows`` metadata) that are not materialised yet.
- **Cut-off models** (tag ``quant_assets/cutoff_model``): the cut-offs whose windows overlap
  the range are trained when not yet materialised (all of them when the model itself is
  selected), from the first missing one on (the promotion gate is sequential); so a daily
  update never retrains a model and the first day of a new cut-off window trains one.
"""

from __future__ import annotations

from collections.abc import Collection, Mapping, Sequence
from dataclasses import dataclass
from datetime import date

import dagster as dg

from quant_assets.defs.common import CUTOFF_MODEL_TAG, LOOKBACK_METADATA
from quant_assets.defs.partitions import DATE_DIMENSION, date_partitions, window_start_of
from quant_assets.errors import QuantAssetsError
from quant_assets.settings import Settings
from quant_assets.tickers import validate_tickers


@dataclass(frozen=True)
class RunPlan:
    """One Dagster run: which assets, which partition key range."""

    assets: tuple[str, ...]
    range_start: str
    range_end: str
    partitions: int
    label: str


def asset_key(name: str) -> dg.AssetKey:
    """``hybrid_alpha/backtest`` -> AssetKey(["hybrid_alpha", "backtest"])."""
    return dg.AssetKey.from_user_string(name)


def all_assets(defs: dg.Definitions) -> tuple[str, ...]:
    """What ``--select all`` materialises: every materialisable asset of the graph."""
    graph = defs.resolve_asset_graph()
    return tuple(sorted(k.to_user_string() for k in graph.materializable_asset_keys))


def group_assets(defs: dg.Definitions, group: str) -> tuple[str, ...]:
    """The assets of one group (a pipeline stage, or a strategy), in dependency order."""
    graph = defs.resolve_asset_graph()
    keys = {k for k in graph.materializable_asset_keys if graph.get(k).group_name == group}
    return tuple(k.to_user_string() for k in _topological(graph, keys))


def is_cutoff_model(node) -> bool:
    """A model trained per cut-off (tag on the asset): never retrained by a daily update."""
    return node.tags.get(CUTOFF_MODEL_TAG) == "true"


def selection_closure(
    defs: dg.Definitions, select: Sequence[str], upstream: bool = True
) -> list[str]:
    """The selected assets and (``upstream``) everything upstream of them (like
    ``*signals``); without ``upstream``, exactly the selection."""
    graph = defs.resolve_asset_graph()
    known = {k.to_user_string() for k in graph.get_all_asset_keys()}
    unknown = [s for s in select if s not in known]
    if unknown:
        raise QuantAssetsError(
            f"unknown asset(s) {', '.join(unknown)}; known: {', '.join(sorted(known))}"
        )
    # A multi-asset (orders + paper_book) runs whole: selecting one output selects both.
    selection: dg.AssetSelection = dg.AssetSelection.assets(*(asset_key(s) for s in select))
    selection = selection.required_multi_asset_neighbors()
    if upstream:
        selection = selection.upstream()
    keys = selection.resolve(graph)
    return sorted(k.to_user_string() for k in keys)


def _topological(graph, keys: Collection[dg.AssetKey]) -> list[dg.AssetKey]:
    """``keys`` in dependency order (ties by name)."""
    ordered: list[dg.AssetKey] = []
    done: set[dg.AssetKey] = set()
    pending = sorted(keys, key=lambda k: k.to_user_string())
    while pending:
        ready = [k for k in pending if not (set(graph.get(k).parent_keys) & (set(keys) - done))]
        if not ready:
            raise QuantAssetsError("the asset graph has a cycle")
        ordered.extend(ready)
        done.update(ready)
        pending = [k for k in pending if k not in done]
    return ordered


def _stage_rank(partitions_def) -> int:
    """Which ready stage goes first: date windows and cut-offs, then date × ticker, then the
    unpartitioned summaries."""
    if partitions_def is None:
        return 2
    return 1 if isinstance(partitions_def, dg.MultiPartitionsDefinition) else 0


def stages(defs: dg.Definitions, assets: Collection[str]) -> list[tuple[str, ...]]:
    """``assets`` grouped into runs in dependency order (see the module docstring)."""
    graph = defs.resolve_asset_graph()
    wanted = [asset_key(a) for a in assets]
    order = {k: i for i, k in enumerate(_topological(graph, wanted))}
    wanted_set = set(wanted)
    done: set[dg.AssetKey] = set()
    out: list[tuple[str, ...]] = []

    def inputs_done(key: dg.AssetKey, also: set[dg.AssetKey]) -> bool:
        return all(
            p in done or p in also or p not in wanted_set for p in graph.get(key).parent_keys
        )

    while len(done) < len(wanted_set):
        ready = [k for k in order if k not in done and inputs_done(k, set())]
        first = min(ready, key=lambda k: (_stage_rank(graph.get(k).partitions_def), order[k]))
        partitions_def = graph.get(first).partitions_def
        stage = {first}
        grew = True
        while grew:  # take every asset of the same definition whose inputs are done or here
            grew = False
            for key in order:
                if key in done or key in stage or graph.get(key).partitions_def != partitions_def:
                    continue
                if inputs_done(key, stage):
                    stage.add(key)
                    grew = True
        done |= stage
        out.append(tuple(k.to_user_string() for k in sorted(stage, key=order.__getitem__)))
    return out


def _date_range(
    settings: Settings, date_def: dg.TimeWindowPartitionsDefinition, start, end
) -> list[str]:
    grain = settings.universe.partition_grain
    first_key = date_def.get_first_partition_key()
    last_key = date_def.get_last_partition_key()
    if first_key is None or last_key is None:
        raise QuantAssetsError("the date partitions are empty: check universe.yaml start/end")
    first_window = date.fromisoformat(first_key)
    last_window = date.fromisoformat(last_key)
    start_window = max(window_start_of(start or settings.universe.start, grain), first_window)
    end_window = min(window_start_of(end or last_window, grain), last_window)
    if start_window > end_window:
        raise QuantAssetsError(
            f"empty date range: {start_window} .. {end_window} (partitions cover "
            f"{first_window} .. {last_window})"
        )
    return [
        k
        for k in date_def.get_partition_keys()
        if start_window.isoformat() <= k <= end_window.isoformat()
    ]


def _ticker_blocks(settings: Settings, tickers: Sequence[str] | None) -> list[list[str]]:
    """The requested tickers as contiguous blocks in partition order (one run each)."""
    universe_order = list(settings.universe.tickers)
    wanted = validate_tickers(list(tickers)) if tickers else universe_order
    outside = [t for t in wanted if t not in universe_order]
    if outside:
        raise QuantAssetsError(
            f"ticker(s) {', '.join(outside)} not in universe.yaml; add them there first"
        )
    blocks: list[list[int]] = []
    for pos in sorted(universe_order.index(t) for t in wanted):
        if blocks and pos == blocks[-1][-1] + 1:
            blocks[-1].append(pos)
        else:
            blocks.append([pos])
    return [[universe_order[i] for i in block] for block in blocks]


@dataclass(frozen=True)
class _Request:
    """What every stage of one plan shares."""

    graph: object
    assets: list[str]
    select: Sequence[str]
    chosen: list[str]  # the date windows of the range
    range_start: date
    range_end: date  # exclusive
    blocks: list[list[str]]
    materialized: Mapping[str, Collection[str]]


def plan_runs(
    settings: Settings,
    defs: dg.Definitions,
    select: Sequence[str],
    start: date | None,
    end: date | None,
    tickers: Sequence[str] | None,
    materialized: Mapping[str, Collection[str]] | None = None,
    upstream: bool = True,
) -> list[RunPlan]:
    """The runs that materialise ``select`` (+ upstream) over ``[start, end]`` for ``tickers``.

    ``materialized`` maps an asset to its materialised partition keys; the plan reads it for
    the look-back windows of root stages and for the cut-off models (see the module
    docstring). Without it, nothing counts as materialised.
    """
    graph = defs.resolve_asset_graph()
    date_def = date_partitions(settings.universe)
    chosen = _date_range(settings, date_def, start, end)
    request = _Request(
        graph=graph,
        assets=selection_closure(defs, select, upstream),
        select=select,
        chosen=chosen,
        range_start=date.fromisoformat(chosen[0]),
        range_end=date_def.time_window_for_partition_key(chosen[-1]).end.date(),
        blocks=_ticker_blocks(settings, tickers),
        materialized=materialized or {},
    )
    plans: list[RunPlan] = []
    for stage in stages(defs, request.assets):
        plans.extend(_stage_plans(request, stage))
    return plans


def _stage_plans(request: _Request, members: tuple[str, ...]) -> list[RunPlan]:
    graph = request.graph
    nodes = [graph.get(asset_key(m)) for m in members]  # type: ignore[attr-defined]
    partitions_def = nodes[0].partitions_def
    if partitions_def is None:
        return [RunPlan(members, "", "", 1, f"{', '.join(members)} (whole history)")]
    if isinstance(partitions_def, dg.MultiPartitionsDefinition):
        own = set(
            partitions_def.get_partitions_def_for_dimension(DATE_DIMENSION).get_partition_keys()
        )
        windows = [k for k in request.chosen if k in own]
        if not windows:
            return []
        return [
            _plan(
                members,
                f"{windows[0]}|{block[0]}",
                f"{windows[-1]}|{block[-1]}",
                len(windows) * len(block),
                f" × {block[0]}..{block[-1]} ({len(block)} ticker(s))",
            )
            for block in request.blocks
        ]
    assert isinstance(partitions_def, dg.TimeWindowPartitionsDefinition)
    if all(is_cutoff_model(node) for node in nodes):
        return _cutoff_plans(request, members, partitions_def)
    keys = partitions_def.get_partition_keys()
    windows = [k for k in request.chosen if k in set(keys)]
    if not windows:
        return []
    if all(not node.parent_keys for node in nodes):  # a root: add the missing look-backs
        windows = _with_lookback(request, members, keys, windows)
    return [_plan(members, windows[0], windows[-1], len(windows))]


def _with_lookback(
    request: _Request, members: tuple[str, ...], keys: Sequence[str], windows: list[str]
) -> list[str]:
    """``windows`` preceded by the look-back windows the selected children read and that are
    not materialised yet (contiguous up to the range)."""
    graph = request.graph
    children = {
        child
        for member in members
        for child in graph.get(asset_key(member)).child_keys  # type: ignore[attr-defined]
        if child.to_user_string() in request.assets
    }
    lookback = max(
        (int(graph.get(c).metadata.get(LOOKBACK_METADATA, 0)) for c in children),  # type: ignore[attr-defined]
        default=0,
    )
    index = keys.index(windows[0])
    done = set.intersection(*(set(request.materialized.get(m, ())) for m in members))
    missing = [k for k in keys[max(0, index - lookback) : index] if k not in done]
    first = keys.index(missing[0]) if missing else index
    return list(keys[first : keys.index(windows[-1]) + 1])


def _cutoff_plans(
    request: _Request, members: tuple[str, ...], partitions_def: dg.TimeWindowPartitionsDefinition
) -> list[RunPlan]:
    keys = []
    for key in partitions_def.get_partition_keys():
        window = partitions_def.time_window_for_partition_key(key)
        if window.start.date() < request.range_end and window.end.date() > request.range_start:
            keys.append(key)
    explicit = any(m in request.select for m in members)
    done = set.intersection(*(set(request.materialized.get(m, ())) for m in members))
    needed = [k for k in keys if explicit or k not in done]
    if not needed:
        return []
    keys = keys[keys.index(needed[0]) :]  # from the first missing cut-off on (sequential gate)
    return [_plan(members, keys[0], keys[-1], len(keys))]


def _plan(assets: tuple[str, ...], first: str, last: str, count: int, suffix: str = "") -> RunPlan:
    span = f"{first.split('|')[0]}..{last.split('|')[0]}"
    return RunPlan(assets, first, last, count, f"{', '.join(assets)} {span}{suffix}")


def materialized_partitions(
    instance: dg.DagsterInstance, defs: dg.Definitions
) -> dict[str, set[str]]:
    """The materialised partitions of the assets a plan asks about: date-window roots (their
    look-backs) and cut-off models."""
    graph = defs.resolve_asset_graph()
    out = {}
    for key in graph.materializable_asset_keys:
        node = graph.get(key)
        windows = isinstance(node.partitions_def, dg.TimeWindowPartitionsDefinition)
        if windows and (is_cutoff_model(node) or not node.parent_keys):
            out[key.to_user_string()] = set(instance.get_materialized_partitions(key))
    return out
