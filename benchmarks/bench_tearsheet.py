"""Benchmark: the signal tear sheets for every factor over the full bundled history, against
alphalens-reloaded doing part of the same work in the same run.

The factor table has the bundled demo's shape: 20 tickers × 29 years (~7,300 sessions) and
ten factors, as ``engine.signal_evaluation.signal_factors`` builds them from the shipped
configs — the four rule signals (null before a 200-session warm-up), the model's edge at
horizons 1, 3 and 5, and three strategies' alpha scores — with regimes cycling through the
four labels. Values are seeded noise plus a share of the 5-session future return, so the ICs
are not all zero. Prices are the synthetic provider's closes.

Timed (wall, best of ``--repeats``): ``evaluate_signals`` (forward returns 1/5/21, IC and
rank IC per date, decay 1..21, quintiles, spreads, autocorrelation and turnover, each by
regime) + ``forward_returns`` (the stored table) + ``tear_sheet_html`` + the markdown summary:
everything the ``signal_evaluation`` asset computes (not the DuckDB writes and MLflow run).

Reference: alphalens-reloaded (a test-only dependency, ``--extra dev``) on ONE factor with the
same horizons: ``get_clean_factor_and_forward_returns`` + ``factor_information_coefficient`` +
``mean_return_by_quantile`` + ``factor_rank_autocorrelation`` — a subset of our per-factor
work (no decay, no regimes, no turnover). Printed as seconds per factor and the ratio.

    python benchmarks/bench_tearsheet.py
    python benchmarks/bench_tearsheet.py --years 5     # quicker
"""

from __future__ import annotations

import argparse
import time
import warnings
from collections.abc import Callable
from datetime import date

import numpy as np
import polars as pl

from quant_assets.names import REGIME_NAMES
from quant_assets.providers.synthetic import SyntheticProvider
from quant_assets.research.signal_evaluation import evaluate_signals, forward_returns
from quant_assets.research.tearsheet import tear_sheet_html, tear_sheet_markdown

N_TICKERS = 20
FACTORS = (
    "trend_alpha",
    "mean_rev_alpha",
    "vol_alpha",
    "rel_strength_alpha",
    "model_edge_h1",
    "model_edge_h3",
    "model_edge_h5",
    "trend_only.alpha_score",
    "hybrid_alpha.alpha_score",
    "defensive.alpha_score",
)
WARM_UP = 200  # sessions before the rule signals have a value
HORIZONS = (1, 5, 21)


def make_inputs(years: int) -> tuple[pl.DataFrame, pl.DataFrame, pl.DataFrame]:
    """(factors long, closes, regimes) of the demo's shape over ``years`` years."""
    tickers = [f"T{i:02d}" for i in range(N_TICKERS)]
    start, end = date(2022 - years, 1, 3), date(2021, 12, 31)
    bars = SyntheticProvider(seed=3, origin=start, end=end).fetch_bars(tickers, start, end)
    closes = bars.select("date", "ticker", "close").sort("ticker", "date")
    future = closes.with_columns(
        (pl.col("close").shift(-5).over("ticker") / pl.col("close") - 1).alias("future")
    )
    rng = np.random.default_rng(4)
    session = pl.col("date").rank("dense").over("ticker")
    parts = []
    for k, name in enumerate(FACTORS):
        noise = rng.normal(size=future.height)
        value = 0.1 * (k + 1) * future["future"].fill_null(0.0).to_numpy() / 0.03 + noise
        frame = future.select("date", "ticker").with_columns(
            pl.lit(name).alias("signal"), pl.Series("value", value)
        )
        if k < 4:  # rule signals: null before their warm-up
            frame = frame.with_columns(
                pl.when(session > WARM_UP).then(pl.col("value")).alias("value")
            )
        parts.append(frame.select("signal", "date", "ticker", "value"))
    factors = pl.concat(parts)
    dates = closes["date"].unique().sort()
    regimes = pl.DataFrame(
        {"date": dates, "regime_label": [REGIME_NAMES[(i // 60) % 4] for i in range(dates.len())]}
    )
    return factors, closes, regimes


def ours(factors: pl.DataFrame, closes: pl.DataFrame, regimes: pl.DataFrame) -> int:
    evaluation = evaluate_signals(factors, closes, regimes)
    stored = forward_returns(closes, HORIZONS)
    html = tear_sheet_html(evaluation, "Signal tear sheet", plotly_src="plotly.min.js")
    markdown = tear_sheet_markdown(evaluation)
    return evaluation.ic.height + stored.height + len(html) + len(markdown)


def alphalens_one(factors: pl.DataFrame, closes: pl.DataFrame) -> int:
    from alphalens import performance, utils

    prices = closes.to_pandas().pivot(index="date", columns="ticker", values="close")
    prices.index = prices.index.astype("datetime64[ns]")
    one = factors.filter(pl.col("signal") == FACTORS[-1]).drop_nulls("value").to_pandas()
    one["date"] = one["date"].astype("datetime64[ns]")
    factor = one.set_index(["date", "ticker"])["value"]
    factor.index.names = ["date", "asset"]
    data = utils.get_clean_factor_and_forward_returns(
        factor, prices, periods=HORIZONS, quantiles=5, max_loss=1.0
    )
    ic = performance.factor_information_coefficient(data)
    means, _ = performance.mean_return_by_quantile(data, by_date=True)
    autocorrelation = performance.factor_rank_autocorrelation(data, period=1)
    return len(ic) + len(means) + len(autocorrelation)


def best_of(fn: Callable[[], object], repeats: int) -> float:
    best = float("inf")
    for _ in range(repeats):
        started = time.perf_counter()
        fn()
        best = min(best, time.perf_counter() - started)
    return best


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--years", type=int, default=29)
    parser.add_argument("--repeats", type=int, default=3)
    args = parser.parse_args()
    warnings.filterwarnings("ignore")
    factors, closes, regimes = make_inputs(args.years)
    n_sessions = closes["date"].n_unique()
    print(
        f"tear sheets: {len(FACTORS)} factors × {N_TICKERS} tickers × {n_sessions:,} sessions "
        f"({factors.height:,} factor rows), horizons {HORIZONS}, decay 1..21"
    )
    seconds = best_of(lambda: ours(factors, closes, regimes), args.repeats)
    print(
        f"  ours, every factor, tables + HTML + markdown: {seconds:6.2f} s "
        f"({seconds / len(FACTORS):.2f} s per factor)"
    )
    try:
        reference = best_of(lambda: alphalens_one(factors, closes), 1)
    except ImportError:
        print("  alphalens-reloaded not installed (uv sync --extra dev): no reference")
        return
    print(
        f"  alphalens-reloaded, one factor (IC, quantile means by date, autocorrelation): "
        f"{reference:6.2f} s"
    )
    print(
        f"  alphalens per factor / ours per factor: {reference / (seconds / len(FACTORS)):.0f}x "
        f"(ours does more per factor: decay 1..21, regimes, turnover, HTML)"
    )


if __name__ == "__main__":
    main()
