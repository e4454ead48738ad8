"""Benchmark: the backtest kernel against vectorbt 1.0's ``Portfolio.from_orders``.

Prints throughput (cells = sessions × tickers per second) and ratios measured in one run
(never asserted: performance is reported, not tested). The only check is correctness: the
vectorbt-matched run of our kernel must end on vectorbt's equity curve within 1e-9.

    python benchmarks/bench_backtest.py            # 20 × 2,520, 500 × 5,040, 2,000 × 5,040
    python benchmarks/bench_backtest.py --quick    # the first two sizes

Both engines get identical synthetic inputs: seeded random-walk closes, opens gapping from
the previous close, and long-only random target weights re-drawn every session with a gross
exposure between 0.5 and 0.9 (so every cell trades and the cash constraint never binds).

What the vectorbt-matched configuration of our kernel matches, option by option:

* Timing: our ``target_weight[t]`` is decided at the close of ``t`` and trades on ``t + 1``;
  vectorbt trades ``size[t]`` on row ``t``, so it gets the targets shifted down one row (row 0
  NaN = no order, like our NaN ``initial_target``). Our last target row is never executed,
  and neither is it in vectorbt (it falls off the end).
* Prices: fills at the next open (``price=open``), positions marked at the close
  (``close=close``); no missing prices, so neither engine's fallback is exercised.
* Sizing: ``size_type="targetpercent"`` with ``val_price=-np.inf`` (value the positions at the
  previous close) and ``update_value=False`` (the group value stays fixed while the row's
  orders execute): exactly our orders, sized at the decision close — target weight × (cash +
  Σ shares × close) / close − shares, the equity computed once per session.
* Costs: ``fees`` = commission_bps / 1e4 on the filled value and ``slippage`` = slippage_bps /
  1e4 on the price, as ours with impact 0; fractional shares (our ``lot_size`` 0, vectorbt's
  default ``size_granularity``).
* Execution order: one group with ``cash_sharing=True`` and ``call_seq="auto"`` runs the sells
  first, like ours. vectorbt then runs buys by increasing order value, ours in column order:
  with enough cash the fills are the same and only the rounding of the cash sum differs.
"""

from __future__ import annotations

import argparse
import math
import resource
import sys
import time
import warnings
from collections.abc import Callable
from typing import Any

import numpy as np

from quant_assets.backtest.kernel import FILL_NEXT_OPEN, simulate_book, simulate_book_records

SIZES = [(20, 2_520), (500, 5_040), (2_000, 5_040)]  # (tickers, sessions)
INITIAL_CASH = 1_000_000.0
COMMISSION_BPS = 1.0
SLIPPAGE_BPS = 2.0
IMPACT_COEFFICIENT = 0.1
MAX_EQUITY_DIFF = 1e-9
LEGEND = """
ours full:  impact on (k 0.1), 1-share lots. ours match: configured as vectorbt (impact 0,
            fractional shares). Both return every output array and the trade records.
vbt orders: from_orders alone (order records); +equity: from_orders then .value(), the equity
            curve our kernel returns. ratio = ours match / vectorbt.
(sys):      share of the full runs' wall time spent in the OS page-faulting the freshly
            allocated outputs (-: runs too short for the CPU-time clock).
eq diff:    relative difference of the final equity; max diff: of the whole equity curve
            (ours match vs vectorbt)."""


def make_inputs(n_tickers: int, n_days: int, seed: int = 7) -> dict[str, np.ndarray]:
    """Seeded synthetic market and targets, float64 (n_days, n_tickers)."""
    rng = np.random.default_rng(seed)
    log_close = np.log(50.0) + np.cumsum(rng.normal(0.0002, 0.015, (n_days, n_tickers)), axis=0)
    close = np.exp(log_close)
    previous_close = np.vstack([close[:1], close[:-1]])
    open_price = previous_close * np.exp(rng.normal(0.0, 0.004, (n_days, n_tickers)))
    raw = rng.random((n_days, n_tickers))
    gross = rng.uniform(0.5, 0.9, (n_days, 1))
    target_weight = raw / raw.sum(axis=1, keepdims=True) * gross
    return {
        "close": close,
        "open": open_price,
        "target_weight": target_weight,
        "daily_vol": np.full((n_days, n_tickers), 0.015),
        "adv_shares": rng.uniform(1e5, 1e7, (n_days, n_tickers)),
    }


