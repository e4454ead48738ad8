"""Benchmark: the study's batched trial book against vectorbt 1.0 with one column per trial,
and against a bare numba loop doing the same accounting without the costs machinery.

Prints throughput (trials/s, cells = sessions × tickers × trials per second) and ratios
measured in one run (never asserted: performance is reported, not tested); the engines' calls
take turns, best of ``--repeats``, so load from other work on the machine hits them alike. The
only checks are correctness: the bare loop must end on our equity curves bit for bit, and
vectorbt within 1e-9.

    python benchmarks/bench_trial_book.py          # 20 × 2,520, 500 × 5,040, 2,000 × 5,040
    python benchmarks/bench_trial_book.py --trials 20 --quick    # the first two sizes

Inputs: ``bench_backtest.make_inputs`` (seeded random-walk closes, gapping opens, long-only
random targets re-drawn every session with gross 0.5-0.9, so the cash constraint never binds).
A batch holds ``--targets`` distinct target grids (trial k trades grid k mod n), and every trial
its own commission and slippage: parameter broadcasting, one book per trial.

Engines, each given every trial of a batch:

* ours: :func:`quant_assets.backtest.trial_book.simulate_trials` — per trial the daily equity,
  return and turnover and the trade count, from the kernel's own order step. ``match`` is
  configured as vectorbt (impact 0, unrounded shares); ``full`` has impact (k 0.1) and 1-share
  lots. 1 thread and numba's threads (2 here), blocks of trials per thread.
* bare: :func:`bare_trials` below, the lower bound — the same decisions, fills, fees, slippage
  and marks in the same order, without impact, lot rounding, the cash-scaling of buys, the
  input checks or trade records; the same threading.
* vectorbt: ``Portfolio.from_orders`` with the options of ``bench_backtest.run_vectorbt``, the
  trials side by side (n_tickers columns each, one cash-sharing group per trial), fees and
  slippage per column; ``+equity`` also computes ``.value()``, the curve ours returns. The
  tiled inputs are built outside the timing. vectorbt's inputs grow with trials × cells, so at
  the large sizes it runs only as many trials as fit ``--vbt-cells`` (its time is linear in
  the columns); its rate is per trial, compared per trial.
"""

from __future__ import annotations

import argparse
import math
import os
import resource
import sys
import time
import warnings
from collections.abc import Callable
from typing import Any

import numba
import numpy as np
from bench_backtest import INITIAL_CASH, make_inputs  # benchmarks/ is sys.path[0]
from numba import njit, prange

from quant_assets.backtest.kernel import FILL_NEXT_OPEN
from quant_assets.backtest.trial_book import N_BOOK_PARAMETERS, simulate_trials

SIZES = [(20, 2_520), (500, 5_040), (2_000, 5_040)]  # (tickers, sessions)
IMPACT_COEFFICIENT = 0.1
MAX_EQUITY_DIFF = 1e-9
STUDY_TRIALS, STUDY_SESSIONS = 1_000, 7_300  # the study this book is for (20 tickers)
LEGEND = """
ours match: simulate_trials configured as vectorbt (impact 0, unrounded shares); ours full:
            impact (k 0.1) and 1-share lots. 1t / 2t: one thread / numba's threads.
bare:       the same accounting, no impact, lots, cash scaling, checks or records (lower bound).
vbt:        from_orders, one cash-sharing group of n_tickers columns per trial, + .value();
            run on vbt trials (memory), rates per trial.
x vbt:      ours match (best threading) trials/s / vectorbt's; / bare: bare trials/s / ours at
            the same thread count (1.0 = as fast as the bare loop).
flt/trial:  minor page faults per trial of the ours-match run (fresh memory touched)."""


