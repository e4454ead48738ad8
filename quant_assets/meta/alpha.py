"""Alpha scores: the regime-weighted, confidence-weighted ensemble of a strategy's components.

The meta-brain of seed 003 §3.1 with the regime-dependent weighting table of seed 004 §3.7,
per (date, ticker) and using only that date's rows (so nothing after the date can reach it):

1. **Components** α_k in [-1, 1]: the four rule signals, and the model's
   ``prediction = tanh((p_up - p_down) / prediction_scale)`` for the configured horizon.
2. **Weights** w_k from the strategy's table: the regime row of the day's label, or (default)
   the rows blended by the filtered regime probabilities, Σ_r P(r) · W[r, k].
3. **Confidence** c_k in [0, 1]: 1 for a warmed-up signal (0 while its feature windows fill),
   the probability of the predicted state for the model; a missing component has c_k = 0.
4. **Ensemble** μ̂ = Σ w_k c_k α_k / Σ w_k c_k; **disagreement** = the same-weighted variance
   of the α_k around μ̂; **penalised** μ̂ · exp(-β · disagreement).
5. **Robust z-score** across the day's tickers, (x - median) / (1.4826 · MAD), squashed to
   ``alpha_score = tanh(z / zscore_scale)`` in (-1, 1). With fewer than ``min_cross_section``
   tickers, or all equal, the score is 0: no cross-sectional information.

``confidence`` = (Σ w_k c_k / Σ w_k) · exp(-β · disagreement).
"""

from __future__ import annotations

import polars as pl

from quant_assets.names import REGIME_NAMES, REGIME_PROB_COLUMNS
from quant_assets.schemas import ALPHA_SCORES
from quant_assets.settings import PREDICTION_COMPONENT, SIGNAL_COMPONENTS, AlphaSettings

# The stored columns after date and ticker, declared once in schemas.ALPHA_SCORES.
ALPHA_SCORE_COLUMNS: dict[str, str] = {
    c.name: c.description for c in ALPHA_SCORES if c.name not in ("date", "ticker")
}
_MAD_TO_SIGMA = 1.4826  # MAD of a normal distribution × 1.4826 = its standard deviation
_REQUIRED = {
    "signals": ("date", "ticker", "warmed_up"),
    "regimes": ("date", "regime_label", *REGIME_PROB_COLUMNS),
    "predictions": ("date", "ticker", "horizon", "prob_down", "prob_up", "prob_pred_state"),
}


def _require(frame: pl.DataFrame, name: str, columns: tuple[str, ...]) -> None:
    missing = [c for c in columns if c not in frame.columns]
    if missing:
        raise ValueError(f"{name} lacks column(s) {', '.join(missing)}")


def _weight(component: str, settings: AlphaSettings) -> pl.Expr:
    table = settings.weights
    if settings.regime_weighting == "label":
        expr = pl.lit(0.0)
        for regime in REGIME_NAMES:
            w = table[regime].get(component, 0.0)
            expr = pl.when(pl.col("regime_label") == regime).then(pl.lit(w)).otherwise(expr)
        return expr
    return pl.sum_horizontal(
        pl.col(column) * table[regime].get(component, 0.0)
        for regime, column in zip(REGIME_NAMES, REGIME_PROB_COLUMNS, strict=True)
    )


