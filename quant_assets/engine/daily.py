"""The daily path without a daemon: the schedule's runs for one session, then declarative
automation tick by tick until nothing more is requested (``quant-assets update``).

Under ``dagster dev`` (or the production daemon) the schedule and the automation sensor do
exactly this on their own; this module runs the same definitions in-process, for cron-driven
laptops, tests and the benchmark. Each tick evaluates the assets' ``AutomationCondition``s
with Dagster's evaluator, turns the requested partitions into runs with Dagster's own
backfill-policy grouping (one run per partitions definition and range), and executes them in
dependency order.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from datetime import date, datetime

import dagster as dg

from quant_assets.dagster_internals import (
    AssetKeyPartitionKey,
    build_run_requests_with_backfill_policies,
)
from quant_assets.defs.definitions import build_definitions
from quant_assets.defs.schedules import (
    DAILY_SCHEDULE,
    daily_run_requests,
    session_of_tick,
)
from quant_assets.engine.instance import fail_dead_runs, open_instance, sync_ticker_partitions
from quant_assets.engine.plan import RunPlan
from quant_assets.engine.runner import RunFailedError, RunOutcome, run_in_process
from quant_assets.settings import Settings

AUTOMATION_TAG = "quant_assets/automation_tick"


@dataclass
class DailyOutcome:
    """What one daily update did: the runs (schedule first), automation ticks, wall time."""

    session: date
    runs: list[RunOutcome] = field(default_factory=list)
    ticks: int = 0
    seconds: float = 0.0
    skipped: str | None = None
    evaluation_seconds: float = 0.0  # evaluating the automation conditions
    finished_after: list[float] = field(default_factory=list)  # per run, since the start

    @property
    def success(self) -> bool:
        return all(run.success for run in self.runs)


def order_runs(requests: Sequence[dg.RunRequest], asset_graph) -> list[dg.RunRequest]:
    """``requests`` so that every run comes after the runs producing its inputs.

    Raises ValueError if two runs need each other (cannot happen with this graph: runs are
    grouped by partitions definition, and no partitions definition sits on both sides of
    another one).
    """
    selections = [set(r.asset_selection or []) for r in requests]
    ancestors = [_all_ancestors(asset_graph, chosen) for chosen in selections]
    pending = list(range(len(requests)))
    ordered: list[dg.RunRequest] = []
    while pending:
        ready = [
            i for i in pending if not any(j != i and selections[j] & ancestors[i] for j in pending)
        ]
        if not ready:
            raise ValueError("automation requested runs that depend on each other")
        # Partitioned runs first: an unpartitioned summary (the reports) never delays orders.
        for i in sorted(
            ready,
            key=lambda i: (
                requests[i].partition_key is None
                and "dagster/asset_partition_range_start" not in requests[i].tags
            ),
        ):
            ordered.append(requests[i])
        pending = [i for i in pending if i not in ready]
    return ordered


def _all_ancestors(asset_graph, keys: set[dg.AssetKey]) -> set[dg.AssetKey]:
    seen: set[dg.AssetKey] = set()
    stack = [p for k in keys for p in asset_graph.get(k).parent_keys]
    while stack:
        key = stack.pop()
        if key in seen:
            continue
        seen.add(key)
        stack.extend(asset_graph.get(key).parent_keys)
    return seen


def _execute(
    defs: dg.Definitions,
    instance: dg.DagsterInstance,
    request: dg.RunRequest,
    label: str,
    tags: dict[str, str],
) -> RunOutcome:
    selection = list(request.asset_selection or [])
    span = request.partition_key or "{}..{}".format(
        request.tags.get("dagster/asset_partition_range_start", "-"),
        request.tags.get("dagster/asset_partition_range_end", "-"),
    )
    assets = tuple(k.to_user_string() for k in selection)
    plan = RunPlan(assets, "", "", 0, f"{label}: {', '.join(assets)} {span}")
    return run_in_process(
        defs, instance, plan, selection, {**request.tags, **tags}, request.partition_key
    )


def run_daily_update(
    settings: Settings,
    home,
    session: date,
    *,
    instance: dg.DagsterInstance | None = None,
    on_run: Callable[[RunOutcome], None] | None = None,
    max_ticks: int = 12,
) -> DailyOutcome:
    """Ingest ``session`` (the schedule's runs) and let automation bring every downstream
    asset up to date; stop at the first failed run (raises :class:`RunFailedError`)."""
    started = time.perf_counter()
    defs = build_definitions(settings, home)
    asset_graph = defs.resolve_asset_graph()
    own_instance = instance is None
    instance = instance or open_instance(home)
    outcome = DailyOutcome(session=session)
    try:
        fail_dead_runs(instance)
        sync_ticker_partitions(instance, settings.universe.tickers)
        # A first evaluation sets the baseline: "updated" means updated after it.
        evaluating = time.perf_counter()
        cursor = dg.evaluate_automation_conditions(defs=defs, instance=instance).cursor
        outcome.evaluation_seconds += time.perf_counter() - evaluating
        tickers = list(instance.get_dynamic_partitions("ticker"))
        calendar = settings.universe.calendar
        scheduled = (
            daily_run_requests(settings, session, tickers)
            if session_of_tick(calendar, datetime.combine(session, datetime.min.time()))
            else dg.SkipReason(f"{session} is not a {calendar} session")
        )
        if isinstance(scheduled, dg.SkipReason):
            outcome.skipped = scheduled.skip_message
            return outcome
        pending: list[tuple[str, dg.RunRequest, dict[str, str]]] = [
            (DAILY_SCHEDULE, r, {}) for r in scheduled
        ]
        while pending:
            for label, request, tags in pending:
                run = _execute(defs, instance, request, label, tags)
                outcome.runs.append(run)
                outcome.finished_after.append(time.perf_counter() - started)
                if on_run:
                    on_run(run)
                if not run.success:
                    raise RunFailedError(f"{run.plan.label}: {run.error or run.check_failures}")
            if outcome.ticks >= max_ticks:
                break
            outcome.ticks += 1
            evaluating = time.perf_counter()
            result = dg.evaluate_automation_conditions(defs=defs, instance=instance, cursor=cursor)
            outcome.evaluation_seconds += time.perf_counter() - evaluating
            cursor = result.cursor
            partitions = {
                AssetKeyPartitionKey(key, partition)
                for key in asset_graph.materializable_asset_keys
                for partition in result.get_requested_partitions(key)
            }
            with dg.partition_loading_context(dynamic_partitions_store=instance):
                requests = build_run_requests_with_backfill_policies(
                    partitions, asset_graph, instance
                )
            tags = {"quant_assets/launched_by": "automation", AUTOMATION_TAG: str(outcome.ticks)}
            pending = [("automation", r, tags) for r in order_runs(requests, asset_graph)]
        return outcome
    finally:
        outcome.seconds = time.perf_counter() - started
        if own_instance:
            instance.dispose()
