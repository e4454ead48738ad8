"""Benchmark: how the walk-forward LightGBM training stays bounded — time against
out-of-sample quality for the training knobs of ``models.yaml``.

Each variant overrides some ``models.yaml`` keys; it trains every horizon at a set of cut-offs
with :func:`quant_assets.models.next_state.train_walk_forward` (the asset's own function, no
Dagster or MLflow; ``parallel_fits`` fits at once) on the stored features, signals, regimes
and labels of a data directory, and reports, against the shipped settings measured in the same run:

- seconds of training (LightGBM dataset + boosting + metrics) over all cut-offs and horizons;
- the test windows' log loss (mean over cut-offs × horizons; Δ vs shipped, negative = better)
  and its gap to the base rate (the train classes' frequencies as the forecast: < 0 beats it);
- the test information coefficient (rank correlation of p_up − p_down with the return).

The test window of every cut-off is the 126 sessions before it, never sampled; the
comparison is paired (same cut-offs, same test rows). OpenMP waits as the environment says:
run it with ``OMP_WAIT_POLICY=PASSIVE`` (what the project sets for its own processes) to see
what two OpenMP threads per fit cost there.

    python benchmarks/bench_training.py                      # bundled 20 × 1990-2022
    python benchmarks/bench_training.py --home data          # a data dir after `make demo`
    python benchmarks/bench_training.py --tile 25            # 500 names: the frame tiled
                                                             # 25× with jitter (time only)
"""

from __future__ import annotations

import argparse
import tempfile
import time
from datetime import date
from pathlib import Path

import numpy as np
import polars as pl

REPO = Path(__file__).resolve().parents[1]

VARIANTS: dict[str, dict[str, object]] = {
    "shipped": {},
    "max_bin 63": {"lightgbm.max_bin": 63},
    "learning_rate 0.1": {"lightgbm.learning_rate": 0.1},
    "goss": {"lightgbm.data_sample_strategy": "goss"},
    "rolling 10 y": {"split.train_sessions": 2520},
    "rolling 5 y": {"split.train_sessions": 1260},
    "10 rows/date": {"split.max_rows_per_date": 10},
    "all rows/date": {"split.max_rows_per_date": None},
    "2 threads × 1 fit": {"lightgbm.num_threads": 2, "lightgbm.parallel_fits": 1},
    "1 thread × 1 fit": {"lightgbm.parallel_fits": 1},
}


def _override(settings, overrides: dict[str, object]):
    models = settings.models.model_dump()
    for dotted, value in overrides.items():
        section, key = dotted.split(".")
        models[section][key] = value
    return type(settings.models).model_validate(models)


def _materialised_home() -> Path:
    """Bundled signals, labels and regimes (shipped configs) in a temporary data dir."""
    from quant_assets.engine.runner import materialize
    from quant_assets.settings import load_settings

    home = Path(tempfile.mkdtemp(prefix="qa-bench-training-")) / "data"
    settings = load_settings(REPO / "configs")
    outcomes = materialize(settings, home, ["signals", "labels", "regimes"])
    assert all(o.success for o in outcomes), [o.error for o in outcomes]
    return home


def training_inputs(home: Path, settings) -> tuple[pl.DataFrame, list[str]]:
    from quant_assets.defs.models import input_columns
    from quant_assets.models.next_state import training_frame
    from quant_assets.store import read_table

    columns = input_columns(settings)
    tables = [read_table(home, t) for t in ("features", "signals", "regimes", "labels")]
    frame = training_frame(*tables, columns, settings.models.labels.horizons)
    return frame, columns


def tiled(frame: pl.DataFrame, copies: int, columns: list[str]) -> pl.DataFrame:
    """``copies`` renamed copies of every ticker, inputs jittered by 1 % noise (seeded), so a
    wide universe has the real frame's shape and label balance: for timing, not for quality."""
    rng = np.random.default_rng(0)
    parts = []
    for copy in range(copies):
        noise = rng.normal(1.0, 0.01, size=(frame.height, len(columns)))
        parts.append(
            frame.with_columns(
                (pl.col("ticker") + f"_{copy}").alias("ticker"),
                *(
                    (pl.col(c).cast(pl.Float64) * pl.Series(noise[:, i])).alias(c)
                    for i, c in enumerate(columns)
                ),
            )
        )
    return pl.concat(parts).sort("ticker", "date")


