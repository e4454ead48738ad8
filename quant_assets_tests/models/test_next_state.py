"""Walk-forward split (purge + embargo), deterministic LightGBM training, predictions."""

from __future__ import annotations

from datetime import date, timedelta

import lightgbm
import numpy as np
import polars as pl
import pytest
from scipy.stats import spearmanr
from sklearn.metrics import accuracy_score, balanced_accuracy_score, log_loss

from quant_assets.models.next_state import (
    InsufficientTrainingData,
    evaluate,
    lightgbm_params,
    model_input_columns,
    predict_next_state,
    sample_per_date,
    train_horizon,
    train_next_state,
    train_walk_forward,
    training_frame,
    walk_forward_split,
)
from quant_assets.settings import LightGBMSettings, ModelSettings

INPUTS = ["signal", "noise"]
HORIZONS = (1, 3)
START = date(2019, 1, 1)
CUTOFF = date(2021, 1, 1)  # inside the panel: later outcomes exist and must not be used
SPLIT = {"validation_sessions": 40, "test_sessions": 40, "embargo_sessions": 3}
SETTINGS = ModelSettings.model_validate(
    {
        "labels": {"horizons": list(HORIZONS)},
        "split": {**SPLIT, "min_train_rows": 500},
        # One thread: with other jobs on a small box, OpenMP's spin-waits make 2 threads slow.
        "lightgbm": {
            "n_estimators": 40,
            "num_leaves": 7,
            "min_child_samples": 20,
            "num_threads": 1,
        },
    }
)


def panel(seed: int = 0, tickers: int = 6, days: int = 800) -> pl.DataFrame:
    """A training frame with a planted signal: the outcome is 0.8 × signal + noise.

    Sessions are consecutive calendar days, so the outcome of horizon h is known h days later.
    """
    rng = np.random.default_rng(seed)
    origin = [START + timedelta(days=i) for i in range(days)]
    parts = []
    for t in range(tickers):
        signal = rng.normal(size=days)
        frame: dict[str, object] = {
            "ticker": [f"T{t}"] * days,
            "date": origin,
            "signal": signal,
            "noise": rng.normal(size=days),
        }
        for h in HORIZONS:
            forward = 0.8 * signal + rng.normal(size=days)
            frame[f"label_h{h}"] = np.digitize(forward, [-0.5, 0.5])
            frame[f"label_date_h{h}"] = [d + timedelta(days=h) for d in origin]
            frame[f"forward_log_return_h{h}"] = forward
        parts.append(pl.DataFrame(frame))
    return pl.concat(parts).with_columns(pl.col("^label_h.*$").cast(pl.Int8)).sort("ticker", "date")


@pytest.fixture(scope="module")
def frame() -> pl.DataFrame:
    return panel()


@pytest.fixture(scope="module")
def models(frame):
    return train_next_state(frame, CUTOFF, INPUTS, SETTINGS)


def test_input_columns_keep_their_order_and_refuse_a_name_twice():
    assert model_input_columns(["a", "b"], ["s"], ["regime_prob_bull"]) == [
        "a",
        "b",
        "s",
        "regime_prob_bull",
    ]
    with pytest.raises(ValueError, match="twice: a"):
        model_input_columns(["a"], ["a"], [])
    with pytest.raises(ValueError, match="key column"):
        model_input_columns(["date"], [], [])


def test_the_training_frame_keys_labels_by_origin_and_keeps_warmed_up_rows():
    days = [date(2020, 1, d) for d in (2, 3, 6, 7)]
    features = pl.DataFrame(
        {
            "ticker": ["AAA"] * 4,
            "date": days,
            "f": [1.0, 2.0, 3.0, 4.0],
            "warmed_up": [False, True, True, True],
        }
    )
    signals = pl.DataFrame({"ticker": ["AAA"] * 3, "date": days[:3], "s": [0.1, 0.2, 0.3]})
    regimes = pl.DataFrame({"date": days, "regime_prob_bull": [0.5, 0.6, 0.7, 0.8]})
    # Stored at the realisation date: the 1-session outcome of Jan 3 is known on Jan 6.
    labels = pl.DataFrame(
        {
            "ticker": ["AAA"] * 3,
            "date": [days[2], days[3], days[3]],
            "horizon": pl.Series([1, 1, 2], dtype=pl.Int16),
            "origin_date": [days[1], days[2], days[1]],
            "forward_log_return": [0.01, -0.02, 0.03],
            "daily_vol": [0.01] * 3,
            "threshold": [0.005] * 3,
            "label": pl.Series([2, 0, 2], dtype=pl.Int8),
        }
    )
    out = training_frame(features, signals, regimes, labels, ["f", "s", "regime_prob_bull"], [1, 2])
    assert out["date"].to_list() == [days[1], days[2]]  # Jan 2 not warmed up, Jan 7 unlabelled
    assert out.row(0, named=True) == {
        "ticker": "AAA",
        "date": days[1],
        "f": 2.0,
        "s": 0.2,
        "regime_prob_bull": 0.6,
        "label_h1": 2,
        "label_date_h1": days[2],
        "forward_log_return_h1": 0.01,
        "label_h2": 2,
        "label_date_h2": days[3],
        "forward_log_return_h2": 0.03,
    }
    assert out["label_h2"][1] is None  # usable for h=1 only
    with pytest.raises(ValueError, match="missing_input"):
        training_frame(features, signals, regimes, labels, ["f", "missing_input"], [1])


