"""Benchmark: bars -> features -> signals, pure domain vs through Dagster, and the daily refresh.

Prints numbers and ratios measured in one run (never asserted: performance is reported, not
tested). Each scenario runs in its own subprocess so peak memory (ru_maxrss) is its own.

    python benchmarks/bench_pipeline.py            # everything (~15 min on 2 cores)
    python benchmarks/bench_pipeline.py --quick    # skips the month-grain full backfill
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
BUNDLED_TICKERS = [
    "AAPL", "AMD", "BAC", "BBY", "CVX", "GE", "HD", "JNJ", "JPM", "KO",
    "LLY", "MRK", "MSFT", "PEP", "PFE", "PG", "RRC", "UNH", "WMT", "XOM",
]  # fmt: skip


def _peak_mb() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def _write_config(
    root: Path,
    *,
    provider: str,
    grain: str,
    start: str,
    end: str | None,
    tickers: list[str],
    benchmark: str,
) -> Path:
    config = root / "configs"
    config.mkdir(parents=True, exist_ok=True)
    universe = {
        "tickers": tickers,
        "benchmark": benchmark,
        "start": start,
        "calendar": "XNYS",
        "partition_grain": grain,
    }
    if end:
        universe["end"] = end
    (config / "universe.yaml").write_text(yaml.safe_dump(universe))
    (config / "providers.yaml").write_text(yaml.safe_dump({"provider": provider}))
    return config


def scenario_domain() -> dict:
    """The same work as the Dagster run, by the pure domain functions alone."""
    from datetime import UTC, datetime

    from quant_assets.features.build import build_features, feature_columns
    from quant_assets.ingest import ingest_bars
    from quant_assets.providers.base import available_columns
    from quant_assets.providers.bundled import BundledProvider
    from quant_assets.quality.derived import validate_features, validate_signals
    from quant_assets.settings import load_settings
    from quant_assets.signals.rules import SIGNAL_COLUMNS, build_signals

    settings = load_settings(REPO / "configs")
    timings: dict[str, float] = {}
    t0 = time.perf_counter()
    provider = BundledProvider()
    raw = provider.fetch_bars(BUNDLED_TICKERS, date(1989, 12, 15), date(2022, 12, 31))
    bench_raw = provider.fetch_bars(["SP500"], date(1989, 12, 15), date(2022, 12, 31))
    timings["fetch"] = time.perf_counter() - t0
    t0 = time.perf_counter()
    kwargs = dict(
        provider="bundled",
        start=date(1990, 1, 1),
        end=date(2023, 1, 1),
        calendar="XNYS",
        grain="month",
        quality=settings.quality,
        ingested_at=datetime.now(UTC),
    )
    bars = ingest_bars(raw, **kwargs).frame
    bench = ingest_bars(bench_raw, **kwargs).frame
    timings["ingest+bars checks"] = time.perf_counter() - t0
    t0 = time.perf_counter()
    features = build_features(bars, bench, settings.features)
    timings["features"] = time.perf_counter() - t0
    t0 = time.perf_counter()
    validate_features(features, list(feature_columns(settings.features)), available_columns(bars))
    timings["features checks"] = time.perf_counter() - t0
    t0 = time.perf_counter()
    signals = build_signals(features, settings.signals, settings.features)
    timings["signals"] = time.perf_counter() - t0
    t0 = time.perf_counter()
    validate_signals(signals, list(SIGNAL_COLUMNS))
    timings["signals checks"] = time.perf_counter() - t0
    return {
        "timings": timings,
        "total": sum(timings.values()),
        "rows": bars.height,
        "peak_mb": _peak_mb(),
    }


def _step_split(instance, run_id: str) -> dict[str, float]:
    """Split a run's step time into input load, compute, DuckDB write and event writing.

    From the run's event log: STEP_START -> LOADED_INPUT (reads), -> STEP_OUTPUT (compute,
    including the quality suites), -> HANDLED_OUTPUT (the DuckDB write, timed by the IO manager
    as ``duckdb_write_seconds``, plus Dagster writing one materialisation event per partition).
    """
    by_step: dict[str, dict[str, list]] = {}
    for record in instance.all_logs(run_id):
        event = record.dagster_event
        if event is None or not event.step_key:
            continue
        by_step.setdefault(event.step_key, {}).setdefault(event.event_type_value, []).append(record)
    split = {"load_inputs": 0.0, "compute": 0.0, "duckdb_write": 0.0, "events": 0.0}
    for events in by_step.values():

        def ts(kind: str, default: float, pick=min, events=events) -> float:
            return pick((r.timestamp for r in events.get(kind, [])), default=default)

        start = ts("STEP_START", 0.0)
        loaded = ts("LOADED_INPUT", start, max)
        output = ts("STEP_OUTPUT", loaded)
        handled = ts("HANDLED_OUTPUT", output, max)
        end = ts("STEP_SUCCESS", handled, max)
        write = 0.0
        for record in events.get("ASSET_MATERIALIZATION", [])[:1]:
            metadata = record.dagster_event.event_specific_data.materialization.metadata
            if "duckdb_write_seconds" in metadata:
                write = float(metadata["duckdb_write_seconds"].value)
        split["load_inputs"] += loaded - start
        split["compute"] += output - loaded
        split["duckdb_write"] += write
        split["events"] += (handled - output - write) + (end - handled)
    return split


def scenario_dagster(grain: str) -> dict:
    """Full bundled history (20 tickers, 1990-2022) through Dagster at ``grain``."""
    from quant_assets.engine.instance import open_instance
    from quant_assets.engine.runner import materialize
    from quant_assets.settings import load_settings

    root = Path(tempfile.mkdtemp(prefix=f"qa-bench-{grain}-"))
    config = _write_config(
        root,
        provider="bundled",
        grain=grain,
        start="1990-01-01",
        end="2022-12-31",
        tickers=BUNDLED_TICKERS,
        benchmark="SP500",
    )
    settings = load_settings(config)
    t0 = time.perf_counter()
    outcomes = materialize(settings, root / "data")
    wall = time.perf_counter() - t0
    assert all(o.success for o in outcomes), [o.error for o in outcomes]
    instance = open_instance(root / "data")
    split = {"load_inputs": 0.0, "compute": 0.0, "duckdb_write": 0.0, "events": 0.0}
    for outcome in outcomes:
        for key, value in _step_split(instance, outcome.run_id).items():
            split[key] += value
    partitions = sum(o.plan.partitions * len(o.plan.assets) for o in outcomes)
    event_log = sum(p.stat().st_size for p in (root / "data" / "dagster").rglob("*.db"))
    t0 = time.perf_counter()
    for name in ("bars", "features", "signals"):
        status = instance.get_materialized_partitions(__import__("dagster").AssetKey(name))
        assert status
    status_query = time.perf_counter() - t0
    instance.dispose()
    return {
        "grain": grain,
        "wall": wall,
        "runs": len(outcomes),
        "asset_partitions": partitions,
        "split": split,
        "bookkeeping": wall - split["load_inputs"] - split["compute"] - split["duckdb_write"],
        "event_log_mb": event_log / 1e6,
        "partition_status_query_s": status_query,
        "peak_mb": _peak_mb(),
    }


def scenario_refresh(years: int) -> dict:
    """Backfill ``years`` of synthetic history for 20 tickers, then refresh the current window."""
    from quant_assets.engine.runner import materialize
    from quant_assets.settings import load_settings

    today = date.today()
    root = Path(tempfile.mkdtemp(prefix=f"qa-bench-refresh{years}-"))
    tickers = [f"SYN{i:02d}" for i in range(20)]
    config = _write_config(
        root,
        provider="synthetic",
        grain="month",
        start=f"{today.year - years}-01-01",
        end=None,
        tickers=tickers,
        benchmark="SYNIDX",
    )
    settings = load_settings(config)
    t0 = time.perf_counter()
    outcomes = materialize(settings, root / "data")
    backfill = time.perf_counter() - t0
    assert all(o.success for o in outcomes), [o.error for o in outcomes]
    refresh = []
    for _ in range(3):
        t0 = time.perf_counter()
        outcomes = materialize(settings, root / "data", start=today, end=today)
        refresh.append(time.perf_counter() - t0)
        assert all(o.success for o in outcomes), [o.error for o in outcomes]
    # The same refresh as a user or cron would run it: a fresh CLI process (imports included).
    env = {**os.environ, "QUANT_ASSETS_HOME": str(root / "data")}
    t0 = time.perf_counter()
    command = [
        str(Path(sys.executable).parent / "quant-assets"),
        "materialize",
        "--config",
        str(config),
        "--start",
        today.isoformat(),
        "--end",
        today.isoformat(),
    ]
    subprocess.run(command, check=True, capture_output=True, env=env)
    cli_refresh = time.perf_counter() - t0
    return {
        "years": years,
        "backfill": backfill,
        "refresh_runs": refresh,
        "refresh": min(refresh),
        "cli_refresh": cli_refresh,
        "peak_mb": _peak_mb(),
    }


def _run(name: str, *args: str) -> dict:
    env = {**os.environ, "PYTHONWARNINGS": "ignore"}
    out = subprocess.run(
        [sys.executable, __file__, "--scenario", name, *args],
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
    if args.scenario:
        fn = {"domain": scenario_domain, "dagster": scenario_dagster, "refresh": scenario_refresh}[
            args.scenario
        ]
        result = (
            fn(int(args.arg))
            if args.scenario == "refresh"
            else (fn(args.arg) if args.arg else fn())
        )
        print(json.dumps(result, default=str))
        return

    print("quant_assets benchmark — bars -> features -> signals (2 cores)")
    domain = _run("domain")
    print(
        f"\n[domain] full bundled history, pure functions: {domain['total']:.1f} s, "
        f"{domain['rows']} rows, peak {domain['peak_mb']:.0f} MB"
    )
    for key, value in domain["timings"].items():
        print(f"    {key:<22} {value:6.2f} s")
    grains = ["year"] if args.quick else ["year", "month"]
    for grain in grains:
        result = _run("dagster", "--arg", grain)
        split = result["split"]
        print(
            f"\n[dagster] full bundled history, grain={grain}: wall {result['wall']:.1f} s "
            f"({result['runs']} runs, {result['asset_partitions']} asset-partitions), "
            f"peak {result['peak_mb']:.0f} MB, event log {result['event_log_mb']:.0f} MB"
        )
        print(f"    compute        {split['compute']:7.1f} s")
        print(f"    DuckDB reads   {split['load_inputs']:7.1f} s")
        print(f"    DuckDB writes  {split['duckdb_write']:7.1f} s")
        print(
            f"    bookkeeping    {result['bookkeeping']:7.1f} s "
            f"({1000 * result['bookkeeping'] / result['asset_partitions']:.1f} ms per "
            f"asset-partition; {split['events']:.1f} s of it writing events after compute)"
        )
        print(f"    partition-status query (3 assets) {result['partition_status_query_s']:.2f} s")
        print(f"    ratio dagster wall / pure domain: {result['wall'] / domain['total']:.1f}x")
    five = _run("refresh", "--arg", "5")
    thirty = _run("refresh", "--arg", "30")
    print("\n[daily refresh] current month window, 20 synthetic tickers, 3 assets + benchmark")
    for result in (five, thirty):
        print(
            f"    {result['years']:>2}-year history: backfill {result['backfill']:.1f} s, "
            f"refresh {result['refresh']:.2f} s in-process (runs: "
            f"{', '.join(f'{r:.2f}' for r in result['refresh_runs'])}), "
            f"{result['cli_refresh']:.1f} s as a fresh `quant-assets materialize` process"
        )
    print(
        f"    ratio 30y / 5y refresh: {thirty['refresh'] / five['refresh']:.2f} in-process, "
        f"{thirty['cli_refresh'] / five['cli_refresh']:.2f} via the CLI"
    )


if __name__ == "__main__":
    main()
