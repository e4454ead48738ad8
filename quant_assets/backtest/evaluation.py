"""A strategy's evaluation: metrics, PnL attributions, overfitting statistics, promotion gate.

Pure domain code on frames read by the caller. The gate (seed 002: quality gates over raw
performance) promotes a strategy only when, out of sample,

- its **Deflated Sharpe Ratio** (the probability that its Sharpe beats the best of
  ``n_trials`` unskilled strategies with the trials' Sharpe dispersion) reaches
  ``min_deflated_sharpe``, and
- the **Hansen SPA** p-value of the configured strategies against the benchmark is at most
  ``max_spa_pvalue`` and the stepwise test (``StepM``) counts this strategy among those that
  beat it, and
- every configured strategy took part in that test (a reality check over a subset would
  understate the search).
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np
import polars as pl

from quant_assets.backtest.metrics import performance_metrics, pnl_by_group, signal_buckets
from quant_assets.backtest.statistics import (
    DeflatedSharpe,
    RealityCheck,
    deflated_sharpe_ratio,
    reality_check,
)
from quant_assets.names import SESSIONS_PER_YEAR
from quant_assets.settings import StrategySettings


@dataclass(frozen=True)
class Evaluation:
    """Everything the report shows for one strategy."""

    strategy: str
    start: object
    end: object
    metrics: dict[str, float]
    daily: pl.DataFrame  # one row per date: equity, return, exposures, turnover
    pnl_by_regime: pl.DataFrame
    pnl_by_bucket: pl.DataFrame
    deflated: DeflatedSharpe | None
    reality: RealityCheck | None
    promoted: bool
    reasons: list[str] = field(default_factory=list)
    compared: tuple[str, ...] = ()


def daily_portfolio(book: pl.DataFrame) -> pl.DataFrame:
    """One row per date from the book rows: equity, return, exposures, turnover, PnL."""
    columns = ["equity", "portfolio_return", "gross_exposure", "net_exposure", "turnover"]
    return book.group_by("date").agg(pl.col(c).first() for c in columns).sort("date")


def _aligned(
    own: pl.DataFrame, benchmark: pl.DataFrame, others: dict[str, pl.DataFrame]
) -> tuple[list[str], np.ndarray, np.ndarray]:
    """Strategy returns (n_dates, n_strategies) and benchmark returns on their common dates."""
    frame = own.select("date", pl.col("portfolio_return").alias("__own"))
    names = ["__own"]
    for other, returns in others.items():
        frame = frame.join(
            returns.select("date", pl.col("portfolio_return").alias(other)), on="date"
        )
        names.append(other)
    frame = frame.join(benchmark.select("date", "benchmark_return"), on="date").drop_nulls()
    return names, frame.select(names).to_numpy(), frame["benchmark_return"].to_numpy()


def evaluate_strategy(
    strategy: StrategySettings,
    book: pl.DataFrame,
    alpha: pl.DataFrame,
    regimes: pl.DataFrame,
    benchmark_closes: pl.DataFrame,
    others: dict[str, pl.DataFrame],
    configured: list[str],
    ledger: tuple[int, np.ndarray] | None = None,
) -> Evaluation:
    """Evaluate ``strategy`` from its stored ``book`` rows.

    ``alpha``: date, ticker, alpha_score (a day's PnL is attributed to the bucket of the
    previous day's alpha: the score that decided the position). ``regimes``: date,
    regime_label. ``benchmark_closes``: date, close. ``others``: the daily portfolio
    (:func:`daily_portfolio`) of every other strategy with a stored book. ``configured``:
    every configured strategy name. ``ledger``: (N, per-period Sharpe ratios) of the trial
    ledger — every configuration ever evaluated, this strategy's included; the Deflated Sharpe
    deflates for N + ``promotion.extra_trials`` (trials made outside the platform) with the
    variance of those Sharpes. Without it, the configured strategies are the trials.
    """
    promotion = strategy.promotion
    daily = daily_portfolio(book)
    if daily.height < 3:
        raise ValueError(f"{strategy.name}: the backtest has {daily.height} day(s); need 3+")
    benchmark = benchmark_closes.sort("date").select(
        "date", (pl.col("close") / pl.col("close").shift(1) - 1).alias("benchmark_return")
    )
    with_benchmark = daily.join(benchmark, on="date", how="left")
    returns = daily["portfolio_return"].to_numpy()
    bench_returns = with_benchmark["benchmark_return"].fill_null(0.0).to_numpy()
    metrics = performance_metrics(
        returns,
        benchmark_returns=bench_returns,
        turnover=daily["turnover"].to_numpy(),
        gross_exposure=daily["gross_exposure"].to_numpy(),
        risk_free_annual=0.0,
    )

    pnl = daily.select(
        "date", (pl.col("equity") - pl.col("equity").shift(1)).alias("pnl")
    ).drop_nulls()
    by_regime = pnl_by_group(
        pnl.join(regimes.select("date", "regime_label"), on="date", how="left").with_columns(
            pl.col("regime_label").fill_null("unknown")
        ),
        "regime_label",
        "pnl",
    )
    decided = (
        alpha.sort("ticker", "date")
        .with_columns(pl.col("alpha_score").shift(1).over("ticker").alias("decided_by"))
        .select("date", "ticker", "decided_by")
        .drop_nulls()
    )
    attributed = book.select("date", "ticker", "pnl").join(
        decided, on=["date", "ticker"], how="inner"
    )
    if attributed.height:
        attributed = attributed.with_columns(
            signal_buckets(attributed["decided_by"]).alias("signal_bucket")
        )
        by_bucket = pnl_by_group(attributed, "signal_bucket", "pnl")
    else:
        by_bucket = pl.DataFrame(schema={"signal_bucket": pl.Utf8})

    names, matrix, bench = _aligned(daily, benchmark, others)
    per_period_sharpes = [
        float(np.mean(col) / np.std(col, ddof=1)) if np.std(col, ddof=1) > 0 else 0.0
        for col in matrix.T
    ]
    if ledger is None:
        n_trials = len(configured) + promotion.extra_trials
        trial_sharpes = np.asarray(per_period_sharpes, dtype=np.float64)
    else:
        n_trials = max(ledger[0], 1) + promotion.extra_trials
        trial_sharpes = np.asarray(ledger[1], dtype=np.float64)
        trial_sharpes = trial_sharpes[np.isfinite(trial_sharpes)]
    variance = float(np.var(trial_sharpes, ddof=1)) if trial_sharpes.size > 1 else 0.0
    deflated: DeflatedSharpe | None
    try:
        deflated = deflated_sharpe_ratio(returns, n_trials=n_trials, trial_sharpe_variance=variance)
    except ValueError as exc:  # e.g. a book that never traded: no Sharpe to deflate
        deflated = None
        undefined = str(exc)
    display = [strategy.name if n == "__own" else n for n in names]
    reality = (
        reality_check(
            bench,
            matrix,
            display,
            reps=promotion.bootstrap_reps,
            block_size=promotion.bootstrap_block,
            seed=promotion.seed,
            alpha=promotion.max_spa_pvalue,
        )
        if len(bench) > promotion.bootstrap_block * 2
        else None
    )
    reasons: list[str] = []
    passed = True
    if deflated is None:
        passed = False
        reasons.append(f"no deflated Sharpe: {undefined}")
    elif deflated.deflated_sharpe < promotion.min_deflated_sharpe:
        passed = False
        reasons.append(
            f"deflated Sharpe {deflated.deflated_sharpe:.3f} < {promotion.min_deflated_sharpe} "
            f"({n_trials} trial(s))"
        )
    else:
        reasons.append(
            f"deflated Sharpe {deflated.deflated_sharpe:.3f} >= {promotion.min_deflated_sharpe}"
        )
    if reality is None:
        passed = False
        reasons.append("too few common days for the SPA reality check")
    else:
        p_value = reality.spa_pvalue_consistent
        verdict = "<=" if p_value <= promotion.max_spa_pvalue else ">"
        reasons.append(f"SPA p-value {p_value:.3f} {verdict} {promotion.max_spa_pvalue}")
        if p_value > promotion.max_spa_pvalue:
            passed = False
        if strategy.name not in reality.superior:
            passed = False
            reasons.append("StepM does not count it among the strategies beating the benchmark")
    missing = sorted(set(configured) - set(display))
    if missing:
        passed = False
        reasons.append(f"not compared with {', '.join(missing)} (no stored backtest)")
    metrics = {
        **metrics,
        "deflated_sharpe": deflated.deflated_sharpe if deflated else float("nan"),
        "expected_max_sharpe_annualized": (
            deflated.expected_max_sharpe * np.sqrt(SESSIONS_PER_YEAR) if deflated else float("nan")
        ),
        "n_trials": float(n_trials),
        "spa_pvalue": reality.spa_pvalue_consistent if reality else float("nan"),
        "reality_check_pvalue": reality.spa_pvalue_upper if reality else float("nan"),
    }
    return Evaluation(
        strategy=strategy.name,
        start=daily["date"][0],
        end=daily["date"][-1],
        metrics=metrics,
        daily=daily,
        pnl_by_regime=by_regime,
        pnl_by_bucket=by_bucket,
        deflated=deflated,
        reality=reality,
        promoted=passed,
        reasons=reasons,
        compared=tuple(display),
    )
