"""Benchmark: a wide synthetic universe through Dagster, bars → features → signals, with the
stock SQLite event log and with the project's batched one (``BatchedSqliteEventLogStorage``).

Each scenario runs in its own subprocess (peak RSS is its own) on a fresh data directory:
``--tickers`` synthetic tickers × ``--years`` years at ``--grain``, ``materialize --select
signals``. Printed per storage: wall time, the split (compute, DuckDB reads and writes, Dagster
bookkeeping = the rest), bookkeeping per asset-partition, event-log bytes per asset-partition,
peak RSS, and the materialised-partition count read back. The ratio stock / batched is from
the same run. Never asserted: performance is reported, not tested.

    python benchmarks/bench_scale.py                          # 100 tickers × 20 years, year grain
    python benchmarks/bench_scale.py --tickers 500 --years 20 # the issue's size (~10 min stock)
    python benchmarks/bench_scale.py --storage batched        # ours only

``--whole``: the whole graph instead (the shipped configs without the studies: regimes,
yearly walk-forward models, predictions, the three strategies, orders, paper books, reports,
tear sheets), then the daily update of the last session on top of the history (batched
storage only):

    python benchmarks/bench_scale.py --whole --tickers 500 --years 20
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from bench_pipeline import _peak_mb, _step_split, _write_config  # benchmarks/ is sys.path[0]

STORAGES = ("stock", "batched")
REPO = Path(__file__).resolve().parents[1]


def _stock_instance_yaml(home: Path) -> None:
    """Dagster's stock SQLite storage for the data directory (a file quant-assets leaves alone)."""
    path = home / "dagster"
    path.mkdir(parents=True, exist_ok=True)
    (path / "dagster.yaml").write_text(
        f"storage:\n  sqlite:\n    base_dir: {path / 'storage'}\ntelemetry:\n  enabled: false\n"
    )


def _synthetic_config(root: Path, tickers: int, years: int, grain: str) -> Path:
    """universe.yaml + providers.yaml under ``root``: ``tickers`` synthetic names, ``years``
    years to 2022-12-31 at ``grain`` (the other configs: whatever is in ``root/configs``)."""
    return _write_config(
        root,
        provider="synthetic",
        grain=grain,
        start=f"{2023 - years}-01-01",
        end="2022-12-31",
        tickers=[f"SYN{i:04d}" for i in range(tickers)],
        benchmark="SYNIDX",
    )


def scenario_signals(storage: str, tickers: int, years: int, grain: str) -> dict:
    import dagster as dg

    from quant_assets.engine.instance import open_instance
    from quant_assets.engine.runner import materialize
    from quant_assets.settings import load_settings

    root = Path(tempfile.mkdtemp(prefix=f"qa-scale-{storage}-"))
    config = _synthetic_config(root, tickers, years, grain)
    home = root / "data"
    if storage == "stock":
        _stock_instance_yaml(home)
    settings = load_settings(config)
    started = time.perf_counter()
    outcomes = materialize(settings, home, ["signals"])
    wall = time.perf_counter() - started
    failed = [o for o in outcomes if not o.success]
    if failed:
        raise SystemExit(f"run failed: {failed[0].error}")
    instance = open_instance(home)
    split = {"load_inputs": 0.0, "compute": 0.0, "duckdb_write": 0.0, "events": 0.0}
    for outcome in outcomes:
        for key, value in _step_split(instance, outcome.run_id).items():
            split[key] += value
    partitions = sum(o.plan.partitions * len(o.plan.assets) for o in outcomes)
    event_log = sum(p.stat().st_size for p in (home / "dagster").rglob("*.db"))
    materialized = len(instance.get_materialized_partitions(dg.AssetKey("signals")))
    kind = type(instance.event_log_storage).__name__
    instance.dispose()
    return {
        "storage": kind,
        "wall": wall,
        "runs": len(outcomes),
        "asset_partitions": partitions,
        "split": split,
        "bookkeeping": wall - split["load_inputs"] - split["compute"] - split["duckdb_write"],
        "event_log_bytes": event_log,
        "signals_partitions": materialized,
        "peak_mb": _peak_mb(),
    }


