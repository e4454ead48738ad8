"""Run the asset graph through Dagster on a persistent instance: the engine behind the CLI.

:func:`materialize` plans the runs from the graph (:mod:`quant_assets.engine.plan`) and
executes them in this process, in order, on the data directory's instance; it stops at the
first failed run.
"""

from __future__ import annotations

import os
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from datetime import date
from pathlib import Path

import dagster as dg

from quant_assets.defs.definitions import build_definitions
from quant_assets.engine.instance import (
    fail_dead_runs,
    open_instance,
    process_tags,
    sync_ticker_partitions,
)
from quant_assets.engine.plan import RunPlan, asset_key, materialized_partitions, plan_runs
from quant_assets.errors import QuantAssetsError
from quant_assets.settings import Settings

# One "materialization planned" event per asset for a range run instead of one per partition
# (Dagster's own switch; measured: halves the bookkeeping of a backfill). The price, per
# Dagster: partitions of a failed range run are not marked failed, only not materialised.
os.environ.setdefault("DAGSTER_EMIT_PARTITION_SUBSET_IN_PLANNED_EVENTS", "true")


class RunFailedError(QuantAssetsError):
    """A Dagster run failed; the message carries the failing step's error or check."""


@dataclass
class RunOutcome:
    plan: RunPlan
    run_id: str
    success: bool
    seconds: float
    error: str | None = None
    check_failures: list[str] = field(default_factory=list)


def run_failure_text(result: dg.ExecuteInProcessResult) -> tuple[str | None, list[str]]:
    checks = []
    for event in result.all_events:
        if event.event_type_value == "ASSET_CHECK_EVALUATION":
            data = event.event_specific_data
            if isinstance(data, dg.AssetCheckEvaluation) and not data.passed:
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
    select: Sequence[str] = ("signals",),
    start: date | None = None,
    end: date | None = None,
    tickers: Sequence[str] | None = None,
    on_run: Callable[[RunPlan, RunOutcome | None], None] | None = None,
    instance: dg.DagsterInstance | None = None,
    on_plan: Callable[[list[RunPlan]], None] | None = None,
    upstream: bool = True,
    tags: dict[str, str] | None = None,
    defs: dg.Definitions | None = None,
) -> list[RunOutcome]:
    """Materialise ``select`` and (``upstream``) everything upstream of it over a range; stop
    at the first failed run. ``upstream=False`` runs exactly the selection on the stored
    inputs (e.g. iterating on a strategy's YAML without recomputing the data and models).
    ``defs`` (default: :func:`build_definitions`) may extend the graph: the plan reads it."""
    defs = defs or build_definitions(settings, home)
    own_instance = instance is None
    instance = instance or open_instance(home)
    try:
        fail_dead_runs(instance)
        sync_ticker_partitions(instance, settings.universe.tickers)
        done = materialized_partitions(instance, defs)
        plans = plan_runs(settings, defs, select, start, end, tickers, done, upstream)
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
