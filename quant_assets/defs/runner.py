"""Run the asset graph through Dagster on a persistent instance: the engine behind the CLI.

A request (assets, date range, tickers) becomes as few runs as Dagster allows: one run for
the date-partitioned benchmark (covering the features' look-back too) and one run per
contiguous block of tickers for the date × ticker assets, each over the whole date range
via the ``dagster/asset_partition_range_*`` tags (a single-run backfill).
"""

from __future__ import annotations

import os
import socket
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from datetime import date
from pathlib import Path

import dagster as dg
from dagster._core.instance.ref import InstanceRef

from quant_assets.defs.factory import build_definitions
from quant_assets.defs.order_assets import order_asset_names
from quant_assets.defs.partitions import DATE_DIMENSION, TICKER_PARTITIONS, window_start_of
from quant_assets.defs.sensors import universe_partition_requests
from quant_assets.defs.strategy_assets import report_asset_names, strategy_asset_names
from quant_assets.errors import QuantAssetsError
from quant_assets.features.build import lookback_periods
from quant_assets.settings import Settings
from quant_assets.tickers import validate_tickers

# One "materialization planned" event per asset for a range run instead of one per partition
# (Dagster's own switch; measured: halves the bookkeeping of a backfill). The price, per
# Dagster: partitions of a failed range run are not marked failed, only not materialised.
os.environ.setdefault("DAGSTER_EMIT_PARTITION_SUBSET_IN_PLANNED_EVENTS", "true")

# ``--select all``: every leaf of the graph (upstream assets follow), plus every strategy's
# report (see :func:`pipeline_assets`).
PIPELINE_ASSETS: tuple[str, ...] = ("signals", "labels", "predictions")
DATA_ASSETS: tuple[str, ...] = ("signals",)  # bars, benchmark, features, signals

_INSTANCE_YAML = """\
# Written by quant-assets: the Dagster instance of this data directory.
storage:
  sqlite:
    base_dir: {storage}
local_artifact_storage:
  module: dagster._core.storage.root
  class: LocalArtifactStorage
  config:
    base_dir: {artifacts}
telemetry:
  enabled: false
"""


class RunFailedError(QuantAssetsError):
    """A Dagster run failed; the message carries the failing step's error or check."""


@dataclass(frozen=True)
class RunPlan:
    """One Dagster run: which assets, which partition key range."""

    assets: tuple[str, ...]
    range_start: str
    range_end: str
    partitions: int
    label: str


@dataclass
class RunOutcome:
    plan: RunPlan
    run_id: str
    success: bool
    seconds: float
    error: str | None = None
    check_failures: list[str] = field(default_factory=list)


def dagster_home(home: Path) -> Path:
    """The Dagster instance directory of a data directory (created with its dagster.yaml)."""
    path = home / "dagster"
    path.mkdir(parents=True, exist_ok=True)
    config = path / "dagster.yaml"
    if not config.exists():
        config.write_text(_INSTANCE_YAML.format(storage=path / "storage", artifacts=path))
    return path


def open_instance(home: Path) -> dg.DagsterInstance:
    """The persistent Dagster instance under ``home`` (SQLite storage)."""
    return dg.DagsterInstance.from_ref(InstanceRef.from_dir(str(dagster_home(home))))


PID_TAG = "quant_assets/pid"
HOST_TAG = "quant_assets/host"


def process_tags() -> dict[str, str]:
    """Tags naming the process that executes an in-process run (see :func:`fail_dead_runs`)."""
    return {PID_TAG: str(os.getpid()), HOST_TAG: socket.gethostname()}


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:  # exists, owned by someone else
        return True
    return True


