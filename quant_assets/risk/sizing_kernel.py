"""The risk-sizing engine of :func:`quant_assets.risk.positions.size_positions` in numba,
vectorised over many trials (variants of a strategy's sizing and risk parameters and alpha).

Reproduces ``size_positions`` for ``allocator: kelly`` from a fresh book
(:class:`~quant_assets.risk.positions.PositionState` ``()``): the same Kelly weights, volatility
ceiling, caps, regime / VaR / CVaR / EVT overlays, drawdown guard, circuit breakers and turnover
limit, date by date, with the same floating-point operations in the same order, so the target
weights agree to the last bits (see "Exactness" below). Modeled on vectorbt's ``nb`` layer:
every kernel is ``@njit(cache=True)``, takes NumPy arrays and scalars only, and the
Python-facing :func:`size_trials` validates the inputs and raises ``ValueError`` naming the
argument at fault.

Shapes and units:

* ``returns`` (n_dates_total, n_tickers): close-to-close daily returns (fractions), NaN where a
  close is missing; the kernels see them with NaN filled by 0 (``filled_returns``, a missing
  return counts as no move, as in ``size_positions``). The daily volatility of each (decision
  date, ticker) depends on the returns and the volatility window only, so it is computed once
  per distinct window for all trials (:func:`trailing_sigma_nb`, NaN without a full window).
* ``decision_index`` (n_dates,): row of each decision date in ``returns``, increasing.
* ``regime_code`` (n_dates,): the regime label as its index in :data:`REGIME_NAMES`.
* ``alpha_scores`` (n_alphas, n_dates, n_tickers): NaN where a ticker has no alpha.
* ``params`` (n_trials, len(:data:`TRIAL_PARAMETERS`)): one float64 row per trial, built by
  :func:`trial_parameters` (NaN = "none" for ``max_turnover`` and ``drawdown_kill_switch``).
* outputs (:class:`SizedTrials`): ``target_weight`` (n_trials, n_dates, n_tickers) as
  fractions of equity; ``paper_return``, ``risk_scale``, ``turnover`` (n_trials, n_dates);
  ``breaker_state`` (n_trials, n_dates) as codes in the order of ``BREAKER_STATES``.

Exactness. Every sum is done the way NumPy does it: ``np.sum`` / ``mean`` / ``std`` of a 1-D
array by NumPy's pairwise summation (8 accumulators, blocks of 128), ``np.std(axis=0)`` of a
(window, tickers) block row after row, matrix-vector and dot products by the same OpenBLAS
``dgemv`` / ``ddot`` (numba's ``np.dot`` calls SciPy's copy of the library; NumPy's and SciPy's
builds give bit-identical results, checked by the tests). The GPD fit is scipy's
``genpareto.fit(..., floc=0)``: the penalised negative log-likelihood with cephes' ``log1p``
(as ``scipy.special.xlog1py``), summed pairwise, minimised by ``optimize.fmin``'s Nelder-Mead
step for step. One function differs: NumPy's ``log`` of the scale in the likelihood runs
Intel's SVML on AVX-512 machines, which rounds ~1 in 1,000 arguments one ulp away from libm's
``log`` used here. That shifts a likelihood by ~1e-15 and can only matter when Nelder-Mead
compares two values closer than that; the tests measure how often the fit then differs.

Divisions follow NumPy's error model (``error_model="numpy"``: x/0 is inf or NaN, not an
exception) because the reference does its arithmetic in NumPy.

Memory: a trial allocates its work buffers once (a few arrays of n_tickers and of the VaR
window); the date loop allocates nothing. Outputs go into caller-provided buffers
(:meth:`SizedTrials.allocate`), so a study of many trials runs in batches that reuse them.
"""

from __future__ import annotations

import ctypes
import math
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from datetime import date
from functools import cache
from pathlib import Path

import numpy as np
import polars as pl
from llvmlite import ir
from numba import njit, prange, types
from numba.core import cgutils
from numba.extending import get_cython_function_address, intrinsic

from quant_assets.names import REGIME_NAMES, SESSIONS_PER_YEAR
from quant_assets.risk.measures import GpdTail, _normal_quantile
from quant_assets.risk.positions import BREAKER_STATES, _wide
from quant_assets.settings import StrategySettings

# Breaker state codes, in the order of ``BREAKER_STATES``.
BREAKER_NORMAL = BREAKER_STATES.index("normal")
BREAKER_DEFENSIVE = BREAKER_STATES.index("defensive")
BREAKER_FROZEN = BREAKER_STATES.index("frozen")
BREAKER_RECOVERY = BREAKER_STATES.index("recovery")
BREAKER_KILLED = BREAKER_STATES.index("killed")

# Recovery stages have a column each in the parameter row (NaN-padded).
MAX_RECOVERY_STAGES = 8

# The columns of a trial's parameter row (float64; flags 0/1, windows and counts as integers).
TRIAL_PARAMETERS: tuple[str, ...] = (
    "kelly_fraction",
    "information_coefficient",
    "risk_free_rate",  # annual
    "volatility_window",  # sessions
    "target_volatility",  # annualised
    "max_weight",
    "max_gross_leverage",
    "max_turnover",  # NaN: no limit
    "long_only",  # 1 long-only, 0 long-short
    "var_window_sessions",
    "var_confidence",
    "var_historical_weight",
    "var_limit",
    "var_cvar_limit",
    "evt_enabled",  # 1 / 0
    "evt_threshold_quantile",
    "evt_min_exceedances",
    "evt_refit_every_sessions",
    "drawdown_guard_start",
    "drawdown_max_drawdown",
    "drawdown_guard_floor",
    "drawdown_kill_switch",  # NaN: no kill switch
    "breaker_realized_vol_window",
    "breaker_defensive_var_multiple",
    "breaker_defensive_vol_multiple",
    "breaker_defensive_scale",
    "breaker_freeze_vol_multiple",
    "breaker_cooldown_sessions",
    "breaker_sessions_per_stage",
    "breaker_recovery_vol_multiple",
    *(f"breaker_recovery_stage_{i + 1}" for i in range(MAX_RECOVERY_STAGES)),  # NaN-padded
    *(f"regime_multiplier_{name}" for name in REGIME_NAMES),
)

_KELLY_FRACTION = TRIAL_PARAMETERS.index("kelly_fraction")
_INFORMATION_COEFFICIENT = TRIAL_PARAMETERS.index("information_coefficient")
_RISK_FREE_RATE = TRIAL_PARAMETERS.index("risk_free_rate")
_VOLATILITY_WINDOW = TRIAL_PARAMETERS.index("volatility_window")
_TARGET_VOLATILITY = TRIAL_PARAMETERS.index("target_volatility")
_MAX_WEIGHT = TRIAL_PARAMETERS.index("max_weight")
_MAX_GROSS_LEVERAGE = TRIAL_PARAMETERS.index("max_gross_leverage")
_MAX_TURNOVER = TRIAL_PARAMETERS.index("max_turnover")
_LONG_ONLY = TRIAL_PARAMETERS.index("long_only")
_VAR_WINDOW = TRIAL_PARAMETERS.index("var_window_sessions")
_VAR_CONFIDENCE = TRIAL_PARAMETERS.index("var_confidence")
_VAR_HISTORICAL_WEIGHT = TRIAL_PARAMETERS.index("var_historical_weight")
_VAR_LIMIT = TRIAL_PARAMETERS.index("var_limit")
_CVAR_LIMIT = TRIAL_PARAMETERS.index("var_cvar_limit")
_EVT_ENABLED = TRIAL_PARAMETERS.index("evt_enabled")
_EVT_THRESHOLD_QUANTILE = TRIAL_PARAMETERS.index("evt_threshold_quantile")
_EVT_MIN_EXCEEDANCES = TRIAL_PARAMETERS.index("evt_min_exceedances")
_EVT_REFIT_EVERY = TRIAL_PARAMETERS.index("evt_refit_every_sessions")
_GUARD_START = TRIAL_PARAMETERS.index("drawdown_guard_start")
_MAX_DRAWDOWN = TRIAL_PARAMETERS.index("drawdown_max_drawdown")
_GUARD_FLOOR = TRIAL_PARAMETERS.index("drawdown_guard_floor")
_KILL_SWITCH = TRIAL_PARAMETERS.index("drawdown_kill_switch")
_REALIZED_VOL_WINDOW = TRIAL_PARAMETERS.index("breaker_realized_vol_window")
_DEFENSIVE_VAR_MULTIPLE = TRIAL_PARAMETERS.index("breaker_defensive_var_multiple")
_DEFENSIVE_VOL_MULTIPLE = TRIAL_PARAMETERS.index("breaker_defensive_vol_multiple")
_DEFENSIVE_SCALE = TRIAL_PARAMETERS.index("breaker_defensive_scale")
_FREEZE_VOL_MULTIPLE = TRIAL_PARAMETERS.index("breaker_freeze_vol_multiple")
_COOLDOWN_SESSIONS = TRIAL_PARAMETERS.index("breaker_cooldown_sessions")
_SESSIONS_PER_STAGE = TRIAL_PARAMETERS.index("breaker_sessions_per_stage")
_RECOVERY_VOL_MULTIPLE = TRIAL_PARAMETERS.index("breaker_recovery_vol_multiple")
_RECOVERY_STAGE_1 = TRIAL_PARAMETERS.index("breaker_recovery_stage_1")
_REGIME_MULTIPLIER_1 = TRIAL_PARAMETERS.index(f"regime_multiplier_{REGIME_NAMES[0]}")

