"""Benchmark: the whole strategy path (alpha → positions → backtest → report) for every
configured strategy over the full bundled history, through Dagster, and a one-window update.

Needs a data directory where everything up to ``predictions`` is materialised with the
shipped configs (e.g. after ``make demo``); without ``--home`` it builds one first (~12 min).
Prints times and ratios measured in one run (never asserted).

    python benchmarks/bench_strategies.py --home data     # reuse the demo's data directory
    python benchmarks/bench_strategies.py                 # build upstream in a temp dir first
"""

from __future__ import annotations

import argparse
import os
import resource
import shutil
import sys
import tempfile
import time
from datetime import date
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")
os.environ.setdefault("DAGSTER_EMIT_PARTITION_SUBSET_IN_PLANNED_EVENTS", "true")


def _peak_mb() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def _materialize(settings, home: Path, select: list[str], **kwargs) -> tuple[float, list]:
    from quant_assets.engine.runner import materialize

    started = time.perf_counter()
    outcomes = materialize(settings, home, select, **kwargs)
    seconds = time.perf_counter() - started
    failed = [o for o in outcomes if not o.success]
    if failed:
        sys.exit(f"run failed: {failed[0].plan.label}: {failed[0].error}")
    return seconds, outcomes


def _domain_breakdown(settings, home: Path, strategy_name: str) -> dict[str, float]:
    """The same work for one strategy by the domain functions alone (no Dagster)."""
    import duckdb
    import polars as pl

    from quant_assets.backtest.book import BookState, run_book
    from quant_assets.meta import combine_signals
    from quant_assets.risk import PositionState, size_positions

    strategy = settings.strategies[strategy_name]
    start = settings.models.resolved_first_cutoff(settings.universe.start)
    tickers = list(settings.universe.tickers)
    with duckdb.connect(str(home / "warehouse.duckdb"), read_only=True) as conn:
        signals = conn.execute("select * from market.signals").pl()
        predictions = conn.execute("select * from market.predictions").pl()
        regimes = conn.execute("select * from market.regimes").pl()
        bars = conn.execute(
            "select date, ticker, open, close, volume from market.bars order by ticker, date"
        ).pl()
    times: dict[str, float] = {}
    started = time.perf_counter()
    alpha = combine_signals(
        signals.filter(pl.col("date") >= start), predictions, regimes, strategy.alpha
    )
    times["alpha_scores"] = time.perf_counter() - started
    started = time.perf_counter()
    positions = size_positions(
        alpha,
        bars.select("date", "ticker", "close"),
        regimes,
        strategy,
        start=start,
        state=PositionState(),
        tickers=tickers,
    )
    times["positions"] = time.perf_counter() - started
    started = time.perf_counter()
    book = run_book(
        bars,
        positions.rows.select("date", "ticker", "target_weight"),
        strategy.backtest,
        start=start,
        state=BookState.initial(strategy.backtest.initial_capital),
        tickers=tickers,
    )
    times["backtest"] = time.perf_counter() - started
    times["rows"] = float(book.book.height)
    return times


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--home", type=Path, help="data directory with predictions materialised")
    args = parser.parse_args()

    from quant_assets.defs.definitions import build_definitions
    from quant_assets.engine.plan import all_assets, group_assets
    from quant_assets.settings import load_settings

    settings = load_settings(REPO / "configs")
    scratch = Path(tempfile.mkdtemp(prefix="bench_strategies_"))
    try:
        if args.home is None:
            home = scratch / "data"
            print("building upstream (bars → predictions) in", home, flush=True)
            seconds, _ = _materialize(
                settings,
                home,
                [a for a in all_assets(build_definitions(settings, home)) if "/" not in a],
            )
            print(f"  upstream: {seconds:.0f} s")
        else:
            # Work on a copy: the benchmark rewrites the strategy tables.
            home = scratch / "data"
            shutil.copytree(args.home.resolve(), home)
            # The copied dagster.yaml points at the original's storage: write our own.
            (home / "dagster" / "dagster.yaml").unlink()
        strategies = list(settings.strategies)
        defs = build_definitions(settings, home)
        path_assets = [
            a
            for s in strategies
            for a in group_assets(defs, s)
            if not a.endswith("backtest_report")
        ]
        reports = [f"{s}/backtest_report" for s in strategies]

        # upstream=False: the stored data and models are current; time the strategy path only.
        for name in strategies:
            own = [a for a in path_assets if a.startswith(f"{name}/")]
            seconds, outcomes = _materialize(
                settings, home, [*own, f"{name}/backtest_report"], upstream=False
            )
            runs = "; ".join(f"{o.seconds:.1f} s {o.plan.label}" for o in outcomes)
            print(f"{name}: whole path {seconds:.1f} s wall ({runs})")
        whole, outcomes = _materialize(settings, home, [*path_assets, *reports], upstream=False)
        n_tickers = len(settings.universe.tickers)
        print(
            f"all {len(strategies)} strategies × {n_tickers} tickers, full history, through "
            f"Dagster: {whole:.1f} s wall"
        )
        for outcome in outcomes:
            print(f"  {outcome.seconds:6.1f} s  {outcome.plan.label}")
        last_window = date(settings.universe.end.year, 1, 1) if settings.universe.end else None
        update, _ = _materialize(settings, home, path_assets, start=last_window, upstream=False)
        print(
            f"one-window update of every strategy's assets ({last_window}..): {update:.1f} s "
            f"(ratio to the whole path: {update / whole:.2f})"
        )

        print("\ndomain functions alone (hybrid_alpha, no Dagster):")
        breakdown = _domain_breakdown(settings, home, "hybrid_alpha")
        for name, value in breakdown.items():
            print(f"  {name}: {value:.2f}" + (" s" if name != "rows" else " book rows"))
        print(f"peak memory: {_peak_mb():.0f} MB")
    finally:
        shutil.rmtree(scratch, ignore_errors=True)


if __name__ == "__main__":
    main()