def run_ours(
    inputs: dict[str, np.ndarray], *, matched: bool, records: bool = False
) -> tuple[Any, ...]:
    """Our kernel: with impact and 1-share lots, or configured like vectorbt (``matched``);
    ``records``: the records-only entry point (state arrays + trade records)."""
    n_tickers = inputs["close"].shape[1]
    kernel = simulate_book_records if records else simulate_book
    return kernel(
        inputs["target_weight"],
        inputs["open"],
        inputs["close"],
        inputs["daily_vol"],
        inputs["adv_shares"],
        INITIAL_CASH,
        np.zeros(n_tickers),
        np.full(n_tickers, np.nan),
        np.full(n_tickers, np.nan),
        FILL_NEXT_OPEN,
        COMMISSION_BPS,
        SLIPPAGE_BPS,
        0.0 if matched else IMPACT_COEFFICIENT,
        0.0 if matched else 1.0,
        False,
    )


def run_vectorbt(inputs: dict[str, np.ndarray], size: np.ndarray) -> Any:
    """vectorbt 1.0 with the options matched to our kernel (see the module docstring)."""
    import vectorbt as vbt

    return vbt.Portfolio.from_orders(
        close=inputs["close"],
        size=size,
        size_type="targetpercent",
        direction="longonly",
        price=inputs["open"],
        val_price=-np.inf,  # the previous close: our orders are sized at the decision close
        update_value=False,
        fees=COMMISSION_BPS / 1e4,
        slippage=SLIPPAGE_BPS / 1e4,
        init_cash=INITIAL_CASH,
        cash_sharing=True,
        group_by=True,
        call_seq="auto",
        freq="1D",
    )


def _best_of(fn: Callable[[], Any], repeats: int) -> tuple[float, float, Any]:
    """Best wall time of ``repeats`` calls, the share of all the calls' wall time spent in the
    OS (NaN when too short for the CPU-time clock to resolve), and the last result."""
    best, total_wall, total_sys, result = float("inf"), 0.0, 0.0, None
    for _ in range(repeats):
        result = None  # free the previous result before the next call allocates its own
        before = resource.getrusage(resource.RUSAGE_SELF)
        t0 = time.perf_counter()
        result = fn()
        wall = time.perf_counter() - t0
        after = resource.getrusage(resource.RUSAGE_SELF)
        best = min(best, wall)
        total_wall += wall
        total_sys += after.ru_stime - before.ru_stime
    sys_share = total_sys / total_wall if total_wall > 0.1 else float("nan")
    return best, sys_share, result


