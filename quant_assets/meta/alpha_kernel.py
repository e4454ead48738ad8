"""Alpha scores of many trials: :func:`quant_assets.meta.alpha.combine_signals` as a numba kernel
over dense (n_dates, n_tickers) arrays prepared once.

A parameter study scores ~1,000 variants of a strategy's meta-brain on the same signals,
predictions and regimes. :func:`alpha_inputs` turns the polars frames ``combine_signals`` takes
into arrays once; :func:`alpha_scores_nb` then writes one trial's ``alpha_score`` and
``confidence`` into caller-provided (n_dates, n_tickers) buffers, from the trial's weighting
table (:func:`alpha_weight_table`) and parameter row (:func:`alpha_parameters`). Its
arithmetic follows ``combine_signals`` operation by operation and in the same order — sums
over the strategy's components (positive weight in some regime) in polars' ``sum_horizontal``
tree order, polars' median ``lower + 0.5 × (upper − lower)`` — so the two agree bit for bit
wherever ``exp`` and ``tanh`` come from the same math library (observed here; the tests allow
1e-12). Cells that ``combine_signals`` emits as null are NaN; cells without a signals row are
NaN in both outputs.

``prediction_horizon`` and ``prediction_scale`` change the prediction component itself, so
:func:`alpha_inputs` prepares that component once per distinct (horizon, scale) pair —
a "prediction variant" — and a trial reads the variant of its pair
(:meth:`AlphaInputs.prediction_variant`).
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
import polars as pl
from numba import njit

from quant_assets.meta.alpha import _MAD_TO_SIGMA  # one constant for both implementations
from quant_assets.names import REGIME_NAMES, REGIME_PROB_COLUMNS
from quant_assets.settings import (
    ALPHA_COMPONENTS,
    PREDICTION_COMPONENT,
    SIGNAL_COMPONENTS,
    AlphaSettings,
)

__all__ = [
    "ALPHA_PARAMETER_COLUMNS",
    "NORMALIZATION_NONE",
    "NORMALIZATION_ROBUST_ZSCORE",
    "N_ALPHA_PARAMETERS",
    "N_COMPONENTS",
    "N_REGIMES",
    "N_SIGNALS",
    "REGIME_WEIGHTING_LABEL",
    "REGIME_WEIGHTING_PROBABILITY",
    "UNKNOWN_REGIME",
    "AlphaInputs",
    "alpha_inputs",
    "alpha_parameters",
    "alpha_scores",
    "alpha_scores_nb",
    "alpha_weight_table",
]

# The columns of a trial's alpha parameter row (:func:`alpha_parameters`), in order. The
# kernel reads the first five; the last two name the trial's prediction variant.
ALPHA_PARAMETER_COLUMNS: dict[str, str] = {
    "regime_weighting": "0: blend the table's rows by the regime probabilities; 1: label row",
    "disagreement_penalty": "beta >= 0 in exp(-beta × disagreement)",
    "normalization": "0: robust z-score, tanh(z / zscore_scale); 1: none, clip to [-1, 1]",
    "zscore_scale": "> 0, the divisor of the z-score inside tanh",
    "min_cross_section": "whole number >= 2: fewer scored tickers on a date give 0",
    "prediction_horizon": "sessions; with prediction_scale, selects the prediction variant",
    "prediction_scale": "> 0; prediction = tanh((p_up - p_down) / prediction_scale)",
}
N_ALPHA_PARAMETERS = len(ALPHA_PARAMETER_COLUMNS)
_REGIME_WEIGHTING, _PENALTY, _NORMALIZATION, _ZSCORE_SCALE, _MIN_CROSS_SECTION = range(5)
REGIME_WEIGHTING_PROBABILITY, REGIME_WEIGHTING_LABEL = 0, 1
NORMALIZATION_ROBUST_ZSCORE, NORMALIZATION_NONE = 0, 1
UNKNOWN_REGIME = -1  # the code of a label that is not one of REGIME_NAMES: weight 0

N_SIGNALS = len(SIGNAL_COMPONENTS)
N_COMPONENTS = len(ALPHA_COMPONENTS)  # the four signals, then the prediction (last)
N_REGIMES = len(REGIME_NAMES)
_GRID_KEYS = ("date", "ticker")
_INSERTION_SORT_MAX = 32


@dataclass(frozen=True)
class AlphaInputs:
    """Dense arrays of one study's signals, predictions and regimes (float64 unless said).

    ``signal_value``: (N_SIGNALS, n_dates, n_tickers), the rule signals in
    ``SIGNAL_COMPONENTS`` order, NaN where missing. ``signal_confidence``: (n_dates,
    n_tickers), 1 when the row is warmed up, 0 when not (or null), NaN where ``signals`` has
    no row: such cells are not scored. ``prediction_value`` / ``prediction_confidence``:
    (n_variants, n_dates, n_tickers), per (horizon, scale) of ``prediction_variants``:
    tanh((p_up - p_down) / scale) (NaN when missing) and prob_pred_state (0 when null).
    ``regime_label``: (n_dates,) int64 code into ``REGIME_NAMES`` (``UNKNOWN_REGIME`` for
    another label). ``regime_probability``: (n_dates, N_REGIMES), null read as 0.
    """

    dates: pl.Series
    tickers: list[str]
    signal_value: np.ndarray
    signal_confidence: np.ndarray
    prediction_variants: tuple[tuple[int, float], ...]
    prediction_value: np.ndarray
    prediction_confidence: np.ndarray
    regime_label: np.ndarray
    regime_probability: np.ndarray

    def prediction_variant(self, horizon: int, scale: float) -> int:
        """The index of the (horizon, scale) variant; ``KeyError`` naming it if not prepared."""
        try:
            return self.prediction_variants.index((int(horizon), float(scale)))
        except ValueError:
            raise KeyError(
                f"no prediction variant (horizon {horizon}, scale {scale}) was prepared; "
                f"prepared: {list(self.prediction_variants)}"
            ) from None


def _require(frame: pl.DataFrame, name: str, columns: Sequence[str]) -> None:
    missing = [c for c in columns if c not in frame.columns]
    if missing:
        raise ValueError(f"{name} lacks column(s) {', '.join(missing)}")


def _refuse_duplicates(frame: pl.DataFrame, name: str, keys: Sequence[str]) -> None:
    duplicated = frame.filter(pl.struct(*keys).is_duplicated())
    if duplicated.height:
        row = duplicated.sort(*keys).row(0, named=True)
        where = ", ".join(f"{k} {row[k]}" for k in keys)
        raise ValueError(f"{name}: duplicate row for {where}")


def _refuse_infinite(frame: pl.DataFrame, name: str, columns: Sequence[str]) -> None:
    for column in columns:
        bad = frame.filter(pl.col(column).is_infinite())
        if bad.height:
            row = bad.sort(*_GRID_KEYS).row(0, named=True)
            raise ValueError(f"{name}: infinite {column} for {row['ticker']} on {row['date']}")


def _cells(frame: pl.DataFrame, dates: pl.Series, tickers: Sequence[str]) -> pl.DataFrame:
    """``frame``'s rows on the grid, with their flat cell index ``_cell`` (row-major)."""
    row_of = pl.DataFrame({"date": dates, "_row": np.arange(dates.len())})
    column_of = pl.DataFrame({"ticker": list(tickers), "_column": np.arange(len(tickers))})
    located = frame.join(row_of, on="date").join(column_of, on="ticker")
    return located.with_columns((pl.col("_row") * len(tickers) + pl.col("_column")).alias("_cell"))


