"""The real Dagster daemon keeps the graph complete and current (``dagster-daemon run`` as a
subprocess on a temporary instance, torn down at the end).

One daemon, one small project (three tickers, 2019-2022 at year grain, yearly cut-offs, one
strategy), and the events a user causes, in order:

(a) a fresh data directory with three tickers' files dropped in (three: the strategy's robust
    z-score needs three names to rank, so the book trades),
(d) a new session: every file gains one day,
(b) a corrected file for an old window,
(c) a ticker added to ``universe.yaml`` (its file dropped first), and at the same time a bad
    file for another ticker.

After each, the daemon's runs (count, assets, partition ranges) are the ones the change
calls for, and the warehouse equals ``quant-assets materialize --select all`` on the same
inputs (the CLI itself, run alongside) after (a) and after (c), whose files include (b)'s
correction; after (b), every row outside the reached windows is unchanged.
The tests of this module share the daemon and run in file order.
"""

from __future__ import annotations

import json
import os
import shutil
import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import date
from pathlib import Path

import duckdb
import polars as pl
import pytest
import yaml

from quant_assets.defs.definitions import build_definitions
from quant_assets.engine.convergence import (
    GraphView,
    completeness,
    graph_state,
    runs_in_progress,
)
from quant_assets.engine.instance import dagster_home, open_instance
from quant_assets.research.ledger import LEDGER_RUN_COLUMNS
from quant_assets.settings import load_settings
from quant_assets_tests.conftest import (
    Project,
    write_fast_model_configs,
    write_project,
    write_strategies,
)

REPO = Path(__file__).resolve().parents[2]
DAEMON = Path(sys.executable).parent / "dagster-daemon"  # the venv's console scripts
CLI = Path(sys.executable).parent / "quant-assets"
START, END = date(2019, 1, 1), date(2022, 12, 30)
FIRST_END = date(2022, 12, 29)  # the files end a session early: (d) adds the last one
TICK_SECONDS = 1
WAIT_SECONDS = 600  # a bound, not a target: a loaded 2-core machine is slow
# Columns that record when or by which run a row was written, and MLflow's registry numbers
# (each registration takes the next version, so a store that trained before numbers on):
# not what the rows say. The models themselves are compared through every metric column.
RUN_COLUMNS = {
    "ingested_at",
    "run_id",
    "mlflow_run_id",
    "report_path",
    "version",
    "champion_version",
    "model_version",
    "mlflow_version",
    *LEDGER_RUN_COLUMNS,
}


@dataclass
class Daemon:
    project: Project
    process: subprocess.Popen
    log: Path
    seen: int = 0  # runs already asserted by an earlier step

    def new_runs(self) -> list[tuple[str, str, str]]:
        """The runs launched since the last call, oldest first: (assets, first, last)."""
        instance = open_instance(self.project.home)
        runs = list(reversed(instance.get_runs()))
        fresh = runs[self.seen :]
        self.seen = len(runs)
        return [_shape(r) for r in fresh]


def _shape(run) -> tuple[str, str, str]:
    assets = ",".join(sorted(k.to_user_string() for k in run.asset_selection or []))
    start = run.tags.get("dagster/asset_partition_range_start", "-")
    end = run.tags.get("dagster/asset_partition_range_end", "-")
    assert run.tags.get("quant_assets/launched_by") == "converge", run.tags
    assert run.status.value == "SUCCESS", (assets, run.status)
    return assets, start, end


def _project(root: Path, tickers: list[str]) -> Project:
    project = write_project(root, tickers, START, END, grain="year", history_start=date(2017, 1, 2))
    write_fast_model_configs(project, strategies=False)
    write_strategies(project, ["hybrid_alpha"])
    operations = {
        "schedule": {"enabled": False},
        "converge": {"enabled": True, "minimum_interval_seconds": TICK_SECONDS},
    }
    (project.config_dir / "operations.yaml").write_text(yaml.safe_dump(operations))
    return project


def _cut(project: Project, last: date) -> None:
    for path in project.drop.glob("*.csv"):
        frame = pl.read_csv(path, try_parse_dates=True)
        frame.filter(pl.col("date") <= last).write_csv(path)