@njit(cache=True)
def bare_trial(
    target_weight: np.ndarray,
    open_price: np.ndarray,
    close_price: np.ndarray,
    initial_cash: float,
    commission_rate: float,
    slippage: float,
    shares: np.ndarray,
    mark: np.ndarray,
    order: np.ndarray,
    equity: np.ndarray,
    portfolio_return: np.ndarray,
    turnover: np.ndarray,
) -> int:
    """One book, the lower bound: orders sized at the close (target × equity / close −
    shares), filled at the next open (the close without one) moved by slippage, commission on
    the fill, sells then buys in column order, marked at the close. No impact, lots, cash
    scaling, checks or records. ``shares``, ``mark``, ``order``: (n_tickers,) work rows."""
    n_dates, n_tickers = target_weight.shape
    shares[:] = 0.0
    mark[:] = np.nan
    order[:] = 0.0
    cash = initial_cash
    previous_equity = initial_cash
    n_trades = 0
    for t in range(n_dates):
        traded = 0.0
        for side in range(2):  # sells first: they raise the cash the buys spend
            for i in range(n_tickers):
                quantity = order[i]
                if quantity == 0.0 or (side == 0) != (quantity < 0.0):
                    continue
                reference = open_price[t, i]
                if not np.isfinite(reference):
                    reference = close_price[t, i]
                    if not np.isfinite(reference):
                        continue
                if quantity < 0.0:
                    fill = reference * (1.0 - slippage)
                    fee = -quantity * fill * commission_rate
                else:
                    fill = reference * (1.0 + slippage)
                    fee = quantity * fill * commission_rate
                cash -= quantity * fill + fee
                shares[i] += quantity
                traded += abs(quantity * fill)
                n_trades += 1
        value = cash
        for i in range(n_tickers):
            if np.isfinite(close_price[t, i]):
                mark[i] = close_price[t, i]
            if shares[i] != 0.0:
                value += shares[i] * mark[i]
        equity[t] = value
        portfolio_return[t] = value / previous_equity - 1.0
        turnover[t] = traded / previous_equity
        previous_equity = value
        for i in range(n_tickers):
            target = target_weight[t, i]
            if np.isfinite(target) and np.isfinite(mark[i]) and value > 0.0:
                target_shares = target * value / mark[i]
                order[i] = -shares[i] if target_shares == 0.0 else target_shares - shares[i]
            else:
                order[i] = 0.0
    return n_trades


@njit(cache=True, parallel=True)
def bare_trials(
    target_weight: np.ndarray,
    target_of_trial: np.ndarray,
    open_price: np.ndarray,
    close_price: np.ndarray,
    parameters: np.ndarray,
    equity: np.ndarray,
    portfolio_return: np.ndarray,
    turnover: np.ndarray,
    trade_count: np.ndarray,
    n_threads: int,
) -> None:
    """:func:`bare_trial` over trials, threaded like ``simulate_trials`` (work rows per
    thread, trials handed out one by one)."""
    n_trials = target_of_trial.shape[0]
    n_tickers = target_weight.shape[2]
    work = np.empty((n_threads, 3, n_tickers))
    for trial in prange(n_trials):
        rows = work[numba.get_thread_id()]
        trade_count[trial] = bare_trial(
            target_weight[target_of_trial[trial]],
            open_price,
            close_price,
            parameters[trial, 0],
            parameters[trial, 2] * 1e-4,
            parameters[trial, 3] * 1e-4,
            rows[0],
            rows[1],
            rows[2],
            equity[trial],
            portfolio_return[trial],
            turnover[trial],
        )


def trial_parameters(n_trials: int, *, full: bool) -> np.ndarray:
    """One book parameter row per trial (trial_book.BOOK_PARAMETER_COLUMNS): commission 0.5-3
    bp and slippage 0-5 bp varied over the trials; ``full`` adds impact and 1-share lots."""
    rows = np.zeros((n_trials, N_BOOK_PARAMETERS))
    rows[:, 0] = INITIAL_CASH
    rows[:, 1] = FILL_NEXT_OPEN
    rows[:, 2] = np.linspace(0.5, 3.0, n_trials)
    rows[:, 3] = np.linspace(5.0, 0.0, n_trials)
    rows[:, 4] = IMPACT_COEFFICIENT if full else 0.0
    rows[:, 5] = 1.0 if full else 0.0  # 0: unrounded (vectorbt's fractional shares)
    rows[:, 6] = 0.0  # no borrowing
    return rows