_EPS = 1e-12  # as positions._EPS: the turnover tolerances
_ANNUALISE = math.sqrt(SESSIONS_PER_YEAR)
_LOG_XMAX = math.log(np.finfo(float).max)  # scipy's _LOGXMAX: the out-of-support penalty
_INTEGER_PARAMETERS = (
    "volatility_window",
    "var_window_sessions",
    "evt_min_exceedances",
    "evt_refit_every_sessions",
    "breaker_realized_vol_window",
    "breaker_cooldown_sessions",
    "breaker_sessions_per_stage",
)
_OPTIONAL_PARAMETERS = ("max_turnover", "drawdown_kill_switch")


# --- NumPy's summation and statistics -------------------------------------------------------


# NumPy sums a contiguous float64 vector pairwise: blocks of at most 128 values with 8
# accumulators each, larger runs split in two at half the length rounded down to a multiple of
# 8. Recursive numba functions do not survive ``cache=True``, so the tree is unrolled into six
# levels (:data:`MAX_PAIRWISE_COUNT` values; the VaR window is at most 2,520).
MAX_PAIRWISE_COUNT = 7688


@njit(cache=True, error_model="numpy")
def _term(values: np.ndarray, index: int, mean: float, squared: bool) -> float:
    if squared:
        d = values[index] - mean
        return d * d
    return values[index]


@njit(cache=True, error_model="numpy")
def _pairwise_block(
    values: np.ndarray, start: int, count: int, mean: float, squared: bool
) -> float:
    """Σ of at most 128 terms (values, or (values - mean)² when ``squared``) as NumPy sums
    them: sequentially below 8, else 8 interleaved accumulators combined as a tree."""
    if count < 8:
        total = 0.0
        for i in range(count):
            total += _term(values, start + i, mean, squared)
        return total
    r0 = _term(values, start, mean, squared)
    r1 = _term(values, start + 1, mean, squared)
    r2 = _term(values, start + 2, mean, squared)
    r3 = _term(values, start + 3, mean, squared)
    r4 = _term(values, start + 4, mean, squared)
    r5 = _term(values, start + 5, mean, squared)
    r6 = _term(values, start + 6, mean, squared)
    r7 = _term(values, start + 7, mean, squared)
    i = 8
    whole = count - count % 8
    while i < whole:
        j = start + i
        r0 += _term(values, j, mean, squared)
        r1 += _term(values, j + 1, mean, squared)
        r2 += _term(values, j + 2, mean, squared)
        r3 += _term(values, j + 3, mean, squared)
        r4 += _term(values, j + 4, mean, squared)
        r5 += _term(values, j + 5, mean, squared)
        r6 += _term(values, j + 6, mean, squared)
        r7 += _term(values, j + 7, mean, squared)
        i += 8
    total = ((r0 + r1) + (r2 + r3)) + ((r4 + r5) + (r6 + r7))
    while i < count:
        total += _term(values, start + i, mean, squared)
        i += 1
    return total


@njit(cache=True, error_model="numpy")
def _left_size(count: int) -> int:
    half = count // 2
    return half - half % 8


@njit(cache=True, error_model="numpy")
def _pairwise_1(values: np.ndarray, start: int, count: int, mean: float, squared: bool) -> float:
    if count <= 128:
        return _pairwise_block(values, start, count, mean, squared)
    left = _left_size(count)
    return _pairwise_block(values, start, left, mean, squared) + _pairwise_block(
        values, start + left, count - left, mean, squared
    )


@njit(cache=True, error_model="numpy")
def _pairwise_2(values: np.ndarray, start: int, count: int, mean: float, squared: bool) -> float:
    if count <= 128:
        return _pairwise_block(values, start, count, mean, squared)
    left = _left_size(count)
    return _pairwise_1(values, start, left, mean, squared) + _pairwise_1(
        values, start + left, count - left, mean, squared
    )


@njit(cache=True, error_model="numpy")
def _pairwise_3(values: np.ndarray, start: int, count: int, mean: float, squared: bool) -> float:
    if count <= 128:
        return _pairwise_block(values, start, count, mean, squared)
    left = _left_size(count)
    return _pairwise_2(values, start, left, mean, squared) + _pairwise_2(
        values, start + left, count - left, mean, squared
    )


@njit(cache=True, error_model="numpy")
def _pairwise_4(values: np.ndarray, start: int, count: int, mean: float, squared: bool) -> float:
    if count <= 128:
        return _pairwise_block(values, start, count, mean, squared)
    left = _left_size(count)
    return _pairwise_3(values, start, left, mean, squared) + _pairwise_3(
        values, start + left, count - left, mean, squared
    )


@njit(cache=True, error_model="numpy")
def _pairwise_5(values: np.ndarray, start: int, count: int, mean: float, squared: bool) -> float:
    if count <= 128:
        return _pairwise_block(values, start, count, mean, squared)
    left = _left_size(count)
    return _pairwise_4(values, start, left, mean, squared) + _pairwise_4(
        values, start + left, count - left, mean, squared
    )


@njit(cache=True, error_model="numpy")
def _pairwise_6(values: np.ndarray, start: int, count: int, mean: float, squared: bool) -> float:
    if count <= 128:
        return _pairwise_block(values, start, count, mean, squared)
    left = _left_size(count)
    return _pairwise_5(values, start, left, mean, squared) + _pairwise_5(
        values, start + left, count - left, mean, squared
    )


@njit(cache=True, error_model="numpy")
def pairwise_sum_nb(values: np.ndarray, start: int, count: int) -> float:
    """Σ values[start : start + count] exactly as NumPy's ``np.sum`` of a contiguous 1-D
    float64 array. Raises ValueError above :data:`MAX_PAIRWISE_COUNT` values."""
    if count > MAX_PAIRWISE_COUNT:
        raise ValueError("pairwise_sum_nb: count above MAX_PAIRWISE_COUNT")
    return _pairwise_6(values, start, count, 0.0, False)


@njit(cache=True, error_model="numpy")
def _sample_variance(values: np.ndarray, count: int) -> tuple[float, float]:
    """(mean, variance with ddof 1) of ``values[:count]`` as NumPy's ``mean`` and ``var``:
    the pairwise sum / n, then the pairwise sum of squared deviations / (n - 1)."""
    if count > MAX_PAIRWISE_COUNT:
        raise ValueError("_sample_variance: count above MAX_PAIRWISE_COUNT")
    mean = _pairwise_6(values, 0, count, 0.0, False) / count
    return mean, _pairwise_6(values, 0, count, mean, True) / max(count - 1, 0)


@njit(cache=True, error_model="numpy")
def sample_std_nb(values: np.ndarray, count: int) -> float:
    """``np.std(values[:count], ddof=1)``, bit for bit (NaN for fewer than two values)."""
    return math.sqrt(_sample_variance(values, count)[1])


@njit(cache=True, error_model="numpy")
def _column_std(
    returns: np.ndarray, start: int, rows: int, column: int, column_major: bool
) -> float:
    """``np.std(returns[start : start + rows], axis=0, ddof=1)[column]``.

    NumPy reduces along the memory order: a column-major array (as polars hands
    ``size_positions`` its closes) or a single column has contiguous columns, summed pairwise;
    a row-major one is reduced row after row, a running sum per column.
    """
    if column_major or returns.shape[1] == 1:
        return sample_std_nb(returns[start : start + rows, column], rows)
    total = 0.0
    for i in range(rows):
        total += returns[start + i, column]
    mean = total / rows
    squares = 0.0
    for i in range(rows):
        d = returns[start + i, column] - mean
        squares += d * d
    return math.sqrt(squares / max(rows - 1, 0))


@njit(cache=True, error_model="numpy")
def _select(values: np.ndarray, count: int, k: int) -> float:
    """The k-th smallest of ``values[:count]`` (0-based), partially reordering ``values``."""
    lo, hi = 0, count - 1
    while hi > lo:
        mid = (lo + hi) // 2
        # Median of three as pivot, moved to ``hi``.
        if values[mid] < values[lo]:
            values[mid], values[lo] = values[lo], values[mid]
        if values[hi] < values[lo]:
            values[hi], values[lo] = values[lo], values[hi]
        if values[mid] < values[hi]:
            values[mid], values[hi] = values[hi], values[mid]
        pivot = values[hi]
        store = lo
        for i in range(lo, hi):
            if values[i] < pivot:
                values[i], values[store] = values[store], values[i]
                store += 1
        values[store], values[hi] = values[hi], values[store]
        if store == k:
            return values[k]
        if store < k:
            lo = store + 1
        else:
            hi = store - 1
    return values[k]


