"""Performance metrics of a daily return series, and the helpers the report plots.

Plain functions on numpy arrays and polars frames. Returns are simple (not log) returns per
period, as fractions (0.01 = 1 %). Annualisation uses ``periods_per_year`` (default
:data:`quant_assets.names.SESSIONS_PER_YEAR`, 252).

Conventions follow empyrical-reloaded (checked to 1e-10 relative in the tests):

- ``sharpe``: mean of the excess returns ``r - risk_free_annual / periods_per_year`` over
  their sample standard deviation (ddof=1), times ``sqrt(periods_per_year)``.
- ``sortino``: annualised mean excess return over the annualised downside deviation
  ``sqrt(mean(min(r - rf, 0)^2)) * sqrt(periods_per_year)`` (the mean runs over *all* days,
  not only the losing ones; the threshold is the per-period risk-free rate).
- ``annualized_return``: CAGR, ``wealth_end ** (periods_per_year / n_days) - 1``.
- ``max_drawdown``: from compounded wealth anchored at 1 before the first return, so a loss
  on the first day is a drawdown.
- ``alpha_annualized`` / ``beta``: ``beta = cov(r, b) / var(b)`` (the OLS slope of the
  strategy's daily returns on the benchmark's), ``alpha = (1 + mean(r - rf - beta (b - rf)))
  ** periods_per_year - 1`` (empyrical compounds the mean daily alpha).

Differences from empyrical: where empyrical would return ``inf`` (a Sortino ratio with no
day below the threshold) or divide by a zero deviation, these functions return NaN; an
ending wealth at or below zero gives an ``annualized_return`` of -1 (empyrical: NaN or a
complex power). Inputs with NaN are refused instead of being skipped.
"""

from __future__ import annotations

import numpy as np
import polars as pl

from quant_assets.names import SESSIONS_PER_YEAR


def _as_returns(values: object, name: str, *, min_length: int = 1) -> np.ndarray:
    """``values`` as a finite 1-D float array of at least ``min_length`` entries."""
    array = np.asarray(values, dtype=np.float64)
    if array.ndim != 1:
        raise ValueError(f"{name} must be one-dimensional, got shape {array.shape}")
    if array.size < min_length:
        raise ValueError(f"{name} needs at least {min_length} value(s), got {array.size}")
    if not np.all(np.isfinite(array)):
        raise ValueError(f"{name} contains NaN or infinite values")
    return array


def _check_periods_per_year(periods_per_year: int) -> None:
    if periods_per_year <= 0:
        raise ValueError(f"periods_per_year must be positive, got {periods_per_year}")


def _ratio(numerator: float, denominator: float) -> float:
    """``numerator / denominator``, NaN when the denominator is zero."""
    return float(numerator / denominator) if denominator > 0 else float("nan")


def _sharpe_annualized(excess: np.ndarray, periods_per_year: int) -> float:
    """Mean over sample std (ddof=1) of per-period ``excess`` returns, times sqrt(periods)."""
    per_period = _ratio(float(np.mean(excess)), float(np.std(excess, ddof=1)))
    return per_period * float(np.sqrt(periods_per_year))


def drawdown_series(returns: np.ndarray) -> np.ndarray:
    """Drawdown after each period: wealth / running peak - 1, as a fraction (<= 0).

    Wealth compounds ``returns`` from 1; the running peak includes that starting 1, so a
    first-day loss of 5 % is a drawdown of -0.05. Same length as ``returns``. Refuses empty
    input and NaN.
    """
    wealth = np.cumprod(1.0 + _as_returns(returns, "returns"))
    peak = np.maximum.accumulate(np.concatenate(([1.0], wealth)))[1:]
    return wealth / peak - 1.0


