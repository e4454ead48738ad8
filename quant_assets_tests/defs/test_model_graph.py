"""The model half of the graph through Dagster: regimes, walk-forward models, predictions.

A real Dagster instance, DuckDB file and MLflow SQLite store in temporary directories; the
files provider reads synthetic CSVs that the look-ahead test rewrites after a date D.
"""

from __future__ import annotations

import os
from datetime import date

import dagster as dg
import duckdb
import numpy as np
import polars as pl
import pytest
from conftest import (
    copy_project,
    materialize_all,
    write_fast_model_configs,
    write_project,
)

from quant_assets.engine.instance import open_instance
from quant_assets.engine.runner import materialize
from quant_assets.models.registry import ModelRegistry
from quant_assets.settings import load_settings

TICKERS = ["AAA", "BBB", "CCC", "DDD"]
START, END = date(2015, 1, 1), date(2019, 12, 31)
EVERYTHING = ["predictions", "labels"]
RETRAIN = ["predictions", "labels", "regime_model", "next_state_model"]


@pytest.fixture(autouse=True, scope="module")
def _embedded_mlflow():
    saved = os.environ.pop("MLFLOW_TRACKING_URI", None)
    yield
    if saved is not None:
        os.environ["MLFLOW_TRACKING_URI"] = saved


def new_project(root):
    project = write_project(root, TICKERS, START, END, grain="year")
    return write_fast_model_configs(project)


def run(project, select=EVERYTHING, **kwargs) -> None:
    outcomes = materialize(load_settings(project.config_dir), project.home, select, **kwargs)
    assert outcomes and all(o.success for o in outcomes), [o.error for o in outcomes]


def table(project, name: str) -> pl.DataFrame:
    qualified = name if "." in name else f"market.{name}"
    with duckdb.connect(str(project.home / "warehouse.duckdb"), read_only=True) as conn:
        return conn.execute(f"select * from {qualified}").pl()


def sort(frame: pl.DataFrame) -> pl.DataFrame:
    keys = [c for c in ("cutoff", "ticker", "date", "horizon") if c in frame.columns]
    return frame.sort(keys)


@pytest.fixture
def built(pipeline):
    """The whole graph, materialised once per session (conftest)."""
    return pipeline


def test_smoke_materialises_bars_to_predictions_for_four_tickers_over_five_years(built):
    regimes = table(built, "regimes")
    assert regimes["date"].min() == date(2015, 1, 2) and regimes["date"].max() == END
    assert set(regimes["regime_label"]) <= {"bull", "bear", "choppy", "crash"}
    # Before the first cut-off (2017) no HMM exists: the rule label, one-hot.
    early = regimes.filter(pl.col("date") < date(2017, 1, 1))
    assert (early["regime_source"] == "rules").all()
    assert (early["regime_label"] == early["rule_label"]).all()
    late = regimes.filter(pl.col("date") >= date(2017, 1, 1))
    assert (late["regime_source"] == "hmm").all()
    assert late["model_cutoff"].max() == date(2019, 1, 1)

    models = table(built, "next_state_model")
    assert sorted(set(models["cutoff"])) == [date(2017, 1, 1), date(2018, 1, 1), date(2019, 1, 1)]
    assert set(models["horizon"]) == {1, 3, 5}
    assert (models["test_end"] <= models["cutoff"]).all()

    predictions = table(built, "predictions")
    sessions = regimes.filter(pl.col("date") >= date(2017, 1, 1)).height
    assert predictions.height == len(TICKERS) * sessions * 3
    assert (predictions["model_cutoff"] <= predictions["date"]).all()
    probabilities = predictions.select(pl.sum_horizontal("prob_down", "prob_flat", "prob_up"))
    np.testing.assert_allclose(probabilities.to_series().to_numpy(), 1.0, atol=1e-9)

    labels = table(built, "labels")
    assert (labels["origin_date"] < labels["date"]).all()


def test_every_model_is_an_mlflow_run_and_version_and_the_champion_is_the_gates_choice(built):
    settings = load_settings(built.config_dir)
    registry = ModelRegistry(
        settings.models.mlflow,
        built.home,
        experiment=f"{settings.models.mlflow.experiment}/next_state",
    )
    models = table(built, "next_state_model")
    name = settings.models.mlflow.registered_model
    for cutoff, version, decision in (
        models.select("cutoff", "version", "gate_decision").unique().sort("cutoff").iter_rows()
    ):
        found = registry.client.get_model_version(name, version)
        assert found.tags["cutoff"] == cutoff.isoformat()
        assert found.tags["gate_decision"] == decision
        run = registry.client.get_run(found.run_id)
        assert {"config_hash", "cutoff", "lightgbm.seed"} <= set(run.data.params)
        assert "h1_test_log_loss" in run.data.metrics
        assert "h5_test_information_coefficient" in run.data.metrics
    last = models.sort("cutoff").tail(1).row(0, named=True)
    assert registry.champion(name) == (last["champion_version"], last["champion_cutoff"])
    instance = open_instance(built.home)
    try:
        event = instance.get_latest_materialization_event(dg.AssetKey("next_state_model"))
        metadata = event.asset_materialization.metadata
        assert metadata["mlflow_run"].value.startswith("http://127.0.0.1:5000/#/experiments/")
        assert metadata["gate_decision"].value in {"promoted", "refused"}
    finally:
        instance.dispose()


def test_each_date_is_predicted_by_the_champion_of_its_cutoff_window(built):
    models = table(built, "next_state_model").select("cutoff", "champion_version").unique()
    predictions = table(built, "predictions").with_columns(
        pl.date(pl.col("date").dt.year(), 1, 1).alias("cutoff")
    )
    joined = predictions.join(models, on="cutoff", how="left")
    assert (joined["model_version"] == joined["champion_version"]).all()