# Tail quantiles with at most this many values above them are found by insertion.
_TOP_SELECTION = 48


@njit(cache=True, error_model="numpy")
def quantile_nb(values: np.ndarray, count: int, q: float, scratch: np.ndarray) -> float:
    """``np.quantile(values[:count], q)`` (method "linear"), bit for bit, for finite values.

    NumPy's arithmetic: virtual index (n - 1)·q, the order statistics either side of it, and
    its two-sided lerp (from below when the fraction is under 0.5, from above otherwise).
    ``scratch``: at least ``count`` floats, overwritten.
    """
    virtual = (count - 1) * q
    if virtual >= count - 1:  # NumPy takes the last order statistic (its lerp has b == a)
        a = values[0]
        for i in range(1, count):
            a = values[i] if values[i] > a else a
        return a
    below = math.floor(virtual)
    gamma = virtual - below
    above = count - below  # values at sorted positions below, below + 1, ..., count - 1
    if above <= _TOP_SELECTION:
        # A tail quantile: keep the ``above`` largest values sorted in ``scratch`` (one
        # comparison for most values); the two order statistics are its first two.
        kept = 0
        for i in range(count):
            value = values[i]
            if kept < above:
                j = kept
                kept += 1
            elif value > scratch[0]:
                j = 0
                while j + 1 < above and scratch[j + 1] < value:
                    scratch[j] = scratch[j + 1]
                    j += 1
                scratch[j] = value
                continue
            else:
                continue
            while j > 0 and scratch[j - 1] > value:
                scratch[j] = scratch[j - 1]
                j -= 1
            scratch[j] = value
        a, b = scratch[0], scratch[1]
    else:
        for i in range(count):
            scratch[i] = values[i]
        a = _select(scratch, count, below)
        # Everything after position ``below`` is now >= a: the next order statistic is their min.
        b = scratch[below + 1]
        for i in range(below + 2, count):
            if scratch[i] < b:
                b = scratch[i]
    difference = b - a
    if gamma >= 0.5:
        return b - difference * (1 - gamma)
    return a + difference * gamma


# --- Tail measures (quant_assets.risk.measures) ---------------------------------------------


@njit(cache=True, error_model="numpy")
def portfolio_tail_risk_nb(
    book_returns: np.ndarray,
    count: int,
    confidence: float,
    historical_weight: float,
    normal_z: float,
    normal_density: float,
    scratch: np.ndarray,
) -> tuple[float, float, float]:
    """(var_hybrid, cvar_hybrid, volatility_daily) of :func:`portfolio_tail_risk`, from the
    book's simulated daily returns ``book_returns[:count]`` (window rows @ weights).

    ``normal_z``, ``normal_density``: the standard normal quantile at ``confidence`` and its
    density (as ``measures._normal_quantile``). ``scratch``: 2 × count floats, overwritten.
    """
    losses = scratch[:count]
    for i in range(count):
        losses[i] = -book_returns[i]
    var_historical = quantile_nb(losses, count, confidence, scratch[count:])
    tail = scratch[count:]
    n_tail = 0
    for i in range(count):
        if losses[i] >= var_historical:
            tail[n_tail] = losses[i]
            n_tail += 1
    cvar_historical = pairwise_sum_nb(tail, 0, n_tail) / n_tail if n_tail > 0 else var_historical
    sigma = sample_std_nb(book_returns, count) if count > 1 else 0.0
    var_parametric = normal_z * sigma
    cvar_parametric = sigma * normal_density / (1.0 - confidence)
    h = historical_weight
    var_hybrid = h * var_historical + (1 - h) * var_parametric
    cvar_hybrid = h * cvar_historical + (1 - h) * cvar_parametric
    return max(var_hybrid, 0.0), max(cvar_hybrid, 0.0), sigma


# cephes' log1p (scipy.special.log1p and xlog1py use it; libm's log1p rounds differently).
_LOG1P_P = np.array(
    [
        4.5270000862445199635215e-5,
        4.9854102823193375972212e-1,
        6.5787325942061044846969e0,
        2.9911919328553073277375e1,
        6.0949667980987787057556e1,
        5.7112963590585538103336e1,
        2.0039553499201281259648e1,
    ]
)
_LOG1P_Q = np.array(
    [
        1.5062909083469192043167e1,
        8.3047565967967209469434e1,
        2.2176239823732856465394e2,
        3.0909872225312059774938e2,
        2.1642788614495947685003e2,
        6.0118660497603843919306e1,
    ]
)


@njit(cache=True, error_model="numpy")
def _cephes_log1p(x: float) -> float:
    z = 1.0 + x
    if z < 0.70710678118654752440 or z > 1.41421356237309504880:
        return math.log(z)
    z = x * x
    numerator = _LOG1P_P[0]
    for i in range(1, 7):
        numerator = numerator * x + _LOG1P_P[i]
    denominator = x + _LOG1P_Q[0]
    for i in range(1, 6):
        denominator = denominator * x + _LOG1P_Q[i]
    z = -0.5 * z + x * (z * numerator / denominator)
    return x + z


@njit(cache=True, error_model="numpy")
def _gpd_penalized_nnlf(
    shape: float, scale: float, excess: np.ndarray, count: int, buffer: np.ndarray
) -> float:
    """scipy's ``genpareto._penalized_nnlf((shape, 0, scale), excess)``: the negative
    log-likelihood of the finite, in-support points (summed pairwise in order) plus
    100·log(max float) per point outside the support or with a non-finite log-density, plus
    n·log(scale); inf for a non-finite shape or a scale <= 0."""
    if not math.isfinite(shape) or scale <= 0:
        return math.inf
    upper = -1.0 / shape if shape < 0 else math.inf
    n_bad = 0
    n_kept = 0
    for i in range(count):
        x = excess[i] / scale
        if not (x >= 0.0 and x <= upper):
            n_bad += 1
            continue
        if shape != 0:
            a = shape + 1.0
            y = shape * x
            xlog1py = 0.0 if a == 0 and not math.isnan(y) else a * _cephes_log1p(y)
            log_density = -xlog1py / shape
        else:
            log_density = -x
        if math.isfinite(log_density):
            buffer[n_kept] = log_density
            n_kept += 1
        else:
            n_bad += 1
    total = pairwise_sum_nb(buffer, 0, n_kept)
    return -total + n_bad * _LOG_XMAX * 100 + count * math.log(scale)


@njit(cache=True, error_model="numpy")
def _sort_simplex(simplex: np.ndarray, values: np.ndarray) -> None:
    """Order the 3 vertices by value, ties kept in place (``np.argsort`` of 3 values is stable)."""
    for i in range(1, 3):
        j = i
        while j > 0 and values[j] < values[j - 1]:
            values[j], values[j - 1] = values[j - 1], values[j]
            for k in range(2):
                simplex[j, k], simplex[j - 1, k] = simplex[j - 1, k], simplex[j, k]
            j -= 1


