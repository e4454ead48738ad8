"""MLflow against a real temporary SQLite store: runs, versions, the champion alias, the gate."""

from __future__ import annotations

from datetime import date

import lightgbm
import numpy as np
import pandas as pd
import pytest

from quant_assets.models.pyfunc import NextStateModel
from quant_assets.models.registry import (
    ModelRegistry,
    content_hash,
    pip_requirements,
    promotion_decision,
    resolve_tracking_uri,
)
from quant_assets.settings import MlflowSettings, PromotionSettings

COLUMNS = ["momentum", "volatility"]
NAME = "test_next_state"


def _booster(seed: int) -> lightgbm.Booster:
    rng = np.random.default_rng(seed)
    x = rng.normal(size=(300, 2))
    y = (x[:, 0] > 0).astype(int) + (x[:, 0] > 1).astype(int)
    params = {"objective": "multiclass", "num_class": 3, "verbosity": -1, "seed": seed}
    return lightgbm.train(params, lightgbm.Dataset(x, y), num_boost_round=5)


def _log(registry: ModelRegistry, cutoff: date, seed: int):
    text = _booster(seed).model_to_string()
    example = pd.DataFrame({"momentum": [0.1, -0.2], "volatility": [0.2, 0.3]})
    return registry.log_and_register(
        name=NAME,
        cutoff=cutoff,
        run_name=f"next_state {cutoff}",
        python_model=NextStateModel([1], COLUMNS),
        artifacts={NextStateModel.artifact_key(1): text},
        signature_input=example,
        signature_output=pd.DataFrame({f"h1_prob_{s}": [0.3, 0.3] for s in "abc"}),
        params={"cutoff": cutoff.isoformat(), "config_hash": "abc123", "horizons": [1]},
        metrics={"h1_test_log_loss": 0.9, "test_log_loss_mean": 0.9},
        tags={"data_window": f"2000-01-01..{cutoff}"},
        pip_requirements=pip_requirements("lightgbm", "pandas"),
        sha=content_hash(text),
    ), text


@pytest.fixture
def registry(tmp_path, monkeypatch) -> ModelRegistry:
    monkeypatch.delenv("MLFLOW_TRACKING_URI", raising=False)
    return ModelRegistry(MlflowSettings(experiment="tests"), tmp_path)


def test_the_embedded_store_is_a_sqlite_file_in_the_data_directory(tmp_path, monkeypatch):
    monkeypatch.delenv("MLFLOW_TRACKING_URI", raising=False)
    assert resolve_tracking_uri(MlflowSettings(), tmp_path) == (
        f"sqlite:///{tmp_path / 'mlflow' / 'mlflow.db'}"
    )
    monkeypatch.setenv("MLFLOW_TRACKING_URI", "http://127.0.0.1:5999")
    assert resolve_tracking_uri(MlflowSettings(tracking_uri="sqlite:///x.db"), tmp_path) == (
        "http://127.0.0.1:5999"
    )
    monkeypatch.delenv("MLFLOW_TRACKING_URI")
    assert resolve_tracking_uri(MlflowSettings(tracking_uri="sqlite:///x.db"), tmp_path) == (
        "sqlite:///x.db"
    )


def test_a_second_data_directory_in_the_same_process_gets_its_own_store(tmp_path, monkeypatch):
    monkeypatch.delenv("MLFLOW_TRACKING_URI", raising=False)
    first = ModelRegistry(MlflowSettings(), tmp_path / "one")
    # MLflow exports the URI it was given as $MLFLOW_TRACKING_URI; it must not stick.
    second = ModelRegistry(MlflowSettings(), tmp_path / "two")
    assert first.tracking_uri != second.tracking_uri
    assert str(tmp_path / "two") in second.tracking_uri


