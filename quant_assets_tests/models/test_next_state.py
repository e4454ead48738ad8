"""Walk-forward split (purge + embargo), deterministic LightGBM training, predictions."""

from __future__ import annotations

from datetime import date, timedelta

import lightgbm
import numpy as np
import polars as pl
import pytest
from sklearn.metrics import balanced_accuracy_score, log_loss

from quant_assets.models.next_state import (
    InsufficientTrainingData,
    evaluate,
    predict_next_state,
    train_next_state,
    walk_forward_split,
)
from quant_assets.settings import ModelSettings

INPUTS = ["signal", "noise"]
CUTOFF = date(2021, 1, 1)
SETTINGS = ModelSettings.model_validate(
    {
        "labels": {"horizons": [1, 3]},
        "split": {
            "validation_sessions": 40,
            "test_sessions": 40,
            "embargo_sessions": 3,
            "min_train_rows": 500,
        },
        "lightgbm": {"n_estimators": 60, "num_leaves": 7, "min_child_samples": 20},
    }
)


def panel(seed: int = 0, tickers: int = 8, days: int = 600) -> pl.DataFrame:
    """A planted signal: the label follows ``signal`` (plus noise) for every horizon."""
    rng = np.random.default_rng(seed)
    origin = [date(2019, 1, 1) + timedelta(days=i) for i in range(days)]
    rows = []
    for t in range(tickers):
        signal = rng.normal(size=days)
        forward = 0.8 * signal + rng.normal(size=days)
        label = np.digitize(forward, [-0.5, 0.5])
        frame = {
            "ticker": [f"T{t}"] * days,
            "date": origin,
            "signal": signal,
            "noise": rng.normal(size=days),
        }
        for h in (1, 3):
            frame[f"label_h{h}"] = label
            frame[f"label_date_h{h}"] = [d + timedelta(days=h) for d in origin]
            frame[f"forward_log_return_h{h}"] = forward
        rows.append(pl.DataFrame(frame))
    return pl.concat(rows).with_columns(pl.col("^label_h.*$").cast(pl.Int8)).sort("ticker", "date")


def test_the_split_purges_overlapping_labels_and_embargoes_between_windows():
    frame = panel()
    for horizon in (1, 3):
        train, validation, test, windows = walk_forward_split(
            frame, CUTOFF, horizon, SETTINGS.split
        )
        label_date = f"label_date_h{horizon}"
        assert (train[label_date] < windows.validation_start).all()
        assert (validation[label_date] < windows.test_start).all()
        assert (test[label_date] < CUTOFF).all()
        sessions = frame["date"].unique().sort().to_list()
        gap = sessions.index(windows.validation_start) - sessions.index(train["date"].max())
        assert gap > SETTINGS.split.embargo_sessions
        gap = sessions.index(windows.test_start) - sessions.index(validation["date"].max())
        assert gap > SETTINGS.split.embargo_sessions
        assert windows.train_rows == train.height > 0


def test_nothing_known_on_or_after_the_cutoff_changes_the_model():
    frame = panel()
    models = train_next_state(frame, CUTOFF, INPUTS, SETTINGS)
    future = pl.col("label_date_h1") >= CUTOFF
    scrambled = frame.with_columns(
        pl.when(future).then(pl.col("signal") * -5).otherwise(pl.col("signal")).alias("signal"),
        pl.when(future)
        .then(2 - pl.col("label_h1"))
        .otherwise(pl.col("label_h1"))
        .alias("label_h1"),
    )
    again = train_next_state(scrambled, CUTOFF, INPUTS, SETTINGS)
    for h in (1, 3):
        assert again[h].booster.model_to_string() == models[h].booster.model_to_string()


def test_training_is_deterministic_and_learns_a_planted_signal():
    frame = panel()
    first = train_next_state(frame, CUTOFF, INPUTS, SETTINGS)
    second = train_next_state(frame, CUTOFF, INPUTS, SETTINGS)
    for h in (1, 3):
        assert first[h].booster.model_to_string() == second[h].booster.model_to_string()
        assert first[h].test_metrics == second[h].test_metrics
        assert first[h].test_metrics["accuracy"] > 0.45  # three classes: chance is ~1/3
        assert first[h].test_metrics["information_coefficient"] > 0.3
        importance = first[h].feature_importance
        assert importance["signal"] > importance["noise"]


def test_metrics_equal_sklearns_on_the_same_rows():
    frame = panel()
    model = train_next_state(frame, CUTOFF, INPUTS, SETTINGS)[1]
    _, _, test, _ = walk_forward_split(frame, CUTOFF, 1, SETTINGS.split)
    probabilities = model.booster.predict(
        test.select(INPUTS).to_numpy(), num_iteration=model.best_iteration
    )
    truth = test["label_h1"].to_numpy()
    metrics = evaluate(model.booster, test, 1, INPUTS)
    assert metrics["log_loss"] == pytest.approx(log_loss(truth, probabilities, labels=[0, 1, 2]))
    assert metrics["balanced_accuracy"] == pytest.approx(
        balanced_accuracy_score(truth, probabilities.argmax(axis=1))
    )


def test_too_little_history_is_refused_naming_cutoff_and_horizon():
    frame = panel(days=120)
    with pytest.raises(InsufficientTrainingData, match="cut-off 2019-04-01, horizon 1"):
        train_next_state(frame, date(2019, 4, 1), INPUTS, SETTINGS)


def test_predictions_are_probabilities_and_survive_a_model_string_round_trip():
    frame = panel()
    models = train_next_state(frame, CUTOFF, INPUTS, SETTINGS)
    rows = frame.filter(pl.col("date") >= date(2020, 6, 1)).select("ticker", "date", *INPUTS)
    rows = rows.with_columns(
        pl.when(pl.col("noise") > 1).then(None).otherwise("noise").alias("noise")
    )
    out = predict_next_state({h: m.booster for h, m in models.items()}, rows, INPUTS)
    assert out.height == rows.height * 2
    total = out.select(pl.sum_horizontal("prob_down", "prob_flat", "prob_up")).to_series()
    np.testing.assert_allclose(total.to_numpy(), 1.0, atol=1e-12)
    assert set(out["pred_state"]) <= {"down", "flat", "up"}
    reloaded = {
        h: lightgbm.Booster(model_str=m.booster.model_to_string()) for h, m in models.items()
    }
    assert predict_next_state(reloaded, rows, INPUTS).equals(out)