def _scatter(located: pl.DataFrame, column: str, shape: tuple[int, int]) -> np.ndarray:
    """``located[column]`` as a (n_dates, n_tickers) float64 grid, NaN where no row or null."""
    out = np.full(shape[0] * shape[1], np.nan)
    values = located[column].cast(pl.Float64).fill_null(np.nan).to_numpy()
    out[located["_cell"].to_numpy()] = values
    return out.reshape(shape)


def alpha_inputs(
    signals: pl.DataFrame,
    predictions: pl.DataFrame | None,
    regimes: pl.DataFrame,
    tickers: Sequence[str],
    dates: pl.Series | Sequence[object],
    *,
    prediction_variants: Sequence[tuple[int, float]] = (),
) -> AlphaInputs:
    """The dense inputs of :func:`alpha_scores_nb` from the frames ``combine_signals`` takes.

    ``signals``: date, ticker, warmed_up and the rule signal columns (a missing signal column
    is all NaN: a trial that weights it gets no value from it). ``predictions``: date, ticker,
    horizon, prob_down, prob_up, prob_pred_state (``None``: no prediction, all NaN).
    ``regimes``: date, regime_label, regime_prob_*. ``tickers`` and ``dates`` fix the grid's
    columns and rows; rows outside them are ignored (the cross-section of a date is the
    grid's tickers). ``prediction_variants``: the (horizon, scale) pairs to prepare.

    Raises ValueError naming the frame and row for a missing column, a duplicated row, an
    infinite value, a NaN regime probability, a signals date without a regime row (or with
    a null label), repeated tickers or dates, or a non-positive scale.
    """
    tickers = list(tickers)
    dates = pl.Series("date", dates) if not isinstance(dates, pl.Series) else dates.alias("date")
    if len(set(tickers)) != len(tickers) or not tickers:
        raise ValueError("tickers must be distinct and not empty")
    if dates.is_duplicated().any():
        raise ValueError(
            f"dates must be distinct; {dates.filter(dates.is_duplicated())[0]} repeats"
        )
    variants = tuple((int(h), float(s)) for h, s in prediction_variants)
    bad_scale = [s for _, s in variants if not (math.isfinite(s) and s > 0)]
    if bad_scale:
        raise ValueError(f"prediction_variants: scale must be finite and > 0, got {bad_scale[0]}")
    shape = (dates.len(), len(tickers))

    _require(signals, "signals", ("date", "ticker", "warmed_up"))
    _refuse_duplicates(signals, "signals", _GRID_KEYS)
    present = [c for c in SIGNAL_COMPONENTS if c in signals.columns]
    located = _cells(signals, dates, tickers)
    _refuse_infinite(located, "signals", present)
    signal_value = np.full((N_SIGNALS, *shape), np.nan)
    for k, component in enumerate(SIGNAL_COMPONENTS):
        if component in present:
            # NaN and null are both "missing", as combine_signals reads them.
            signal_value[k] = _scatter(located, component, shape)
    warmed = located.with_columns(
        pl.when(pl.col("warmed_up")).then(1.0).otherwise(0.0).alias("_confidence")
    )
    signal_confidence = _scatter(warmed, "_confidence", shape)

    prediction_value = np.full((len(variants), *shape), np.nan)
    prediction_confidence = np.full((len(variants), *shape), np.nan)
    if variants and predictions is not None:
        _require(
            predictions,
            "predictions",
            ("date", "ticker", "horizon", "prob_down", "prob_up", "prob_pred_state"),
        )
        _refuse_duplicates(predictions, "predictions", (*_GRID_KEYS, "horizon"))
        for v, (horizon, scale) in enumerate(variants):
            # The same polars expression as combine_signals: the same tanh, bit for bit.
            chosen = predictions.filter(pl.col("horizon") == horizon).select(
                "date",
                "ticker",
                ((pl.col("prob_up") - pl.col("prob_down")) / scale).tanh().alias("_alpha"),
                pl.col("prob_pred_state").fill_null(0.0).alias("_confidence"),
            )
            chosen_cells = _cells(chosen, dates, tickers)
            _refuse_infinite(chosen_cells, "predictions", ("_confidence",))
            if chosen_cells.filter(pl.col("_confidence").is_nan()).height:
                row = chosen_cells.filter(pl.col("_confidence").is_nan()).row(0, named=True)
                raise ValueError(
                    f"predictions: NaN prob_pred_state for {row['ticker']} on {row['date']}"
                )
            prediction_value[v] = _scatter(chosen_cells, "_alpha", shape)
            prediction_confidence[v] = _scatter(chosen_cells, "_confidence", shape)

    _require(regimes, "regimes", ("date", "regime_label", *REGIME_PROB_COLUMNS))
    row_of = pl.DataFrame({"date": dates, "_row": np.arange(dates.len())})
    regime_rows = regimes.join(row_of, on="date")
    if regime_rows["date"].is_duplicated().any():
        day = regime_rows.filter(pl.col("date").is_duplicated()).sort("date")["date"][0]
        raise ValueError(f"regimes: duplicate row for {day}")
    nan_probability = regime_rows.filter(pl.any_horizontal(pl.col(REGIME_PROB_COLUMNS).is_nan()))
    if nan_probability.height:
        day = nan_probability.sort("date")["date"][0]
        raise ValueError(f"regimes: NaN probability on {day}")
    code = pl.lit(UNKNOWN_REGIME)
    for r, regime in enumerate(REGIME_NAMES):
        code = pl.when(pl.col("regime_label") == regime).then(pl.lit(r)).otherwise(code)
    regime_rows = regime_rows.with_columns(code.alias("_code"))
    labelled = regime_rows.filter(pl.col("regime_label").is_not_null())["_row"].to_numpy()
    scored_rows = np.flatnonzero(~np.isnan(signal_confidence).all(axis=1))
    orphans = np.setdiff1d(scored_rows, labelled)
    if orphans.size:
        raise ValueError(f"regimes: no regime row for {dates[int(orphans[0])]} (signals have one)")
    regime_label = np.full(dates.len(), UNKNOWN_REGIME, dtype=np.int64)
    regime_label[regime_rows["_row"].to_numpy()] = regime_rows["_code"].to_numpy()
    regime_probability = np.zeros((dates.len(), N_REGIMES))
    regime_probability[regime_rows["_row"].to_numpy()] = regime_rows.select(
        pl.col(REGIME_PROB_COLUMNS).cast(pl.Float64).fill_null(0.0)
    ).to_numpy()
    return AlphaInputs(
        dates=dates,
        tickers=tickers,
        signal_value=signal_value,
        signal_confidence=signal_confidence,
        prediction_variants=variants,
        prediction_value=prediction_value,
        prediction_confidence=prediction_confidence,
        regime_label=regime_label,
        regime_probability=np.ascontiguousarray(regime_probability),
    )


