"""Convergence read from the graph: what a change reaches, how complete the graph is, and the
runs that bring it back (on the materialised pipeline: four tickers, 2015-2019, year grain,
yearly cut-offs from 2017)."""

from __future__ import annotations

import os
from datetime import date

import dagster as dg
import pytest

from quant_assets.defs.definitions import build_definitions
from quant_assets.engine.converge import converge_in_process
from quant_assets.engine.convergence import (
    GraphView,
    completeness,
    convergence_target,
    dagster_window_step,
    date_mapping,
    describe,
    graph_state,
    next_step,
    window_step,
)
from quant_assets.engine.instance import open_instance
from quant_assets.engine.runner import materialize
from quant_assets.settings import load_settings
from quant_assets_tests.conftest import PIPELINE_TICKERS, copy_project
from quant_assets_tests.engine.test_daemon import tables

BARS = dg.AssetKey("bars")
YEARS = [f"{y}-01-01" for y in range(2015, 2020)]


def _view(project) -> GraphView:
    settings = load_settings(project.config_dir)
    graph = build_definitions(settings, project.home).resolve_asset_graph()
    return GraphView(graph, PIPELINE_TICKERS)


def test_the_window_arithmetic_equals_dagsters_partition_mappings(pipeline):
    view = _view(pipeline)
    compared = 0
    for child in view.keys:
        for parent in view.parents_in_graph(child):
            if view.date_def(child) is None or view.date_def(parent) is None:
                continue
            if isinstance(date_mapping(view, parent, child), dg.AllPartitionMapping):
                continue
            for window in view.windows[parent]:
                fast = window_step(view, parent, child, window)
                assert fast == dagster_window_step(view, parent, child, window), (
                    parent,
                    child,
                    window,
                )
                compared += 1
    assert compared > 100


def test_a_corrected_old_window_reaches_its_readers_and_the_later_cutoffs(pipeline):
    view = _view(pipeline)
    reached = describe(view.affected({BARS: {("2016-01-01", "AAA")}}))
    assert reached["bars"] == "2016-01-01..2016-01-01 × AAA"
    assert reached["features"] == "2016-01-01..2018-01-01 × AAA"  # two windows read back
    assert reached["labels"] == "2016-01-01..2017-01-01 × AAA"  # stored when known
    assert reached["next_state_model"] == "2017-01-01..2019-01-01"  # trained after 2016
    assert "regime_model" not in reached  # the benchmark did not change
    # Every strategy decides across tickers and continues its book: all of it, from 2017.
    assert reached["hybrid_alpha/backtest"] == "2017-01-01..2019-01-01 × AAA,BBB,CCC,DDD"
    assert reached["hybrid_alpha/backtest_report"] == "whole history"


def test_a_new_session_in_the_last_window_retrains_no_model(pipeline):
    view = _view(pipeline)
    reached = view.affected(
        {
            BARS: {("2019-01-01", t) for t in PIPELINE_TICKERS},
            dg.AssetKey("benchmark_bars"): {("2019-01-01", None)},
        }
    )
    names = {k.to_user_string() for k in reached}
    assert not names & {"next_state_model", "regime_model"}
    assert describe(reached)["regimes"] == "2019-01-01..2019-01-01"


@pytest.fixture
def touched(pipeline, tmp_path):
    """A copy of the pipeline whose bars of 2017 for AAA were re-ingested (same rows)."""
    project = copy_project(pipeline, tmp_path / "touched")
    settings = load_settings(project.config_dir)
    saved = os.environ.pop("MLFLOW_TRACKING_URI", None)
    try:
        outcomes = materialize(
            settings,
            project.home,
            ["bars"],
            start=date(2017, 1, 1),
            end=date(2017, 12, 31),
            tickers=["AAA"],
            upstream=False,
        )
    finally:
        if saved is not None:
            os.environ["MLFLOW_TRACKING_URI"] = saved
    assert [o.success for o in outcomes] == [True]
    return project