def _env(project: Project) -> dict[str, str]:
    return {
        **os.environ,
        "QUANT_ASSETS_CONFIG": str(project.config_dir),
        "QUANT_ASSETS_HOME": str(project.home),
        "DAGSTER_HOME": str(dagster_home(project.home)),
        "DAGSTER_EMIT_PARTITION_SUBSET_IN_PLANNED_EVENTS": "true",
        "OMP_WAIT_POLICY": "PASSIVE",
    }


@pytest.fixture(scope="module")
def daemon(tmp_path_factory) -> Iterator[Daemon]:
    root = tmp_path_factory.mktemp("daemon")
    project = _project(root / "live", ["AAA", "BBB", "CCC"])
    _cut(project, FIRST_END)
    # Runs start when the sensor requests them (no queue hop): the production instance keeps
    # Dagster's QueuedRunCoordinator; the daemon, sensors and run launcher are the same.
    with (dagster_home(project.home) / "dagster.yaml").open("a") as instance_yaml:
        instance_yaml.write(
            "run_coordinator:\n  module: dagster.core.run_coordinator\n"
            "  class: DefaultRunCoordinator\n"
        )
    open_instance(project.home)  # its SQLite storage created once, before two processes race
    log = root / "daemon.log"
    with log.open("w") as out:
        process = subprocess.Popen(
            [str(DAEMON), "run", "-w", str(REPO / "workspace.yaml")],
            cwd=REPO,
            env=_env(project),
            stdout=out,
            stderr=subprocess.STDOUT,
            start_new_session=True,  # its code server and runs die with it
        )
    try:
        yield Daemon(project, process, log)
    finally:
        _stop(process)


def _stop(process: subprocess.Popen) -> None:
    if process.poll() is not None:
        return
    os.killpg(process.pid, signal.SIGTERM)
    try:
        process.wait(timeout=30)
    except subprocess.TimeoutExpired:
        os.killpg(process.pid, signal.SIGKILL)
        process.wait(timeout=10)


def converged(daemon: Daemon) -> None:
    """Wait (bounded) until the daemon launched a run for the change, none is in progress and
    every asset is complete and current, then three more ticks, so a run launched late would
    be seen."""
    settings = load_settings(daemon.project.config_dir)
    graph = build_definitions(settings, daemon.project.home).resolve_asset_graph()
    deadline = time.monotonic() + WAIT_SECONDS
    quiet_since = None
    while time.monotonic() < deadline:
        assert daemon.process.poll() is None, _tail(daemon.log)
        instance = open_instance(daemon.project.home)
        tickers = instance.get_dynamic_partitions("ticker")
        busy = runs_in_progress(instance)
        started = len(instance.get_run_ids()) > daemon.seen  # the change was seen
        # The graph state (the costly read) only once the daemon is idle after the change.
        done = (
            started
            and not busy
            and tickers == settings.universe.tickers
            and all(
                c.complete for c in completeness(graph_state(GraphView(graph, tickers), instance))
            )
        )
        if done:
            quiet_since = quiet_since or time.monotonic()
            if time.monotonic() - quiet_since > 3 * TICK_SECONDS:
                return
        else:
            quiet_since = None
        time.sleep(2)  # reading the graph state costs CPU the daemon's runs need
    raise AssertionError(f"not converged after {WAIT_SECONDS} s\n{_tail(daemon.log)}")


def _tail(log: Path) -> str:
    return "\n".join(log.read_text(errors="replace").splitlines()[-40:])


def tables(home: Path) -> dict[str, pl.DataFrame]:
    with duckdb.connect(str(home / "warehouse.duckdb"), read_only=True) as conn:
        names = conn.execute(
            "select table_schema, table_name from information_schema.tables "
            "where table_schema not in ('information_schema', 'pg_catalog')"
        ).fetchall()
        out = {}
        for schema, table in names:
            frame = conn.execute(f"select * from {schema}.{table}").pl()
            frame = frame.drop([c for c in frame.columns if c in RUN_COLUMNS])
            out[f"{schema}.{table}"] = frame.sort(frame.columns)
    return out