def alpha_weight_table(settings: AlphaSettings) -> np.ndarray:
    """The strategy's weighting table as a (N_REGIMES, N_COMPONENTS) float64 array: rows in
    ``REGIME_NAMES`` order, columns in ``ALPHA_COMPONENTS`` order, 0 where not set."""
    return np.array(
        [[float(settings.weights[r].get(k, 0.0)) for k in ALPHA_COMPONENTS] for r in REGIME_NAMES]
    )


def alpha_parameters(settings: AlphaSettings) -> np.ndarray:
    """The trial's parameter row, float64 (N_ALPHA_PARAMETERS,): the columns of
    :data:`ALPHA_PARAMETER_COLUMNS` in order — regime_weighting (0 probability, 1 label),
    disagreement_penalty, normalization (0 robust_zscore, 1 none), zscore_scale,
    min_cross_section, prediction_horizon, prediction_scale."""
    return np.array(
        [
            float(
                REGIME_WEIGHTING_LABEL
                if settings.regime_weighting == "label"
                else REGIME_WEIGHTING_PROBABILITY
            ),
            float(settings.disagreement_penalty),
            float(
                NORMALIZATION_NONE
                if settings.normalization == "none"
                else NORMALIZATION_ROBUST_ZSCORE
            ),
            float(settings.zscore_scale),
            float(settings.min_cross_section),
            float(settings.prediction_horizon),
            float(settings.prediction_scale),
        ]
    )