@njit(cache=True, error_model="numpy")
def _fit_gpd_nelder_mead(
    excess: np.ndarray, count: int, shape0: float, scale0: float, buffer: np.ndarray
) -> tuple[float, float]:
    """(shape, scale) as ``genpareto.fit(excess, shape0, floc=0, scale=scale0)``: scipy's
    ``optimize.fmin`` (Nelder-Mead, rho 1, chi 2, psi 0.5, sigma 0.5; initial simplex +5 % per
    coordinate, 0.00025 for a zero; xtol = ftol = 1e-4; at most 400 iterations and 400
    evaluations, an evaluation past the limit aborting its iteration as fmin's exception does).
    """
    max_evaluations = 400
    max_iterations = 400
    simplex = np.empty((3, 2))
    values = np.full(3, math.inf)
    simplex[0, 0], simplex[0, 1] = shape0, scale0
    for k in range(2):
        simplex[k + 1, 0], simplex[k + 1, 1] = shape0, scale0
        simplex[k + 1, k] = (1 + 0.05) * simplex[0, k] if simplex[0, k] != 0 else 0.00025
    evaluations = 0
    for k in range(3):
        if evaluations >= max_evaluations:
            break
        evaluations += 1
        values[k] = _gpd_penalized_nnlf(simplex[k, 0], simplex[k, 1], excess, count, buffer)
    _sort_simplex(simplex, values)
    iterations = 1
    point = np.empty(2)
    while evaluations < max_evaluations and iterations < max_iterations:
        spread_x = 0.0
        spread_f = 0.0
        for j in range(1, 3):
            for k in range(2):
                d = abs(simplex[j, k] - simplex[0, k])
                spread_x = d if (d > spread_x or math.isnan(d)) else spread_x
            d = abs(values[0] - values[j])
            spread_f = d if (d > spread_f or math.isnan(d)) else spread_f
        if spread_x <= 1e-4 and spread_f <= 1e-4:
            break
        xbar0 = (simplex[0, 0] + simplex[1, 0]) / 2
        xbar1 = (simplex[0, 1] + simplex[1, 1]) / 2
        worst0, worst1 = simplex[2, 0], simplex[2, 1]
        aborted = False
        # Reflection.
        reflected0 = 2 * xbar0 - worst0
        reflected1 = 2 * xbar1 - worst1
        if evaluations >= max_evaluations:
            aborted = True
        else:
            evaluations += 1
            f_reflected = _gpd_penalized_nnlf(reflected0, reflected1, excess, count, buffer)
        if not aborted:
            if f_reflected < values[0]:
                expanded0 = 3 * xbar0 - 2 * worst0
                expanded1 = 3 * xbar1 - 2 * worst1
                if evaluations >= max_evaluations:
                    aborted = True
                else:
                    evaluations += 1
                    f_expanded = _gpd_penalized_nnlf(expanded0, expanded1, excess, count, buffer)
                    if f_expanded < f_reflected:
                        simplex[2, 0], simplex[2, 1], values[2] = expanded0, expanded1, f_expanded
                    else:
                        simplex[2, 0], simplex[2, 1], values[2] = (
                            reflected0,
                            reflected1,
                            f_reflected,
                        )
            elif f_reflected < values[1]:
                simplex[2, 0], simplex[2, 1], values[2] = reflected0, reflected1, f_reflected
            else:
                shrink = False
                if f_reflected < values[2]:
                    point[0] = 1.5 * xbar0 - 0.5 * worst0
                    point[1] = 1.5 * xbar1 - 0.5 * worst1
                    if evaluations >= max_evaluations:
                        aborted = True
                    else:
                        evaluations += 1
                        f_point = _gpd_penalized_nnlf(point[0], point[1], excess, count, buffer)
                        if f_point <= f_reflected:
                            simplex[2, 0], simplex[2, 1], values[2] = point[0], point[1], f_point
                        else:
                            shrink = True
                else:
                    point[0] = (1 - 0.5) * xbar0 + 0.5 * worst0
                    point[1] = (1 - 0.5) * xbar1 + 0.5 * worst1
                    if evaluations >= max_evaluations:
                        aborted = True
                    else:
                        evaluations += 1
                        f_point = _gpd_penalized_nnlf(point[0], point[1], excess, count, buffer)
                        if f_point < values[2]:
                            simplex[2, 0], simplex[2, 1], values[2] = point[0], point[1], f_point
                        else:
                            shrink = True
                if shrink:
                    for j in range(1, 3):
                        simplex[j, 0] = simplex[0, 0] + 0.5 * (simplex[j, 0] - simplex[0, 0])
                        simplex[j, 1] = simplex[0, 1] + 0.5 * (simplex[j, 1] - simplex[0, 1])
                        if evaluations >= max_evaluations:
                            aborted = True
                            break
                        evaluations += 1
                        values[j] = _gpd_penalized_nnlf(
                            simplex[j, 0], simplex[j, 1], excess, count, buffer
                        )
        if not aborted:
            iterations += 1
        _sort_simplex(simplex, values)
    return simplex[0, 0], simplex[0, 1]


@njit(cache=True, error_model="numpy")
def fit_gpd_tail_nb(
    losses: np.ndarray,
    count: int,
    confidence: float,
    threshold_quantile: float,
    min_exceedances: int,
    work: np.ndarray,
) -> tuple[float, float, float, float, float]:
    """:func:`quant_assets.risk.measures.fit_gpd_tail` of ``losses[:count]``: (shape, scale,
    threshold, tail_fraction, expected_shortfall) of the standardised losses, all NaN where
    ``fit_gpd_tail`` returns None. ``work``: (4, >= count) floats, overwritten."""
    nan = math.nan
    std = sample_std_nb(losses, count) if count > 1 else 0.0
    if not math.isfinite(std) or std <= 0:
        return nan, nan, nan, nan, nan
    standardised = work[0]
    for i in range(count):
        standardised[i] = losses[i] / std
    threshold = quantile_nb(standardised, count, threshold_quantile, work[1])
    excess = work[2]
    n_excess = 0
    for i in range(count):
        if standardised[i] > threshold:
            excess[n_excess] = standardised[i] - threshold
            n_excess += 1
    if n_excess < min_exceedances:
        return nan, nan, nan, nan, nan
    mean, variance = _sample_variance(excess, n_excess)
    ratio = mean * mean / variance if variance > 0 else 1.0
    shape0, scale0 = 0.5 * (1 - ratio), 0.5 * mean * (ratio + 1)
    shape, scale = _fit_gpd_nelder_mead(excess, n_excess, shape0, scale0, work[3])
    if not (math.isfinite(shape) and math.isfinite(scale)) or scale <= 0 or shape >= 1:
        return nan, nan, nan, nan, nan
    tail_fraction = n_excess / count
    if abs(shape) < 1e-9:  # exponential tail: the ξ -> 0 limit
        var = threshold + scale * math.log(tail_fraction / (1 - confidence))
    else:
        var = threshold + scale / shape * (((1 - confidence) / tail_fraction) ** (-shape) - 1)
    shortfall = (var + scale - shape * threshold) / (1 - shape)
    return shape, scale, threshold, tail_fraction, shortfall


def fit_gpd_tail_numba(
    losses: np.ndarray, confidence: float, threshold_quantile: float, min_exceedances: int
) -> GpdTail | None:
    """:func:`quant_assets.risk.measures.fit_gpd_tail` computed by :func:`fit_gpd_tail_nb`.

    ``losses``: (n,) finite floats. Raises ValueError for a non-1-D or non-finite sample."""
    sample = np.ascontiguousarray(losses, dtype=np.float64)
    if sample.ndim != 1:
        raise ValueError(f"losses must be 1-D, got shape {sample.shape}")
    if not np.isfinite(sample).all():
        raise ValueError("losses must be finite")
    work = np.empty((4, max(sample.size, 1)))
    shape, scale, threshold, tail_fraction, shortfall = fit_gpd_tail_nb(
        sample, sample.size, confidence, threshold_quantile, int(min_exceedances), work
    )
    if math.isnan(shape):
        return None
    return GpdTail(
        shape=shape,
        scale=scale,
        threshold=threshold,
        tail_fraction=tail_fraction,
        expected_shortfall=shortfall,
    )


# --- The BLAS calls NumPy makes ------------------------------------------------------------
#
# ``window @ weights`` and ``np.dot(weights, returns_today)`` run OpenBLAS kernels whose
# summation order (SIMD lanes, FMA, unrolling) depends on the call: a column-major window
# slice goes to ``dgemv("N", lda=n_dates_total)``, a row-major one to ``dgemv("T")``, a row of a
# column-major array to ``ddot`` with stride n_dates_total. numba's ``np.dot`` supports neither
# strides nor a leading dimension, so the kernels call the BLAS functions themselves, with
# NumPy's arguments, through their addresses (passed in at run time, so the compiled kernels
# stay cacheable). The addresses are those of the OpenBLAS NumPy links (its wheels bundle
# scipy-openblas64), else SciPy's ``cython_blas`` (then the last bits may differ where the two
# builds' kernels differ).

_VOID_POINTER = ir.IntType(8).as_pointer()


def _element_pointer(context, builder, array_type, array, offset):  # type: ignore[no-untyped-def]
    data = context.make_array(array_type)(context, builder, array).data
    return builder.bitcast(builder.gep(data, [offset]), _VOID_POINTER)


def _integer_slot(builder, value):  # type: ignore[no-untyped-def]
    # Fortran BLAS takes integers by reference. The slot is 64-bit: an ILP64 library reads it
    # whole, an LP64 one its low half, the same number on little-endian machines.
    return builder.bitcast(cgutils.alloca_once_value(builder, value), _VOID_POINTER)