def test_the_split_purges_overlapping_labels_and_embargoes_between_windows(frame):
    sessions = frame["date"].unique().sort().to_list()
    for horizon in HORIZONS:
        train, validation, test, windows = walk_forward_split(
            frame, CUTOFF, horizon, SETTINGS.split
        )
        label_date = f"label_date_h{horizon}"
        assert (train[label_date] < windows.validation_start).all()
        assert (validation[label_date] < windows.test_start).all()
        for part in (train, validation, test):
            assert (part[label_date] < CUTOFF).all()  # only outcomes known before the cut-off
        assert train["date"].max() < windows.train_end <= windows.validation_start
        gap = sessions.index(windows.validation_start) - sessions.index(train["date"].max())
        assert gap > SETTINGS.split.embargo_sessions
        gap = sessions.index(windows.test_start) - sessions.index(validation["date"].max())
        assert gap > SETTINGS.split.embargo_sessions
        assert test["date"].n_unique() == SETTINGS.split.test_sessions
        assert validation["date"].min() == windows.validation_start
        assert test["date"].min() == windows.test_start and windows.test_end == CUTOFF
        assert (windows.train_rows, windows.validation_rows, windows.test_rows) == (
            train.height,
            validation.height,
            test.height,
        )
        assert train["date"].min() == windows.train_start == START  # expanding window


def test_a_rolling_train_window_keeps_the_last_train_sessions(frame):
    split = SETTINGS.split.model_copy(update={"train_sessions": 100})
    train, _, _, windows = walk_forward_split(frame, CUTOFF, 1, split)
    assert train["date"].n_unique() == 100
    assert windows.train_start == train["date"].min() > START


def test_nothing_known_on_or_after_the_cutoff_changes_the_model(frame, models):
    # Scramble every outcome realised on or after the cut-off, and every input of a row whose
    # outcomes are all still unknown then; add rows after the panel's end too.
    unknown = pl.col("label_date_h1") >= CUTOFF
    changes = [
        pl.when(unknown).then(pl.col(c) * -5 + 1).otherwise(pl.col(c)).alias(c) for c in INPUTS
    ]
    for h in HORIZONS:
        future = pl.col(f"label_date_h{h}") >= CUTOFF
        label, forward = f"label_h{h}", f"forward_log_return_h{h}"
        changes += [
            pl.when(future).then(2 - pl.col(label)).otherwise(pl.col(label)).alias(label),
            pl.when(future).then(-pl.col(forward)).otherwise(pl.col(forward)).alias(forward),
        ]
    scrambled = frame.with_columns(changes)
    later = panel(seed=9).with_columns(
        pl.col("^date|label_date_h.*$").dt.offset_by(f"{frame['date'].n_unique()}d")
    )
    assert scrambled.filter(unknown).height > 0 and not scrambled.equals(frame)
    again = train_next_state(pl.concat([later, scrambled]), CUTOFF, INPUTS, SETTINGS)
    for h in HORIZONS:
        assert again[h].booster.model_to_string() == models[h].booster.model_to_string()
        assert again[h].test_metrics == models[h].test_metrics