def alpha_scores(
    inputs: AlphaInputs,
    settings: AlphaSettings,
    alpha_score: np.ndarray | None = None,
    confidence: np.ndarray | None = None,
) -> tuple[np.ndarray, np.ndarray]:
    """One strategy's (alpha_score, confidence), each (n_dates, n_tickers) float64, written
    into the given buffers (allocated when ``None``) by :func:`alpha_scores_nb`. A strategy
    that weights ``prediction`` needs its (horizon, scale) among the prepared variants
    (``KeyError`` otherwise); one that does not reads no prediction."""
    shape = inputs.signal_confidence.shape
    alpha_score = np.empty(shape) if alpha_score is None else alpha_score
    confidence = np.empty(shape) if confidence is None else confidence
    if PREDICTION_COMPONENT in settings.components:
        variant = inputs.prediction_variant(settings.prediction_horizon, settings.prediction_scale)
        prediction_value = inputs.prediction_value[variant]
        prediction_confidence = inputs.prediction_confidence[variant]
    else:
        prediction_value = np.full(shape, np.nan)
        prediction_confidence = prediction_value
    alpha_scores_nb(
        inputs.signal_value,
        inputs.signal_confidence,
        prediction_value,
        prediction_confidence,
        inputs.regime_label,
        inputs.regime_probability,
        alpha_weight_table(settings),
        alpha_parameters(settings),
        alpha_score,
        confidence,
    )
    return alpha_score, confidence


