"""Strategies through Dagster: alpha scores, positions, the book and the report per strategy.

A real Dagster instance, DuckDB file and MLflow store (conftest's session ``pipeline``:
four synthetic tickers, 2015-2019, strategies from the first model cut-off, 2017).
"""

from __future__ import annotations

import json
from datetime import date

import dagster as dg
import duckdb
import numpy as np
import polars as pl
import pytest
from conftest import copy_project, materialize_all

from quant_assets.engine.instance import open_instance
from quant_assets.models.registry import ModelRegistry
from quant_assets.settings import load_settings

STRATEGIES = ("hybrid_alpha", "mean_reversion_only", "trend_only")


def table(project, qualified: str) -> pl.DataFrame:
    with duckdb.connect(str(project.home / "warehouse.duckdb"), read_only=True) as conn:
        return conn.execute(f"select * from {qualified}").pl()


def test_every_strategy_gets_its_own_assets_from_the_first_model_cutoff(pipeline):
    sessions = table(pipeline, "market.regimes").filter(pl.col("date") >= date(2017, 1, 1))
    for name in STRATEGIES:
        for asset in ("alpha_scores", "positions", "backtest"):
            rows = table(pipeline, f"{name}.{asset}")
            assert rows["date"].min() >= date(2017, 1, 1), (name, asset)
            assert rows["date"].max() == date(2019, 12, 31), (name, asset)
            assert rows.height == sessions.height * len(pipeline.tickers), (name, asset)
            assert rows.select("ticker", "date").is_unique().all(), (name, asset)
        alpha = table(pipeline, f"{name}.alpha_scores")
        assert alpha["alpha_score"].drop_nulls().is_between(-1, 1).all()


def test_positions_respect_the_caps_and_explain_every_scaling(pipeline):
    settings = load_settings(pipeline.config_dir)
    for name in STRATEGIES:
        sizing = settings.strategies[name].sizing
        rows = table(pipeline, f"{name}.positions")
        assert rows["target_weight"].max() <= sizing.max_weight + 1e-12
        assert rows["target_weight"].min() >= 0  # the shipped strategies are long-only
        gross = rows.group_by("date").agg(pl.col("target_weight").abs().sum())
        assert gross["target_weight"].max() <= sizing.max_gross_leverage + 1e-12
        codes = [json.loads(c) for c in rows["reason_codes"]]
        assert all(isinstance(c, list) for c in codes)
        held = rows.filter(pl.col("target_weight") > 0)
        assert held["reason_codes"].str.contains("KELLY:").all()


def test_the_book_obeys_the_accounting_identity_every_day(pipeline):
    for name in STRATEGIES:
        book = table(pipeline, f"{name}.backtest")
        per_date = (
            book.group_by("date")
            .agg(
                pl.col("cash").first(),
                pl.col("equity").first(),
                (pl.col("shares") * pl.col("mark_price"))
                .fill_nan(0)
                .fill_null(0)
                .sum()
                .alias("held"),
                pl.col("pnl").sum(),
            )
            .sort("date")
        )
        np.testing.assert_allclose(
            per_date["cash"] + per_date["held"], per_date["equity"], rtol=1e-9
        )
        change = per_date["equity"].diff().drop_nulls().to_numpy()
        np.testing.assert_allclose(per_date["pnl"].to_numpy()[1:], change, rtol=1e-9, atol=1e-6)
        assert per_date["equity"].is_finite().all()


def test_a_window_rerun_continues_from_the_stored_book_and_reproduces_it(pipeline, tmp_path):
    project = copy_project(pipeline, tmp_path / "copy")  # the session's pipeline stays as built
    before = {n: table(project, f"trend_only.{n}") for n in ("positions", "backtest")}
    materialize_all(
        project,
        ["trend_only/alpha_scores", "trend_only/positions", "trend_only/backtest"],
        start=date(2019, 1, 1),
    )
    for name, rows in before.items():
        after = table(project, f"trend_only.{name}")
        key = ["date", "ticker"]
        assert after.sort(key).equals(rows.sort(key)), name