STRATEGY_TABLES = [
    f"{s}.{t}"
    for s in ("hybrid_alpha", "trend_only", "mean_reversion_only")
    for t in ("alpha_scores", "positions", "backtest", "orders", "paper_book")
]


STUDY_TABLES = [
    "sizing.trials",
    "sizing.returns",
    "sizing.folds",
    "sizing.curve",
    "sizing.decision",
]
SIGNAL_TABLES = [
    "forward_returns",
    "signal_evaluation",
    "signal_ic",
    "signal_decay",
    "signal_quantiles",
]


def test_future_bars_do_not_change_past_regimes_models_predictions_or_strategies(built, tmp_path):
    """Perturbing every bar after a date D changes nothing stored for D or before: regimes,
    predictions, every strategy table, every study trial's daily rows and the stitched curve,
    the choices of the folds that trained before D, and the forward returns realised by D."""
    project = copy_project(built, tmp_path / "copy")
    dated = ("regimes", "predictions", *STRATEGY_TABLES, "sizing.returns", "sizing.curve")
    as_of = {"research.forward_returns": "date"}
    before = {n: table(project, n) for n in (*dated, *as_of, "next_state_model", "sizing.folds")}
    cut = date(2018, 7, 16)
    rng = np.random.default_rng(5)
    for ticker in [*TICKERS, project.benchmark]:
        frame = project.bars(ticker)
        future = pl.col("date") > cut
        factor = pl.Series(rng.uniform(0.6, 1.4, frame.height))
        project.write(
            ticker,
            frame.with_columns(
                pl.when(future).then(pl.col(c) * factor).otherwise(pl.col(c)).alias(c)
                for c in ("open", "high", "low", "close")
            ),
        )
    # Models explicitly selected: every cut-off is refitted; every strategy and the study
    # recomputed, the tear sheets too.
    again = [*STRATEGY_TABLES, *STUDY_TABLES, *(f"research.{t}" for t in SIGNAL_TABLES)]
    materialize_all(
        project, [*RETRAIN, *(t.replace(".", "/").removeprefix("research/") for t in again)]
    )
    for name in (*dated, *as_of):
        after = table(project, name)
        past = pl.col(as_of.get(name, "date")) <= cut
        assert sort(after.filter(past)).equals(sort(before[name].filter(past))), name
        assert not sort(after.filter(~past)).equals(sort(before[name].filter(~past))), name
    models_after = table(project, "next_state_model")
    known = pl.col("cutoff") <= cut
    assert sort(models_after.filter(known)).equals(sort(before["next_state_model"].filter(known)))
    # A fold that trained before D chose the same trial on the same in-sample figure.
    folds_before, folds_after = before["sizing.folds"], table(project, "sizing.folds")
    trained = pl.col("train_end") < cut
    choice = ["fold", "train_end", "chosen_trial", "in_sample_objective"]
    assert (
        folds_after.filter(trained)
        .select(choice)
        .sort("fold")
        .equals(folds_before.filter(trained).select(choice).sort("fold"))
    )
    assert folds_before.filter(trained).height >= 2


def test_the_mlflow_ui_server_shows_the_experiments_versions_and_champion(built):
    import json
    import socket
    import subprocess
    import sys
    import time
    import urllib.request
    from pathlib import Path

    settings = load_settings(built.config_dir)
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    mlflow = Path(sys.executable).parent / "mlflow"
    store = f"sqlite:///{built.home / 'mlflow' / 'mlflow.db'}"
    server = subprocess.Popen(
        [
            str(mlflow),
            "ui",
            "--backend-store-uri",
            store,
            "--host",
            "127.0.0.1",
            "--port",
            str(port),
            "--workers",  # one server process is enough to read it (the default starts 4)
            "1",
        ],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    base = f"http://127.0.0.1:{port}/api/2.0/mlflow"
    name = settings.models.mlflow.registered_model

    def get(path: str) -> dict:
        with urllib.request.urlopen(f"{base}/{path}", timeout=10) as response:
            return json.loads(response.read())

    try:
        deadline = time.monotonic() + 90
        while True:
            try:
                champion = get(f"registered-models/alias?name={name}&alias=champion")
                break
            except OSError:
                assert time.monotonic() < deadline and server.poll() is None, "no MLflow server"
                time.sleep(1)
        models = table(built, "next_state_model").sort("cutoff")
        assert champion["model_version"]["version"] == models["champion_version"][-1]
        experiments = get("experiments/search?max_results=50")["experiments"]
        names = {e["name"] for e in experiments}
        assert {"quant_assets/next_state", "quant_assets/regime_hmm"} <= names
    finally:
        server.terminate()
        server.wait(timeout=20)


def test_too_little_history_for_the_hmm_falls_back_to_the_rules_with_the_reason(tmp_path):
    import yaml

    project = new_project(tmp_path)
    regimes_yaml = project.config_dir / "regimes.yaml"
    config = yaml.safe_load(regimes_yaml.read_text())
    config["min_train_sessions"] = 5000  # more than five years of sessions
    regimes_yaml.write_text(yaml.safe_dump(config))
    run(project, ["regimes"])
    fits = table(project, "regime_model")
    assert set(fits["status"]) == {"fallback"}
    assert fits["reason"].str.contains("too little history").all()
    regimes = table(project, "regimes")
    assert (regimes["regime_source"] == "rules").all()
    assert (regimes["regime_label"] == regimes["rule_label"]).all()
    instance = open_instance(project.home)
    try:
        event = instance.get_latest_materialization_event(dg.AssetKey("regimes"))
        reasons = event.asset_materialization.metadata["fallback_reasons"].value
        assert "too little history" in reasons
    finally:
        instance.dispose()
