"""The research loop in the graph, on conftest's session ``pipeline`` (four tickers, 2015-2019,
the shipped strategies, a four-trial study of trend_only and the signal tear sheets)."""

from __future__ import annotations

import json
from datetime import date

import dagster as dg
import duckdb
import polars as pl
import pytest
import yaml
from conftest import copy_project, materialize_all

from quant_assets.engine.instance import open_instance
from quant_assets.models.registry import ModelRegistry
from quant_assets.research.ledger import read_ledger
from quant_assets.research.studies import strategy_hash
from quant_assets.settings import load_settings


def table(project, qualified: str) -> pl.DataFrame:
    with duckdb.connect(str(project.home / "warehouse.duckdb"), read_only=True) as conn:
        return conn.execute(f"select * from {qualified}").pl()


def test_a_study_stores_its_trials_folds_curve_and_decision(pipeline):
    trials = table(pipeline, "sizing.trials").sort("trial")
    assert trials.height == 4
    returns = table(pipeline, "sizing.returns")
    sessions = returns["date"].n_unique()
    assert returns.height == 4 * sessions
    folds = table(pipeline, "sizing.folds").sort("fold")
    assert folds["train_start"].n_unique() == 1  # anchored
    assert (folds["test_start"] > folds["train_end"]).all()
    curve = table(pipeline, "sizing.curve").sort("date")
    assert curve["date"][0] == folds["test_start"][0]
    assert curve["date"][-1] == folds["test_end"][-1]  # a tail shorter than a fifth of a test
    assert returns["date"].max() >= curve["date"][-1]  # window is no fold
    # The curve is each fold's chosen trial's returns over its test window.
    chosen = curve.join(
        returns.rename({"daily_return": "trial_return"}), on=["date", "trial"], how="left"
    )
    assert (chosen["daily_return"] == chosen["trial_return"]).all()
    decision = table(pipeline, "sizing.decision").row(0, named=True)
    ledger = read_ledger(pipeline.home / "warehouse.duckdb")
    # N counts every configuration ever evaluated: the study's four and the strategies
    # (trend_only itself is one of the trials).
    assert decision["n_trials_ledger"] == ledger.height == 6
    assert decision["promoted"]  # the pipeline's study has open gates
    assert decision["selected_trial"] == folds["chosen_trial"][-1]
    assert "PBO" in decision["reasons"] and "volatility-matched" in decision["reasons"]


def test_the_trial_with_the_strategys_own_values_equals_the_strategys_book(pipeline):
    settings = load_settings(pipeline.config_dir)
    trials = table(pipeline, "sizing.trials")
    own = trials.filter(pl.col("config_hash") == strategy_hash(settings.strategies["trend_only"]))
    assert own.height == 1
    number = own["trial"][0]
    trial = table(pipeline, "sizing.returns").filter(pl.col("trial") == number).sort("date")
    book = (
        table(pipeline, "trend_only.backtest")
        .group_by("date")
        .agg(pl.col("portfolio_return").first())
        .sort("date")
    )
    assert trial["date"].to_list() == book["date"].to_list()
    assert trial["daily_return"].to_list() == book["portfolio_return"].fill_null(0.0).to_list()


def test_the_study_is_an_mlflow_parent_run_with_its_trials_and_the_best_as_children(pipeline):
    settings = load_settings(pipeline.config_dir)
    mlflow_cfg = settings.models.mlflow
    registry = ModelRegistry(
        mlflow_cfg, pipeline.home, experiment=f"{mlflow_cfg.experiment}/studies"
    )
    decision = table(pipeline, "sizing.decision").row(0, named=True)
    parent = registry.client.get_run(decision["mlflow_run_id"])
    assert parent.data.tags["study"] == "sizing"
    assert parent.data.metrics["n_trials_ledger"] == decision["n_trials_ledger"]
    artifacts = {a.path for a in registry.client.list_artifacts(parent.info.run_id)}
    assert {"trials.json", "study_sizing.html"} <= artifacts
    children = registry.client.search_runs(
        [parent.info.experiment_id],
        filter_string=f"tags.mlflow.parentRunId = '{parent.info.run_id}'",
    )
    assert len(children) == 2  # top_runs
    html = (pipeline.home / "reports" / "study_sizing.html").read_text()
    for title in ("Parameter surface", "In-sample vs out-of-sample", "Stitched", "PBO"):
        assert title in html