def fail_dead_runs(instance: dg.DagsterInstance) -> list[str]:
    """Mark as failed the runs this machine started in-process whose process is gone (killed
    mid-run: SIGKILL, OOM, power loss). Dagster's run monitoring does this for runs its
    launcher started; in-process runs have no launcher, so we do it before every new run, or
    they would show as in progress forever and hold back the automation (``~in_progress``).
    Returns the run ids marked failed."""
    host = socket.gethostname()
    failed = []
    for run in instance.get_runs(dg.RunsFilter(statuses=[dg.DagsterRunStatus.STARTED])):
        pid, where = run.tags.get(PID_TAG), run.tags.get(HOST_TAG)
        if pid is None or where != host or not pid.isdigit() or _alive(int(pid)):
            continue
        instance.report_run_failed(
            run, f"the process running it (pid {pid} on {host}) no longer exists: killed mid-run"
        )
        failed.append(run.run_id)
    return failed


def sync_ticker_partitions(instance: dg.DagsterInstance, tickers: Sequence[str]) -> None:
    """Make the dynamic ticker partitions equal ``tickers`` (universe.yaml), in that order."""
    name = TICKER_PARTITIONS.name or "ticker"
    existing = list(instance.get_dynamic_partitions(name))
    for request in universe_partition_requests(list(tickers), existing):
        if isinstance(request, dg.AddDynamicPartitionsRequest):
            instance.add_dynamic_partitions(name, list(request.partition_keys))
        else:
            for key in request.partition_keys:
                instance.delete_dynamic_partition(name, key)


def pipeline_assets(settings: Settings) -> tuple[str, ...]:
    """What ``--select all`` materialises: the data and model leaves, every strategy's
    orders and paper book, and every report."""
    return (*PIPELINE_ASSETS, *order_asset_names(settings), *report_asset_names(settings))


def asset_key(name: str) -> dg.AssetKey:
    """``hybrid_alpha/backtest`` -> AssetKey(["hybrid_alpha", "backtest"])."""
    return dg.AssetKey.from_user_string(name)


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
    selection = dg.AssetSelection.assets(*(asset_key(s) for s in select))
    selection = selection.required_multi_asset_neighbors()
    if upstream:
        selection = selection.upstream()
    keys = selection.resolve(graph)
    return sorted(k.to_user_string() for k in keys)


# Runs in dependency order; the assets of one stage share a partitions definition, so each
# stage is one run (one per contiguous ticker block for date × ticker stages).
STAGES: tuple[tuple[str, ...], ...] = (
    ("benchmark_bars",),
    ("regime_model",),
    ("regimes",),
    ("bars", "features", "signals", "labels"),
    ("next_state_model",),
    ("predictions",),
)
CUTOFF_ASSETS = ("regime_model", "next_state_model")


def stages(settings: Settings) -> tuple[tuple[str, ...], ...]:
    """:data:`STAGES`, then every strategy's date × ticker assets (one run: they share the
    partitions), its orders and paper book (one run: date windows), then the reports
    (unpartitioned: one run)."""
    extra = [
        tuple(strategy_asset_names(settings)),
        tuple(order_asset_names(settings)),
        tuple(report_asset_names(settings)),
    ]
    return (*STAGES, *(stage for stage in extra if stage))


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


def _benchmark_lookback(settings: Settings, assets: Sequence[str]) -> int:
    """Date windows before the range that the range's features and regimes read."""
    from quant_assets.defs.partitions import periods_for_sessions
    from quant_assets.regimes import rule_lookback_sessions

    grain = settings.universe.partition_grain
    lookback = lookback_periods(settings.features, grain) if "features" in assets else 0
    if "regimes" in assets:
        sessions = rule_lookback_sessions(settings.regimes.rules)
        lookback = max(lookback, periods_for_sessions(sessions, grain))
    return lookback


