"""Compile the numba kernels once, at install (``make install`` runs ``python -m
quant_assets.warmup``), into numba's on-disk cache (every kernel is ``cache=True``), so the
first study, backtest or paper book of a fresh checkout does not spend tens of seconds
compiling. Runs each kernel on a tiny synthetic market (4 tickers × 300 sessions): one study
evaluation (alpha, sizing, trial book) and the strategy path it reproduces (backtest kernel).

Numba's cache keys a function on its own source file only: a cached function that calls a
kernel of another module keeps the callee's old machine code when only the callee's file
changes (measured here: the trial book ran a kernel two commits old). So before compiling, the
warm-up drops every cached kernel of the package when any of its sources changed since the
last warm-up (:func:`clear_stale_cache`, keyed by a hash of the sources).
"""

from __future__ import annotations

import hashlib
import time
from datetime import date
from pathlib import Path

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


PACKAGE_DIR = Path(__file__).resolve().parent
STAMP_NAME = "numba_sources.sha256"  # in the package's top __pycache__


def sources_hash(package_dir: Path) -> str:
    """sha256 over the relative path and bytes of every ``.py`` file under ``package_dir``."""
    digest = hashlib.sha256()
    for path in sorted(package_dir.rglob("*.py")):
        digest.update(str(path.relative_to(package_dir)).encode())
        digest.update(path.read_bytes())
    return digest.hexdigest()


def clear_stale_cache(package_dir: Path = PACKAGE_DIR) -> int:
    """Delete numba's cache files (``*.nbi``, ``*.nbc``) under ``package_dir`` unless its
    sources hash to the stamp the last call wrote; write the new stamp and return the number
    of files deleted (0 when nothing changed)."""
    stamp = package_dir / "__pycache__" / STAMP_NAME
    current = sources_hash(package_dir)
    if stamp.exists() and stamp.read_text().strip() == current:
        return 0
    stale = [p for pattern in ("*.nbi", "*.nbc") for p in package_dir.rglob(pattern)]
    for path in stale:
        path.unlink(missing_ok=True)
    stamp.parent.mkdir(parents=True, exist_ok=True)
    stamp.write_text(current + "\n")
    return len(stale)


def main() -> None:
    from quant_assets.research.studies import evaluate_reference, study_trials
    from quant_assets.research.trials import evaluate_vectorised
    from quant_assets.settings import StrategySettings, StudySettings

    started = time.perf_counter()
    cleared = clear_stale_cache()
    if cleared:
        print(f"sources changed since the last warm-up: {cleared} cached kernel files dropped")
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