def _dgemv_typing(  # type: ignore[no-untyped-def]
    typingctx, address, transpose, m, n, a, a_offset, lda, x, y
):
    """y = op(A) @ x by the Fortran ``dgemv`` at ``address``: A the column-major m × n matrix
    starting at element ``a_offset`` of ``a``'s buffer, leading dimension ``lda``; op = A^T
    when ``transpose``; alpha 1, beta 0, unit strides for x and y."""
    signature = types.void(
        types.intp, types.boolean, types.intp, types.intp, a, types.intp, types.intp, x, y
    )

    def codegen(context, builder, sig, args):  # type: ignore[no-untyped-def]
        address, transpose, m, n, a, a_offset, lda, x, y = args
        function_type = ir.FunctionType(ir.VoidType(), [_VOID_POINTER] * 11)
        function = builder.inttoptr(address, function_type.as_pointer())
        trans = builder.select(
            transpose, ir.Constant(ir.IntType(8), ord("T")), ir.Constant(ir.IntType(8), ord("N"))
        )
        one = ir.Constant(ir.IntType(64), 1)
        zero = ir.Constant(ir.IntType(64), 0)
        alpha = cgutils.alloca_once_value(builder, ir.Constant(ir.DoubleType(), 1.0))
        beta = cgutils.alloca_once_value(builder, ir.Constant(ir.DoubleType(), 0.0))
        builder.call(
            function,
            [
                builder.bitcast(cgutils.alloca_once_value(builder, trans), _VOID_POINTER),
                _integer_slot(builder, m),
                _integer_slot(builder, n),
                builder.bitcast(alpha, _VOID_POINTER),
                _element_pointer(context, builder, sig.args[4], a, a_offset),
                _integer_slot(builder, lda),
                _element_pointer(context, builder, sig.args[7], x, zero),
                _integer_slot(builder, one),
                builder.bitcast(beta, _VOID_POINTER),
                _element_pointer(context, builder, sig.args[8], y, zero),
                _integer_slot(builder, one),
            ],
        )
        return context.get_dummy_value()

    return signature, codegen


def _ddot_typing(typingctx, address, n, x, y, y_offset, y_stride):  # type: ignore[no-untyped-def]
    """Σ x[i] · y[y_offset + i·y_stride] by the Fortran ``ddot`` at ``address`` (x unit stride)."""
    signature = types.float64(types.intp, types.intp, x, y, types.intp, types.intp)

    def codegen(context, builder, sig, args):  # type: ignore[no-untyped-def]
        address, n, x, y, y_offset, y_stride = args
        function_type = ir.FunctionType(ir.DoubleType(), [_VOID_POINTER] * 5)
        function = builder.inttoptr(address, function_type.as_pointer())
        zero = ir.Constant(ir.IntType(64), 0)
        return builder.call(
            function,
            [
                _integer_slot(builder, n),
                _element_pointer(context, builder, sig.args[2], x, zero),
                _integer_slot(builder, ir.Constant(ir.IntType(64), 1)),
                _element_pointer(context, builder, sig.args[3], y, y_offset),
                _integer_slot(builder, y_stride),
            ],
        )

    return signature, codegen


# Typed as plain callables: mypy cannot see through numba's intrinsic decorator.
_blas_dgemv: Callable[..., None] = intrinsic(_dgemv_typing)
_blas_ddot: Callable[..., float] = intrinsic(_ddot_typing)


@njit(cache=True, error_model="numpy")
def row_dot_nb(
    weights: np.ndarray, returns: np.ndarray, row: int, column_major: bool, ddot_address: int
) -> float:
    """``np.dot(weights, returns[row])`` with NumPy's BLAS call (a strided row when
    ``column_major``)."""
    n_total, n_tickers = returns.shape
    if column_major:
        return _blas_ddot(ddot_address, n_tickers, weights, returns, row, n_total)
    return _blas_ddot(ddot_address, n_tickers, weights, returns, row * n_tickers, 1)


@njit(cache=True, error_model="numpy")
def window_book_returns_nb(
    returns: np.ndarray,
    start: int,
    rows: int,
    weights: np.ndarray,
    out: np.ndarray,
    column_major: bool,
    ddot_address: int,
    dgemv_address: int,
) -> None:
    """``out[:rows] = returns[start : start + rows] @ weights`` with NumPy's BLAS call.

    ``returns``: (n_dates_total, n_tickers), column-major when ``column_major`` (the window is
    then a strided slice, lda = n_dates_total), else row-major. NumPy's matmul gives a one-row
    window (a scalar product) to ``ddot`` instead of ``dgemv``."""
    n_total, n_tickers = returns.shape
    if rows == 1:
        out[0] = row_dot_nb(weights, returns, start, column_major, ddot_address)
    elif column_major:
        _blas_dgemv(dgemv_address, False, rows, n_tickers, returns, start, n_total, weights, out)
    else:
        _blas_dgemv(
            dgemv_address,
            True,
            n_tickers,
            rows,
            returns,
            start * n_tickers,
            n_tickers,
            weights,
            out,
        )


@cache
def _numpy_blas_addresses() -> tuple[int, int]:
    """(ddot, dgemv) addresses of the Fortran BLAS NumPy calls: the scipy-openblas64 bundled
    with its wheels, else SciPy's ``cython_blas``."""
    numpy_libs = Path(np.__file__).parent.parent / "numpy.libs"
    for library in sorted(numpy_libs.glob("libscipy_openblas64_*")):
        handle = ctypes.CDLL(str(library))
        try:
            ddot, dgemv = handle.scipy_ddot_64_, handle.scipy_dgemv_64_
        except AttributeError:
            continue
        return (
            int(ctypes.cast(ddot, ctypes.c_void_p).value or 0),
            int(ctypes.cast(dgemv, ctypes.c_void_p).value or 0),
        )
    return (
        get_cython_function_address("scipy.linalg.cython_blas", "ddot"),
        get_cython_function_address("scipy.linalg.cython_blas", "dgemv"),
    )


# --- The sizing engine ----------------------------------------------------------------------


@njit(cache=True, error_model="numpy")
def advance_breaker_nb(
    state: int,
    sessions: int,
    stage: int,
    drawdown: float,
    vol: float,
    var: float,
    params: np.ndarray,
    n_stages: int,
) -> tuple[int, int, int, float]:
    """One session of :func:`quant_assets.risk.positions.advance_breaker` on state codes:
    returns (state, sessions, stage, exposure scale). ``params``: the trial's row."""
    target_volatility = params[_TARGET_VOLATILITY]
    kill_switch = params[_KILL_SWITCH]
    if state == BREAKER_KILLED or (not math.isnan(kill_switch) and drawdown >= kill_switch):
        return BREAKER_KILLED, sessions + 1, 0, 0.0
    freeze = (
        drawdown > params[_MAX_DRAWDOWN] and vol > params[_FREEZE_VOL_MULTIPLE] * target_volatility
    )
    if freeze and state != BREAKER_FROZEN:
        return BREAKER_FROZEN, 1, 0, 0.0
    calm = vol < params[_RECOVERY_VOL_MULTIPLE] * target_volatility
    if state == BREAKER_FROZEN:
        if sessions >= params[_COOLDOWN_SESSIONS] and calm:
            return BREAKER_RECOVERY, 1, 0, params[_RECOVERY_STAGE_1]
        return BREAKER_FROZEN, sessions + 1, 0, 0.0
    if state == BREAKER_RECOVERY:
        if sessions >= params[_SESSIONS_PER_STAGE] and calm:
            stage, sessions = stage + 1, 0
        if stage >= n_stages - 1:
            return BREAKER_NORMAL, 0, 0, 1.0
        return BREAKER_RECOVERY, sessions + 1, stage, params[_RECOVERY_STAGE_1 + stage]
    if var > params[_DEFENSIVE_VAR_MULTIPLE] * params[_VAR_LIMIT] or (
        vol > params[_DEFENSIVE_VOL_MULTIPLE] * target_volatility
    ):
        sessions = sessions + 1 if state == BREAKER_DEFENSIVE else 1
        return BREAKER_DEFENSIVE, sessions, 0, params[_DEFENSIVE_SCALE]
    return BREAKER_NORMAL, 0, 0, 1.0