def test_a_complete_graph_has_nothing_to_run(pipeline):
    view = _view(pipeline)
    state = graph_state(view, open_instance(pipeline.home))
    assert all(row.complete for row in completeness(state))
    assert next_step(view, convergence_target(state, {})) is None


def test_status_counts_what_an_updated_window_made_stale(touched):
    view = _view(touched)
    rows = {r.asset: r for r in completeness(graph_state(view, open_instance(touched.home)))}
    assert rows["bars"].complete
    assert (rows["features"].stale, rows["features"].oldest_stale) == (3, "2017-01-01")
    assert rows["labels"].stale == 2
    assert rows["next_state_model"].stale == 2  # the cut-offs 2018 and 2019
    assert rows["regimes"].complete
    assert rows["hybrid_alpha/positions"].stale == 3 * len(PIPELINE_TICKERS)
    assert rows["hybrid_alpha/orders"].oldest_stale == "2017-01-01"


def test_converging_runs_exactly_the_stale_windows_and_ends_equal_to_before(pipeline, touched):
    saved = os.environ.pop("MLFLOW_TRACKING_URI", None)
    try:
        outcomes = converge_in_process(load_settings(touched.config_dir), touched.home)
    finally:
        if saved is not None:
            os.environ["MLFLOW_TRACKING_URI"] = saved
    runs = [(o.plan.assets, o.plan.range_start, o.plan.range_end) for o in outcomes]
    assert all(o.success for o in outcomes)
    assert runs[0] == (("features", "signals"), "2017-01-01|AAA", "2019-01-01|AAA")
    assert runs[1] == (("labels",), "2017-01-01|AAA", "2018-01-01|AAA")
    assert runs[2] == (("next_state_model",), "2018-01-01", "2019-01-01")
    assert runs[3][1:] == ("2017-01-01|AAA", "2019-01-01|DDD")
    assert "predictions" in runs[3][0]
    assert len(runs) == 6  # then the orders and paper books, then the reports
    # The same inputs: every table as it was (MLflow numbers models on, see test_daemon).
    before, after = tables(pipeline.home), tables(touched.home)
    for name in sorted(before):
        assert after[name].equals(before[name]), name


def test_a_cutoff_reached_by_the_calendar_is_trained_and_no_earlier_one(pipeline, tmp_path):
    """The universe runs on into 2020: the new date windows are ingested and the 2020 cut-offs
    trained, as soon as their inputs (everything before 2020) are there; 2017-2019 stay."""
    import yaml

    project = copy_project(pipeline, tmp_path / "new_cutoff")
    universe = yaml.safe_load((project.config_dir / "universe.yaml").read_text())
    universe["end"] = "2020-06-30"
    (project.config_dir / "universe.yaml").write_text(yaml.safe_dump(universe))
    view = _view(project)
    target = describe(convergence_target(graph_state(view, open_instance(project.home)), {}))
    assert target["next_state_model"] == "2020-01-01..2020-01-01"
    assert target["regime_model"] == "2020-01-01..2020-01-01"
    assert target["bars"] == "2020-01-01..2020-01-01 × AAA,BBB,CCC,DDD"
    assert target["hybrid_alpha/backtest"] == "2020-01-01..2020-01-01 × AAA,BBB,CCC,DDD"


def test_a_removed_ticker_reruns_what_read_it_across_tickers_and_not_its_own_history(pipeline):
    from quant_assets.defs.sensors import removal_seeds

    view = _view(pipeline)
    seeds = describe(removal_seeds(view.graph, PIPELINE_TICKERS, ["DDD"]))
    assert seeds["next_state_model"] == "2017-01-01..2019-01-01"  # trained on DDD too
    assert seeds["hybrid_alpha/positions"] == "2017-01-01..2019-01-01 × AAA,BBB,CCC"
    assert "bars" not in seeds and "features" not in seeds  # per-ticker: DDD's are gone
    assert "regime_model" not in seeds  # the benchmark alone