def plan_runs(
    settings: Settings,
    defs: dg.Definitions,
    select: Sequence[str],
    start: date | None,
    end: date | None,
    tickers: Sequence[str] | None,
    materialized_benchmark: set[str] | frozenset[str] = frozenset(),
    materialized_models: dict[str, set[str]] | None = None,
    upstream: bool = True,
) -> list[RunPlan]:
    """The runs that materialise ``select`` (+ upstream) over ``[start, end]`` for ``tickers``.

    The benchmark run also covers the look-back windows (features, regime rules) not yet in
    ``materialized_benchmark``, so a daily refresh re-runs only the current window. Model
    cut-offs whose windows overlap the range are trained when missing from
    ``materialized_models`` (all of them when the model asset itself is selected), so the
    daily update never retrains a model, and the first day of a new cut-off window trains one.
    """
    assets = selection_closure(defs, select, upstream)
    graph = defs.resolve_asset_graph()
    date_def = graph.get(dg.AssetKey("benchmark_bars")).partitions_def
    assert isinstance(date_def, dg.TimeWindowPartitionsDefinition)
    chosen = _date_range(settings, date_def, start, end)
    range_start = date.fromisoformat(chosen[0])
    range_end = date_def.time_window_for_partition_key(chosen[-1]).end.date()
    blocks = _ticker_blocks(settings, tickers)
    done_models = materialized_models or {}
    plans: list[RunPlan] = []
    for stage in stages(settings):
        members = tuple(a for a in stage if a in assets)
        if not members:
            continue
        partitions_def = graph.get(asset_key(members[0])).partitions_def
        if partitions_def is None:
            plans.append(RunPlan(members, "", "", 1, f"{', '.join(members)} (whole history)"))
        elif members == ("benchmark_bars",):
            keys = date_def.get_partition_keys()
            index = keys.index(chosen[0])
            lookback = _benchmark_lookback(settings, assets)
            missing = [
                k for k in keys[max(0, index - lookback) : index] if k not in materialized_benchmark
            ]
            first = keys.index(missing[0]) if missing else index
            bench_keys = keys[first : keys.index(chosen[-1]) + 1]
            plans.append(_plan(members, bench_keys[0], bench_keys[-1], len(bench_keys)))
        elif members[0] in CUTOFF_ASSETS:
            assert isinstance(partitions_def, dg.TimeWindowPartitionsDefinition)
            keys = []
            for key in partitions_def.get_partition_keys():
                window = partitions_def.time_window_for_partition_key(key)
                if window.start.date() < range_end and window.end.date() > range_start:
                    keys.append(key)
            explicit = members[0] in select
            needed = [k for k in keys if explicit or k not in done_models.get(members[0], set())]
            if needed:  # train from the first missing cut-off on (the gate is sequential)
                keys = keys[keys.index(needed[0]) :]
                plans.append(_plan(members, keys[0], keys[-1], len(keys)))
        elif isinstance(partitions_def, dg.MultiPartitionsDefinition):
            own = partitions_def.get_partitions_def_for_dimension(DATE_DIMENSION)
            windows = [k for k in chosen if k in set(own.get_partition_keys())]
            if not windows:
                continue
            for block in blocks:
                plans.append(
                    _plan(
                        members,
                        f"{windows[0]}|{block[0]}",
                        f"{windows[-1]}|{block[-1]}",
                        len(windows) * len(block),
                        f" × {block[0]}..{block[-1]} ({len(block)} ticker(s))",
                    )
                )
        else:  # date windows (regimes from the universe start, orders from the first cut-off)
            assert isinstance(partitions_def, dg.TimeWindowPartitionsDefinition)
            own_keys = set(partitions_def.get_partition_keys())
            windows = [k for k in chosen if k in own_keys]
            if windows:
                plans.append(_plan(members, windows[0], windows[-1], len(windows)))
    return plans


def _plan(assets: tuple[str, ...], first: str, last: str, count: int, suffix: str = "") -> RunPlan:
    span = f"{first.split('|')[0]}..{last.split('|')[0]}"
    return RunPlan(assets, first, last, count, f"{', '.join(assets)} {span}{suffix}")