@njit(cache=True, error_model="numpy")
def size_trial_nb(
    filled_returns: np.ndarray,
    sigma_daily: np.ndarray,
    decision_index: np.ndarray,
    regime_code: np.ndarray,
    alpha_scores: np.ndarray,
    params: np.ndarray,
    normal_z: float,
    normal_density: float,
    column_major: bool,
    ddot_address: int,
    dgemv_address: int,
    target_weight: np.ndarray,
    paper_return: np.ndarray,
    risk_scale: np.ndarray,
    turnover: np.ndarray,
    breaker_state: np.ndarray,
) -> None:
    """One trial of ``size_positions`` (kelly allocator, fresh book) into the output buffers.

    ``filled_returns`` (n_dates_total, n_tickers) with NaN as 0; ``sigma_daily``
    (n_dates, n_tickers): :func:`trailing_sigma_nb` at the trial's volatility window;
    ``decision_index``, ``regime_code`` (n_dates,);
    ``alpha_scores`` (n_dates, n_tickers); ``params``: the trial's row of
    :data:`TRIAL_PARAMETERS`; ``normal_z`` / ``normal_density`` at its VaR confidence.
    Writes ``target_weight`` (n_dates, n_tickers) and ``paper_return``, ``risk_scale``,
    ``turnover``, ``breaker_state`` (n_dates,).
    """
    n_tickers = filled_returns.shape[1]
    n_dates = decision_index.shape[0]
    kelly_fraction = params[_KELLY_FRACTION]
    information_coefficient = params[_INFORMATION_COEFFICIENT]
    rf_daily = params[_RISK_FREE_RATE] / SESSIONS_PER_YEAR
    target_volatility = params[_TARGET_VOLATILITY]
    max_weight = params[_MAX_WEIGHT]
    max_gross = params[_MAX_GROSS_LEVERAGE]
    max_turnover = params[_MAX_TURNOVER]
    long_only = params[_LONG_ONLY] != 0
    var_window = int(params[_VAR_WINDOW])
    confidence = params[_VAR_CONFIDENCE]
    historical_weight = params[_VAR_HISTORICAL_WEIGHT]
    var_limit = params[_VAR_LIMIT]
    cvar_limit = params[_CVAR_LIMIT]
    evt_enabled = params[_EVT_ENABLED] != 0
    threshold_quantile = params[_EVT_THRESHOLD_QUANTILE]
    min_exceedances = int(params[_EVT_MIN_EXCEEDANCES])
    refit_every = int(params[_EVT_REFIT_EVERY])
    guard_start = params[_GUARD_START]
    max_drawdown = params[_MAX_DRAWDOWN]
    guard_floor = params[_GUARD_FLOOR]
    realized_vol_window = int(params[_REALIZED_VOL_WINDOW])
    n_stages = 0
    while n_stages < MAX_RECOVERY_STAGES and not math.isnan(params[_RECOVERY_STAGE_1 + n_stages]):
        n_stages += 1

    # Work buffers, reused by every date.
    kelly = np.empty(n_tickers)
    sized = np.empty(n_tickers)
    proposed = np.empty(n_tickers)
    target = np.empty(n_tickers)
    previous = np.zeros(n_tickers)
    magnitudes = np.empty(n_tickers)
    book_returns = np.empty(var_window)
    scratch = np.empty(2 * var_window)
    evt_work = np.empty((4, var_window))
    recent = np.empty(realized_vol_window)
    n_recent = 0

    paper_equity = 1.0
    paper_peak = 1.0
    state, state_sessions, recovery_stage = BREAKER_NORMAL, 0, 0
    previous_risk_scale = 1.0
    session_number = 0
    evt_es_standardized = math.nan

    for row in range(n_dates):
        t = decision_index[row]
        # 1. Kelly per name, over the names with a full volatility window and an alpha.
        for i in range(n_tickers):
            kelly[i] = 0.0
            score = alpha_scores[row, i]
            sigma = sigma_daily[row, i]
            if math.isnan(score) or not sigma > 0:  # NaN sigma: no full window
                continue
            mu = information_coefficient * score * sigma
            weight = kelly_fraction * (mu - rf_daily) / (sigma * sigma)
            if not math.isfinite(weight):
                weight = 0.0
            if long_only and not weight >= 0.0:
                weight = 0.0
            kelly[i] = weight

        # 2-3. Volatility target (a ceiling), name cap, gross cap.
        var_lo = max(0, t - var_window + 1)
        var_rows = t + 1 - var_lo
        book = book_returns[:var_rows]
        ex_ante = 0.0
        if var_rows >= 2:
            window_book_returns_nb(
                filled_returns,
                var_lo,
                var_rows,
                kelly,
                book,
                column_major,
                ddot_address,
                dgemv_address,
            )
            ex_ante = sample_std_nb(book, var_rows) * _ANNUALISE
        k = target_volatility / ex_ante if ex_ante > target_volatility else 1.0
        for i in range(n_tickers):
            weight = kelly[i] * k if ex_ante > target_volatility else kelly[i]
            weight = min(max(weight, -max_weight), max_weight)
            sized[i] = weight
            magnitudes[i] = abs(weight)
        gross = pairwise_sum_nb(magnitudes, 0, n_tickers)
        if gross > max_gross:
            k = max_gross / gross
            for i in range(n_tickers):
                sized[i] *= k

        # 4. Overlays: regime, VaR / CVaR (hybrid and EVT).
        regime_multiplier = params[_REGIME_MULTIPLIER_1 + regime_code[row]]
        for i in range(n_tickers):
            proposed[i] = sized[i] * regime_multiplier
        window_book_returns_nb(
            filled_returns,
            var_lo,
            var_rows,
            proposed,
            book,
            column_major,
            ddot_address,
            dgemv_address,
        )
        var_hybrid, cvar_hybrid, volatility_daily = portfolio_tail_risk_nb(
            book, var_rows, confidence, historical_weight, normal_z, normal_density, scratch
        )
        evt_es = math.nan
        if evt_enabled:
            if session_number % refit_every == 0:
                window_book_returns_nb(
                    filled_returns,
                    var_lo,
                    var_rows,
                    sized,
                    book,
                    column_major,
                    ddot_address,
                    dgemv_address,
                )
                for i in range(var_rows):
                    book[i] = -book[i]
                fitted = fit_gpd_tail_nb(
                    book, var_rows, confidence, threshold_quantile, min_exceedances, evt_work
                )
                evt_es_standardized = fitted[4]
            if math.isfinite(evt_es_standardized):
                evt_es = evt_es_standardized * volatility_daily
        tail_cvar = max(cvar_hybrid, evt_es) if math.isfinite(evt_es) else cvar_hybrid
        var_scale = 1.0
        if var_hybrid > var_limit:
            var_scale = var_limit / var_hybrid
        if tail_cvar * var_scale > cvar_limit:
            var_scale *= cvar_limit / (tail_cvar * var_scale)

        # The paper book: yesterday's targets × today's returns.
        today_return = row_dot_nb(previous, filled_returns, t, column_major, ddot_address)
        paper_equity *= 1.0 + today_return
        paper_peak = max(paper_peak, paper_equity)
        drawdown = 1.0 - paper_equity / paper_peak
        if n_recent < realized_vol_window:
            recent[n_recent] = today_return
            n_recent += 1
        else:
            for i in range(realized_vol_window - 1):
                recent[i] = recent[i + 1]
            recent[realized_vol_window - 1] = today_return
        paper_vol = (
            sample_std_nb(recent, n_recent) * _ANNUALISE if n_recent >= realized_vol_window else 0.0
        )

        # Drawdown guard and circuit breakers.
        if drawdown <= guard_start:
            drawdown_scale = 1.0
        elif drawdown >= max_drawdown:
            drawdown_scale = guard_floor
        else:
            progress = (drawdown - guard_start) / (max_drawdown - guard_start)
            drawdown_scale = 1.0 - progress * (1.0 - guard_floor)
        state, state_sessions, recovery_stage, breaker_scale = advance_breaker_nb(
            state, state_sessions, recovery_stage, drawdown, paper_vol, var_hybrid, params, n_stages
        )
        scale = regime_multiplier * var_scale * drawdown_scale * breaker_scale

        # 5. Turnover limit, waived when the overlays cut risk.
        for i in range(n_tickers):
            target[i] = sized[i] * scale
            magnitudes[i] = abs(target[i] - previous[i])
        traded = pairwise_sum_nb(magnitudes, 0, n_tickers)
        if (
            not math.isnan(max_turnover)
            and traded > max_turnover + _EPS
            and not scale < previous_risk_scale - _EPS
        ):
            step = max_turnover / traded
            for i in range(n_tickers):
                target[i] = previous[i] + step * (target[i] - previous[i])
                magnitudes[i] = abs(target[i] - previous[i])
            traded = pairwise_sum_nb(magnitudes, 0, n_tickers)
        for i in range(n_tickers):
            previous[i] = target[i]
            target_weight[row, i] = target[i]
        previous_risk_scale = scale
        session_number += 1
        paper_return[row] = today_return
        risk_scale[row] = scale
        turnover[row] = traded
        breaker_state[row] = state


@njit(cache=True, parallel=True, error_model="numpy")
def _size_trials_parallel(
    filled_returns: np.ndarray,
    sigma_table: np.ndarray,
    sigma_index: np.ndarray,
    decision_index: np.ndarray,
    regime_code: np.ndarray,
    alpha_scores: np.ndarray,
    alpha_index: np.ndarray,
    params: np.ndarray,
    normal_z: np.ndarray,
    normal_density: np.ndarray,
    column_major: bool,
    ddot_address: int,
    dgemv_address: int,
    target_weight: np.ndarray,
    paper_return: np.ndarray,
    risk_scale: np.ndarray,
    turnover: np.ndarray,
    breaker_state: np.ndarray,
) -> None:
    for trial in prange(params.shape[0]):
        size_trial_nb(
            filled_returns,
            sigma_table[sigma_index[trial]],
            decision_index,
            regime_code,
            alpha_scores[alpha_index[trial]],
            params[trial],
            normal_z[trial],
            normal_density[trial],
            column_major,
            ddot_address,
            dgemv_address,
            target_weight[trial],
            paper_return[trial],
            risk_scale[trial],
            turnover[trial],
            breaker_state[trial],
        )