def rolling_sharpe(
    returns: np.ndarray,
    window: int = 126,
    *,
    periods_per_year: int = SESSIONS_PER_YEAR,
    risk_free_annual: float = 0.0,
) -> np.ndarray:
    """Annualised Sharpe ratio over a trailing window of ``window`` periods.

    Entry ``t`` uses returns ``t - window + 1 .. t`` (the ``sharpe`` convention of
    :func:`performance_metrics`); entries before the window is full are NaN, as are windows
    with zero dispersion. Same length as ``returns``. Refuses ``window < 2``, NaN, empty.
    """
    array = _as_returns(returns, "returns")
    _check_periods_per_year(periods_per_year)
    if window < 2:
        raise ValueError(f"window must be at least 2, got {window}")
    out = np.full(array.size, np.nan)
    if array.size < window:
        return out
    excess = array - risk_free_annual / periods_per_year
    windows = np.lib.stride_tricks.sliding_window_view(excess, window)
    means = windows.mean(axis=1)
    stds = windows.std(axis=1, ddof=1)
    with np.errstate(divide="ignore", invalid="ignore"):
        sharpes = np.where(stds > 0, means / stds, np.nan) * np.sqrt(periods_per_year)
    out[window - 1 :] = sharpes
    return out


def _mean_of(values: np.ndarray | None, name: str, length: int) -> float:
    if values is None:
        return float("nan")
    array = _as_returns(values, name)
    if array.size != length:
        raise ValueError(f"{name} has {array.size} values, daily_returns has {length}")
    return float(np.mean(array))


def performance_metrics(
    daily_returns: np.ndarray,
    *,
    benchmark_returns: np.ndarray | None = None,
    turnover: np.ndarray | None = None,
    gross_exposure: np.ndarray | None = None,
    periods_per_year: int = SESSIONS_PER_YEAR,
    risk_free_annual: float = 0.0,
) -> dict[str, float]:
    """Headline metrics of a strategy's per-period simple returns.

    Returns a dict of floats (fractions, not percent; ratios annualised with
    ``periods_per_year``): ``total_return``, ``annualized_return`` (CAGR),
    ``annualized_volatility``, ``sharpe``, ``sortino``, ``max_drawdown`` (<= 0),
    ``calmar`` (NaN without a drawdown), ``win_rate`` (share of days with a positive return
    among days with a non-zero one; NaN if none), ``average_daily_turnover`` and
    ``average_gross_exposure`` (NaN when not given). With ``benchmark_returns`` (same
    dates) also ``alpha_annualized``, ``beta``, ``information_ratio`` (annualised mean
    active return over its annualised std), ``tracking_error_annualized``,
    ``benchmark_total_return`` and ``benchmark_sharpe``. See the module docstring for the
    exact conventions. ``risk_free_annual`` is a simple annual rate, spread evenly per period.

    Refuses fewer than 2 returns, NaN/inf anywhere, arrays of a different length than
    ``daily_returns`` and a non-positive ``periods_per_year``.
    """
    returns = _as_returns(daily_returns, "daily_returns", min_length=2)
    _check_periods_per_year(periods_per_year)
    if not np.isfinite(risk_free_annual):
        raise ValueError(f"risk_free_annual must be finite, got {risk_free_annual}")
    n_days = returns.size
    risk_free = risk_free_annual / periods_per_year
    excess = returns - risk_free

    ending_wealth = float(np.prod(1.0 + returns))
    annualized_return = (
        ending_wealth ** (periods_per_year / n_days) - 1.0 if ending_wealth > 0 else -1.0
    )
    max_drawdown = float(np.min(drawdown_series(returns)))
    downside_deviation = float(np.sqrt(np.mean(np.minimum(excess, 0.0) ** 2)))
    traded_days = returns[returns != 0.0]

    metrics: dict[str, float] = {
        "total_return": ending_wealth - 1.0,
        "annualized_return": float(annualized_return),
        "annualized_volatility": float(np.std(returns, ddof=1) * np.sqrt(periods_per_year)),
        "sharpe": _sharpe_annualized(excess, periods_per_year),
        "sortino": _ratio(
            float(np.mean(excess)) * periods_per_year,
            downside_deviation * np.sqrt(periods_per_year),
        ),
        "max_drawdown": max_drawdown,
        "calmar": _ratio(float(annualized_return), abs(max_drawdown)),
        "win_rate": float(np.mean(traded_days > 0)) if traded_days.size else float("nan"),
        "average_daily_turnover": _mean_of(turnover, "turnover", n_days),
        "average_gross_exposure": _mean_of(gross_exposure, "gross_exposure", n_days),
    }
    if benchmark_returns is None:
        return metrics

    benchmark = _as_returns(benchmark_returns, "benchmark_returns")
    if benchmark.size != n_days:
        raise ValueError(
            f"benchmark_returns has {benchmark.size} values, daily_returns has {n_days}"
        )
    benchmark_centered = benchmark - benchmark.mean()
    benchmark_variance = float(np.mean(benchmark_centered**2))
    beta = (
        float(np.mean(benchmark_centered * returns)) / benchmark_variance
        if benchmark_variance >= 1e-30
        else float("nan")
    )
    mean_daily_alpha = float(np.mean(excess - beta * (benchmark - risk_free)))
    active = returns - benchmark
    tracking_error = float(np.std(active, ddof=1) * np.sqrt(periods_per_year))
    metrics |= {
        "alpha_annualized": (1.0 + mean_daily_alpha) ** periods_per_year - 1.0,
        "beta": beta,
        "information_ratio": _sharpe_annualized(active, periods_per_year),
        "tracking_error_annualized": tracking_error,
        "benchmark_total_return": float(np.prod(1.0 + benchmark)) - 1.0,
        "benchmark_sharpe": _sharpe_annualized(benchmark - risk_free, periods_per_year),
    }
    return metrics