def make_batch(n_tickers: int, n_days: int, n_targets: int) -> dict[str, np.ndarray]:
    """The shared market of ``make_inputs`` and ``n_targets`` target grids (n_targets,
    n_days, n_tickers), each from its own seed."""
    market = make_inputs(n_tickers, n_days)
    targets = np.empty((n_targets, n_days, n_tickers))
    targets[0] = market.pop("target_weight")
    for k in range(1, n_targets):
        targets[k] = make_inputs(n_tickers, n_days, seed=7 + k)["target_weight"]
    return {**market, "targets": targets}


def outputs(n_trials: int, n_days: int) -> list[np.ndarray]:
    return [np.empty((n_trials, n_days)) for _ in range(3)] + [np.zeros(n_trials, np.int64)]


def run_ours(batch: dict[str, np.ndarray], parameters: np.ndarray, threads: int) -> list:
    n_trials = parameters.shape[0]
    out = outputs(n_trials, batch["close"].shape[0])
    simulate_trials(
        batch["targets"],
        np.arange(n_trials) % batch["targets"].shape[0],
        batch["open"],
        batch["close"],
        batch["daily_vol"],
        batch["adv_shares"],
        parameters,
        *out,
        n_threads=threads,
    )
    return out


def run_bare(batch: dict[str, np.ndarray], parameters: np.ndarray, threads: int) -> list:
    n_trials = parameters.shape[0]
    out = outputs(n_trials, batch["close"].shape[0])
    previous = numba.get_num_threads()
    numba.set_num_threads(threads)
    try:
        with numba.parallel_chunksize(1):  # as simulate_trials schedules its trials
            bare_trials(
                batch["targets"],
                np.arange(n_trials) % batch["targets"].shape[0],
                batch["open"],
                batch["close"],
                parameters,
                *out,
                threads,
            )
    finally:
        numba.set_num_threads(previous)
    return out


def vectorbt_inputs(batch: dict[str, np.ndarray], parameters: np.ndarray) -> dict[str, Any]:
    """The trials side by side for vectorbt: close and open tiled per trial, each trial's
    targets shifted down one row (vectorbt trades row t's size on row t), fees and slippage
    per column, one group per trial."""
    n_trials = parameters.shape[0]
    n_days, n_tickers = batch["close"].shape
    targets = batch["targets"]
    size = np.full((n_days, n_trials * n_tickers), np.nan)
    for trial in range(n_trials):
        grid = targets[trial % targets.shape[0]]
        size[1:, trial * n_tickers : (trial + 1) * n_tickers] = grid[:-1]
    return {
        "close": np.tile(batch["close"], n_trials),
        "price": np.tile(batch["open"], n_trials),
        "size": size,
        "fees": np.repeat(parameters[:, 2] * 1e-4, n_tickers),
        "slippage": np.repeat(parameters[:, 3] * 1e-4, n_tickers),
        "group_by": np.repeat(np.arange(n_trials), n_tickers),
    }


def run_vectorbt(tiled: dict[str, Any]) -> Any:
    """bench_backtest.run_vectorbt's options, per-column costs, one cash group per trial."""
    import vectorbt as vbt

    return vbt.Portfolio.from_orders(
        close=tiled["close"],
        size=tiled["size"],
        size_type="targetpercent",
        direction="longonly",
        price=tiled["price"],
        val_price=-np.inf,  # the previous close: our orders are sized at the decision close
        update_value=False,
        fees=tiled["fees"],
        slippage=tiled["slippage"],
        init_cash=INITIAL_CASH,
        cash_sharing=True,
        group_by=tiled["group_by"],
        call_seq="auto",
        freq="1D",
    )


