"""Walk-forward LightGBM next-state classifiers (seed 004 §3.6), one per horizon.

At a cut-off c, only rows whose label is *known* before c are usable (``label_date < c``).
Over their origin dates, sessions are split, oldest to newest::

    train | embargo | validation (early stopping) | embargo | test (out-of-sample metrics)

with a **purge**: a train row whose label is realised on or after the validation start, and a
validation row whose label is realised on or after the test start, are dropped (their
outcome overlaps the next window). The model is global (all tickers in one classifier):
20 tickers give too few rows per name for 40 inputs, and a global model learns
cross-sectional patterns. Deterministic: LightGBM's ``deterministic`` mode, fixed seeds and
thread count, rows in a fixed order.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import date

import lightgbm
import numpy as np
import polars as pl

from quant_assets.models.labels import STATES
from quant_assets.settings import LightGBMSettings, ModelSettings, SplitSettings


class InsufficientTrainingData(ValueError):
    """Too few rows before a cut-off to train, validate and test a model."""


def model_input_columns(
    feature_names: list[str], signal_names: list[str], regime_prob_names: list[str]
) -> list[str]:
    """The model's inputs, in a fixed order: features, signals, regime probabilities."""
    return [*feature_names, *signal_names, *regime_prob_names]


def training_frame(
    features: pl.DataFrame,
    signals: pl.DataFrame,
    regimes: pl.DataFrame,
    labels: pl.DataFrame,
    input_columns: list[str],
    horizons: list[int],
) -> pl.DataFrame:
    """One row per (ticker, origin date) with the inputs and, per horizon h, ``label_h{h}``,
    ``label_date_h{h}`` (realisation date) and ``forward_log_return_h{h}`` (null where the
    outcome is not known in ``labels``). Rows before the features' warm-up are dropped."""
    frame = features
    if "warmed_up" in frame.columns:
        frame = frame.filter(pl.col("warmed_up"))
    signal_columns = [c for c in signals.columns if c in input_columns]
    frame = frame.join(
        signals.select("ticker", "date", *signal_columns), on=["ticker", "date"], how="left"
    )
    regime_columns = [c for c in regimes.columns if c in input_columns]
    frame = frame.join(regimes.select("date", *regime_columns), on="date", how="left")
    frame = frame.select("ticker", "date", *input_columns)
    for horizon in horizons:
        outcome = labels.filter(pl.col("horizon") == horizon).select(
            "ticker",
            pl.col("origin_date").alias("date"),
            pl.col("label").alias(f"label_h{horizon}"),
            pl.col("date").alias(f"label_date_h{horizon}"),
            pl.col("forward_log_return").alias(f"forward_log_return_h{horizon}"),
        )
        frame = frame.join(outcome, on=["ticker", "date"], how="left")
    return frame.sort("ticker", "date")


@dataclass(frozen=True)
class SplitWindows:
    """Origin-date windows (end-exclusive) of one walk-forward split and their row counts."""

    train_start: date
    train_end: date
    validation_start: date
    validation_end: date
    test_start: date
    test_end: date
    train_rows: int
    validation_rows: int
    test_rows: int


