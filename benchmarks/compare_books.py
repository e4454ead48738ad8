"""Compare the backtest and the paper book of every strategy on a stored warehouse.

    python benchmarks/compare_books.py --home DATA_DIR [--configs DIR] [--json OUT.json]

Opens ``DATA_DIR/warehouse.duckdb`` read-only, reads the bars and each strategy schema's
``positions`` (target_weight per date and ticker), runs
:func:`quant_assets.backtest.book.run_book` and
:func:`quant_assets.execution.paper.run_paper_book` over the whole stored span of the
positions with the strategy's config (``configs/strategies/<name>.yaml``), from its initial
capital, and prints per strategy and book: final equity, annualised Sharpe (daily returns,
rf = 0), average daily turnover (traded value at the fill price / previous equity), trades,
costs, and the largest daily relative gap between the two books' equity.

Runs against the code it is started with: the same script measures the books before and
after a change (``cd <old checkout> && <old venv>/bin/python <this file> --home ...``). It
relies only on the API both versions share: bars with a ``volume`` column (older paper books
ignore it), ``BookState.initial`` / ``PaperBookState.initial`` and the book columns below.
Nothing is written to the warehouse.
"""

from __future__ import annotations

import argparse
import json
import math
import sys
import time
from pathlib import Path

import duckdb
import numpy as np
import polars as pl

from quant_assets.backtest.book import BookState, run_book
from quant_assets.execution import PaperBookState, run_paper_book
from quant_assets.settings import load_settings

try:
    from quant_assets.names import MARKET_SCHEMA, SESSIONS_PER_YEAR, WAREHOUSE_FILE
except ImportError:  # a checkout from before names.py: the same values, declared there
    MARKET_SCHEMA, SESSIONS_PER_YEAR, WAREHOUSE_FILE = "market", 252, "warehouse.duckdb"

BAR_COLUMNS = ("date", "ticker", "open", "close", "volume")


def read_tables(home: Path) -> tuple[pl.DataFrame, dict[str, pl.DataFrame]]:
    """The bars and every schema's positions (date, ticker, target_weight, reason_codes)."""
    path = home / WAREHOUSE_FILE
    if not path.exists():
        sys.exit(f"no warehouse at {path}")
    with duckdb.connect(str(path), read_only=True) as connection:
        bars = connection.sql(
            f"select {', '.join(BAR_COLUMNS)} from {MARKET_SCHEMA}.bars order by date, ticker"
        ).pl()
        schemas = [
            row[0]
            for row in connection.sql(
                "select table_schema from information_schema.tables "
                "where table_name = 'positions' order by 1"
            ).fetchall()
        ]
        positions = {
            schema: connection.sql(
                f'select date, ticker, target_weight, reason_codes from "{schema}".positions '
                "order by date, ticker"
            ).pl()
            for schema in schemas
        }
    return bars, positions


def daily(frame: pl.DataFrame, quantity: str, capital: float) -> pl.DataFrame:
    """Per date: equity, return, turnover (Σ |quantity × fill_price| / previous equity) and
    costs, from one book's rows (``quantity``: the traded shares column)."""
    per_date = (
        frame.group_by("date")
        .agg(
            pl.col("equity").first(),
            (pl.col(quantity) * pl.col("fill_price")).abs().fill_null(0.0).sum().alias("traded"),
            (pl.col(quantity) != 0).sum().alias("trades"),
            pl.col("commission").fill_null(0.0).sum(),
            pl.col("slippage_cost").fill_null(0.0).sum(),
            (
                pl.col("impact_cost").fill_null(0.0).sum()
                if "impact_cost" in frame.columns
                else pl.lit(0.0)
            ).alias("impact_cost"),
        )
        .sort("date")
    )
    previous = pl.col("equity").shift(1).fill_null(capital)
    return per_date.with_columns(
        (pl.col("equity") / previous - 1.0).alias("return"),
        (pl.col("traded") / previous).alias("turnover"),
    )


def summary(per_date: pl.DataFrame, seconds: float) -> dict[str, float]:
    returns = per_date["return"].to_numpy()
    std = float(np.std(returns, ddof=1))
    sharpe = float(np.mean(returns)) / std * math.sqrt(SESSIONS_PER_YEAR) if std > 0 else math.nan
    return {
        "final_equity": float(per_date["equity"][-1]),
        "sharpe": sharpe,
        "turnover": float(per_date["turnover"].mean()),
        "trades": int(per_date["trades"].sum()),
        "commission": float(per_date["commission"].sum()),
        "slippage_and_impact": float(
            per_date["slippage_cost"].sum() + per_date["impact_cost"].sum()
        ),
        "impact": float(per_date["impact_cost"].sum()),
        "seconds": seconds,
    }


