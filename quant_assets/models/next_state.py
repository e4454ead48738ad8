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

import zlib
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from datetime import date
from typing import Any

import lightgbm
import numpy as np
import polars as pl

from quant_assets.models.labels import STATES
from quant_assets.settings import LightGBMSettings, ModelSettings, SplitSettings


class InsufficientTrainingData(ValueError):
    """Too few rows before a cut-off to train, validate and test a model."""


_KEYS = ("ticker", "date")


def model_input_columns(
    feature_names: list[str], signal_names: list[str], regime_prob_names: list[str]
) -> list[str]:
    """The model's inputs, in a fixed order: features, signals, regime probabilities.

    The order is the booster's feature order, so it is part of the model. Raises ValueError
    for a name listed twice or a key column (ticker, date) used as an input.
    """
    columns = [*feature_names, *signal_names, *regime_prob_names]
    twice = sorted({c for c in columns if columns.count(c) > 1})
    if twice:
        raise ValueError(f"input columns listed twice: {', '.join(twice)}")
    keys = sorted(set(_KEYS) & set(columns))
    if keys:
        raise ValueError(f"key column(s) cannot be model inputs: {', '.join(keys)}")
    return columns


def training_frame(
    features: pl.DataFrame,
    signals: pl.DataFrame,
    regimes: pl.DataFrame,
    labels: pl.DataFrame,
    input_columns: list[str],
    horizons: list[int],
) -> pl.DataFrame:
    """The rows a model learns from: one per (ticker, origin date), sorted by ticker, date.

    ``features`` and ``signals`` are keyed by (ticker, date), ``regimes`` by date (e.g. the
    ``regime_prob_*`` columns), ``labels`` is the long frame of
    :func:`quant_assets.models.labels.next_state_labels` (keyed by realisation date). Each
    input column is taken from the first of features, signals, regimes that has it (left
    joins: a missing signal or regime row gives a null input, which LightGBM treats as
    missing). Per horizon h the label of origin ``date`` is attached as ``label_h{h}`` (Int8),
    ``label_date_h{h}`` (realisation date) and ``forward_log_return_h{h}``; they are null
    where the outcome is not in ``labels``, and a row is usable for h only where ``label_h{h}``
    is not null. Rows with no label for any horizon, and rows whose features are not
    ``warmed_up`` (when that column exists), are dropped.

    Raises ValueError naming input columns found in no frame, or a duplicated (ticker, date).
    """
    frame = features
    if "warmed_up" in frame.columns:
        frame = frame.filter(pl.col("warmed_up"))
    from_features = [c for c in input_columns if c in features.columns]
    from_signals = [c for c in input_columns if c not in from_features and c in signals.columns]
    from_regimes = [
        c
        for c in input_columns
        if c not in from_features and c not in from_signals and c in regimes.columns
    ]
    missing = [c for c in input_columns if c not in {*from_features, *from_signals, *from_regimes}]
    if missing:
        raise ValueError(f"input column(s) in none of features/signals/regimes: {missing}")
    frame = frame.select(*_KEYS, *from_features)
    if from_signals:
        frame = frame.join(signals.select(*_KEYS, *from_signals), on=list(_KEYS), how="left")
    if from_regimes:
        frame = frame.join(regimes.select("date", *from_regimes), on="date", how="left")
    frame = frame.select(*_KEYS, *input_columns)
    for horizon in horizons:
        # Labels are stored at their realisation date; re-key them by origin to line up with
        # the inputs of the day the prediction would have been made.
        outcome = labels.filter(pl.col("horizon") == horizon).select(
            "ticker",
            pl.col("origin_date").alias("date"),
            pl.col("label").cast(pl.Int8).alias(f"label_h{horizon}"),
            pl.col("date").alias(f"label_date_h{horizon}"),
            pl.col("forward_log_return").alias(f"forward_log_return_h{horizon}"),
        )
        frame = frame.join(outcome, on=list(_KEYS), how="left")
    frame = frame.filter(pl.any_horizontal(pl.col(f"label_h{h}").is_not_null() for h in horizons))
    duplicated = frame.filter(pl.struct(*_KEYS).is_duplicated())
    if duplicated.height:
        row = duplicated.row(0, named=True)
        raise ValueError(f"training rows duplicated for {row['ticker']} on {row['date']}")
    return frame.sort(*_KEYS)


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
    """(train, validation, test, windows) for ``horizon`` at ``cutoff`` (see the module doc).

    ``frame`` is a :func:`training_frame`. Usable rows have ``label_h{h}`` and a
    ``label_date_h{h}`` strictly before ``cutoff``; S is their sorted distinct origin dates.
    test: the last ``test_sessions`` of S. validation: the ``validation_sessions`` before
    them, ending ``embargo_sessions`` sessions of S before the test start. train: every
    earlier date ending ``embargo_sessions`` before the validation start (only the last
    ``train_sessions`` if set). Purge: train rows realised on or after the validation start and
    validation rows realised on or after the test start are dropped. Each part is sorted by
    ticker, date, so the model does not depend on the input's row order.

    Raises InsufficientTrainingData naming the cut-off, horizon and counts when S is too short
    for the windows, the train set has fewer than ``split.min_train_rows`` rows or the
    validation or test set is empty; ValueError when the horizon's columns are missing.
    """
    label, label_date = f"label_h{horizon}", f"label_date_h{horizon}"
    missing = [c for c in (*_KEYS, label, label_date) if c not in frame.columns]
    if missing:
        raise ValueError(f"horizon {horizon}: the training frame lacks {missing}")
    usable = frame.filter(pl.col(label).is_not_null() & (pl.col(label_date) < cutoff)).sort(*_KEYS)
    sessions = usable["date"].unique().sort().to_list()
    test_n, validation_n, embargo = (
        split.test_sessions,
        split.validation_sessions,
        split.embargo_sessions,
    )
    needed = test_n + validation_n + 2 * embargo + 1
    if len(sessions) < needed:
        raise InsufficientTrainingData(
            f"cut-off {cutoff}, horizon {horizon}: {len(sessions)} sessions with outcomes known "
            f"before the cut-off ({usable.height} rows), {needed} needed (test {test_n} + "
            f"validation {validation_n} + 2 × embargo {embargo} + 1 train session)"
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
    # The embargo keeps the windows apart in origin time; the purge removes the rows whose
    # outcome is realised inside the next window (possible when h exceeds the embargo).
    train = usable.filter(
        (day >= train_start) & (day < train_end) & (pl.col(label_date) < validation_start)
    )
    validation = usable.filter(
        (day >= validation_start) & (day < validation_end) & (pl.col(label_date) < test_start)
    )
    test = usable.filter(day >= test_start)
    if split.max_rows_per_date is not None:
        train = sample_per_date(train, split.max_rows_per_date)
        validation = sample_per_date(validation, split.max_rows_per_date)
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


def sample_per_date(rows: pl.DataFrame, limit: int) -> pl.DataFrame:
    """At most ``limit`` rows per ``date`` of ``rows`` (keyed by ticker, date), kept in order.

    Which tickers are kept on a date is a stable pseudo-random choice: the ``limit`` smallest
    of a 64-bit mix of the ticker's CRC-32 and the date, so it is the same in every run and
    every version of the libraries, differs from date to date (no ticker is always left out)
    and depends only on the tickers present on that date (rows added on other dates, as
    history grows, change nothing on D).
    """
    if rows.is_empty():
        return rows
    if rows.group_by("date").len()["len"].to_numpy().max() <= limit:
        return rows
    tickers = rows["ticker"].unique()
    crc = pl.DataFrame(
        {
            "ticker": tickers,
            "_crc": np.array([zlib.crc32(t.encode()) for t in tickers], dtype=np.uint64),
        }
    )
    keyed = rows.join(crc, on="ticker", how="left")
    days = keyed["date"].cast(pl.Int32).to_numpy().astype(np.uint64)
    draw = _splitmix64((keyed["_crc"].to_numpy() << np.uint64(32)) ^ days)
    kept = (
        keyed.with_columns(pl.Series("_draw", draw))
        .filter(pl.col("_draw").rank("ordinal").over("date") <= limit)
        .drop("_crc", "_draw")
    )
    return kept


def _splitmix64(values: np.ndarray) -> np.ndarray:
    """SplitMix64's finaliser, elementwise on uint64 (wrapping arithmetic)."""
    with np.errstate(over="ignore"):
        z = values + np.uint64(0x9E3779B97F4A7C15)
        z = (z ^ (z >> np.uint64(30))) * np.uint64(0xBF58476D1CE4E5B9)
        z = (z ^ (z >> np.uint64(27))) * np.uint64(0x94D049BB133111EB)
        return z ^ (z >> np.uint64(31))


@dataclass
class HorizonModel:
    """A trained classifier for one horizon and what it was measured on."""

    horizon: int
    booster: lightgbm.Booster
    best_iteration: int  # boosting rounds kept by early stopping (one tree per class each)
    windows: SplitWindows
    validation_metrics: dict[str, float]  # see evaluate()
    test_metrics: dict[str, float]
    feature_importance: dict[str, float]  # total gain up to best_iteration, by input column
    class_counts: dict[str, int]  # train rows by state name


def lightgbm_params(settings: LightGBMSettings) -> dict:
    """LightGBM training parameters: 3-class softmax scored by multi_logloss, deterministic.

    ``deterministic`` + ``force_row_wise`` + a fixed ``num_threads`` make the trees
    bit-reproducible; ``seed`` derives LightGBM's bagging, feature-fraction and data seeds.
    ``n_estimators`` and ``early_stopping_rounds`` are not here: they are arguments of
    ``lightgbm.train`` (see :func:`train_horizon`).
    """
    params = {
        "objective": "multiclass",
        "num_class": len(STATES),
        "metric": "multi_logloss",
        "learning_rate": settings.learning_rate,
        "num_leaves": settings.num_leaves,
        "min_child_samples": settings.min_child_samples,
        "feature_fraction": settings.feature_fraction,
        "bagging_fraction": settings.bagging_fraction,
        "bagging_freq": settings.bagging_freq,
        "lambda_l2": settings.lambda_l2,
        "max_bin": settings.max_bin,
        "seed": settings.seed,
        "num_threads": settings.num_threads,
        "deterministic": True,
        "force_row_wise": True,
        "verbosity": -1,
    }
    if settings.data_sample_strategy == "goss":
        params.update(data_sample_strategy="goss", bagging_fraction=1.0, bagging_freq=0)
    return params


def _matrix(rows: pl.DataFrame, input_columns: list[str]) -> np.ndarray:
    # Nulls become NaN, LightGBM's missing value.
    return rows.select(pl.col(input_columns).cast(pl.Float64)).to_numpy()


def _probabilities(
    booster: lightgbm.Booster, rows: pl.DataFrame, input_columns: list[str]
) -> np.ndarray:
    """(rows, 3) class probabilities at the booster's best iteration."""
    trained_on = booster.feature_name()
    if trained_on != list(input_columns):
        # Same width, other order would predict silently from the wrong columns.
        raise ValueError(
            f"the booster was trained on {len(trained_on)} inputs {trained_on[:3]}..., "
            f"not the {len(input_columns)} given {list(input_columns)[:3]}..."
        )
    # A booster reloaded from model_to_string() holds only the kept trees (best_iteration -1).
    iteration = booster.best_iteration if booster.best_iteration > 0 else None
    raw = booster.predict(_matrix(rows, input_columns), num_iteration=iteration)
    return np.asarray(raw, dtype=np.float64).reshape(-1, len(STATES))


def evaluate(
    booster: lightgbm.Booster, rows: pl.DataFrame, horizon: int, input_columns: list[str]
) -> dict[str, float]:
    """Out-of-sample metrics of ``booster`` on ``rows`` (a split of :func:`training_frame`).

    Returns log_loss (natural log, sklearn with labels [0, 1, 2]), accuracy and
    balanced_accuracy of the argmax class, information_coefficient (Spearman rank correlation
    of the predicted edge p_up − p_down with ``forward_log_return_h{h}``; 0.0 when either is
    constant) and rows (the row count, as a float). Predicts at the best iteration.

    Raises ValueError for no rows or a null label.
    """
    from scipy.stats import spearmanr
    from sklearn.metrics import accuracy_score, balanced_accuracy_score, log_loss

    label = f"label_h{horizon}"
    if rows.is_empty():
        raise ValueError(f"horizon {horizon}: no rows to evaluate")
    if rows[label].null_count():
        raise ValueError(f"horizon {horizon}: {rows[label].null_count()} rows lack {label}")
    probabilities = _probabilities(booster, rows, input_columns)
    truth = rows[label].to_numpy().astype(int)
    predicted = probabilities.argmax(axis=1)
    edge = probabilities[:, 2] - probabilities[:, 0]
    realised = rows[f"forward_log_return_h{horizon}"].cast(pl.Float64).to_numpy()
    ic = 0.0
    if np.ptp(edge) > 0 and np.ptp(realised) > 0:  # spearmanr is undefined for a constant
        ic = float(spearmanr(edge, realised).statistic)
        ic = ic if np.isfinite(ic) else 0.0
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
    """Train the ``horizon`` classifier at ``cutoff`` on a :func:`training_frame`.

    Splits with :func:`walk_forward_split`, boosts up to ``n_estimators`` rounds with early
    stopping on the validation log loss, and measures validation and test metrics at the best
    iteration. Same frame and settings ⇒ identical ``booster.model_to_string()`` and metrics.
    Raises InsufficientTrainingData (from the split) and ValueError for no input columns.
    """
    if not input_columns:
        raise ValueError("no input columns to train on")
    train, validation, test, windows = walk_forward_split(frame, cutoff, horizon, settings.split)
    label = f"label_h{horizon}"
    train_set = lightgbm.Dataset(
        _matrix(train, input_columns),
        train[label].to_numpy().astype(np.int32),
        feature_name=list(input_columns),
        free_raw_data=True,
    )
    validation_set = lightgbm.Dataset(
        _matrix(validation, input_columns),
        validation[label].to_numpy().astype(np.int32),
        reference=train_set,  # the train set's bins, as at prediction time
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
    """One :func:`train_horizon` model per configured horizon at ``cutoff``, keyed by horizon.
    Raises InsufficientTrainingData if any horizon cannot be trained."""
    return {
        h: train_horizon(frame, cutoff, h, input_columns, settings)
        for h in settings.labels.horizons
    }


def train_walk_forward(
    frame: pl.DataFrame, cutoffs: list[date], input_columns: list[str], settings: ModelSettings
) -> Iterator[tuple[date, dict[int, HorizonModel] | InsufficientTrainingData]]:
    """:func:`train_next_state` at each of ``cutoffs``, yielded in the order given.

    Every (cut-off, horizon) fit is independent, so ``settings.lightgbm.parallel_fits`` of them
    run at once on threads (LightGBM releases the GIL), each with ``num_threads`` OpenMP
    threads. One OpenMP thread per fit and one fit per core avoids OpenMP's barrier waits, which
    dominated two-thread fits (see docs/architecture.md, "Models that scale"); a booster is the
    same whatever the thread counts (LightGBM's ``deterministic`` mode), and so is this
    output. A cut-off with too little data yields its InsufficientTrainingData instead of
    models (the first horizon's); other errors propagate. Fits are submitted oldest first and
    a cut-off is yielded as soon as its horizons are done.
    """
    from concurrent.futures import ThreadPoolExecutor

    horizons = settings.labels.horizons
    with ThreadPoolExecutor(max_workers=settings.lightgbm.parallel_fits) as pool:
        futures = {
            (cutoff, h): pool.submit(train_horizon, frame, cutoff, h, input_columns, settings)
            for cutoff in cutoffs
            for h in horizons
        }
        try:
            for cutoff in cutoffs:
                models: dict[int, HorizonModel] = {}
                refused: InsufficientTrainingData | None = None
                for h in horizons:
                    error = futures[cutoff, h].exception()
                    if isinstance(error, InsufficientTrainingData):
                        refused = error
                        break
                    models[h] = futures[cutoff, h].result()
                yield cutoff, (refused if refused is not None else models)
        finally:
            for future in futures.values():
                future.cancel()


def predict_next_state(
    boosters: dict[int, lightgbm.Booster], rows: pl.DataFrame, input_columns: list[str]
) -> pl.DataFrame:
    """Next-state probabilities of ``rows`` (ticker, date and the input columns; nulls and NaN
    allowed: LightGBM routes missing values) for every horizon of ``boosters``.

    Returns one row per (ticker, date, horizon), sorted so: ticker, date, horizon (Int16),
    prob_down, prob_flat, prob_up (Float64, summing to 1), pred_state (String, the STATES name
    of the most probable class; ties go to the first) and prob_pred_state. Raises ValueError
    for no boosters, or a booster trained on other input columns.
    """
    if not boosters:
        raise ValueError("no boosters given")
    parts = []
    for horizon, booster in sorted(boosters.items()):
        probabilities = _probabilities(booster, rows, input_columns)
        best = probabilities.argmax(axis=1)  # first maximum: ties go to the first state
        parts.append(
            rows.select(*_KEYS).with_columns(
                pl.lit(horizon, dtype=pl.Int16).alias("horizon"),
                *(
                    pl.Series(f"prob_{state}", probabilities[:, i], dtype=pl.Float64)
                    for i, state in enumerate(STATES)
                ),
                pl.Series("pred_state", [STATES[i] for i in best], dtype=pl.String),
                pl.Series(
                    "prob_pred_state",
                    probabilities[np.arange(len(best)), best],
                    dtype=pl.Float64,
                ),
            )
        )
    return pl.concat(parts).sort(*_KEYS, "horizon")


def model_input_rows(
    features: pl.DataFrame, signals: pl.DataFrame, regimes: pl.DataFrame, input_columns: list[str]
) -> pl.DataFrame:
    """The rows to predict: ``ticker``, ``date`` and ``input_columns``, one per features row.

    ``features`` and ``signals`` are keyed by (ticker, date), ``regimes`` by date; signals
    and regimes are left-joined (a missing row gives null inputs, which LightGBM routes as
    missing), signals' ``warmed_up`` is dropped so the features' one is kept. Rows keep the
    features' order. No features: an empty frame of ``ticker`` (Utf8) and ``date`` only.
    Raises polars' ColumnNotFoundError for an input column in none of the frames.
    """
    if features.is_empty():
        return pl.DataFrame(schema={"ticker": pl.Utf8, "date": pl.Date})
    joined = features.join(
        signals.drop("warmed_up", strict=False), on=["ticker", "date"], how="left"
    ).join(regimes, on="date", how="left")
    return joined.select("ticker", "date", *input_columns)


def predict_walk_forward(
    model_rows: pl.DataFrame,
    rows: pl.DataFrame,
    end: date,
    input_columns: list[str],
    load_boosters: Callable[[Any], dict[int, lightgbm.Booster]],
    live_cutoff: date | None,
    live_champion: Callable[[], tuple[Any, date] | None],
) -> tuple[pl.DataFrame | None, dict[str, str]]:
    """Out-of-sample predictions of ``rows``, each date by the champion of its cut-off window.

    ``model_rows``: ``next_state_model`` rows (``cutoff``, ``champion_version``,
    ``champion_cutoff``; one or more per cut-off, the first of each cut-off is used), any
    order. ``rows``: :func:`model_input_rows` of the run, dated before ``end`` (the run's
    exclusive end; the newest cut-off's window ends there). Cut-off ``c``'s window is
    ``[c, next cut-off)`` (:func:`quant_assets.models.cutoffs.cutoff_windows`, not clipped at
    the start); its rows are predicted by ``champion_version`` with
    :func:`predict_next_state` on ``load_boosters(version)``. For ``live_cutoff`` (the newest
    cut-off partition: the daily update) ``live_champion()`` — the registry's ``@champion``
    ``(version, cut-off)`` — is asked once and replaces the stored champion when not None.
    A window with no champion or no rows is skipped (``load_boosters`` is not called).

    Returns (the predictions of every window concatenated, with ``model_version`` and
    ``model_cutoff`` added; not conformed — None when no window was predicted) and the models
    used: ``{cut-off ISO date: "v<version> (cut-off <champion cut-off>)"}`` in window order.
    Raises ValueError for a booster trained on other input columns (:func:`predict_next_state`).
    """
    from quant_assets.models.cutoffs import cutoff_windows

    by_cutoff = (
        model_rows.group_by("cutoff", maintain_order=True)
        .agg(pl.col("champion_version").first(), pl.col("champion_cutoff").first())
        .sort("cutoff")
    )
    champions = {
        row["cutoff"]: (row["champion_version"], row["champion_cutoff"])
        for row in by_cutoff.iter_rows(named=True)
    }
    cutoffs = by_cutoff["cutoff"].to_list()
    parts, used = [], {}
    # Not clipped at the start: a window's rows are those dated in [cut-off, window end).
    start = cutoffs[0] if cutoffs else end
    for window in cutoff_windows(cutoffs, start, end):
        version, model_cutoff = champions[window.cutoff]
        if live_cutoff is not None and window.cutoff == live_cutoff:
            live = live_champion()
            if live is not None:
                version, model_cutoff = live
        window_rows = rows.filter((pl.col("date") >= window.start) & (pl.col("date") < window.end))
        if version is None or window_rows.is_empty():
            continue
        predicted_rows = predict_next_state(load_boosters(version), window_rows, input_columns)
        parts.append(
            predicted_rows.with_columns(
                pl.lit(version).alias("model_version"),
                pl.lit(model_cutoff).alias("model_cutoff"),
            )
        )
        used[window.cutoff.isoformat()] = f"v{version} (cut-off {model_cutoff})"
    return (pl.concat(parts) if parts else None), used