def pnl_by_group(pnl: pl.DataFrame, group_column: str, value_column: str) -> pl.DataFrame:
    """PnL attribution: per value of ``group_column``, statistics of ``value_column``.

    Returns one row per group, sorted by the group (an Enum group sorts in its category
    order, e.g. the buckets of :func:`signal_buckets`), with columns ``group_column``,
    ``total`` (sum), ``mean``, ``count`` (rows) and ``share_positive`` (share of rows with a
    value > 0). Units are those of ``value_column`` (e.g. currency for daily PnL).

    Refuses a missing column, nulls in either column and NaN values.
    """
    for argument, column in (("group_column", group_column), ("value_column", value_column)):
        if column not in pnl.columns:
            raise ValueError(f"{argument} {column!r} is not a column of pnl ({pnl.columns})")
        if pnl[column].null_count():
            raise ValueError(f"{argument} {column!r} has null values")
    if pnl[value_column].dtype.is_float() and pnl[value_column].is_nan().any():
        raise ValueError(f"value_column {value_column!r} has NaN values")
    value = pl.col(value_column)
    return (
        pnl.group_by(group_column)
        .agg(
            value.sum().cast(pl.Float64).alias("total"),
            value.mean().cast(pl.Float64).alias("mean"),
            pl.len().cast(pl.Int64).alias("count"),
            (value > 0).mean().cast(pl.Float64).alias("share_positive"),
        )
        .sort(group_column)
    )


def bucket_labels(n_buckets: int) -> list[str]:
    """The labels of :func:`signal_buckets`: ``Q1 (lowest)``, ``Q2``, .., ``Qn (highest)``."""
    if n_buckets < 2:
        raise ValueError(f"n_buckets must be at least 2, got {n_buckets}")
    labels = [f"Q{i}" for i in range(1, n_buckets + 1)]
    labels[0] += " (lowest)"
    labels[-1] += " (highest)"
    return labels


def signal_buckets(scores: pl.Series, n_buckets: int = 5) -> pl.Series:
    """Quantile bucket of each score, pooled over the whole series (not per date).

    Scores are ranked (ties share their average rank, so equal scores share a bucket) and
    cut into ``n_buckets`` groups of as equal size as possible: bucket ``floor((rank - 1) *
    n_buckets / n) + 1``. Returns a series named ``signal_bucket`` of dtype ``pl.Enum``
    with categories :func:`bucket_labels` (so sorting follows Q1 .. Qn), same length and
    order as ``scores``.

    Refuses an empty series, nulls, NaN and ``n_buckets < 2``.
    """
    labels = bucket_labels(n_buckets)
    if scores.len() == 0:
        raise ValueError("scores is empty")
    if scores.null_count():
        raise ValueError("scores has null values")
    values = scores.cast(pl.Float64)
    if values.is_nan().any():
        raise ValueError("scores has NaN values")
    ranks = values.rank(method="average").to_numpy()
    buckets = np.floor((ranks - 1.0) * n_buckets / values.len()).astype(np.int64)
    names = np.asarray(labels, dtype=object)[np.clip(buckets, 0, n_buckets - 1)]
    return pl.Series("signal_bucket", names.tolist(), dtype=pl.Enum(labels))