def compare(name: str, bars: pl.DataFrame, positions: pl.DataFrame, settings) -> dict:
    strategy = settings.strategies[name]
    capital = float(strategy.backtest.initial_capital)
    tickers = [t for t in settings.universe.tickers if t in set(positions["ticker"])]
    start, end = positions["date"].min(), positions["date"].max()
    # All the bars up to the last position: the look-back before the start feeds the
    # impact's volatility and ADV windows (and older paper books ignore it).
    span = bars.filter(pl.col("date") <= end)
    targets = positions.select("date", "ticker", "target_weight", "reason_codes")

    t0 = time.perf_counter()
    backtest = run_book(
        span,
        targets.select("date", "ticker", "target_weight"),
        strategy.backtest,
        start=start,
        state=BookState.initial(capital),
        tickers=tickers,
    )
    backtest_seconds = time.perf_counter() - t0
    t0 = time.perf_counter()
    paper = run_paper_book(
        span,
        targets,
        strategy.backtest,
        start=start,
        state=PaperBookState.initial(capital),
        tickers=tickers,
        strategy=name,
    )
    paper_seconds = time.perf_counter() - t0

    backtest_daily = daily(backtest.book, "trade_quantity", capital)
    paper_daily = daily(paper.book, "filled_quantity", capital)
    paper_trades = getattr(paper, "trades", None)  # older paper books have none (nor impact)
    if paper_trades is not None:
        # The stored paper book folds impact into slippage_cost; its trades keep them apart.
        impact = paper_trades.group_by("date").agg(pl.col("impact_cost").sum().alias("_impact"))
        paper_daily = (
            paper_daily.join(impact, on="date", how="left")
            .with_columns(
                (pl.col("slippage_cost") - pl.col("_impact").fill_null(0.0)).alias("slippage_cost"),
                pl.col("_impact").fill_null(0.0).alias("impact_cost"),
            )
            .drop("_impact")
        )
    gaps = backtest_daily.select("date", "equity").join(
        paper_daily.select("date", pl.col("equity").alias("paper_equity")), on="date"
    )
    relative_gap = ((gaps["paper_equity"] - gaps["equity"]) / gaps["equity"]).abs()
    worst = int(relative_gap.arg_max() or 0)
    return {
        "strategy": name,
        "start": str(start),
        "end": str(end),
        "sessions": backtest_daily.height,
        "tickers": len(tickers),
        "backtest": summary(backtest_daily, backtest_seconds),
        "paper": summary(paper_daily, paper_seconds),
        "max_daily_gap": float(relative_gap.max()),
        "max_daily_gap_date": str(gaps["date"][worst]),
    }


def print_table(results: list[dict]) -> None:
    header = (
        f"{'strategy':<20} {'book':<8} {'final equity':>14} {'Sharpe':>7} {'turnover':>9} "
        f"{'trades':>7} {'commission':>11} {'slip+impact':>12} {'of which imp':>12} {'s':>6}"
    )
    print(header)
    print("-" * len(header))
    for result in results:
        for book in ("backtest", "paper"):
            r = result[book]
            print(
                f"{result['strategy']:<20} {book:<8} {r['final_equity']:>14,.2f} "
                f"{r['sharpe']:>7.3f} {r['turnover']:>9.4%} {r['trades']:>7} "
                f"{r['commission']:>11,.2f} {r['slippage_and_impact']:>12,.2f} "
                f"{r['impact']:>12,.2f} {r['seconds']:>6.2f}"
            )
        print(
            f"{'':<20} {'gap':<8} largest daily |paper - backtest| / backtest equity: "
            f"{result['max_daily_gap']:.3e} on {result['max_daily_gap_date']} "
            f"({result['sessions']} sessions {result['start']}..{result['end']}, "
            f"{result['tickers']} tickers)"
        )
    print(
        "\nturnover: mean daily Σ |traded shares × fill price| / previous equity. Sharpe: "
        f"mean / std of daily returns × √{SESSIONS_PER_YEAR}. slip+impact: slippage and "
        "square-root impact; 'of which imp': the impact alone (0 where the book charges none)."
    )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--home", type=Path, required=True, help="the data directory")
    parser.add_argument(
        "--configs",
        type=Path,
        default=Path("configs"),
        help="config directory (default: ./configs of the checkout you run from)",
    )
    parser.add_argument("--json", type=Path, help="also write the results here")
    args = parser.parse_args()

    settings = load_settings(args.configs)
    bars, positions = read_tables(args.home)
    names = [name for name in positions if name in settings.strategies]
    if not names:
        sys.exit(f"no strategy of {args.configs} has a positions table in {args.home}")
    results = [compare(name, bars, positions[name], settings) for name in names]
    print_table(results)
    if args.json:
        args.json.write_text(json.dumps(results, indent=2))


if __name__ == "__main__":
    main()