def walk_forward_split(
    frame: pl.DataFrame, cutoff: date, horizon: int, split: SplitSettings
) -> tuple[pl.DataFrame, pl.DataFrame, pl.DataFrame, SplitWindows]:
    """(train, validation, test, windows) for ``horizon`` at ``cutoff`` (see module doc).

    Raises InsufficientTrainingData naming the cut-off, horizon and counts when the train set
    has fewer than ``split.min_train_rows`` rows or a window is empty.
    """
    label, label_date = f"label_h{horizon}", f"label_date_h{horizon}"
    usable = frame.filter(pl.col(label).is_not_null() & (pl.col(label_date) < cutoff))
    sessions = usable["date"].unique().sort().to_list()
    test_n, validation_n, embargo = (
        split.test_sessions,
        split.validation_sessions,
        split.embargo_sessions,
    )
    needed = test_n + validation_n + 2 * embargo + 1
    if len(sessions) < needed:
        raise InsufficientTrainingData(
            f"cut-off {cutoff}, horizon {horizon}: {len(sessions)} sessions with known "
            f"outcomes, {needed} needed for the split"
        )
    test_start = sessions[-test_n]
    validation_end_index = len(sessions) - test_n - embargo  # exclusive
    validation_start = sessions[validation_end_index - validation_n]
    validation_end = sessions[validation_end_index]
    train_end_index = validation_end_index - validation_n - embargo  # exclusive
    train_end = sessions[train_end_index]
    train_start = sessions[0]
    if split.train_sessions is not None:
        train_start = sessions[max(0, train_end_index - split.train_sessions)]
    day = pl.col("date")
    train = usable.filter(
        (day >= train_start) & (day < train_end) & (pl.col(label_date) < validation_start)
    )
    validation = usable.filter(
        (day >= validation_start) & (day < validation_end) & (pl.col(label_date) < test_start)
    )
    test = usable.filter(day >= test_start)
    windows = SplitWindows(
        train_start=train_start,
        train_end=train_end,
        validation_start=validation_start,
        validation_end=validation_end,
        test_start=test_start,
        test_end=cutoff,
        train_rows=train.height,
        validation_rows=validation.height,
        test_rows=test.height,
    )
    if train.height < split.min_train_rows or validation.is_empty() or test.is_empty():
        raise InsufficientTrainingData(
            f"cut-off {cutoff}, horizon {horizon}: {train.height} train rows (minimum "
            f"{split.min_train_rows}), {validation.height} validation, {test.height} test"
        )
    return train, validation, test, windows


@dataclass
class HorizonModel:
    """A trained classifier for one horizon and what it was measured on."""

    horizon: int
    booster: lightgbm.Booster
    best_iteration: int
    windows: SplitWindows
    validation_metrics: dict[str, float]
    test_metrics: dict[str, float]
    feature_importance: dict[str, float]  # total gain by input column
    class_counts: dict[str, int]  # train rows by state


def lightgbm_params(settings: LightGBMSettings) -> dict:
    """LightGBM parameters: 3-class softmax, deterministic (fixed seeds and threads)."""
    return {
        "objective": "multiclass",
        "num_class": len(STATES),
        "learning_rate": settings.learning_rate,
        "num_leaves": settings.num_leaves,
        "min_child_samples": settings.min_child_samples,
        "feature_fraction": settings.feature_fraction,
        "bagging_fraction": settings.bagging_fraction,
        "bagging_freq": settings.bagging_freq,
        "lambda_l2": settings.lambda_l2,
        "seed": settings.seed,
        "num_threads": settings.num_threads,
        "deterministic": True,
        "force_row_wise": True,
        "verbosity": -1,
    }


def _matrix(rows: pl.DataFrame, input_columns: list[str]) -> np.ndarray:
    return rows.select(pl.col(input_columns).cast(pl.Float64)).to_numpy()


def _probabilities(
    booster: lightgbm.Booster, rows: pl.DataFrame, input_columns: list[str]
) -> np.ndarray:
    iteration = booster.best_iteration if booster.best_iteration > 0 else None
    return np.asarray(booster.predict(_matrix(rows, input_columns), num_iteration=iteration))


