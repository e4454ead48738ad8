"""A small universe with the shipped strategies, as a new user tries it: one ticker over five
years, through the whole graph. The next-state models are skipped for too few training rows
(the reason recorded), ``predictions`` is stored empty, and a strategy that weights the
prediction still runs to its orders: the component drops out of its alpha, and the run says
how many rows had no prediction."""

from datetime import date

import dagster as dg
import duckdb
import pytest

from quant_assets.engine.instance import open_instance
from quant_assets_tests.conftest import materialize_all, write_project, write_strategies


def test_one_ticker_over_five_years_runs_the_whole_graph_without_models(tmp_path):
    project = write_strategies(
        write_project(tmp_path, ["AAA"], date(2015, 1, 1), date(2019, 12, 31), grain="year"),
        ["hybrid_alpha"],
    )
    materialize_all(project)  # everything: models, strategies, orders, reports, tear sheets
    with duckdb.connect(str(project.home / "warehouse.duckdb"), read_only=True) as conn:
        decisions = conn.sql(
            "select distinct gate_decision, gate_reason from market.next_state_model"
        ).fetchall()
        predictions = conn.sql("select count(*) from market.predictions").fetchone()
        scores = conn.sql(
            "select count(*), count(distinct ticker), min(date) from hybrid_alpha.alpha_scores"
        ).fetchone()
        orders = conn.sql("select count(*) from hybrid_alpha.orders").fetchone()
    assert {decision for decision, _ in decisions} == {"skipped"}
    assert all(reason for _, reason in decisions)  # each cut-off says why
    assert predictions == (0,)
    assert scores is not None and scores[0] > 0 and scores[1] == 1
    assert orders is not None and orders[0] >= 0  # the orders table exists
    instance = open_instance(project.home)
    events = instance.fetch_materializations(dg.AssetKey(["hybrid_alpha", "alpha_scores"]), 10)
    metadata = events.records[0].asset_materialization.metadata  # type: ignore[union-attr]
    assert metadata["rows_without_prediction"].value == metadata["rows"].value == scores[0]


def test_a_history_shorter_than_the_model_warm_up_names_the_keys_to_change(tmp_path):
    from quant_assets.defs.definitions import build_definitions
    from quant_assets.errors import QuantAssetsError
    from quant_assets.settings import load_settings

    project = write_strategies(
        write_project(tmp_path, ["AAA"], date(2018, 1, 1), date(2019, 12, 31), grain="year"),
        ["trend_only"],
    )
    settings = load_settings(project.config_dir)  # default models: 3 years of history first
    with pytest.raises(QuantAssetsError) as raised:
        build_definitions(settings, project.home)
    message = str(raised.value)
    assert "strategy trend_only" in message
    assert "first model cut-off 2021-01-01" in message
    assert "min_history_years 3" in message and "universe.yaml's end 2019-12-31" in message


def test_a_first_cut_off_inside_a_window_names_the_window_and_the_keys(tmp_path):
    import yaml

    from quant_assets.defs.definitions import build_definitions
    from quant_assets.errors import QuantAssetsError
    from quant_assets.settings import load_settings

    project = write_strategies(
        write_project(tmp_path, ["AAA"], date(2015, 1, 1), date(2019, 12, 31), grain="year"),
        ["trend_only"],
    )
    models = {"first_cutoff": "2018-07-01", "cutoff_frequency": "quarter"}
    (project.config_dir / "models.yaml").write_text(yaml.safe_dump(models))
    with pytest.raises(QuantAssetsError) as raised:
        build_definitions(load_settings(project.config_dir), project.home)
    message = str(raised.value)
    assert "first model cut-off 2018-07-01 (models.yaml first_cutoff)" in message
    assert "year window starting 2018-01-01" in message
    assert "first_cutoff to 2018-01-01 or 2019-01-01" in message