def scenario_whole(tickers: int, years: int, grain: str) -> dict:
    """The shipped configs (strategies, risk, models, regimes, research; not the studies) on
    ``tickers`` synthetic names × ``years`` years: ``materialize --select all``, then the
    daily update (schedules' runs + automation ticks, ``engine.daily``) of the last two
    sessions, the second one timed."""
    import shutil
    from datetime import date

    import dagster as dg

    from quant_assets.defs.definitions import build_definitions
    from quant_assets.engine.daily import run_daily_update
    from quant_assets.engine.instance import open_instance
    from quant_assets.engine.plan import all_assets
    from quant_assets.engine.runner import materialize
    from quant_assets.settings import load_settings

    root = Path(tempfile.mkdtemp(prefix="qa-scale-whole-"))
    shutil.copytree(REPO / "configs", root / "configs", ignore=shutil.ignore_patterns("studies"))
    config = _synthetic_config(root, tickers, years, grain)
    os.environ["QUANT_ASSETS_CONFIG"] = str(config)
    settings = load_settings(config)
    home = root / "data"
    selection = list(all_assets(build_definitions(settings, home)))
    started = time.perf_counter()
    outcomes = materialize(settings, home, selection)
    wall = time.perf_counter() - started
    failed = [o for o in outcomes if not o.success]
    if failed:
        raise SystemExit(f"run failed: {failed[0].error}")
    peak_backfill = _peak_mb()
    instance = open_instance(home)
    split = {"load_inputs": 0.0, "compute": 0.0, "duckdb_write": 0.0, "events": 0.0}
    for outcome in outcomes:
        for key, value in _step_split(instance, outcome.run_id).items():
            split[key] += value
    materialized = len(instance.get_materialized_partitions(dg.AssetKey("signals")))
    instance.dispose()
    previous = run_daily_update(settings, home, date(2022, 12, 29))
    daily = run_daily_update(settings, home, date(2022, 12, 30))
    if not (previous.success and daily.success):
        raise SystemExit("the daily update failed")
    return {
        "wall": wall,
        "runs": {o.plan.label[:90]: round(o.seconds, 1) for o in outcomes},
        "asset_partitions": sum(o.plan.partitions * len(o.plan.assets) for o in outcomes),
        "split": split,
        "bookkeeping": wall - split["load_inputs"] - split["compute"] - split["duckdb_write"],
        "signals_partitions": materialized,
        "peak_mb_backfill": peak_backfill,
        "daily": daily.seconds,
        "daily_runs": len(daily.runs),
        "peak_mb": _peak_mb(),
    }


def _run(*args: str) -> dict:
    env = {**os.environ, "PYTHONWARNINGS": "ignore"}
    env.pop("DAGSTER_EVENT_BATCH_SIZE", None)  # each storage decides (ours turns it on)
    out = subprocess.run(
        [sys.executable, __file__, "--scenario", *args],
        check=True,
        capture_output=True,
        text=True,
        env=env,
    )
    return json.loads(out.stdout.strip().splitlines()[-1])


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--scenario", action="store_true", help=argparse.SUPPRESS)
    parser.add_argument("--tickers", type=int, default=100)
    parser.add_argument("--years", type=int, default=20)
    parser.add_argument("--grain", default="year", choices=["year", "month"])
    parser.add_argument("--storage", choices=[*STORAGES, "both"], default="both")
    parser.add_argument("--whole", action="store_true", help="the whole graph + daily update")
    args = parser.parse_args()
    if args.scenario and args.whole:
        print(json.dumps(scenario_whole(args.tickers, args.years, args.grain)))
        return
    if args.scenario:
        result = scenario_signals(args.storage, args.tickers, args.years, args.grain)
        print(json.dumps(result))
        return
    if args.whole:
        r = _run("--whole", "--tickers", str(args.tickers), "--years", str(args.years),
                 "--grain", args.grain)  # fmt: skip
        split, n = r["split"], r["asset_partitions"]
        print(
            f"whole graph (shipped configs, no studies): {args.tickers} synthetic tickers × "
            f"{args.years} years, grain {args.grain}, batched event log, 2 cores\n"
            f"    wall {r['wall']:.1f} s, {n:,} asset-partitions, peak "
            f"{r['peak_mb_backfill']:.0f} MB, signals partitions read back "
            f"{r['signals_partitions']:,}\n"
            f"    compute {split['compute']:.1f} s, DuckDB reads {split['load_inputs']:.1f} s, "
            f"DuckDB writes {split['duckdb_write']:.1f} s, bookkeeping {r['bookkeeping']:.1f} s"
        )
        for label, seconds in r["runs"].items():
            print(f"    {seconds:8.1f} s  {label}")
        print(
            f"daily update of 2022-12-30 on top of the history: {r['daily']:.1f} s "
            f"({r['daily_runs']} runs), peak {r['peak_mb']:.0f} MB"
        )
        return
    print(
        f"bars → features → signals: {args.tickers} synthetic tickers × {args.years} years, "
        f"grain {args.grain}, 2 cores; load average {os.getloadavg()[0]:.1f}"
    )
    storages = STORAGES if args.storage == "both" else (args.storage,)
    results = {}
    for storage in storages:
        r = _run(
            "--storage", storage,
            "--tickers", str(args.tickers),
            "--years", str(args.years),
            "--grain", args.grain,
        )  # fmt: skip
        results[storage] = r
        split, n = r["split"], r["asset_partitions"]
        print(
            f"\n[{storage}: {r['storage']}] wall {r['wall']:.1f} s, {r['runs']} runs, "
            f"{n:,} asset-partitions, peak {r['peak_mb']:.0f} MB, "
            f"signals partitions read back {r['signals_partitions']:,}"
        )
        print(f"    compute        {split['compute']:8.1f} s")
        print(f"    DuckDB reads   {split['load_inputs']:8.1f} s")
        print(f"    DuckDB writes  {split['duckdb_write']:8.1f} s")
        print(
            f"    bookkeeping    {r['bookkeeping']:8.1f} s "
            f"({r['bookkeeping'] / n * 1e3:.2f} ms per asset-partition)"
        )
        print(
            f"    event log      {r['event_log_bytes'] / 1e6:8.1f} MB "
            f"({r['event_log_bytes'] / n / 1e3:.1f} KB per asset-partition)"
        )
    if len(results) == 2:
        stock, ours = results["stock"], results["batched"]
        print(
            f"\nstock / batched: wall {stock['wall'] / ours['wall']:.1f}x, bookkeeping per "
            f"asset-partition {stock['bookkeeping'] / ours['bookkeeping']:.1f}x"
        )


if __name__ == "__main__":
    main()
