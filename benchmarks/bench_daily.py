"""Benchmark: the daily update for the 20 bundled tickers through every asset down to each
strategy's orders, on top of full history, including Dagster overhead — for a 5-year and a
~30-year history in one run.

The daily update is what production runs after each close: the daily schedules' runs for the
new session (bars for the whole universe in one run, the benchmark), then declarative
automation tick by tick until every asset is current (``quant_assets.engine.daily``). The
reference measured in the same run is the same window recomputed by the range runner
(``quant-assets materialize --start D --end D``, no automation).

Each history is first materialised with the shipped configs (or reused with ``--home30`` /
``--home5``: a data directory where ``quant-assets materialize --select all`` ran, e.g. after
``make demo``; it is copied, never modified). Prints times and ratios; asserts nothing.

    python benchmarks/bench_daily.py --home30 data
"""

from __future__ import annotations

import argparse
import os
import shutil
import sqlite3
import sys
import tempfile
import time
from datetime import date
from pathlib import Path

import yaml

REPO = Path(__file__).resolve().parents[1]
os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")
os.environ.setdefault("DAGSTER_EMIT_PARTITION_SUBSET_IN_PLANNED_EVENTS", "true")
TARGET_SECONDS = 60.0
SESSION, PREVIOUS = date(2022, 12, 28), date(2022, 12, 27)  # the bundled data's last sessions


def _configs(root: Path, start: date | None) -> Path:
    """The shipped configs, with the universe starting at ``start`` if given."""
    config_dir = root / "configs"
    shutil.copytree(REPO / "configs", config_dir)
    if start is not None:
        universe = yaml.safe_load((config_dir / "universe.yaml").read_text())
        universe["start"] = start.isoformat()
        (config_dir / "universe.yaml").write_text(yaml.safe_dump(universe))
    return config_dir


def _copy_home(source: Path, target: Path) -> None:
    """Copy a data directory so nothing in the copy points back at the original."""
    shutil.copytree(source, target)
    (target / "dagster" / "dagster.yaml").unlink(missing_ok=True)  # names the old storage
    store = target / "mlflow" / "mlflow.db"
    if store.exists():
        old, new = str(source.resolve()), str(target.resolve())
        with sqlite3.connect(store) as conn:
            tables = [
                r[0] for r in conn.execute("select name from sqlite_master where type='table'")
            ]
            for table in tables:
                for column in conn.execute(f"pragma table_info('{table}')").fetchall():
                    if any(t in column[2].upper() for t in ("CHAR", "TEXT")):
                        conn.execute(
                            f'update "{table}" set "{column[1]}" = replace("{column[1]}", ?, ?)',
                            [old, new],
                        )


def _materialize(settings, home: Path, select: list[str], **kwargs) -> float:
    from quant_assets.engine.runner import materialize

    started = time.perf_counter()
    outcomes = materialize(settings, home, select, **kwargs)
    failed = [o for o in outcomes if not o.success]
    if failed:
        sys.exit(f"run failed: {failed[0].plan.label}: {failed[0].error}")
    return time.perf_counter() - started


def _case(label: str, start: date | None, base: Path | None, work: Path) -> dict:
    from quant_assets.defs.definitions import build_definitions
    from quant_assets.engine.daily import run_daily_update
    from quant_assets.engine.plan import all_assets
    from quant_assets.settings import load_settings

    root = work / label
    config_dir = _configs(root, start)
    os.environ["QUANT_ASSETS_CONFIG"] = str(config_dir)
    settings = load_settings(config_dir)
    home = root / "data"
    build = None
    if base is None:
        print(f"[{label}] materialising the full history (shipped configs)...", flush=True)
        build = _materialize(settings, home, list(all_assets(build_definitions(settings, home))))
    else:
        _copy_home(base.resolve(), home)
        # A base built before the orders assets existed: add them (no upstream recompute).
        orders = [f"{s}/orders" for s in settings.strategies]
        _materialize(settings, home, orders, upstream=False)
    # The state after the previous session's update, then the measured update.
    previous = run_daily_update(settings, home, PREVIOUS)
    if not previous.success:
        sys.exit(f"[{label}] update for {PREVIOUS} failed")
    daily = run_daily_update(settings, home, SESSION)
    if not daily.success:
        sys.exit(f"[{label}] update for {SESSION} failed")
    runner = _materialize(
        settings,
        home,
        list(all_assets(build_definitions(settings, home))),
        start=SESSION,
        end=SESSION,
    )
    first = settings.universe.start
    return {
        "label": label,
        "years": round((SESSION - first).days / 365.25, 1),
        "build": build,
        "daily": daily.seconds,
        "runs": len(daily.runs),
        "ticks": daily.ticks,
        "runner": runner,
        "to_orders": max(
            after
            for run, after in zip(daily.runs, daily.finished_after, strict=True)
            if any(a.endswith("/orders") for a in run.plan.assets)
        ),
        "evaluation": daily.evaluation_seconds,
        "in_runs": sum(run.seconds for run in daily.runs),
        "all": daily.runs,
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--home30", type=Path, help="data dir with the full bundled history")
    parser.add_argument("--home5", type=Path, help="data dir with a 5-year history (2018-)")
    args = parser.parse_args()
    with tempfile.TemporaryDirectory(prefix="bench_daily_") as tmp:
        work = Path(tmp)
        results = [
            _case("5y", date(2018, 1, 1), args.home5, work),
            _case("30y", None, args.home30, work),
        ]
    print()
    print(f"daily update for session {SESSION} (20 tickers, 3 strategies, every asset to orders)")
    print(
        f"{'history':>8} {'update s':>9} {'runs':>5} {'ticks':>6} {'/60 s':>7} "
        f"{'runner s':>9} {'update/runner':>14} {'build s':>8}"
    )
    for r in results:
        build = f"{r['build']:.0f}" if r["build"] is not None else "reused"
        print(
            f"{r['years']:>7}y {r['daily']:>9.1f} {r['to_orders']:>12.1f} "
            f"{r['to_orders'] / TARGET_SECONDS:>7.2f} {r['in_runs']:>10.1f} "
            f"{r['evaluation']:>13.1f} {r['runs']:>5} {r['ticks']:>6} {r['runner']:>9.1f} "
            f"{r['daily'] / r['runner']:>14.2f} {build:>8}"
        )
    ratio = results[1]["daily"] / results[0]["daily"]
    print(f"30y / 5y daily update: {ratio:.2f} (history length should not matter)")
    for r in results:
        print(f"runs in order ({r['label']}):")
        for run in r["all"]:
            print(f"  {run.seconds:6.1f} s  {run.plan.label[:110]}")


if __name__ == "__main__":
    main()