def bench(n_tickers: int, n_days: int, repeats: int) -> dict[str, float]:
    inputs = make_inputs(n_tickers, n_days)
    # vectorbt trades row t's size on row t: shift our decisions down one session.
    size = np.vstack([np.full((1, n_tickers), np.nan), inputs["target_weight"][:-1]])
    cells = n_tickers * n_days

    full_s, full_sys, _ = _best_of(lambda: run_ours(inputs, matched=False), repeats)
    records_s, _, _ = _best_of(lambda: run_ours(inputs, matched=False, records=True), repeats)
    matched_s, _, ours = _best_of(lambda: run_ours(inputs, matched=True), repeats)
    vbt_repeats = min(repeats, 2) if cells > 1_000_000 else repeats
    vbt_s, _, portfolio = _best_of(lambda: run_vectorbt(inputs, size), vbt_repeats)
    # Our kernel returns the equity curve; vectorbt's from_orders returns order records and
    # computes the equity curve on request: time that too, for the like-for-like figure.
    vbt_curve_s, _, vbt_value = _best_of(lambda: run_vectorbt(inputs, size).value(), vbt_repeats)

    our_equity = ours[9]
    vbt_equity = np.asarray(vbt_value).ravel()
    curve_diff = float(np.max(np.abs(our_equity - vbt_equity) / np.abs(vbt_equity)))
    final_diff = abs(our_equity[-1] - vbt_equity[-1]) / abs(vbt_equity[-1])
    return {
        "tickers": n_tickers,
        "days": n_days,
        "full": cells / full_s,
        "full_sys": full_sys,
        "records": cells / records_s,
        "matched": cells / matched_s,
        "vectorbt": cells / vbt_s,
        "vectorbt_curve": cells / vbt_curve_s,
        "final_diff": final_diff,
        "curve_diff": curve_diff,
        "trades": len(ours[10]),
        "vbt_orders": len(portfolio.orders.values),
    }


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--quick", action="store_true", help="only the first two sizes")
    parser.add_argument("--repeats", type=int, default=3, help="best of this many runs")
    args = parser.parse_args()
    warnings.filterwarnings("ignore")  # vectorbt's deprecation chatter

    # Warm up both engines (numba JIT compile, or load from cache) outside the timings.
    small = make_inputs(3, 30)
    run_ours(small, matched=False)
    run_ours(small, matched=True)
    run_ours(small, matched=False, records=True)
    run_vectorbt(small, small["target_weight"]).value()

    print(
        "backtest kernel vs vectorbt 1.0 Portfolio.from_orders in Mcells/s (sessions × tickers / s)"
    )
    header = (
        f"{'tickers':>7} {'days':>6} | {'ours full':>9} {'(sys)':>5} | {'ours match':>10} | "
        f"{'vbt orders':>10} {'+equity':>8} | {'ratio':>6} {'ratio':>6} | {'final':>8} {'curve':>8}"
    )
    print(header)
    print(
        f"{'':>7} {'':>6} | {'':>9} {'':>5} | {'':>10} | {'':>10} {'':>8} | "
        f"{'orders':>6} {'+eq':>6} | {'eq diff':>8} {'max diff':>8}"
    )
    print("-" * len(header))
    failures = []
    for n_tickers, n_days in SIZES[:2] if args.quick else SIZES:
        r = bench(n_tickers, n_days, args.repeats)
        sys_share = "-" if math.isnan(r["full_sys"]) else f"{r['full_sys']:.0%}"
        print(
            f"{r['tickers']:>7} {r['days']:>6} | {r['full'] / 1e6:>9.1f} {sys_share:>5} | "
            f"{r['matched'] / 1e6:>10.1f} | {r['vectorbt'] / 1e6:>10.2f} "
            f"{r['vectorbt_curve'] / 1e6:>8.2f} | {r['matched'] / r['vectorbt']:>5.1f}x "
            f"{r['matched'] / r['vectorbt_curve']:>5.1f}x | "
            f"{r['final_diff']:>8.1e} {r['curve_diff']:>8.1e}",
            flush=True,
        )
        print(
            f"{'':>7} {'':>6}   all features, trade records only (no dense trade arrays): "
            f"{r['records'] / 1e6:.1f} Mcells/s = {r['records'] / r['vectorbt_curve']:.1f}x "
            "vbt orders + equity",
            flush=True,
        )
        if r["trades"] != r["vbt_orders"] or r["curve_diff"] > MAX_EQUITY_DIFF:
            failures.append(f"{n_tickers} × {n_days}: {r}")
    print(LEGEND)
    if failures:
        sys.exit("equity mismatch against vectorbt:\n" + "\n".join(failures))


if __name__ == "__main__":
    main()