@njit(cache=True)
def _sum_horizontal(values: np.ndarray, start: int, n: int) -> float:
    """Σ values[start : start + n] in the order of polars' ``sum_horizontal``: the first half
    (n // 2 terms) plus the second, recursively — x0 + (x1 + x2) for three terms,
    (x0 + x1) + (x2 + (x3 + x4)) for five — so the sums equal ``combine_signals``' bit for bit.
    Written out for up to five terms, the most there are (N_COMPONENTS): numba's cache cannot
    hold a recursive function."""
    x = values[start:]
    if n == 1:
        return x[0]
    if n == 2:
        return x[0] + x[1]
    if n == 3:
        return x[0] + (x[1] + x[2])
    if n == 4:
        return (x[0] + x[1]) + (x[2] + x[3])
    if n == 5:
        return (x[0] + x[1]) + (x[2] + (x[3] + x[4]))
    if n == 0:
        return 0.0
    raise ValueError("_sum_horizontal sums at most five terms")


@njit(cache=True)
def _sort_in_place(values: np.ndarray, n: int) -> None:
    """Sort ``values[:n]`` (no NaN) ascending: insertion sort for a cross-section of up to
    _INSERTION_SORT_MAX names (3-4× faster than ``ndarray.sort`` at 20), else numba's sort."""
    if n > _INSERTION_SORT_MAX:
        values[:n].sort()
        return
    for i in range(1, n):
        value = values[i]
        j = i
        while j > 0 and values[j - 1] > value:
            values[j] = values[j - 1]
            j -= 1
        values[j] = value


@njit(cache=True)
def _sorted_absolute_deviations(
    sorted_values: np.ndarray, n: int, center: float, out: np.ndarray
) -> None:
    """|sorted_values[:n] − center| in ascending order into ``out[:n]`` in O(n): the
    deviations fall towards ``center`` and rise after it, so merging the two runs sorts them."""
    right = 0
    while right < n and sorted_values[right] < center:
        right += 1
    left = right - 1
    for k in range(n):
        if left < 0:
            out[k] = abs(sorted_values[right] - center)
            right += 1
        elif right >= n:
            out[k] = abs(sorted_values[left] - center)
            left -= 1
        else:
            below = abs(sorted_values[left] - center)
            above = abs(sorted_values[right] - center)
            if below <= above:
                out[k] = below
                left -= 1
            else:
                out[k] = above
                right += 1


