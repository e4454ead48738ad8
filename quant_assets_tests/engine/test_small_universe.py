"""A small universe with the shipped configs, as a new user tries it: two tickers over five
years. The next-state models are skipped for too few training rows (the reason recorded),
``predictions`` is stored empty, and a strategy that weights the prediction still runs: the
component drops out of its alpha, and the run says how many rows had no prediction."""

from datetime import date

import dagster as dg
import duckdb

from quant_assets.engine.instance import open_instance
from quant_assets_tests.conftest import materialize_all, write_project, write_strategies


def test_two_tickers_over_five_years_run_the_prediction_strategy_without_models(tmp_path):
    project = write_strategies(
        write_project(tmp_path, ["AAA", "BBB"], date(2015, 1, 1), date(2019, 12, 31), grain="year"),
        ["hybrid_alpha"],
    )
    materialize_all(project, ["hybrid_alpha/alpha_scores"])
    with duckdb.connect(str(project.home / "warehouse.duckdb"), read_only=True) as conn:
        decisions = conn.sql(
            "select distinct gate_decision, gate_reason from market.next_state_model"
        ).fetchall()
        predictions = conn.sql("select count(*) from market.predictions").fetchone()
        scores = conn.sql(
            "select count(*), count(distinct ticker), min(date) from hybrid_alpha.alpha_scores"
        ).fetchone()
    assert {decision for decision, _ in decisions} == {"skipped"}
    assert all(reason for _, reason in decisions)  # each cut-off says why
    assert predictions == (0,)
    assert scores is not None and scores[0] > 0 and scores[1] == 2
    instance = open_instance(project.home)
    events = instance.fetch_materializations(dg.AssetKey(["hybrid_alpha", "alpha_scores"]), 10)
    metadata = events.records[0].asset_materialization.metadata  # type: ignore[union-attr]
    assert metadata["rows_without_prediction"].value == metadata["rows"].value == scores[0]
