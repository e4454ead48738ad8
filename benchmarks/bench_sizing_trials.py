"""Benchmark: the numba sizing engine over many trials against ``size_positions``.

Prints the time per trial of ``size_positions`` (the reference, pure Python/NumPy per date,
measured on ONE trial) and of the numba engine (serial and ``prange`` across trials, in
batches that reuse one output buffer), the ratios measured in this run, trials per second and
the projected time of a 1,000-trial study. Performance is reported, not asserted; the only
check is correctness: the engine's first trial must equal ``size_positions`` to 1e-9.

    python benchmarks/bench_sizing_trials.py                  # 50 and 200 trials
    python benchmarks/bench_sizing_trials.py --trials 1000    # the study size
    python benchmarks/bench_sizing_trials.py --quick          # 10 years, 50 trials

The market: 20 tickers × 7,300 sessions (29 years) of seeded fat-tailed returns with 1 %
missing closes, a random alpha per (date, ticker) and regimes cycling through the four labels.
Trials vary the sizing and risk parameters of ``configs/strategies/hybrid_alpha.yaml`` (Kelly
fraction, IC, target volatility, caps, turnover limit, VaR/CVaR limits, EVT refit interval,
drawdown guard) around their configured values, and use one of four alpha variants each.
"""

from __future__ import annotations

import argparse
import math
import os
import sys
import time
from datetime import date, timedelta
from pathlib import Path

import numpy as np
import polars as pl

from quant_assets.names import REGIME_NAMES
from quant_assets.risk import PositionState, size_positions
from quant_assets.risk.sizing_kernel import (
    TRIAL_PARAMETERS,
    SizedTrials,
    size_trials,
    sizing_inputs,
    trial_parameters,
)
from quant_assets.settings import load_settings

CONFIGS = Path(__file__).resolve().parents[1] / "configs"
N_TICKERS = 20
N_ALPHAS = 4
MAX_DIFF = 1e-9
# Parameter -> (low, high) multipliers drawn uniformly around the configured value.
VARIED = {
    "kelly_fraction": (0.5, 2.0),
    "information_coefficient": (0.5, 2.0),
    "target_volatility": (0.5, 2.0),
    "max_weight": (0.5, 2.0),
    "max_turnover": (0.5, 2.0),
    "var_limit": (0.5, 1.5),
    "var_cvar_limit": (0.5, 1.5),
    "drawdown_guard_start": (0.5, 1.0),
}