def test_training_is_deterministic_and_learns_a_planted_signal(frame, models):
    # Another run, on the rows in another order: the split sorts, so nothing changes.
    shuffled = frame.sample(fraction=1.0, shuffle=True, seed=3)
    second = train_next_state(shuffled, CUTOFF, INPUTS, SETTINGS)
    for h in HORIZONS:
        first = models[h]
        assert first.booster.model_to_string() == second[h].booster.model_to_string()
        assert first.test_metrics == second[h].test_metrics
        assert first.validation_metrics == second[h].validation_metrics
        assert first.test_metrics["accuracy"] > 0.45  # three roughly balanced classes: ~1/3
        assert first.test_metrics["information_coefficient"] > 0.3
        assert first.feature_importance["signal"] > first.feature_importance["noise"]
        assert sum(first.class_counts.values()) == first.windows.train_rows
        assert 0 < first.best_iteration <= SETTINGS.lightgbm.n_estimators


def test_two_threads_are_deterministic_too(frame):
    # Few rounds: on a busy box each OpenMP barrier can wait a whole time slice.
    threads = LightGBMSettings(
        **{**SETTINGS.lightgbm.model_dump(), "num_threads": 2, "n_estimators": 8}
    )
    two = SETTINGS.model_copy(update={"lightgbm": threads})
    params = lightgbm_params(two.lightgbm)
    assert params["deterministic"] and params["force_row_wise"] and params["num_threads"] == 2
    small = frame.filter(pl.col("ticker").is_in(["T0", "T1", "T2"]))
    first, second = (train_horizon(small, CUTOFF, 1, INPUTS, two) for _ in range(2))
    assert first.booster.model_to_string() == second.booster.model_to_string()
    assert first.test_metrics == second.test_metrics


def test_fits_in_parallel_equal_fits_one_by_one_with_any_thread_count(frame):
    """The walk-forward trains (cut-off, horizon) fits concurrently: same boosters, same order,
    and a cut-off without enough history yields its reason instead of models."""
    cutoffs = [date(2019, 3, 1), date(2020, 6, 1), CUTOFF]
    parallel = SETTINGS.model_copy(
        update={"lightgbm": SETTINGS.lightgbm.model_copy(update={"parallel_fits": 2})}
    )
    yielded = list(train_walk_forward(frame, cutoffs, INPUTS, parallel))
    assert [cutoff for cutoff, _ in yielded] == cutoffs
    too_early = yielded[0][1]
    assert isinstance(too_early, InsufficientTrainingData) and "cut-off 2019-03-01" in str(
        too_early
    )
    for cutoff, models in yielded[1:]:
        alone = train_next_state(frame, cutoff, INPUTS, SETTINGS)
        assert sorted(models) == list(HORIZONS)
        for h, model in models.items():
            assert model.booster.model_to_string() == alone[h].booster.model_to_string()
            assert model.test_metrics == alone[h].test_metrics


def test_rows_per_date_are_capped_by_a_stable_choice_that_varies_by_date(frame):
    capped = sample_per_date(frame, 4)
    per_date = capped.group_by("date").len()
    assert per_date["len"].max() == 4 and per_date.height == frame["date"].n_unique()
    assert capped.equals(
        sample_per_date(frame.sample(fraction=1.0, shuffle=True, seed=3), 4).sort("ticker", "date")
    )
    # Every ticker is kept on some dates and left out on others.
    kept = capped.group_by("ticker").len()["len"]
    assert kept.min() > 0 and kept.max() < frame["date"].n_unique()
    # A date's choice depends on that date's rows only: more history changes nothing on it.
    later = frame.filter(pl.col("date") >= date(2020, 1, 1))
    assert sample_per_date(later, 4).equals(capped.filter(pl.col("date") >= date(2020, 1, 1)))
    assert sample_per_date(frame, 6).equals(frame)  # at or under the cap: untouched


def test_the_split_caps_train_and_validation_rows_per_date_never_the_test(frame):
    capped = SETTINGS.model_copy(
        update={"split": SETTINGS.split.model_copy(update={"max_rows_per_date": 2})}
    )
    train, validation, test, windows = walk_forward_split(frame, CUTOFF, 1, capped.split)
    full_train, _, full_test, _ = walk_forward_split(frame, CUTOFF, 1, SETTINGS.split)
    assert train.group_by("date").len()["len"].max() == 2
    assert validation.group_by("date").len()["len"].max() == 2
    assert test.equals(full_test) and windows.train_rows == train.height
    assert train.height < full_train.height