def test_a_training_run_logs_params_metrics_and_registers_a_version_tagged_with_its_cutoff(
    registry,
):
    record, _ = _log(registry, date(2010, 1, 1), seed=1)
    run = registry.client.get_run(record.run_id)
    assert run.data.params["config_hash"] == "abc123"
    assert run.data.params["cutoff"] == "2010-01-01"
    assert run.data.metrics["test_log_loss_mean"] == pytest.approx(0.9)
    assert run.data.tags["data_window"] == "2000-01-01..2010-01-01"
    version = registry.client.get_model_version(NAME, record.version)
    assert version.tags["cutoff"] == "2010-01-01"
    assert version.run_id == record.run_id
    assert record.run_url.endswith(f"/runs/{record.run_id}")
    assert not record.reused


def test_the_same_model_for_the_same_cutoff_is_registered_once(registry):
    first, _ = _log(registry, date(2010, 1, 1), seed=1)
    again, _ = _log(registry, date(2010, 1, 1), seed=1)
    assert again.reused and again.version == first.version
    other, _ = _log(registry, date(2011, 1, 1), seed=1)
    assert other.version != first.version  # same model, another cut-off: a new version


def test_the_champion_loads_back_by_alias_with_identical_predictions(registry):
    record, text = _log(registry, date(2010, 1, 1), seed=1)
    assert registry.promote(NAME, record.version, date(2010, 1, 1))
    version, model = registry.load_champion(NAME)
    assert version == record.version
    x = np.random.default_rng(9).normal(size=(20, 2))
    expected = lightgbm.Booster(model_str=text).predict(x)
    np.testing.assert_array_equal(model.boosters[1].predict(x), expected)
    import mlflow

    loaded = mlflow.pyfunc.load_model(f"models:/{NAME}@champion")
    out = loaded.predict(pd.DataFrame(x, columns=COLUMNS))
    np.testing.assert_allclose(out[["h1_prob_down", "h1_prob_flat", "h1_prob_up"]], expected)


def test_the_alias_never_moves_back_to_an_older_cutoff(registry):
    old, _ = _log(registry, date(2010, 1, 1), seed=1)
    new, _ = _log(registry, date(2011, 1, 1), seed=2)
    assert registry.promote(NAME, new.version, date(2011, 1, 1))
    assert not registry.promote(NAME, old.version, date(2010, 1, 1))
    assert registry.champion(NAME) == (new.version, date(2011, 1, 1))


def test_a_retrain_through_the_live_cutoff_hands_the_alias_to_its_walk_forward_champion(
    registry,
):
    """New history retrains 2010 and 2011; 2011's gate keeps the (new) 2010 model: that model
    serves the live window, not the 2011 model trained on the old history."""
    stale, _ = _log(registry, date(2011, 1, 1), seed=2)
    assert registry.promote(NAME, stale.version, date(2011, 1, 1))
    retrained, _ = _log(registry, date(2010, 1, 1), seed=3)
    assert not registry.follow_walk_forward(NAME, retrained.version, date(2010, 1, 1))
    assert registry.champion(NAME) == (stale.version, date(2011, 1, 1))  # an old cut-off only
    assert registry.follow_walk_forward(NAME, retrained.version, date(2011, 1, 1))
    assert registry.champion(NAME) == (retrained.version, date(2010, 1, 1))


def test_the_gate_refuses_a_worse_model_and_one_that_does_not_clear_the_margin():
    gate = PromotionSettings(metric="log_loss", min_improvement=0.01)
    assert promotion_decision(0.95, None, gate).promote  # no champion yet
    assert promotion_decision(0.90, 0.95, gate).promote
    worse = promotion_decision(0.97, 0.95, gate)
    assert not worse.promote and "does not beat" in worse.reason
    assert not promotion_decision(0.945, 0.95, gate).promote  # better, but under the margin
    higher_is_better = PromotionSettings(metric="balanced_accuracy", min_improvement=0.0)
    assert promotion_decision(0.40, 0.38, higher_is_better).promote
    assert not promotion_decision(0.37, 0.38, higher_is_better).promote