@njit(cache=True, error_model="numpy")
def _size_trials_serial(
    filled_returns: np.ndarray,
    sigma_table: np.ndarray,
    sigma_index: np.ndarray,
    decision_index: np.ndarray,
    regime_code: np.ndarray,
    alpha_scores: np.ndarray,
    alpha_index: np.ndarray,
    params: np.ndarray,
    normal_z: np.ndarray,
    normal_density: np.ndarray,
    column_major: bool,
    ddot_address: int,
    dgemv_address: int,
    target_weight: np.ndarray,
    paper_return: np.ndarray,
    risk_scale: np.ndarray,
    turnover: np.ndarray,
    breaker_state: np.ndarray,
) -> None:
    for trial in range(params.shape[0]):
        size_trial_nb(
            filled_returns,
            sigma_table[sigma_index[trial]],
            decision_index,
            regime_code,
            alpha_scores[alpha_index[trial]],
            params[trial],
            normal_z[trial],
            normal_density[trial],
            column_major,
            ddot_address,
            dgemv_address,
            target_weight[trial],
            paper_return[trial],
            risk_scale[trial],
            turnover[trial],
            breaker_state[trial],
        )


@njit(cache=True, error_model="numpy")
def trailing_sigma_nb(
    returns: np.ndarray,
    filled_returns: np.ndarray,
    decision_index: np.ndarray,
    window: int,
    column_major: bool,
) -> np.ndarray:
    """(n_dates, n_tickers): ``np.std(returns[t - window + 1 : t + 1], axis=0, ddof=1)`` at each
    decision row t, NaN where the window is not full (fewer rows, or a missing return).

    ``returns`` with NaN, ``filled_returns`` the same with NaN as 0, in the same memory order
    (``column_major``), which decides NumPy's summation order (see :func:`_column_std`)."""
    n_tickers = returns.shape[1]
    sigma = np.full((decision_index.shape[0], n_tickers), np.nan)
    finite_run = np.zeros(n_tickers, dtype=np.int64)
    t_seen = -1
    for row in range(decision_index.shape[0]):
        t = decision_index[row]
        while t_seen < t:  # consecutive finite returns ending at each row up to t
            t_seen += 1
            for i in range(n_tickers):
                finite_run[i] = finite_run[i] + 1 if math.isfinite(returns[t_seen, i]) else 0
        for i in range(n_tickers):
            if finite_run[i] >= window:
                sigma[row, i] = _column_std(filled_returns, t - window + 1, window, i, column_major)
    return sigma


# --- Python-facing layer --------------------------------------------------------------------


@dataclass(frozen=True)
class SizedTrials:
    """Per-trial outputs of :func:`size_trials` (views into reusable buffers).

    ``target_weight`` (n_trials, n_dates, n_tickers), fractions of equity; ``paper_return``,
    ``risk_scale``, ``turnover`` (n_trials, n_dates); ``breaker_state`` (n_trials, n_dates)
    int8 codes, ``BREAKER_STATES[code]`` the name.
    """

    target_weight: np.ndarray
    paper_return: np.ndarray
    risk_scale: np.ndarray
    turnover: np.ndarray
    breaker_state: np.ndarray

    @classmethod
    def allocate(cls, n_trials: int, n_dates: int, n_tickers: int) -> SizedTrials:
        """Buffers for up to ``n_trials`` trials, to pass as ``out`` batch after batch."""
        return cls(
            target_weight=np.empty((n_trials, n_dates, n_tickers)),
            paper_return=np.empty((n_trials, n_dates)),
            risk_scale=np.empty((n_trials, n_dates)),
            turnover=np.empty((n_trials, n_dates)),
            breaker_state=np.empty((n_trials, n_dates), dtype=np.int8),
        )

    def head(self, n_trials: int) -> SizedTrials:
        """The first ``n_trials`` trials (views)."""
        return SizedTrials(
            self.target_weight[:n_trials],
            self.paper_return[:n_trials],
            self.risk_scale[:n_trials],
            self.turnover[:n_trials],
            self.breaker_state[:n_trials],
        )


@dataclass(frozen=True)
class SizingInputs:
    """The arrays ``size_positions`` builds from its frames, for :func:`size_trials`.

    ``returns`` (n_dates_total, n_tickers), NaN where missing; ``decision_index`` and
    ``regime_code`` (n_dates,); ``alpha_scores`` (n_dates, n_tickers); ``dates`` the decision
    dates; ``tickers`` the columns."""

    returns: np.ndarray
    decision_index: np.ndarray
    regime_code: np.ndarray
    alpha_scores: np.ndarray
    dates: list[date]
    tickers: list[str]


def sizing_inputs(
    alpha: pl.DataFrame,
    closes: pl.DataFrame,
    regimes: pl.DataFrame,
    *,
    start: date,
    tickers: Sequence[str],
) -> SizingInputs:
    """The decision dates (alpha dates >= ``start``), the close-to-close returns of every
    close date up to the last of them, and the alpha and regime arrays, built as
    ``size_positions`` builds them from the same frames (same columns as its arguments).

    Raises ValueError for a decision date without a regime or an unknown regime label."""
    alpha = alpha.filter(pl.col("date") >= start)
    dates = sorted(alpha["date"].unique().to_list())
    if not dates:
        raise ValueError(f"alpha: no alpha scores on or after {start}")
    regime_of = dict(
        regimes.filter(pl.col("date") >= start).select("date", "regime_label").iter_rows()
    )
    codes = np.empty(len(dates), dtype=np.int64)
    for row, day in enumerate(dates):
        if day not in regime_of:
            raise ValueError(f"regimes: no regime row for {day} (alpha scores have one)")
        if regime_of[day] not in REGIME_NAMES:
            raise ValueError(f"regimes: unknown regime_label {regime_of[day]!r} on {day}")
        codes[row] = REGIME_NAMES.index(regime_of[day])
    history = closes.filter(pl.col("date") <= dates[-1])
    all_dates = sorted(set(history["date"].unique().to_list()) | set(dates))
    close = _wide(history, "close", all_dates, tickers)
    with np.errstate(invalid="ignore", divide="ignore"):
        returns = np.full_like(close, np.nan)
        returns[1:] = close[1:] / close[:-1] - 1.0
    index_of = {d: i for i, d in enumerate(all_dates)}
    return SizingInputs(
        returns=returns,
        decision_index=np.array([index_of[d] for d in dates], dtype=np.int64),
        regime_code=codes,
        alpha_scores=_wide(alpha, "alpha_score", dates, tickers),
        dates=dates,
        tickers=list(tickers),
    )


def trial_parameters(strategy: StrategySettings) -> np.ndarray:
    """The parameter row (float64, the columns of :data:`TRIAL_PARAMETERS`) of a strategy's
    sizing and risk settings. Vary a trial by editing columns of a copy.

    Raises ValueError naming the key for an allocator other than "kelly" or more than
    :data:`MAX_RECOVERY_STAGES` recovery stages."""
    sizing, risk = strategy.sizing, strategy.risk
    if sizing.allocator != "kelly":
        raise ValueError(
            f"sizing.allocator: the numba engine sizes 'kelly' only, got {sizing.allocator!r}"
        )
    cb, dd = risk.circuit_breakers, risk.drawdown
    if len(cb.recovery_stages) > MAX_RECOVERY_STAGES:
        raise ValueError(
            f"risk.circuit_breakers.recovery_stages: at most {MAX_RECOVERY_STAGES} stages, "
            f"got {len(cb.recovery_stages)}"
        )
    stages = [*cb.recovery_stages, *[math.nan] * (MAX_RECOVERY_STAGES - len(cb.recovery_stages))]
    values = {
        "kelly_fraction": sizing.kelly_fraction,
        "information_coefficient": sizing.information_coefficient,
        "risk_free_rate": sizing.risk_free_rate,
        "volatility_window": sizing.volatility_window,
        "target_volatility": sizing.target_volatility,
        "max_weight": sizing.max_weight,
        "max_gross_leverage": sizing.max_gross_leverage,
        "max_turnover": math.nan if sizing.max_turnover is None else sizing.max_turnover,
        "long_only": float(sizing.long_only),
        "var_window_sessions": risk.var.window_sessions,
        "var_confidence": risk.var.confidence,
        "var_historical_weight": risk.var.historical_weight,
        "var_limit": risk.var.limit,
        "var_cvar_limit": risk.var.cvar_limit,
        "evt_enabled": float(risk.evt.enabled),
        "evt_threshold_quantile": risk.evt.threshold_quantile,
        "evt_min_exceedances": risk.evt.min_exceedances,
        "evt_refit_every_sessions": risk.evt.refit_every_sessions,
        "drawdown_guard_start": dd.guard_start,
        "drawdown_max_drawdown": dd.max_drawdown,
        "drawdown_guard_floor": dd.guard_floor,
        "drawdown_kill_switch": math.nan if dd.kill_switch is None else dd.kill_switch,
        "breaker_realized_vol_window": cb.realized_vol_window,
        "breaker_defensive_var_multiple": cb.defensive_var_multiple,
        "breaker_defensive_vol_multiple": cb.defensive_vol_multiple,
        "breaker_defensive_scale": cb.defensive_scale,
        "breaker_freeze_vol_multiple": cb.freeze_vol_multiple,
        "breaker_cooldown_sessions": cb.cooldown_sessions,
        "breaker_sessions_per_stage": cb.sessions_per_stage,
        "breaker_recovery_vol_multiple": cb.recovery_vol_multiple,
        **{f"breaker_recovery_stage_{i + 1}": s for i, s in enumerate(stages)},
        **{f"regime_multiplier_{r}": risk.regime_multipliers[r] for r in REGIME_NAMES},
    }
    return np.array([float(values[name]) for name in TRIAL_PARAMETERS])