def make_market(n_sessions: int, seed: int = 7) -> tuple[pl.DataFrame, pl.DataFrame, pl.DataFrame]:
    """(closes, alpha, regimes) frames as the pipeline stores them, business days from 1995."""
    rng = np.random.default_rng(seed)
    days = [date(1995, 1, 2) + timedelta(days=i) for i in range(n_sessions * 7 // 5 + 10)]
    days = [d for d in days if d.weekday() < 5][:n_sessions]
    tickers = [f"T{i:02d}" for i in range(N_TICKERS)]
    returns = rng.standard_t(4, size=(n_sessions, N_TICKERS)) * 0.01 + 0.0003
    close = 100 * np.exp(np.cumsum(returns, axis=0))
    close[rng.random(close.shape) < 0.01] = np.nan
    grid = {"date": [d for d in days for _ in tickers], "ticker": tickers * n_sessions}
    closes = pl.DataFrame({**grid, "close": close.ravel()}).filter(pl.col("close").is_not_nan())
    alpha = pl.DataFrame(
        {**grid, "alpha_score": rng.uniform(-1, 1, n_sessions * N_TICKERS), "confidence": 1.0}
    )
    labels = [REGIME_NAMES[(i // 60) % len(REGIME_NAMES)] for i in range(n_sessions)]
    return closes, alpha, pl.DataFrame({"date": days, "regime_label": labels})


def make_trials(base: np.ndarray, n_trials: int, seed: int = 3) -> np.ndarray:
    """``n_trials`` parameter rows: trial 0 is ``base``, the others vary :data:`VARIED`."""
    rng = np.random.default_rng(seed)
    params = np.repeat(base[None], n_trials, axis=0)
    for name, (low, high) in VARIED.items():
        column = TRIAL_PARAMETERS.index(name)
        params[1:, column] *= rng.uniform(low, high, n_trials - 1)
    refit = TRIAL_PARAMETERS.index("evt_refit_every_sessions")
    params[1:, refit] = rng.choice([5, 10, 21, 42], n_trials - 1)
    return params


def run_batches(
    market: dict, alphas: np.ndarray, params: np.ndarray, batch: int, parallel: bool
) -> tuple[float, SizedTrials]:
    """Wall time of sizing every trial in batches of ``batch`` into one reused buffer."""
    n_dates = alphas.shape[1]
    out = SizedTrials.allocate(batch, n_dates, N_TICKERS)
    alpha_index = np.arange(len(params)) % N_ALPHAS
    first: SizedTrials | None = None
    t0 = time.perf_counter()
    for lo in range(0, len(params), batch):
        sized = size_trials(
            market["returns"],
            market["decision_index"],
            market["regime_code"],
            alphas,
            params[lo : lo + batch],
            alpha_index=alpha_index[lo : lo + batch],
            out=out,
            parallel=parallel,
        )
        if first is None:  # keep trial 0 for the correctness check
            first = SizedTrials(*(np.array(a[:1]) for a in vars(sized).values()))
    assert first is not None
    return time.perf_counter() - t0, first


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--trials", type=int, nargs="+", default=[50, 200])
    parser.add_argument("--sessions", type=int, default=7_300)
    parser.add_argument("--batch", type=int, default=50, help="trials per reused buffer")
    parser.add_argument("--quick", action="store_true", help="2,520 sessions, 50 trials")
    args = parser.parse_args()
    n_sessions = 2_520 if args.quick else args.sessions
    trial_counts = [50] if args.quick else args.trials

    closes, alpha, regimes = make_market(n_sessions)
    tickers = sorted(closes["ticker"].unique().to_list())
    start = closes["date"].unique().sort()[300]
    strategy = load_settings(CONFIGS).strategies["hybrid_alpha"]
    inputs = sizing_inputs(alpha, closes, regimes, start=start, tickers=tickers)
    rng = np.random.default_rng(5)
    noisy = [
        np.clip(inputs.alpha_scores + rng.normal(0, 0.3, inputs.alpha_scores.shape), -1, 1)
        for _ in range(N_ALPHAS - 1)
    ]
    alphas = np.stack([inputs.alpha_scores, *noisy])
    market = {
        "returns": inputs.returns,
        "decision_index": inputs.decision_index,
        "regime_code": inputs.regime_code,
    }
    base = trial_parameters(strategy)
    n_dates = len(inputs.dates)

    # Warm up (numba compile or cache load) outside the timings.
    run_batches(market, alphas, make_trials(base, 2), 2, parallel=False)
    run_batches(market, alphas, make_trials(base, 2), 2, parallel=True)

    t0 = time.perf_counter()
    reference = size_positions(
        alpha, closes, regimes, strategy, start=start, state=PositionState(), tickers=tickers
    ).rows
    python_s = time.perf_counter() - t0

    cores = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count()
    print(
        f"sizing {N_TICKERS} tickers × {n_dates:,} decision dates "
        f"({inputs.returns.shape[0]:,} sessions of returns), {cores} core(s), batches of "
        f"{args.batch}"
    )
    print(f"size_positions (Python, 1 trial): {python_s:.2f} s/trial")
    header = (
        f"{'trials':>6} | {'serial ms/trial':>15} {'vs Python':>9} | "
        f"{'prange ms/trial':>15} {'vs Python':>9} {'vs serial':>9} | "
        f"{'trials/s':>8} {'1,000 trials':>12} | {'max diff':>8}"
    )
    print(header)
    print("-" * len(header))
    failures = []
    for n_trials in trial_counts:
        params = make_trials(base, n_trials)
        serial_s, _ = run_batches(market, alphas, params, args.batch, parallel=False)
        parallel_s, first = run_batches(market, alphas, params, args.batch, parallel=True)
        expected = reference["target_weight"].to_numpy().reshape(n_dates, N_TICKERS)
        max_diff = float(np.abs(first.target_weight[0] - expected).max())
        serial_per, parallel_per = serial_s / n_trials, parallel_s / n_trials
        print(
            f"{n_trials:>6} | {serial_per * 1e3:>15.1f} {python_s / serial_per:>8.0f}x | "
            f"{parallel_per * 1e3:>15.1f} {python_s / parallel_per:>8.0f}x "
            f"{serial_per / parallel_per:>8.2f}x | {1 / parallel_per:>8.1f} "
            f"{1000 * parallel_per:>10.1f} s | {max_diff:>8.1e}",
            flush=True,
        )
        if not max_diff <= MAX_DIFF or math.isnan(max_diff):
            failures.append(f"{n_trials} trials: trial 0 differs from size_positions by {max_diff}")
    print(
        "\nms/trial: wall time / trials (prange: trials across cores). vs Python: size_positions "
        "time per trial / ours.\n1,000 trials: projected prange time of the study. max diff: "
        "|target weight - size_positions'| of trial 0 (the configured hybrid_alpha)."
    )
    if failures:
        sys.exit("\n".join(failures))


if __name__ == "__main__":
    main()