def test_each_report_is_stored_written_as_html_and_logged_to_mlflow(pipeline):
    settings = load_settings(pipeline.config_dir)
    mlflow_cfg = settings.models.mlflow
    registry = ModelRegistry(
        mlflow_cfg, pipeline.home, experiment=f"{mlflow_cfg.experiment}/strategies"
    )
    for name in STRATEGIES:
        report = table(pipeline, f"{name}.backtest_report").row(0, named=True)
        assert report["period_start"] >= date(2017, 1, 1)
        # N = the trial ledger: the three strategies and the pipeline study's four trials,
        # one of which is trend_only itself
        assert report["n_trials"] == 6
        assert 0 <= report["deflated_sharpe"] <= 1
        assert 0 <= report["spa_pvalue"] <= 1
        assert report["compared_strategies"].count(",") == 2
        assert isinstance(report["promoted"], bool) and report["promotion_reason"]
        html = (pipeline.home / "reports" / f"{name}.html").read_text()
        assert "Drawdown" in html or "drawdown" in html
        assert (pipeline.home / "reports" / "plotly.min.js").exists()
        run = registry.client.get_run(report["mlflow_run_id"])
        assert run.data.tags["strategy"] == name
        assert run.data.tags["promotion"] == ("promoted" if report["promoted"] else "refused")
        assert {"sharpe", "sortino", "max_drawdown", "deflated_sharpe"} <= set(run.data.metrics)
    runs = registry.client.search_runs([registry.experiment_id])
    assert sorted(r.data.tags["strategy"] for r in runs) == sorted(STRATEGIES)


def test_the_dagster_ui_shows_the_summary_the_gate_and_the_checks(pipeline):
    instance = open_instance(pipeline.home)
    try:
        key = dg.AssetKey(["hybrid_alpha", "backtest_report"])
        metadata = instance.get_latest_materialization_event(key).asset_materialization.metadata
        assert "| sharpe |" in metadata["summary"].value
        assert metadata["promotion"].value in {"promoted", "refused"}
        assert metadata["mlflow_run"].value.startswith("http://127.0.0.1:5000/#/experiments/")
        checks = instance.event_log_storage.get_latest_asset_check_execution_by_key(
            [
                dg.AssetCheckKey(
                    dg.AssetKey(["hybrid_alpha", "positions"]), "positions_within_limits"
                ),
                dg.AssetCheckKey(dg.AssetKey(["hybrid_alpha", "backtest"]), "backtest_accounting"),
            ]
        )
        assert len(checks) == 2
        assert all(c.status.value == "SUCCEEDED" for c in checks.values())
    finally:
        instance.dispose()


WEIGHTS = "{bull: {trend_alpha: 1}, bear: {trend_alpha: 1}, choppy: {trend_alpha: 1}, " + (
    "crash: {trend_alpha: 1}}"
)


@pytest.mark.parametrize(
    ("text", "key"),
    [
        ("alpha: {weights: {bull: {trend_alpha: 1}}}\n", "alpha.weights"),
        (
            "alpha: {weights: {bull: {x: 1}, bear: {x: 1}, choppy: {x: 1}, crash: {x: 1}}}\n",
            "alpha.weights",
        ),
        (f"alpha: {{weights: {WEIGHTS}}}\nsizing: {{max_weight: 2}}\n", "sizing.max_weight"),
        (f"alpha: {{weights: {WEIGHTS}}}\nrisk: {{var: {{limitt: 1}}}}\n", "risk.var.limitt"),
    ],
)
def test_a_strategy_config_error_names_the_file_and_the_key(make_project, text, key):
    from quant_assets.errors import ConfigError

    project = make_project(["AAA"], date(2020, 1, 1), date(2020, 12, 31))
    folder = project.config_dir / "strategies"
    folder.mkdir()
    (folder / "broken.yaml").write_text(text)
    with pytest.raises(ConfigError) as raised:
        load_settings(project.config_dir)
    message = str(raised.value)
    assert "broken.yaml" in message and key in message


def test_positions_refuse_a_partial_cross_section_and_write_nothing(pipeline, tmp_path):
    from quant_assets.engine.runner import materialize

    project = copy_project(pipeline, tmp_path / "copy")  # the session's pipeline stays as built

    settings = load_settings(project.config_dir)
    database = str(project.home / "warehouse.duckdb")
    before = table(project, "trend_only.positions")
    with duckdb.connect(database) as conn:  # as if a per-ticker backfill had not reached DDD
        conn.execute(
            "delete from trend_only.alpha_scores where ticker = 'DDD' and date >= '2019-01-01'"
        )
    outcomes = materialize(
        settings, project.home, ["trend_only/positions"], start=date(2019, 1, 1), upstream=False
    )
    assert not outcomes[-1].success
    assert "trend_only/alpha_scores has no rows for DDD" in (outcomes[-1].error or "")
    assert (
        table(project, "trend_only.positions")
        .sort("date", "ticker")
        .equals(before.sort("date", "ticker"))
    )