def test_the_ui_shows_the_gate_decision_on_the_studys_decision_asset(pipeline):
    instance = open_instance(pipeline.home)
    try:
        event = instance.get_latest_materialization_event(dg.AssetKey(["sizing", "decision"]))
        metadata = event.asset_materialization.metadata
        assert metadata["decision"].value == "promoted"
        assert "deflated Sharpe" in metadata["reasons"].value
        assert metadata["ledger_trials"].value == 6
    finally:
        instance.dispose()


def test_signal_tear_sheets_cover_every_signal_the_model_edge_and_the_strategies(pipeline):
    summary = table(pipeline, "research.signal_evaluation")
    signals = set(summary["signal"])
    assert {"trend_alpha", "mean_rev_alpha", "vol_alpha", "rel_strength_alpha"} <= signals
    assert {"model_edge_h1", "model_edge_h5"} <= signals
    assert {"trend_only.alpha_score", "hybrid_alpha.alpha_score"} <= signals
    assert set(summary["regime_label"]) >= {"all"} and len(set(summary["regime_label"])) > 1
    assert set(summary["horizon"]) == {1, 5, 21}
    forward = table(pipeline, "research.forward_returns")
    assert (forward["date"] > forward["origin_date"]).all()  # stored when realised
    decay = table(pipeline, "research.signal_decay")
    assert set(decay["horizon"]) == set(range(1, 22))
    sheet = (pipeline.home / "reports" / "signal_tear_sheet.html").read_text()
    assert "Cumulative rank IC" in sheet and 'src="plotly.min.js"' in sheet
    instance = open_instance(pipeline.home)
    try:
        event = instance.get_latest_materialization_event(dg.AssetKey("signal_evaluation"))
        assert "rank IC" in event.asset_materialization.metadata["summary"].value
    finally:
        instance.dispose()


def test_promote_writes_the_selection_as_a_strategy_with_orders_and_a_paper_book(
    pipeline, tmp_path, cli
):
    project = copy_project(pipeline, tmp_path / "copy")
    result = cli(project, "promote", "sizing", "--name", "sizing_pick")
    assert result.exit_code == 0, result.output
    path = project.config_dir / "strategies" / "sizing_pick.yaml"
    written = yaml.safe_load(path.read_text())
    decision = table(project, "sizing.decision").row(0, named=True)
    assert written["provenance"]["study"] == "sizing"
    assert written["provenance"]["config_hash"] == decision["selected_hash"]
    settings = load_settings(project.config_dir)
    assert strategy_hash(settings.strategies["sizing_pick"]) == decision["selected_hash"]
    again = cli(project, "promote", "sizing", "--name", "sizing_pick")
    assert again.exit_code == 1 and "--replace" in again.output
    materialize_all(project, ["sizing_pick/orders", "sizing_pick/paper_book"])
    assert table(project, "sizing_pick.orders").height > 0
    assert table(project, "sizing_pick.paper_book")["date"].max() == date(2019, 12, 31)
    promotions = table(project, "research.promotions")
    assert promotions["strategy"].to_list() == ["sizing_pick"]
    assert json.loads(promotions["figures"][0])["n_trials_ledger"] == 6


def test_a_refused_selection_is_not_promoted_and_says_why(pipeline, tmp_path, cli):
    project = copy_project(pipeline, tmp_path / "copy")
    with duckdb.connect(str(project.home / "warehouse.duckdb")) as conn:
        conn.execute("update sizing.decision set promoted = false, reasons = 'fail: PBO 0.9'")
    result = cli(project, "promote", "sizing")
    assert result.exit_code == 1
    assert "did not pass the gates" in result.output and "PBO 0.9" in result.output
    assert not (project.config_dir / "strategies" / "sizing_selected.yaml").exists()


@pytest.mark.parametrize("bad", ["sizing.no_such_key", "alpha.nope.x"])
def test_a_study_naming_a_key_the_strategy_lacks_is_refused_with_file_and_key(
    pipeline, tmp_path, bad
):
    from quant_assets.errors import ConfigError

    project = copy_project(pipeline, tmp_path / "copy")
    path = project.config_dir / "studies" / "sizing.yaml"
    study = yaml.safe_load(path.read_text())
    study["space"] = {bad: [1, 2]}
    path.write_text(yaml.safe_dump(study))
    with pytest.raises(ConfigError) as raised:
        load_settings(project.config_dir)
    assert "sizing.yaml" in str(raised.value) and bad in str(raised.value)