@njit(cache=True)
def _polars_median(sorted_values: np.ndarray, n: int) -> float:
    """The median of ``sorted_values[:n]`` exactly as polars computes it: the middle value,
    or for an even count ``lower + 0.5 × (upper − lower)`` (linear interpolation at the
    0.5 quantile — the mean of the two middle values, rounded polars' way)."""
    lower = sorted_values[(n - 1) // 2]
    upper = sorted_values[n // 2]
    if lower == upper:
        return lower
    return 0.5 * (upper - lower) + lower


@njit(cache=True)
def alpha_scores_nb(
    signal_value: np.ndarray,
    signal_confidence: np.ndarray,
    prediction_value: np.ndarray,
    prediction_confidence: np.ndarray,
    regime_label: np.ndarray,
    regime_probability: np.ndarray,
    weights: np.ndarray,
    parameters: np.ndarray,
    alpha_score: np.ndarray,
    confidence: np.ndarray,
) -> None:
    """Write one trial's alpha scores and confidences into ``alpha_score`` and ``confidence``.

    Args (float64; (n_dates, n_tickers) unless said; see :class:`AlphaInputs`):
        signal_value: (N_SIGNALS, n_dates, n_tickers) rule signals, NaN = missing.
        signal_confidence: 1 warmed up / 0 not; NaN = no row (the cell is not scored).
        prediction_value, prediction_confidence: the trial's prediction variant: the
            component in [-1, 1] (NaN = missing) and its confidence in [0, 1].
        regime_label: (n_dates,) int64 code into REGIME_NAMES, or UNKNOWN_REGIME.
        regime_probability: (n_dates, N_REGIMES).
        weights: (N_REGIMES, N_COMPONENTS) the trial's table, finite and >= 0.
        parameters: (N_ALPHA_PARAMETERS,) the row of :func:`alpha_parameters`.
    Outputs (n_dates, n_tickers), overwritten: ``alpha_score`` in [-1, 1], NaN where no
    component is available (no weight × confidence) or no row; ``confidence`` in [0, 1],
    NaN where no row.

    Per cell, as ``combine_signals``: a component is available when not NaN; w_k = the label
    row (probability mode: Σ_r P(r) W[r, k]); wc_k = w_k × c_k; ensemble = Σ wc_k a_k /
    Σ wc_k (when Σ wc_k > 0); disagreement = Σ wc_k (a_k − ensemble)² / Σ wc_k; penalised =
    ensemble × exp(−β disagreement); confidence = Σ wc_k / Σ w_k × exp(−β disagreement), 0
    when Σ wc_k is not positive. Per date, over the penalised scores that exist: robust z =
    (x − median) / (1.4826 × MAD), 0 with fewer than min_cross_section scores or a zero MAD;
    alpha = tanh(z / zscore_scale); without normalisation, the penalised score clipped to
    [-1, 1]. The sums run over the components with a positive weight in some regime of
    ``weights`` (the strategy's ``components``), in ``sum_horizontal``'s order.

    Raises ``ValueError`` naming the argument of the wrong shape or value.
    """
    n_dates, n_tickers = signal_confidence.shape
    grid = (n_dates, n_tickers)
    if signal_value.shape[0] != N_SIGNALS or signal_value.shape[1:] != grid:
        raise ValueError("signal_value must have shape (N_SIGNALS, n_dates, n_tickers)")
    if prediction_value.shape != grid or prediction_confidence.shape != grid:
        raise ValueError("prediction_value and prediction_confidence must be (n_dates, n_tickers)")
    if alpha_score.shape != grid or confidence.shape != grid:
        raise ValueError("alpha_score and confidence must have shape (n_dates, n_tickers)")
    if regime_label.shape[0] != n_dates:
        raise ValueError("regime_label must have length n_dates")
    if regime_probability.shape[0] != n_dates or regime_probability.shape[1] != N_REGIMES:
        raise ValueError("regime_probability must have shape (n_dates, N_REGIMES)")
    if weights.shape[0] != N_REGIMES or weights.shape[1] != N_COMPONENTS:
        raise ValueError("weights must have shape (N_REGIMES, N_COMPONENTS)")
    for r in range(N_REGIMES):
        for k in range(N_COMPONENTS):
            if not (np.isfinite(weights[r, k]) and weights[r, k] >= 0.0):
                raise ValueError("weights must be finite and >= 0")
    if parameters.shape[0] != N_ALPHA_PARAMETERS:
        raise ValueError("parameters must hold the N_ALPHA_PARAMETERS columns")
    by_label = parameters[_REGIME_WEIGHTING]
    if by_label != REGIME_WEIGHTING_PROBABILITY and by_label != REGIME_WEIGHTING_LABEL:
        raise ValueError("parameters: regime_weighting must be 0 (probability) or 1 (label)")
    beta = parameters[_PENALTY]
    if not (np.isfinite(beta) and beta >= 0.0):
        raise ValueError("parameters: disagreement_penalty must be finite and >= 0")
    normalization = parameters[_NORMALIZATION]
    if normalization != NORMALIZATION_ROBUST_ZSCORE and normalization != NORMALIZATION_NONE:
        raise ValueError("parameters: normalization must be 0 (robust_zscore) or 1 (none)")
    zscore_scale = parameters[_ZSCORE_SCALE]
    if not (np.isfinite(zscore_scale) and zscore_scale > 0.0):
        raise ValueError("parameters: zscore_scale must be finite and > 0")
    min_cross_section = parameters[_MIN_CROSS_SECTION]
    if not (min_cross_section >= 2.0 and min_cross_section == math.floor(min_cross_section)):
        raise ValueError("parameters: min_cross_section must be a whole number >= 2")

    # combine_signals sums over the strategy's components only (those with a positive weight
    # in some regime), in ALPHA_COMPONENTS order: the same terms in the same tree order here.
    component = np.empty(N_COMPONENTS, dtype=np.int64)
    n_used = 0
    for k in range(N_COMPONENTS):
        used = False
        for r in range(N_REGIMES):
            used = used or weights[r, k] > 0.0
        if used:
            component[n_used] = k
            n_used += 1
    negative_beta = -beta  # combine_signals multiplies by the literal -beta
    weight = np.empty(N_COMPONENTS)  # the day's weights, per used component
    blend = np.empty(N_REGIMES)
    alpha = np.empty(N_COMPONENTS)
    weighted_confidence = np.empty(N_COMPONENTS)
    term = np.empty(N_COMPONENTS)
    scores = np.empty(n_tickers)  # the date's penalised scores, then sorted
    deviations = np.empty(n_tickers)
    for d in range(n_dates):
        # The day's weights: the label's row, or the rows blended by the probabilities.
        label = regime_label[d]
        for j in range(n_used):
            k = component[j]
            if by_label == REGIME_WEIGHTING_LABEL:
                weight[j] = weights[label, k] if 0 <= label < N_REGIMES else 0.0
            else:
                for r in range(N_REGIMES):
                    blend[r] = regime_probability[d, r] * weights[r, k]
                weight[j] = _sum_horizontal(blend, 0, N_REGIMES)
        total_w = _sum_horizontal(weight, 0, n_used)
        n_scores = 0
        for i in range(n_tickers):
            signal_c = signal_confidence[d, i]
            if np.isnan(signal_c):
                alpha_score[d, i] = np.nan
                confidence[d, i] = np.nan
                continue
            for j in range(n_used):
                k = component[j]
                if k < N_SIGNALS:
                    value, c = signal_value[k, d, i], signal_c
                else:
                    value, c = prediction_value[d, i], prediction_confidence[d, i]
                if np.isnan(value):
                    value, c = 0.0, 0.0
                alpha[j] = value
                weighted_confidence[j] = weight[j] * c
                term[j] = weighted_confidence[j] * value
            total_wc = _sum_horizontal(weighted_confidence, 0, n_used)
            if not total_wc > 0.0:
                alpha_score[d, i] = np.nan
                confidence[d, i] = 0.0
                continue
            ensemble_score = _sum_horizontal(term, 0, n_used) / total_wc
            for j in range(n_used):
                term[j] = weighted_confidence[j] * (alpha[j] - ensemble_score) ** 2
            shrink = math.exp(negative_beta * (_sum_horizontal(term, 0, n_used) / total_wc))
            penalized = ensemble_score * shrink
            confidence[d, i] = total_wc / total_w * shrink
            if normalization == NORMALIZATION_NONE:
                alpha_score[d, i] = min(max(penalized, -1.0), 1.0)
            else:
                alpha_score[d, i] = penalized  # normalised below, once the day is scored
                scores[n_scores] = penalized
                n_scores += 1
        if normalization == NORMALIZATION_NONE or n_scores == 0:
            continue
        # The robust z-score across the day's scored tickers.
        _sort_in_place(scores, n_scores)
        median = _polars_median(scores, n_scores)
        _sorted_absolute_deviations(scores, n_scores, median, deviations)
        spread_sigma = _polars_median(deviations, n_scores) * _MAD_TO_SIGMA
        degenerate = n_scores < min_cross_section or not spread_sigma > 0.0
        for i in range(n_tickers):
            penalized = alpha_score[d, i]
            if np.isnan(penalized):
                continue
            z = 0.0 if degenerate else (penalized - median) / spread_sigma
            alpha_score[d, i] = math.tanh(z / zscore_scale)
