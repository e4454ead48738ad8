"""The ``converge`` sensor's plan run in this process (``quant-assets converge``): the same
targets and run shapes (:mod:`quant_assets.engine.convergence`), executed one by one with the
CLI's runner until every asset is complete and current or a run fails."""

from __future__ import annotations

from collections.abc import Callable, Collection, Mapping
from pathlib import Path

import dagster as dg

from quant_assets.defs.definitions import build_definitions
from quant_assets.defs.partitions import TICKER_DIMENSION
from quant_assets.engine.convergence import (
    GraphView,
    Part,
    Parts,
    Step,
    convergence_target,
    graph_state,
    next_step,
    step_run_request,
)
from quant_assets.engine.instance import fail_dead_runs, open_instance, sync_ticker_partitions
from quant_assets.engine.plan import RunPlan
from quant_assets.engine.runner import RunOutcome, execute_plan
from quant_assets.settings import Settings


def step_plan(step: Step) -> RunPlan:
    """The step as the CLI's :class:`~quant_assets.engine.plan.RunPlan`."""
    request = step_run_request(step, {})
    start = request.tags.get("dagster/asset_partition_range_start", "")
    end = request.tags.get("dagster/asset_partition_range_end", "")
    return RunPlan(
        assets=tuple(a.to_user_string() for a in step.assets),
        range_start=start,
        range_end=end,
        partitions=max(len(step.parts), 1),
        label=step.describe(),
    )


def converge_in_process(
    settings: Settings,
    home: Path,
    seeds: Mapping[dg.AssetKey, Collection[Part]] | None = None,
    on_run: Callable[[RunPlan, RunOutcome | None], None] | None = None,
    max_runs: int = 1000,
) -> list[RunOutcome]:
    """What the ``converge`` sensor does, in this process, until the graph is complete and
    current (or a run fails): the same plan, one run at a time (``quant-assets converge``)."""
    defs = build_definitions(settings, home)
    graph = defs.resolve_asset_graph()
    instance = open_instance(home)
    outcomes: list[RunOutcome] = []
    pending: Parts = {k: set(v) for k, v in (seeds or {}).items()}
    try:
        fail_dead_runs(instance)
        sync_ticker_partitions(instance, settings.universe.tickers)
        view = GraphView(graph, list(instance.get_dynamic_partitions(TICKER_DIMENSION)))
        while len(outcomes) < max_runs:
            step = next_step(view, convergence_target(graph_state(view, instance), pending))
            if step is None:
                break
            plan = step_plan(step)
            if on_run:
                on_run(plan, None)
            outcome = execute_plan(defs, instance, plan, {"quant_assets/converged_by": "cli"})
            outcomes.append(outcome)
            if on_run:
                on_run(plan, outcome)
            for key in step.assets:
                pending.get(key, set()).difference_update(step.parts)
            if not outcome.success:
                break
        return outcomes
    finally:
        instance.dispose()
