"""Benchmark: walk-forward regimes + LightGBM over the full bundled history, and the daily
prediction update, through Dagster (MLflow on its embedded SQLite store).

Prints numbers and ratios measured in one run (never asserted). Each scenario runs in its own
subprocess so its peak memory (ru_maxrss) is its own.

    python benchmarks/bench_models.py            # yearly and quarterly cut-offs, 5 y / 20 y update
    python benchmarks/bench_models.py --quick    # yearly cut-offs only, 5 y / 10 y update
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import subprocess
import sys
import tempfile
import time
from datetime import date
from pathlib import Path

import yaml

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO / "benchmarks"))
from bench_pipeline import BUNDLED_TICKERS, _write_config  # noqa: E402


def _peak_mb() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def _cutoffs(config: Path, frequency: str) -> None:
    """The shipped regimes/models configs with the next-state models refitted at
    ``frequency`` (the regime HMM stays yearly: its refit cadence is measured separately)."""
    for name in ("regimes", "models"):
        loaded = yaml.safe_load((REPO / "configs" / f"{name}.yaml").read_text())
        if name == "models":
            loaded["cutoff_frequency"] = frequency
        (config / f"{name}.yaml").write_text(yaml.safe_dump(loaded))


def _timed(settings, home: Path, select: list[str], **kwargs) -> tuple[float, dict[str, float]]:
    from quant_assets.engine.runner import materialize

    started = time.perf_counter()
    outcomes = materialize(settings, home, select, **kwargs)
    assert all(o.success for o in outcomes), [o.error for o in outcomes]
    per_run = {o.plan.label: round(o.seconds, 2) for o in outcomes}
    return time.perf_counter() - started, per_run


def _out_of_sample(home: Path, since: str = "1995-01-01") -> dict:
    """Walk-forward scores of the stored predictions against the realised labels: every
    prediction was made by a model trained before its date, so this is out-of-sample."""
    import duckdb
    import numpy as np
    from scipy.stats import spearmanr

    with duckdb.connect(str(home / "warehouse.duckdb"), read_only=True) as conn:
        joined = conn.execute(
            "select p.horizon, p.prob_down, p.prob_flat, p.prob_up, l.label, "
            "l.forward_log_return from market.predictions p join market.labels l "
            "on l.ticker = p.ticker and l.origin_date = p.date and l.horizon = p.horizon "
            "where p.date >= ?",
            [since],
        ).pl()
    scores = {}
    for (horizon,), part in joined.group_by("horizon"):
        probs = part.select("prob_down", "prob_flat", "prob_up").to_numpy()
        labels = part["label"].to_numpy().astype(int)
        picked = np.clip(probs[np.arange(len(labels)), labels], 1e-15, 1)
        edge = probs[:, 2] - probs[:, 0]
        scores[f"h{horizon}"] = {
            "rows": len(labels),
            "log_loss": float(-np.log(picked).mean()),
            "accuracy": float((probs.argmax(axis=1) == labels).mean()),
            "ic": float(spearmanr(edge, part["forward_log_return"].to_numpy()).statistic),
            "base_rate_log_loss": float(
                -np.log(np.bincount(labels, minlength=3)[labels] / len(labels)).mean()
            ),
        }
    return dict(sorted(scores.items()))


def scenario_walkforward(frequency: str, start: str = "1990-01-01") -> dict:
    """Bundled history from ``start`` (20 tickers, to 2022, year grain), then regimes and
    models with next-state cut-offs at ``frequency``."""
    from quant_assets.settings import load_settings

    root = Path(tempfile.mkdtemp(prefix=f"qa-bench-wf-{frequency}-"))
    config = _write_config(
        root,
        provider="bundled",
        grain="year",
        start=start,
        end="2022-12-31",
        tickers=BUNDLED_TICKERS,
        benchmark="SP500",
    )
    _cutoffs(config, frequency)
    settings = load_settings(config)
    home = root / "data"
    data, _ = _timed(settings, home, ["signals", "labels"])
    regimes, regime_runs = _timed(settings, home, ["regimes"])
    models, model_runs = _timed(settings, home, ["predictions"])
    mlflow_mb = sum(p.stat().st_size for p in (home / "mlflow").rglob("*") if p.is_file()) / 1e6
    return {
        "frequency": frequency,
        "data_wall": data,
        "regimes_wall": regimes,
        "models_wall": models,
        "runs": {**regime_runs, **model_runs},
        "mlflow_mb": mlflow_mb,
        "out_of_sample": _out_of_sample(home, "2013-01-01" if start > "2000" else "1995-01-01"),
        "peak_mb": _peak_mb(),
    }


def scenario_update(years: int) -> dict:
    """``years`` of synthetic history for 20 tickers with trained models, then the daily
    update of the current window through predictions (models exist: none is retrained)."""
    from quant_assets.settings import load_settings

    today = date.today()
    root = Path(tempfile.mkdtemp(prefix=f"qa-bench-update{years}-"))
    config = _write_config(
        root,
        provider="synthetic",
        grain="year",
        start=f"{today.year - years}-01-01",
        end=None,
        tickers=[f"SYN{i:02d}" for i in range(20)],
        benchmark="SYNIDX",
    )
    _cutoffs(config, "year")
    settings = load_settings(config)
    home = root / "data"
    backfill, _ = _timed(settings, home, ["predictions", "labels"])
    walls, runs = [], {}
    for _ in range(3):
        wall, runs = _timed(settings, home, ["predictions", "labels"], start=today, end=today)
        walls.append(wall)
    predictions_run = sum(v for k, v in runs.items() if k.startswith("predictions"))
    return {
        "years": years,
        "backfill": backfill,
        "update": min(walls),
        "update_runs": runs,
        "predictions_run": predictions_run,
        "peak_mb": _peak_mb(),
    }


def _run(name: str, arg: str) -> dict:
    env = {**os.environ, "PYTHONWARNINGS": "ignore"}
    env.pop("MLFLOW_TRACKING_URI", None)
    out = subprocess.run(
        [sys.executable, __file__, "--scenario", name, "--arg", arg],
        check=True,
        capture_output=True,
        text=True,
        env=env,
        cwd=REPO,
    )
    return json.loads(out.stdout.strip().splitlines()[-1])


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--scenario")
    parser.add_argument("--arg")
    parser.add_argument("--quick", action="store_true")
    args = parser.parse_args()
    if args.scenario == "walkforward":  # --arg FREQUENCY[@START]
        print(json.dumps(scenario_walkforward(*args.arg.split("@")), default=str))
        return
    if args.scenario == "update":
        print(json.dumps(scenario_update(int(args.arg)), default=str))
        return

    print("quant_assets benchmark — regimes and walk-forward models (2 cores)")
    frequencies = ["year"] if args.quick else ["year", "quarter"]
    results = {}
    for frequency in frequencies:
        result = results[frequency] = _run("walkforward", frequency)
        print(
            f"\n[walk-forward] bundled 20 tickers 1990-2022, {frequency}ly cut-offs: "
            f"regimes {result['regimes_wall']:.1f} s, models + predictions "
            f"{result['models_wall']:.1f} s (data first: {result['data_wall']:.1f} s), "
            f"peak {result['peak_mb']:.0f} MB, MLflow store {result['mlflow_mb']:.0f} MB"
        )
        for label, seconds in result["runs"].items():
            print(f"    {seconds:8.1f} s  {label}")
        for horizon, score in result["out_of_sample"].items():
            print(
                f"    out-of-sample {horizon}: log loss {score['log_loss']:.4f} (base rate "
                f"{score['base_rate_log_loss']:.4f}), accuracy {score['accuracy']:.3f}, "
                f"IC {score['ic']:+.4f}, {score['rows']} rows"
            )
    if len(results) == 2:
        year, quarter = results["year"], results["quarter"]
        slower = quarter["models_wall"] / year["models_wall"]
        print(
            f"\n    quarterly / yearly cut-offs: time x{slower:.2f}"
            + "".join(
                f", {h} log loss {quarter['out_of_sample'][h]['log_loss'] - s['log_loss']:+.4f}"
                for h, s in year["out_of_sample"].items()
            )
        )
    spans = ["5", "10"] if args.quick else ["5", "20"]
    updates = [_run("update", years) for years in spans]
    for update in updates:
        print(
            f"\n[daily update] {update['years']} y synthetic history, 20 tickers, through "
            f"predictions: {update['update']:.1f} s (predictions run "
            f"{update['predictions_run']:.1f} s; backfill {update['backfill']:.0f} s), "
            f"peak {update['peak_mb']:.0f} MB"
        )
        for label, seconds in update["update_runs"].items():
            print(f"    {seconds:8.1f} s  {label}")
    ratio = updates[1]["update"] / updates[0]["update"]
    print(f"\n    update {spans[1]} y / {spans[0]} y history: x{ratio:.2f} (flat = 1.0)")


if __name__ == "__main__":
    main()