def combine_signals(
    signals: pl.DataFrame,
    predictions: pl.DataFrame | None,
    regimes: pl.DataFrame,
    settings: AlphaSettings,
) -> pl.DataFrame:
    """Alpha scores for every (date, ticker) row of ``signals``.

    ``signals``: date, ticker, the signal columns the strategy uses, warmed_up. ``predictions``:
    date, ticker, horizon, prob_down, prob_up, prob_pred_state (needed only when the strategy
    weights ``prediction``). ``regimes``: date, regime_label, regime_prob_* for every signal
    date. Returns the columns of :data:`quant_assets.schemas.ALPHA_SCORES` (date, ticker, then
    :data:`ALPHA_SCORE_COLUMNS`), sorted by (date, ticker).

    Raises ValueError for a missing column, a duplicated (date, ticker) row, or a date with
    no regime row (naming the first such date).
    """
    components = settings.components
    signal_components = [c for c in components if c in SIGNAL_COMPONENTS]
    _require(signals, "signals", (*_REQUIRED["signals"], *signal_components))
    _require(regimes, "regimes", _REQUIRED["regimes"])
    duplicated = signals.filter(pl.struct("date", "ticker").is_duplicated())
    if duplicated.height:
        row = duplicated.row(0, named=True)
        raise ValueError(f"signals: duplicate row for {row['ticker']} on {row['date']}")
    frame = signals.select("date", "ticker", "warmed_up", *signal_components)
    uses_prediction = PREDICTION_COMPONENT in components
    if uses_prediction:
        if predictions is None:
            raise ValueError("the strategy weights `prediction` but no predictions were given")
        _require(predictions, "predictions", _REQUIRED["predictions"])
        chosen = predictions.filter(pl.col("horizon") == settings.prediction_horizon).select(
            "date",
            "ticker",
            ((pl.col("prob_up") - pl.col("prob_down")) / settings.prediction_scale)
            .tanh()
            .alias("prediction_alpha"),
            pl.col("prob_pred_state").alias("_prediction_confidence"),
        )
        frame = frame.join(chosen, on=["date", "ticker"], how="left")
    else:
        frame = frame.with_columns(
            pl.lit(None, dtype=pl.Float64).alias("prediction_alpha"),
            pl.lit(None, dtype=pl.Float64).alias("_prediction_confidence"),
        )
    frame = frame.join(regimes.select(_REQUIRED["regimes"]), on="date", how="left")
    orphan = frame.filter(pl.col("regime_label").is_null())
    if orphan.height:
        first = orphan.sort("date").row(0, named=True)["date"]
        raise ValueError(f"regimes: no regime row for {first} (signals have one)")

    alpha_cols, conf_cols, weight_cols = [], [], []
    for component in components:
        if component == PREDICTION_COMPONENT:
            alpha = pl.col("prediction_alpha")
            confidence = pl.col("_prediction_confidence")
        else:
            alpha = pl.col(component)
            confidence = pl.when(pl.col("warmed_up")).then(1.0).otherwise(0.0)
        available = alpha.is_not_null() & alpha.is_not_nan()
        alpha_cols.append(pl.when(available).then(alpha).otherwise(0.0).alias(f"_a_{component}"))
        conf_cols.append(
            pl.when(available)
            .then(confidence.fill_null(0.0))
            .otherwise(0.0)
            .alias(f"_c_{component}")
        )
        weight_cols.append(_weight(component, settings).alias(f"_w_{component}"))
    frame = frame.with_columns(*alpha_cols, *conf_cols, *weight_cols)
    wc = [pl.col(f"_w_{k}") * pl.col(f"_c_{k}") for k in components]
    total_wc = pl.sum_horizontal(wc)
    total_w = pl.sum_horizontal(pl.col(f"_w_{k}") for k in components)
    ensemble = pl.sum_horizontal(w * pl.col(f"_a_{k}") for w, k in zip(wc, components, strict=True))
    frame = frame.with_columns(
        total_wc.alias("_total_wc"),
        total_w.alias("_total_w"),
        pl.sum_horizontal((w > 0).cast(pl.Int16) for w in wc).alias("components_used"),
    ).with_columns(
        pl.when(pl.col("_total_wc") > 0)
        .then(ensemble / pl.col("_total_wc"))
        .otherwise(None)
        .alias("ensemble_score")
    )
    variance = pl.sum_horizontal(
        w * (pl.col(f"_a_{k}") - pl.col("ensemble_score")) ** 2
        for w, k in zip(wc, components, strict=True)
    ) / pl.col("_total_wc")
    beta = settings.disagreement_penalty
    frame = frame.with_columns(variance.alias("disagreement")).with_columns(
        (pl.col("ensemble_score") * (-beta * pl.col("disagreement")).exp()).alias(
            "penalized_score"
        ),
        pl.when(pl.col("_total_wc") > 0)
        .then(pl.col("_total_wc") / pl.col("_total_w") * (-beta * pl.col("disagreement")).exp())
        .otherwise(0.0)
        .alias("confidence"),
    )
    frame = _normalise(frame, settings)
    return frame.select("date", "ticker", *ALPHA_SCORE_COLUMNS).sort("date", "ticker")


def _normalise(frame: pl.DataFrame, settings: AlphaSettings) -> pl.DataFrame:
    score = pl.col("penalized_score")
    if settings.normalization == "none":
        return frame.with_columns(
            pl.lit(None, dtype=pl.Float64).alias("robust_zscore"),
            score.clip(-1.0, 1.0).alias("alpha_score"),
        )
    median = score.median().over("date")
    mad = (score - median).abs().median().over("date")
    count = score.count().over("date")
    spread = mad * _MAD_TO_SIGMA
    z = (
        pl.when(score.is_null())
        .then(None)
        .when((count < settings.min_cross_section) | (spread <= 0) | spread.is_null())
        .then(0.0)
        .otherwise((score - median) / spread)
    )
    return frame.with_columns(z.alias("robust_zscore")).with_columns(
        (pl.col("robust_zscore") / settings.zscore_scale).tanh().alias("alpha_score")
    )
