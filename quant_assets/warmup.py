"""Compile the numba kernels once, at install (``make install`` runs ``python -m
quant_assets.warmup``), into numba's on-disk cache (every kernel is ``cache=True``), so the
first study, backtest or paper book of a fresh checkout does not spend tens of seconds
compiling. Runs each kernel on a tiny synthetic market (4 tickers × 300 sessions): one study
evaluation (alpha, sizing, trial book) and the strategy path it reproduces (backtest kernel).
"""

from __future__ import annotations

import time
from datetime import date

import numpy as np
import polars as pl


def _inputs():
    from quant_assets.names import REGIME_NAMES, REGIME_PROB_COLUMNS
    from quant_assets.providers.synthetic import SyntheticProvider
    from quant_assets.research.studies import StudyInputs

    tickers = ["AAA", "BBB", "CCC", "DDD"]
    first, start, end = date(2020, 1, 2), date(2020, 6, 1), date(2021, 3, 31)
    bars = SyntheticProvider(seed=1, benchmark="IDX", origin=first, end=end).fetch_bars(
        [*tickers, "IDX"], first, end
    )
    stocks = bars.filter(pl.col("ticker") != "IDX")
    keys = stocks.filter(pl.col("date") >= start).select("date", "ticker").sort("date", "ticker")
    rng = np.random.default_rng(1)
    signals = keys.with_columns(
        pl.lit(True).alias("warmed_up"),
        *[
            pl.Series(name, np.tanh(rng.normal(0, 1, keys.height)))
            for name in ("trend_alpha", "mean_rev_alpha", "vol_alpha", "rel_strength_alpha")
        ],
    )
    raw = rng.dirichlet([2, 1, 2], keys.height)
    predictions = keys.with_columns(
        pl.lit(5).alias("horizon"),
        pl.Series("prob_down", raw[:, 0]),
        pl.Series("prob_flat", raw[:, 1]),
        pl.Series("prob_up", raw[:, 2]),
        pl.Series("prob_pred_state", raw.max(axis=1)),
    )
    dates = keys["date"].unique().sort()
    probabilities = rng.dirichlet([1, 1, 1, 1], dates.len())
    regimes = pl.DataFrame(
        {"date": dates, "regime_label": [REGIME_NAMES[(i // 20) % 4] for i in range(dates.len())]}
    ).with_columns(pl.Series(c, probabilities[:, k]) for k, c in enumerate(REGIME_PROB_COLUMNS))
    return StudyInputs(
        signals=signals,
        predictions=predictions,
        regimes=regimes,
        bars=stocks.select("date", "ticker", "open", "close", "volume"),
        benchmark=bars.filter(pl.col("ticker") == "IDX").select("date", "close"),
        tickers=tickers,
        start=start,
    )


def main() -> None:
    from quant_assets.research.studies import evaluate_reference, study_trials
    from quant_assets.research.trials import evaluate_vectorised
    from quant_assets.settings import StrategySettings, StudySettings

    started = time.perf_counter()
    base = StrategySettings.model_validate(
        {
            "name": "warmup",
            "alpha": {
                "weights": {
                    r: {"trend_alpha": 0.5, "prediction": 0.5}
                    for r in ("bull", "choppy", "bear", "crash")
                }
            },
            "risk": {"var": {"window_sessions": 60}, "evt": {"min_exceedances": 10}},
        }
    )
    study = StudySettings.model_validate(
        {"name": "warmup", "base": "warmup", "space": {"sizing.kelly_fraction": [0.2, 0.4]}}
    )
    inputs = _inputs()
    trials = study_trials(study, base)
    fast = evaluate_vectorised(inputs, trials)
    slow = evaluate_reference(inputs, trials[:1])
    if not np.array_equal(fast.returns[:, 0], slow.returns[:, 0]):
        raise SystemExit("warm-up: the kernels disagree with the strategy path")
    print(f"numba kernels compiled and cached in {time.perf_counter() - started:.1f} s")


if __name__ == "__main__":
    main()
