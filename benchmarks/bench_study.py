"""Benchmark: a whole study — every trial's alpha → positions → book — vectorised in numba,
against the strategy path it reproduces.

Prints the wall time of ``evaluate_vectorised`` for N trials (default 1,000) of
``configs/strategies/hybrid_alpha.yaml`` over 20 tickers × 29 years, trials per second, cells
(sessions × tickers) per second, and the ratio to the reference (``evaluate_reference``:
``combine_signals`` → ``size_positions`` → ``run_book``) measured in the same run on one trial.
It then runs the study's walk-forward selection and statistics (PBO over every trial). Only
correctness is checked: the first trial's returns must equal the reference's bit for bit.

    python benchmarks/bench_study.py                 # 1,000 trials
    python benchmarks/bench_study.py --trials 200    # quicker

The market is synthetic and seeded (the synthetic provider's bars, random signals and model
probabilities, regimes cycling through the four labels), so it runs without ``make demo``.
The trials vary alpha (disagreement penalty, z-score scale), sizing (Kelly fraction, target
volatility, name cap, turnover limit) and risk (drawdown guard) keys: 5 alpha configurations.
"""

from __future__ import annotations

import argparse
import os
import time
from datetime import date

import numpy as np
import polars as pl

from quant_assets.names import REGIME_NAMES, REGIME_PROB_COLUMNS
from quant_assets.providers.synthetic import SyntheticProvider
from quant_assets.research.studies import (
    StudyInputs,
    evaluate_reference,
    select_walk_forward,
    study_trials,
    walk_forward_folds,
)
from quant_assets.research.trials import evaluate_vectorised
from quant_assets.settings import StudySettings, load_settings

TICKERS = [f"T{i:02d}" for i in range(20)]
START, END = date(1994, 1, 3), date(2022, 12, 30)
HISTORY = date(1993, 1, 4)


def synthetic_inputs(seed: int = 7) -> StudyInputs:
    provider = SyntheticProvider(seed=seed, benchmark="IDX", origin=HISTORY, end=END)
    bars = provider.fetch_bars([*TICKERS, "IDX"], HISTORY, END)
    stocks = bars.filter(pl.col("ticker") != "IDX")
    benchmark = bars.filter(pl.col("ticker") == "IDX").select("date", "close")
    rng = np.random.default_rng(seed)
    keys = stocks.filter(pl.col("date") >= START).select("date", "ticker").sort("date", "ticker")
    n = keys.height
    signals = keys.with_columns(
        pl.lit(True).alias("warmed_up"),
        *[
            pl.Series(name, np.tanh(rng.normal(0, 0.8, n)))
            for name in ("trend_alpha", "mean_rev_alpha", "vol_alpha", "rel_strength_alpha")
        ],
    )
    predictions = []
    for horizon in (1, 3, 5):
        raw = rng.dirichlet([3, 2, 3], n)
        predictions.append(
            keys.with_columns(
                pl.lit(horizon).alias("horizon"),
                pl.Series("prob_down", raw[:, 0]),
                pl.Series("prob_flat", raw[:, 1]),
                pl.Series("prob_up", raw[:, 2]),
                pl.Series("prob_pred_state", raw.max(axis=1)),
            )
        )
    dates = keys["date"].unique().sort()
    labels = [REGIME_NAMES[(i // 60) % len(REGIME_NAMES)] for i in range(dates.len())]
    probabilities = rng.dirichlet([1, 1, 1, 1], dates.len())
    regimes = pl.DataFrame({"date": dates, "regime_label": labels}).with_columns(
        pl.Series(column, probabilities[:, k]) for k, column in enumerate(REGIME_PROB_COLUMNS)
    )
    return StudyInputs(
        signals=signals,
        predictions=pl.concat(predictions),
        regimes=regimes,
        bars=stocks.select("date", "ticker", "open", "close", "volume"),
        benchmark=benchmark,
        tickers=TICKERS,
        start=START,
    )


def study(n_trials: int) -> StudySettings:
    return StudySettings.model_validate(
        {
            "name": "bench",
            "base": "hybrid_alpha",
            "space": {
                "alpha.disagreement_penalty": {"low": 0.0, "high": 2.0},
                "alpha.zscore_scale": [1.0, 2.0, 3.0, 4.0, 5.0],
                "sizing.kelly_fraction": {"low": 0.1, "high": 0.8},
                "sizing.target_volatility": {"low": 0.05, "high": 0.2},
                "sizing.max_weight": {"low": 0.05, "high": 0.25},
                "sizing.max_turnover": {"low": 0.1, "high": 0.5},
                "risk.drawdown.guard_start": {"low": 0.05, "high": 0.1},
            },
            "search": {"method": "sample", "trials": n_trials, "seed": 3},
            "walk_forward": {"train_sessions": 1260, "test_sessions": 252},
        }
    )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--trials", type=int, default=1000)
    args = parser.parse_args()
    settings = load_settings()
    base = settings.strategies["hybrid_alpha"]
    started = time.perf_counter()
    inputs = synthetic_inputs()
    the_study = study(args.trials)
    trials = study_trials(the_study, base)
    print(
        f"{len(trials)} trials (distinct of {args.trials} sampled), {len(TICKERS)} tickers, "
        f"{inputs.regimes.height} sessions; inputs built in {time.perf_counter() - started:.1f} s"
    )
    evaluate_vectorised(inputs, trials[:2])  # compile or load the numba cache first
    started = time.perf_counter()
    fast = evaluate_vectorised(inputs, trials)
    vectorised = time.perf_counter() - started
    started = time.perf_counter()
    slow = evaluate_reference(inputs, trials[:1])
    reference = time.perf_counter() - started
    equal = np.array_equal(fast.returns[:, 0], slow.returns[:, 0])
    cells = fast.returns.shape[0] * len(TICKERS)
    per_trial = vectorised / len(trials)
    print(f"reference (strategy path), one trial: {reference:.2f} s")
    print(
        f"vectorised, {len(trials)} trials: {vectorised:.1f} s = {per_trial * 1000:.1f} ms/trial, "
        f"{len(trials) / vectorised:.1f} trials/s, {cells * len(trials) / vectorised / 1e6:.1f} "
        f"M cells/s; {reference / per_trial:.0f}x the reference per trial"
    )
    print(f"first trial equal to the reference bit for bit: {equal}")
    started = time.perf_counter()
    walk = select_walk_forward(fast, walk_forward_folds(fast.dates, the_study), the_study)
    from quant_assets.backtest.overfitting import probability_of_backtest_overfitting

    varying = fast.returns[:, np.std(fast.returns, axis=0) > 0]
    pbo = probability_of_backtest_overfitting(varying, n_partitions=16)
    print(
        f"walk-forward ({walk.folds.height} folds) and PBO (S=16, {pbo.n_combinations} "
        f"combinations): {time.perf_counter() - started:.1f} s; PBO {pbo.pbo:.3f}"
    )
    print(f"load average: {os.getloadavg()[0]:.1f} (2 cores)")
    if not equal:
        raise SystemExit("the vectorised trial differs from the strategy path")


if __name__ == "__main__":
    main()