def _validate_parameters(params: np.ndarray) -> None:
    """Refuse rows the kernel cannot run, naming the trial (row) and the column."""
    column = {name: params[:, i] for i, name in enumerate(TRIAL_PARAMETERS)}
    for name, values in column.items():
        if name in _OPTIONAL_PARAMETERS or name.startswith("breaker_recovery_stage_"):
            continue
        bad = np.flatnonzero(~np.isfinite(values))
        if bad.size:
            raise ValueError(f"params: trial {bad[0]}: {name} must be finite")
    for name in _INTEGER_PARAMETERS:
        values = column[name]
        bad = np.flatnonzero((values != np.round(values)) | (values < 1))
        if bad.size:
            raise ValueError(f"params: trial {bad[0]}: {name} must be a positive integer")
    for name in ("volatility_window", "breaker_realized_vol_window", "var_window_sessions"):
        bad = np.flatnonzero(column[name] < 2)
        if bad.size:
            raise ValueError(f"params: trial {bad[0]}: {name} must be at least 2")
    for name in ("var_confidence", "evt_threshold_quantile"):
        bad = np.flatnonzero((column[name] <= 0) | (column[name] >= 1))
        if bad.size:
            raise ValueError(f"params: trial {bad[0]}: {name} must be in (0, 1)")
    bad = np.flatnonzero(column["drawdown_guard_start"] >= column["drawdown_max_drawdown"])
    if bad.size:
        raise ValueError(f"params: trial {bad[0]}: drawdown_guard_start must be below max")
    stages = params[:, _RECOVERY_STAGE_1 : _RECOVERY_STAGE_1 + MAX_RECOVERY_STAGES]
    present = ~np.isnan(stages)
    padded = present[:, 1:] & ~present[:, :-1]  # a stage after a missing one
    bad = np.flatnonzero(~present[:, 0] | padded.any(axis=1))
    if bad.size:
        raise ValueError(
            f"params: trial {bad[0]}: breaker_recovery_stage_1.. must be filled from the first"
        )


def size_trials(
    returns: np.ndarray,
    decision_index: np.ndarray,
    regime_code: np.ndarray,
    alpha_scores: np.ndarray,
    params: np.ndarray,
    *,
    alpha_index: np.ndarray | None = None,
    out: SizedTrials | None = None,
    parallel: bool = True,
) -> SizedTrials:
    """Size every trial (a row of ``params``) over the decision dates, as ``size_positions``
    does for ``allocator: kelly`` from a fresh book.

    ``returns`` (n_dates_total, n_tickers): daily returns, NaN where missing (as
    :func:`sizing_inputs` builds them). ``decision_index`` (n_dates,): increasing rows of
    ``returns``. ``regime_code`` (n_dates,): indices into ``REGIME_NAMES``. ``alpha_scores``
    (n_alphas, n_dates, n_tickers) or (n_dates, n_tickers), NaN = no alpha. ``params``
    (n_trials, len(TRIAL_PARAMETERS)) or one row. ``alpha_index`` (n_trials,): the alpha of
    each trial (default: trial i uses alpha i, or the only one). ``out``: buffers from
    :meth:`SizedTrials.allocate` with room for n_trials (reused, so a study runs in batches of
    bounded memory); allocated when None. ``parallel``: trials across cores (``prange``).

    Returns the outputs of the n_trials trials (views into ``out``). Raises ValueError naming
    the argument for wrong shapes, dtypes, indices, or parameters the kernel cannot run.
    """
    returns = np.asarray(returns, dtype=np.float64)
    if returns.ndim == 2 and not (returns.flags.c_contiguous or returns.flags.f_contiguous):
        returns = np.asfortranarray(returns)
    if returns.ndim != 2:
        raise ValueError(f"returns must be (n_dates_total, n_tickers), got shape {returns.shape}")
    n_total, n_tickers = returns.shape
    decision_index = np.ascontiguousarray(decision_index, dtype=np.int64)
    n_dates = decision_index.shape[0]
    if decision_index.ndim != 1 or n_dates == 0:
        raise ValueError("decision_index must be a non-empty 1-D array")
    if decision_index.min() < 0 or decision_index.max() >= n_total:
        raise ValueError(f"decision_index must index rows of returns (0..{n_total - 1})")
    if (np.diff(decision_index) <= 0).any():
        raise ValueError("decision_index must be strictly increasing")
    regime_code = np.ascontiguousarray(regime_code, dtype=np.int64)
    if regime_code.shape != (n_dates,):
        raise ValueError(f"regime_code must have shape ({n_dates},), got {regime_code.shape}")
    if regime_code.min() < 0 or regime_code.max() >= len(REGIME_NAMES):
        raise ValueError(f"regime_code must be in 0..{len(REGIME_NAMES) - 1} (REGIME_NAMES)")
    alpha_scores = np.asarray(alpha_scores, dtype=np.float64)
    if alpha_scores.ndim == 2:
        alpha_scores = alpha_scores[None]
    alpha_scores = np.ascontiguousarray(alpha_scores)
    if alpha_scores.ndim != 3 or alpha_scores.shape[1:] != (n_dates, n_tickers):
        raise ValueError(
            f"alpha_scores must be (n_alphas, {n_dates}, {n_tickers}), got {alpha_scores.shape}"
        )
    params = np.asarray(params, dtype=np.float64)
    if params.ndim == 1:
        params = params[None]
    params = np.ascontiguousarray(params)
    if params.ndim != 2 or params.shape[1] != len(TRIAL_PARAMETERS):
        raise ValueError(
            f"params must be (n_trials, {len(TRIAL_PARAMETERS)}) (TRIAL_PARAMETERS), "
            f"got {params.shape}"
        )
    _validate_parameters(params)
    n_trials = params.shape[0]
    if alpha_index is None:
        if alpha_scores.shape[0] not in (1, n_trials):
            raise ValueError(
                f"alpha_index is needed: {alpha_scores.shape[0]} alphas for {n_trials} trials"
            )
        alpha_index = (
            np.zeros(n_trials, dtype=np.int64)
            if alpha_scores.shape[0] == 1
            else np.arange(n_trials, dtype=np.int64)
        )
    alpha_index = np.ascontiguousarray(alpha_index, dtype=np.int64)
    if alpha_index.shape != (n_trials,):
        raise ValueError(f"alpha_index must have shape ({n_trials},), got {alpha_index.shape}")
    if alpha_index.min() < 0 or alpha_index.max() >= alpha_scores.shape[0]:
        raise ValueError(f"alpha_index must be in 0..{alpha_scores.shape[0] - 1}")
    if out is None:
        out = SizedTrials.allocate(n_trials, n_dates, n_tickers)
    if (
        out.target_weight.shape[0] < n_trials
        or out.target_weight.shape[1:] != (n_dates, n_tickers)
        or out.paper_return.shape[1:] != (n_dates,)
    ):
        raise ValueError(
            f"out: buffers of {out.target_weight.shape} cannot hold "
            f"({n_trials}, {n_dates}, {n_tickers})"
        )
    result = out.head(n_trials)
    normal = [_normal_quantile(float(c)) for c in params[:, _VAR_CONFIDENCE]]
    normal_z = np.array([z for z, _ in normal])
    normal_density = np.array([d for _, d in normal])
    column_major = not returns.flags.c_contiguous
    filled_returns = np.where(np.isfinite(returns), returns, 0.0)  # keeps the memory order
    ddot_address, dgemv_address = _numpy_blas_addresses()
    windows, sigma_index = np.unique(params[:, _VOLATILITY_WINDOW], return_inverse=True)
    sigma_table = np.stack(
        [
            trailing_sigma_nb(returns, filled_returns, decision_index, int(w), column_major)
            for w in windows
        ]
    )
    kernel = _size_trials_parallel if parallel else _size_trials_serial
    kernel(
        filled_returns,
        sigma_table,
        sigma_index.astype(np.int64),
        decision_index,
        regime_code,
        alpha_scores,
        alpha_index,
        params,
        normal_z,
        normal_density,
        column_major,
        ddot_address,
        dgemv_address,
        result.target_weight,
        result.paper_return,
        result.risk_scale,
        result.turnover,
        result.breaker_state,
    )
    return result