def fresh_copy(project: Project, root: Path) -> Project:
    """The same configs and files in a new project with an empty data directory."""
    copy = Project(
        root / "configs", root / "drop", root / "data", project.tickers, project.benchmark
    )
    shutil.copytree(project.config_dir, copy.config_dir)
    shutil.copytree(project.drop, copy.drop)
    copy.home.mkdir(parents=True)
    providers = yaml.safe_load((copy.config_dir / "providers.yaml").read_text())
    providers["files"]["path"] = str(copy.drop)
    (copy.config_dir / "providers.yaml").write_text(yaml.safe_dump(providers))
    return copy


@dataclass
class Reference:
    """``quant-assets materialize --select all`` on a fresh copy of the inputs, running in its
    own process while the daemon converges."""

    project: Project
    process: subprocess.Popen
    log: Path

    @classmethod
    def start(cls, daemon: Daemon, root: Path) -> Reference:
        project = fresh_copy(daemon.project, root)
        env = {k: v for k, v in _env(project).items() if k != "MLFLOW_TRACKING_URI"}
        log = root / "reference.log"
        with log.open("w") as out:
            process = subprocess.Popen(
                [str(CLI), "materialize", "--select", "all"],
                cwd=REPO,
                env=env,
                stdout=out,
                stderr=subprocess.STDOUT,
            )
        return cls(project, process, log)

    def assert_equal_to(self, daemon: Daemon) -> None:
        """The converged warehouse equals the reference's, table by table."""
        assert self.process.wait(timeout=WAIT_SECONDS) == 0, _tail(self.log)
        live, full = tables(daemon.project.home), tables(self.project.home)
        assert sorted(live) == sorted(full)
        for name in sorted(full):
            assert live[name].equals(full[name]), name


BARS_STAGE = "bars,features,labels,signals"
MODEL_STAGE = "hybrid_alpha/alpha_scores,hybrid_alpha/backtest,hybrid_alpha/positions,predictions"
ORDERS_STAGE = "hybrid_alpha/orders,hybrid_alpha/paper_book"
# The whole-history summaries: the strategy's report and the signal tear sheets.
REPORT_STAGE = (
    "forward_returns,hybrid_alpha/backtest_report,signal_decay,signal_evaluation,signal_ic,"
    "signal_quantiles"
)


def test_a_fresh_data_directory_with_dropped_files_converges_like_a_full_run(daemon, tmp_path):
    reference = Reference.start(daemon, tmp_path / "reference")
    converged(daemon)
    assert daemon.new_runs() == [
        ("benchmark_bars", "2019-01-01", "2022-01-01"),
        ("regime_model", "2021-01-01", "2022-01-01"),
        ("regimes", "2019-01-01", "2022-01-01"),
        (BARS_STAGE, "2019-01-01|AAA", "2022-01-01|CCC"),
        ("next_state_model", "2021-01-01", "2022-01-01"),
        (MODEL_STAGE, "2021-01-01|AAA", "2022-01-01|CCC"),
        (ORDERS_STAGE, "2021-01-01", "2022-01-01"),
        (REPORT_STAGE, "-", "-"),
    ]
    reference.assert_equal_to(daemon)


def test_d_a_new_session_runs_the_daily_path_once_and_retrains_nothing(daemon):
    project = daemon.project
    full = write_project(
        project.config_dir.parent.parent / "full",
        ["AAA", "BBB", "CCC"],
        START,
        END,
        grain="year",
        history_start=date(2017, 1, 2),
    )
    for path in sorted(full.drop.glob("*.csv")):  # each file gains the session of 12-30
        (project.drop / path.name).write_bytes(path.read_bytes())
    converged(daemon)
    assert daemon.new_runs() == [
        # the benchmark and the regimes share their partitions and window: one run
        ("benchmark_bars,regimes", "2022-01-01", "2022-01-01"),
        (BARS_STAGE, "2022-01-01|AAA", "2022-01-01|CCC"),
        (MODEL_STAGE, "2022-01-01|AAA", "2022-01-01|CCC"),
        (ORDERS_STAGE, "2022-01-01", "2022-01-01"),
        (REPORT_STAGE, "-", "-"),
    ]
    stored = tables(project.home)
    assert "hybrid_alpha.orders" in stored, (sorted(stored), sorted(os.listdir(project.home)))
    orders = stored["hybrid_alpha.orders"]
    assert orders["date"].max() == END  # the orders decided at the new session's close