def test_histogram_bins_and_goss_reach_lightgbm():
    goss = LightGBMSettings(max_bin=63, data_sample_strategy="goss")
    params = lightgbm_params(goss)
    assert params["max_bin"] == 63 and params["data_sample_strategy"] == "goss"
    assert params["bagging_fraction"] == 1.0 and params["bagging_freq"] == 0
    shipped = lightgbm_params(LightGBMSettings())
    assert shipped["max_bin"] == 255 and "data_sample_strategy" not in shipped


def test_metrics_equal_sklearn_and_scipy_on_the_same_rows(frame, models):
    model = models[1]
    _, _, test, _ = walk_forward_split(frame, CUTOFF, 1, SETTINGS.split)
    probabilities = model.booster.predict(
        test.select(INPUTS).to_numpy(), num_iteration=model.best_iteration
    )
    truth = test["label_h1"].to_numpy()
    metrics = evaluate(model.booster, test, 1, INPUTS)
    assert metrics == model.test_metrics
    assert metrics["log_loss"] == pytest.approx(log_loss(truth, probabilities, labels=[0, 1, 2]))
    assert metrics["accuracy"] == pytest.approx(accuracy_score(truth, probabilities.argmax(1)))
    assert metrics["balanced_accuracy"] == pytest.approx(
        balanced_accuracy_score(truth, probabilities.argmax(axis=1))
    )
    edge = probabilities[:, 2] - probabilities[:, 0]
    expected_ic = spearmanr(edge, test["forward_log_return_h1"].to_numpy()).statistic
    assert metrics["information_coefficient"] == pytest.approx(expected_ic)
    assert metrics["rows"] == test.height
    flat_returns = test.with_columns(pl.lit(0.01).alias("forward_log_return_h1"))
    assert evaluate(model.booster, flat_returns, 1, INPUTS)["information_coefficient"] == 0.0


def test_too_little_history_is_refused_naming_cutoff_horizon_and_counts():
    frame = panel(days=120)
    with pytest.raises(InsufficientTrainingData, match=r"cut-off 2019-04-01, horizon 1: 18 train"):
        train_next_state(frame, date(2019, 4, 1), INPUTS, SETTINGS)
    with pytest.raises(InsufficientTrainingData, match=r"cut-off 2019-03-01, horizon 1: 58 sess"):
        train_next_state(frame, date(2019, 3, 1), INPUTS, SETTINGS)


def test_predictions_are_probabilities_and_survive_a_model_string_round_trip(frame, models):
    rows = frame.filter(pl.col("date") >= date(2020, 6, 1)).select("ticker", "date", *INPUTS)
    rows = rows.with_columns(  # missing inputs are allowed
        pl.when(pl.col("noise") > 1).then(None).otherwise("noise").alias("noise"),
        pl.when(pl.col("signal") > 2).then(float("nan")).otherwise("signal").alias("signal"),
    )
    boosters = {h: m.booster for h, m in models.items()}
    out = predict_next_state(boosters, rows.reverse(), INPUTS)
    assert out.height == rows.height * len(HORIZONS)
    assert out.columns == [
        "ticker",
        "date",
        "horizon",
        "prob_down",
        "prob_flat",
        "prob_up",
        "pred_state",
        "prob_pred_state",
    ]
    assert out.schema["horizon"] == pl.Int16 and out.schema["pred_state"] == pl.String
    assert out.equals(out.sort("ticker", "date", "horizon"))
    probabilities = out.select("prob_down", "prob_flat", "prob_up").to_numpy()
    assert ((probabilities >= 0) & (probabilities <= 1)).all()
    np.testing.assert_allclose(probabilities.sum(axis=1), 1.0, atol=1e-12)
    best = probabilities.argmax(axis=1)
    assert out["pred_state"].to_list() == [("down", "flat", "up")[i] for i in best]
    np.testing.assert_array_equal(out["prob_pred_state"].to_numpy(), probabilities.max(axis=1))
    reloaded = {h: lightgbm.Booster(model_str=b.model_to_string()) for h, b in boosters.items()}
    assert predict_next_state(reloaded, rows, INPUTS).equals(out)
    assert predict_next_state(boosters, rows.head(0), INPUTS).height == 0


def test_predictions_refuse_inputs_in_another_order(models):
    rows = pl.DataFrame({"ticker": ["T0"], "date": [CUTOFF], "signal": [0.1], "noise": [0.2]})
    with pytest.raises(ValueError, match="trained on 2 inputs"):
        predict_next_state({1: models[1].booster}, rows, ["noise", "signal"])