def run_failure_text(result: dg.ExecuteInProcessResult) -> tuple[str | None, list[str]]:
    checks = []
    for event in result.all_events:
        if event.event_type_value == "ASSET_CHECK_EVALUATION":
            data = event.event_specific_data
            if data is not None and not data.passed:
                checks.append(f"{data.asset_key.to_user_string()}:{data.check_name}")
    messages = []
    for event in result.get_step_failure_events():
        data = event.step_failure_data
        if data.user_failure_data is not None and data.user_failure_data.description:
            messages.append(f"{event.step_key}: {data.user_failure_data.description}")
        elif data.error is not None:
            cause = data.error.cause
            detail = cause.message if cause is not None else data.error.message
            messages.append(f"{event.step_key}: {detail.strip()}")
    return ("\n".join(messages) or None), checks


def execute_plan(
    defs: dg.Definitions,
    instance: dg.DagsterInstance,
    plan: RunPlan,
    extra_tags: dict[str, str] | None = None,
) -> RunOutcome:
    """Run one plan in-process on ``instance``; never raises for a failed run."""
    tags = {"quant_assets/launched_by": "cli", **(extra_tags or {})}
    if plan.range_start:
        tags["dagster/asset_partition_range_start"] = plan.range_start
        tags["dagster/asset_partition_range_end"] = plan.range_end
    return run_in_process(defs, instance, plan, [asset_key(a) for a in plan.assets], tags)


def run_in_process(
    defs: dg.Definitions,
    instance: dg.DagsterInstance,
    plan: RunPlan,
    selection: list[dg.AssetKey],
    tags: dict[str, str],
    partition_key: str | None = None,
) -> RunOutcome:
    """Execute ``selection`` in this process on ``instance`` (tagged with this process, see
    :func:`fail_dead_runs`); never raises for a failed run."""
    job = defs.resolve_implicit_global_asset_job_def()
    started = time.perf_counter()
    result = job.execute_in_process(
        instance=instance,
        asset_selection=selection,
        partition_key=partition_key,
        tags={**tags, **process_tags()},
        raise_on_error=False,
        # Events still go to the instance (and the UI); the terminal shows our progress only.
        run_config={"loggers": {"console": {"config": {"log_level": "WARNING"}}}},
    )
    error, checks = run_failure_text(result)
    return RunOutcome(
        plan=plan,
        run_id=result.run_id,
        success=result.success,
        seconds=time.perf_counter() - started,
        error=error,
        check_failures=checks,
    )


def materialize(
    settings: Settings,
    home: Path,
    select: Sequence[str] = DATA_ASSETS,
    start: date | None = None,
    end: date | None = None,
    tickers: Sequence[str] | None = None,
    on_run: Callable[[RunPlan, RunOutcome | None], None] | None = None,
    instance: dg.DagsterInstance | None = None,
    on_plan: Callable[[list[RunPlan]], None] | None = None,
    upstream: bool = True,
    tags: dict[str, str] | None = None,
) -> list[RunOutcome]:
    """Materialise ``select`` and (``upstream``) everything upstream of it over a range; stop
    at the first failed run. ``upstream=False`` runs exactly the selection on the stored
    inputs (e.g. iterating on a strategy's YAML without recomputing the data and models)."""
    defs = build_definitions(settings, home)
    own_instance = instance is None
    instance = instance or open_instance(home)
    try:
        fail_dead_runs(instance)
        sync_ticker_partitions(instance, settings.universe.tickers)
        done = set(instance.get_materialized_partitions(dg.AssetKey("benchmark_bars")))
        models = {
            name: set(instance.get_materialized_partitions(dg.AssetKey(name)))
            for name in CUTOFF_ASSETS
        }
        plans = plan_runs(settings, defs, select, start, end, tickers, done, models, upstream)
        if on_plan:
            on_plan(plans)
        outcomes: list[RunOutcome] = []
        for plan in plans:
            if on_run:
                on_run(plan, None)
            outcome = execute_plan(defs, instance, plan, tags)
            outcomes.append(outcome)
            if on_run:
                on_run(plan, outcome)
            if not outcome.success:
                break
        return outcomes
    finally:
        if own_instance:
            instance.dispose()