def evaluate(
    booster: lightgbm.Booster, rows: pl.DataFrame, horizon: int, input_columns: list[str]
) -> dict[str, float]:
    """log_loss, accuracy, balanced_accuracy and information_coefficient (Spearman of the
    predicted edge p_up − p_down with the realised forward log return) on ``rows``."""
    from scipy.stats import spearmanr
    from sklearn.metrics import accuracy_score, balanced_accuracy_score, log_loss

    probabilities = _probabilities(booster, rows, input_columns)
    truth = rows[f"label_h{horizon}"].to_numpy().astype(int)
    predicted = probabilities.argmax(axis=1)
    edge = probabilities[:, 2] - probabilities[:, 0]
    realised = rows[f"forward_log_return_h{horizon}"].to_numpy()
    constant = np.ptp(edge) == 0 or np.ptp(realised) == 0
    ic = 0.0 if constant else float(spearmanr(edge, realised).statistic)
    return {
        "log_loss": float(log_loss(truth, probabilities, labels=[0, 1, 2])),
        "accuracy": float(accuracy_score(truth, predicted)),
        "balanced_accuracy": float(balanced_accuracy_score(truth, predicted)),
        "information_coefficient": ic,
        "rows": float(len(truth)),
    }


def train_horizon(
    frame: pl.DataFrame,
    cutoff: date,
    horizon: int,
    input_columns: list[str],
    settings: ModelSettings,
) -> HorizonModel:
    """Train the ``horizon`` classifier at ``cutoff`` with early stopping on validation."""
    train, validation, test, windows = walk_forward_split(frame, cutoff, horizon, settings.split)
    label = f"label_h{horizon}"
    train_set = lightgbm.Dataset(
        _matrix(train, input_columns),
        train[label].to_numpy(),
        feature_name=input_columns,
        free_raw_data=True,
    )
    validation_set = lightgbm.Dataset(
        _matrix(validation, input_columns), validation[label].to_numpy(), reference=train_set
    )
    booster = lightgbm.train(
        lightgbm_params(settings.lightgbm),
        train_set,
        num_boost_round=settings.lightgbm.n_estimators,
        valid_sets=[validation_set],
        callbacks=[lightgbm.early_stopping(settings.lightgbm.early_stopping_rounds, verbose=False)],
    )
    gains = booster.feature_importance(importance_type="gain", iteration=booster.best_iteration)
    counts = np.bincount(train[label].to_numpy().astype(int), minlength=len(STATES))
    return HorizonModel(
        horizon=horizon,
        booster=booster,
        best_iteration=int(booster.best_iteration),
        windows=windows,
        validation_metrics=evaluate(booster, validation, horizon, input_columns),
        test_metrics=evaluate(booster, test, horizon, input_columns),
        feature_importance={c: float(g) for c, g in zip(input_columns, gains, strict=True)},
        class_counts={state: int(n) for state, n in zip(STATES, counts, strict=True)},
    )


def train_next_state(
    frame: pl.DataFrame, cutoff: date, input_columns: list[str], settings: ModelSettings
) -> dict[int, HorizonModel]:
    """One model per configured horizon at ``cutoff`` (see :func:`train_horizon`)."""
    return {
        h: train_horizon(frame, cutoff, h, input_columns, settings)
        for h in settings.labels.horizons
    }


def predict_next_state(
    boosters: dict[int, lightgbm.Booster], rows: pl.DataFrame, input_columns: list[str]
) -> pl.DataFrame:
    """Per (ticker, date, horizon): prob_down/flat/up, pred_state (argmax; ties → the first
    state) and prob_pred_state, sorted by ticker, date, horizon. ``rows``: ticker, date and
    the input columns (nulls allowed: LightGBM routes missing values)."""
    parts = []
    for horizon, booster in sorted(boosters.items()):
        probabilities = _probabilities(booster, rows, input_columns)
        best = probabilities.argmax(axis=1)
        parts.append(
            rows.select("ticker", "date").with_columns(
                pl.lit(horizon, dtype=pl.Int16).alias("horizon"),
                *(
                    pl.Series(f"prob_{state}", probabilities[:, i])
                    for i, state in enumerate(STATES)
                ),
                pl.Series("pred_state", np.asarray(STATES)[best]),
                pl.Series("prob_pred_state", probabilities[np.arange(len(best)), best]),
            )
        )
    if not parts:
        raise ValueError("no boosters given")
    return pl.concat(parts).sort("ticker", "date", "horizon")
