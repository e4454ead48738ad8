"""Tail risk of a proposed portfolio: hybrid VaR/CVaR and a generalised Pareto (EVT) tail.

All measures are 1-day, positive numbers as fractions of equity (a 2% VaR is ``0.02``), from
the trailing window of the tickers' daily returns applied to *today's* weights (historical
simulation of the current book), so they are positively homogeneous: scaling the weights by
k scales every measure by k, and an overlay can scale the book exactly onto a limit.

- Historical: the empirical quantile of the simulated losses and the mean beyond it.
- Parametric: a normal with the window's covariance (mean taken as 0, a 1-day convention).
- Hybrid (seed 003 §7.3): ``h · historical + (1 - h) · parametric``.
- EVT: ``scipy.stats.genpareto`` fitted by maximum likelihood to the losses above a high
  quantile (peaks over threshold), on losses standardised by their standard deviation so the
  fit can be reused between refits and rescaled to the day's book. Expected shortfall from
  McNeil & Frey (2000): VaR = u + β/ξ·((n/N_u·(1-α))^(-ξ) - 1), ES = (VaR + β - ξu)/(1 - ξ).
"""

from __future__ import annotations

from dataclasses import dataclass
from functools import lru_cache

import numpy as np


@dataclass(frozen=True)
class TailRisk:
    """1-day risk of one portfolio (fractions of equity)."""

    var_historical: float
    cvar_historical: float
    var_parametric: float
    cvar_parametric: float
    var_hybrid: float
    cvar_hybrid: float
    volatility_daily: float


@dataclass(frozen=True)
class GpdTail:
    """A generalised Pareto fit of standardised losses: shape ξ, scale β, threshold u, and the
    share of losses beyond u. ``expected_shortfall`` is in units of the loss std."""

    shape: float
    scale: float
    threshold: float
    tail_fraction: float
    expected_shortfall: float


def portfolio_tail_risk(
    window_returns: np.ndarray, weights: np.ndarray, confidence: float, historical_weight: float
) -> TailRisk:
    """VaR and CVaR of ``weights`` (n_tickers,) over ``window_returns`` (n_obs, n_tickers).

    Missing returns must be filled by the caller (NaN raises ValueError).
    """
    if window_returns.ndim != 2 or window_returns.shape[1] != weights.shape[0]:
        raise ValueError(
            f"window_returns {window_returns.shape} and weights {weights.shape} do not align"
        )
    if not np.isfinite(window_returns).all() or not np.isfinite(weights).all():
        raise ValueError("window_returns and weights must be finite")
    losses = -(window_returns @ weights)
    var_h = float(np.quantile(losses, confidence))
    tail = losses[losses >= var_h]
    cvar_h = float(tail.mean()) if tail.size else var_h
    # The variance of the simulated portfolio returns is wᵀΣw with Σ the window's covariance.
    sigma = float(np.std(window_returns @ weights, ddof=1)) if len(losses) > 1 else 0.0
    z, density = _normal_quantile(confidence)
    var_p = z * sigma
    cvar_p = sigma * density / (1.0 - confidence)
    h = historical_weight
    return TailRisk(
        var_historical=max(var_h, 0.0),
        cvar_historical=max(cvar_h, 0.0),
        var_parametric=var_p,
        cvar_parametric=cvar_p,
        var_hybrid=max(h * var_h + (1 - h) * var_p, 0.0),
        cvar_hybrid=max(h * cvar_h + (1 - h) * cvar_p, 0.0),
        volatility_daily=sigma,
    )


@lru_cache(maxsize=8)
def _normal_quantile(confidence: float) -> tuple[float, float]:
    from scipy import stats  # ~0.6 s to import: only when a book is sized

    z = float(stats.norm.ppf(confidence))
    return z, float(stats.norm.pdf(z))


def fit_gpd_tail(
    losses: np.ndarray, confidence: float, threshold_quantile: float, min_exceedances: int
) -> GpdTail | None:
    """A GPD fit of ``losses`` standardised by their std, or None when there are fewer than
    ``min_exceedances`` losses above the threshold, the losses are constant, or the fitted
    tail is too heavy for a finite expected shortfall (ξ >= 1)."""
    std = float(np.std(losses, ddof=1)) if losses.size > 1 else 0.0
    if not np.isfinite(std) or std <= 0:
        return None
    standardised = losses / std
    threshold = float(np.quantile(standardised, threshold_quantile))
    excess = standardised[standardised > threshold] - threshold
    if excess.size < min_exceedances:
        return None
    # Start Nelder-Mead at the method-of-moments estimate: same optimum, ~1.5x faster.
    mean, variance = float(excess.mean()), float(excess.var(ddof=1))
    ratio = mean * mean / variance if variance > 0 else 1.0
    shape0, scale0 = 0.5 * (1 - ratio), 0.5 * mean * (ratio + 1)
    from scipy import stats

    shape, _, scale = stats.genpareto.fit(excess, shape0, floc=0.0, scale=scale0)
    if not (np.isfinite(shape) and np.isfinite(scale)) or scale <= 0 or shape >= 1:
        return None
    tail_fraction = excess.size / standardised.size
    if abs(shape) < 1e-9:  # exponential tail: the ξ -> 0 limit
        var = threshold + scale * np.log(tail_fraction / (1 - confidence))
    else:
        var = threshold + scale / shape * (((1 - confidence) / tail_fraction) ** (-shape) - 1)
    shortfall = (var + scale - shape * threshold) / (1 - shape)
    return GpdTail(
        shape=float(shape),
        scale=float(scale),
        threshold=threshold,
        tail_fraction=tail_fraction,
        expected_shortfall=float(shortfall),
    )