def _base_rate_log_loss(model, frame: pl.DataFrame, cutoff: date) -> float:
    """Log loss on the test window of the train classes' frequencies used as the forecast."""
    counts = np.array(list(model.class_counts.values()), dtype=float)
    prior = counts / counts.sum()
    label = f"label_h{model.horizon}"
    test = frame.filter(
        pl.col(label).is_not_null()
        & (pl.col("date") >= model.windows.test_start)
        & (pl.col(f"label_date_h{model.horizon}") < cutoff)
    )
    return float(-np.log(prior[test[label].to_numpy().astype(int)]).mean())


def run_variant(frame, columns, models, cutoffs) -> dict:
    from quant_assets.models.next_state import train_walk_forward

    losses, gaps, ics, rounds, rows = [], [], [], [], []
    started = time.perf_counter()
    fits = list(train_walk_forward(frame, cutoffs, columns, models))
    seconds = time.perf_counter() - started
    for cutoff, trained in fits:
        for model in trained.values():
            loss = model.test_metrics["log_loss"]
            losses.append(loss)
            gaps.append(loss - _base_rate_log_loss(model, frame, cutoff))
            ics.append(model.test_metrics["information_coefficient"])
            rounds.append(model.best_iteration)
            rows.append(model.windows.train_rows)
    return {
        "seconds": seconds,
        "log_loss": float(np.mean(losses)),
        "losses": losses,
        "gap": float(np.mean(gaps)),
        "ic": float(np.mean(ics)),
        "rounds": float(np.mean(rounds)),
        "train_rows": int(np.mean(rows)),
    }


def main() -> None:
    from quant_assets.settings import load_settings

    parser = argparse.ArgumentParser()
    parser.add_argument("--home", type=Path, help="data dir with signals, labels, regimes")
    parser.add_argument("--cutoffs", default="1998,2002,2006,2010,2014,2018,2021")
    parser.add_argument("--variants", help="comma-separated names (default: all)")
    parser.add_argument("--tile", type=int, default=1, help="copies of each ticker (timing)")
    args = parser.parse_args()
    settings = load_settings(REPO / "configs")
    home = args.home or _materialised_home()
    frame, columns = training_inputs(home, settings)
    if args.tile > 1:
        frame = tiled(frame, args.tile, columns)
    cutoffs = [date(int(y), 1, 1) for y in args.cutoffs.split(",")]
    names = args.variants.split(",") if args.variants else list(VARIANTS)
    names = ["shipped", *(n for n in names if n != "shipped")]
    tickers = frame["ticker"].n_unique()
    print(
        f"walk-forward LightGBM: {tickers} tickers, {frame.height:,} rows, {len(columns)} "
        f"inputs, cut-offs {args.cutoffs} × horizons {settings.models.labels.horizons}"
    )
    print(
        f"{'variant':<22}{'seconds':>9}{'× shipped':>11}{'rows/fit':>11}{'rounds':>8}"
        f"{'log loss':>10}{'Δ':>9}{'vs base':>9}{'IC':>8}"
    )
    reference = None
    for name in names:
        result = run_variant(frame, columns, _override(settings, VARIANTS[name]), cutoffs)
        reference = reference or result
        delta = np.mean(np.subtract(result["losses"], reference["losses"]))
        print(
            f"{name:<22}{result['seconds']:>9.1f}"
            f"{result['seconds'] / reference['seconds']:>11.2f}{result['train_rows']:>11,}"
            f"{result['rounds']:>8.0f}{result['log_loss']:>10.4f}{delta:>+9.4f}"
            f"{result['gap']:>+9.4f}{result['ic']:>+8.4f}",
            flush=True,
        )


if __name__ == "__main__":
    main()