def _interleaved_best(
    engines: dict[str, Callable[[], Any]], repeats: int
) -> tuple[dict[str, float], dict[str, float], dict[str, Any]]:
    """Best wall time of ``repeats`` calls of each engine, the calls taking turns (engine A,
    B, …, A, B, …) so that other work on a shared machine slows them alike; also the minor
    page faults per call and each engine's last result."""
    best = dict.fromkeys(engines, float("inf"))
    faults = dict.fromkeys(engines, 0.0)
    results: dict[str, Any] = dict.fromkeys(engines)
    for _ in range(repeats):
        for name, fn in engines.items():
            results[name] = None  # free the previous result before the call allocates its own
            before = resource.getrusage(resource.RUSAGE_SELF).ru_minflt
            started = time.perf_counter()
            results[name] = fn()
            best[name] = min(best[name], time.perf_counter() - started)
            faults[name] += (resource.getrusage(resource.RUSAGE_SELF).ru_minflt - before) / repeats
    return best, faults, results


def bench(
    n_tickers: int, n_days: int, n_trials: int, n_targets: int, repeats: int, vbt_cells: float
) -> dict[str, Any]:
    batch = make_batch(n_tickers, n_days, min(n_targets, n_trials))
    matched = trial_parameters(n_trials, full=False)
    full = trial_parameters(n_trials, full=True)
    threads = numba.get_num_threads()
    r: dict[str, Any] = {"tickers": n_tickers, "days": n_days, "trials": n_trials}
    seconds, faults, results = _interleaved_best(
        {
            "match1": lambda: run_ours(batch, matched, 1),
            "match2": lambda: run_ours(batch, matched, threads),
            "full1": lambda: run_ours(batch, full, 1),
            "full2": lambda: run_ours(batch, full, threads),
            "bare1": lambda: run_bare(batch, matched, 1),
            "bare2": lambda: run_bare(batch, matched, threads),
        },
        repeats,
    )
    r.update(seconds)
    r["faults"] = faults["match1"]
    ours, bare = results["match1"], results["bare1"]
    r["bare_equal"] = bool(np.array_equal(bare[0], ours[0]) and np.array_equal(bare[3], ours[3]))

    vbt_trials = max(1, min(n_trials, int(vbt_cells // (n_tickers * n_days))))
    tiled = vectorbt_inputs(batch, matched[:vbt_trials])
    vbt_repeats = 1 if vbt_trials * n_tickers * n_days > 5e6 else repeats
    r["vbt_trials"] = vbt_trials
    seconds, _, results = _interleaved_best(
        {"vbt": lambda: run_vectorbt(tiled), "vbt_eq": lambda: run_vectorbt(tiled).value()},
        vbt_repeats,
    )
    r.update(seconds)
    vbt_equity = np.asarray(results["vbt_eq"]).T  # (vbt_trials, n_days), one group per trial
    r["vbt_diff"] = float(np.max(np.abs(ours[0][:vbt_trials] - vbt_equity) / vbt_equity))
    r["trades_equal"] = bool(ours[3][:vbt_trials].sum() == len(results["vbt"].orders.values))
    return r


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--trials", type=int, default=50, help="trials per batch")
    parser.add_argument("--targets", type=int, default=4, help="distinct target grids")
    parser.add_argument("--quick", action="store_true", help="only the first two sizes")
    parser.add_argument("--repeats", type=int, default=3, help="best of this many runs")
    parser.add_argument(
        "--vbt-cells", type=float, default=3e7, help="cap on vectorbt's trials × cells per run"
    )
    args = parser.parse_args()
    warnings.filterwarnings("ignore")  # vectorbt's deprecation chatter

    # Warm up every engine (numba JIT compile, or load from cache) outside the timings.
    small = make_batch(3, 30, 2)
    for threads in (1, numba.get_num_threads()):
        run_ours(small, trial_parameters(4, full=True), threads)
        run_bare(small, trial_parameters(4, full=False), threads)
    run_vectorbt(vectorbt_inputs(small, trial_parameters(2, full=False))).value()

    print(
        f"trial book: {args.trials} trials per batch ({args.targets} target grids), "
        f"{numba.get_num_threads()} threads; rates in trials/s and Mcells/s "
        "(sessions × tickers × trials / s)"
    )
    # Other work on the machine steals the second thread's core: say how busy it was.
    print(f"load average at start: {os.getloadavg()[0]:.1f} on {os.cpu_count()} cores")
    header = (
        f"{'tickers':>7} {'days':>5} | {'ours match 1t':>13} {'2t':>7} | {'full 1t':>7} "
        f"{'2t':>7} | {'bare 1t':>7} {'2t':>7} | {'vbt':>6} {'+eq':>6} {'(n)':>4} | "
        f"{'x vbt':>6} {'/bare1':>6} {'/bare2':>6} | {'flt/trial':>9} {'vbt diff':>8}"
    )
    print(header)
    print("-" * len(header))
    failures = []
    for n_tickers, n_days in SIZES[:2] if args.quick else SIZES:
        r = bench(n_tickers, n_days, args.trials, args.targets, args.repeats, args.vbt_cells)
        trials_cells = r["trials"] * n_tickers * n_days

        def rate(seconds: float, trials: int) -> float:
            return trials / seconds

        ours_best = min(r["match1"], r["match2"])
        vbt_rate = rate(r["vbt_eq"], r["vbt_trials"])
        print(
            f"{n_tickers:>7} {n_days:>5} | "
            f"{rate(r['match1'], r['trials']):>13.1f} {rate(r['match2'], r['trials']):>7.1f} | "
            f"{rate(r['full1'], r['trials']):>7.1f} {rate(r['full2'], r['trials']):>7.1f} | "
            f"{rate(r['bare1'], r['trials']):>7.1f} {rate(r['bare2'], r['trials']):>7.1f} | "
            f"{rate(r['vbt'], r['vbt_trials']):>6.2f} {vbt_rate:>6.2f} {r['vbt_trials']:>4} | "
            f"{rate(ours_best, r['trials']) / vbt_rate:>5.0f}x "
            f"{r['match1'] / r['bare1']:>5.2f}x {r['match2'] / r['bare2']:>5.2f}x | "
            f"{r['faults'] / r['trials']:>9.0f} {r['vbt_diff']:>8.1e}",
            flush=True,
        )
        print(
            f"{'':>7} {'':>5}   Mcells/s: ours match {trials_cells / ours_best / 1e6:.0f}, "
            f"full {trials_cells / min(r['full1'], r['full2']) / 1e6:.0f}, "
            f"bare {trials_cells / min(r['bare1'], r['bare2']) / 1e6:.0f}, "
            f"vbt +eq {vbt_rate * n_tickers * n_days / 1e6:.1f}",
            flush=True,
        )
        if n_tickers == SIZES[0][0]:
            per_trial = ours_best / r["trials"] * STUDY_SESSIONS / n_days
            print(
                f"{'':>7} {'':>5}   a study of {STUDY_TRIALS:,} trials × {STUDY_SESSIONS:,} "
                f"sessions at this rate: {per_trial * STUDY_TRIALS:.1f} s of book",
                flush=True,
            )
        if not r["bare_equal"]:
            failures.append(f"{n_tickers} × {n_days}: the bare loop's equity differs from ours")
        if r["vbt_diff"] > MAX_EQUITY_DIFF or not r["trades_equal"] or math.isnan(r["vbt_diff"]):
            failures.append(f"{n_tickers} × {n_days}: vectorbt's equity or trades differ: {r}")
    print(f"load average at end: {os.getloadavg()[0]:.1f}")
    print(LEGEND)
    if failures:
        sys.exit("mismatch:\n" + "\n".join(failures))


if __name__ == "__main__":
    main()