def test_b_a_corrected_old_window_recomputes_exactly_what_reads_it(daemon):
    project = daemon.project
    bars = project.bars("AAA")
    fix = (pl.col("date") >= date(2019, 6, 3)) & (pl.col("date") <= date(2019, 6, 7))
    prices = ("open", "high", "low", "close")
    project.write(
        "AAA",
        bars.with_columns(pl.when(fix).then(pl.col(c) * 1.01).otherwise(pl.col(c)) for c in prices),
    )
    before = tables(project.home)
    converged(daemon)
    assert daemon.new_runs() == [
        ("bars", "2019-01-01|AAA", "2019-01-01|AAA"),
        # features read two windows back (252 sessions), labels one (the horizon)
        ("features,signals", "2019-01-01|AAA", "2021-01-01|AAA"),
        ("labels", "2019-01-01|AAA", "2020-01-01|AAA"),
        # both cut-offs trained on 2019: retrained; so every prediction and the book
        ("next_state_model", "2021-01-01", "2022-01-01"),
        (MODEL_STAGE, "2021-01-01|AAA", "2022-01-01|CCC"),
        (ORDERS_STAGE, "2021-01-01", "2022-01-01"),
        (REPORT_STAGE, "-", "-"),
    ]
    # Exactly the reached windows changed: every row before 2019 and every per-ticker row of
    # the others is as it was. (Equality with a full rerun on these files is asserted after
    # (c), whose reference runs on them: one CLI run fewer for the suite's 10 minutes.)
    after = tables(project.home)
    for name in ("market.bars", "market.features", "market.signals", "market.labels"):
        others = pl.col("ticker") != "AAA"
        assert after[name].filter(others).equals(before[name].filter(others)), name
        assert not after[name].equals(before[name]), name
    for name, frame in before.items():
        if "date" in frame.columns:
            early = pl.col("date") < date(2019, 1, 1)
            assert after[name].filter(early).equals(frame.filter(early)), name


def test_c_a_ticker_added_and_a_bad_file_converge_without_it_and_record_it(daemon, tmp_path):
    """A ticker added to universe.yaml (its file dropped in) converges like a full run, while
    a bad file dropped at the same time for another ticker is refused and recorded with the
    ticker, date and rule, and blocks nothing."""
    project = daemon.project
    extra = write_project(
        project.config_dir.parent.parent / "extra",
        ["AAA", "BBB", "CCC", "DDD"],
        START,
        END,
        grain="year",
        history_start=date(2017, 1, 2),
    )
    (project.drop / "DDD.csv").write_bytes((extra.drop / "DDD.csv").read_bytes())
    universe = yaml.safe_load((project.config_dir / "universe.yaml").read_text())
    universe["tickers"] = ["AAA", "BBB", "CCC", "DDD"]
    (project.config_dir / "universe.yaml").write_text(yaml.safe_dump(universe))
    project.tickers = ["AAA", "BBB", "CCC", "DDD"]
    reference = Reference.start(daemon, tmp_path / "reference")  # the good files
    negative = pl.when(pl.col("date") == date(2022, 3, 15)).then(-1.0).otherwise(pl.col("close"))
    project.write("BBB", project.bars("BBB").with_columns(negative.alias("close")))
    converged(daemon)
    assert daemon.new_runs() == [
        (BARS_STAGE, "2019-01-01|DDD", "2022-01-01|DDD"),
        ("next_state_model", "2021-01-01", "2022-01-01"),
        (MODEL_STAGE, "2021-01-01|AAA", "2022-01-01|DDD"),
        (ORDERS_STAGE, "2021-01-01", "2022-01-01"),
        (REPORT_STAGE, "-", "-"),
    ]
    reference.assert_equal_to(daemon)  # BBB's stored bars are the good ones
    records = [
        json.loads(line)
        for line in (project.home / "alerts" / "run_failures.jsonl").read_text().splitlines()
    ]
    (refused,) = [r for r in records if r.get("kind") == "input_refused"]
    assert refused["file"].endswith("BBB.csv")
    assert "ticker=BBB" in refused["error"] and "2022-03-15" in refused["error"]
