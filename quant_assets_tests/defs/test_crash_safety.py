"""A run killed mid-write leaves no partial partition: a re-run completes and the tables equal
a clean run's.

How the kill lands mid-write every time: the killed CLI runs through
``quant_assets_tests/defs/_crash.py``, which parks the process at an exact statement of one
table's write (after the DELETE, after the INSERT but before the COMMIT, or after the COMMIT
but before the connection closes) and then writes a marker file. The test waits for the
marker, not for a duration, and sends SIGKILL: the kill point does not depend on the speed of
the machine. The marker also records what the open transaction saw (rows of the table) and
whether the DuckDB WAL existed at the kill.

Each case starts from a project whose tables already hold 2017-2018 (so the killed range
write deletes existing rows), kills a 2017-2020 run, checks every table is absent or whole
(its state before the run, or the clean run's when its transaction had committed), that the
Dagster run is left STARTED, then re-runs the same CLI command and compares with a clean run
in another directory. The three kills run in parallel (one subprocess each): the cold start
of the CLI dominates the module's time.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from dataclasses import dataclass
from datetime import date
from pathlib import Path

import dagster as dg
import duckdb
import polars as pl
import pytest
from typer.testing import CliRunner

from quant_assets.cli import app
from quant_assets.defs.resources import WAREHOUSE_SCHEMA, warehouse_path
from quant_assets.engine.instance import open_instance
from quant_assets.engine.runner import materialize
from quant_assets.settings import load_settings
from quant_assets_tests.conftest import Project, copy_project, write_project

TICKERS = ["AAA", "BBB", "CCC"]
START, END = date(2017, 1, 1), date(2020, 12, 31)
BEFORE_END = date(2018, 12, 31)  # the tables hold 2017-2018 when the killed run starts
COMMAND = ["materialize", "--select", "signals"]  # bars, benchmark_bars, features, signals
# Run-time columns (quant_assets/schemas.py): when the bars were ingested. Everything else
# is a function of the input files.
RUN_TIME_COLUMNS = ("ingested_at",)
MARKER_TIMEOUT_SECONDS = 240  # generous: a shared 2-core machine; the marker normally ~20 s


@dataclass(frozen=True)
class KillPoint:
    table: str
    point: str  # see _crash.POINTS

    @property
    def committed(self) -> bool:
        return self.point == "after_commit"


KILL_POINTS = (
    KillPoint("bars", "after_delete"),  # existing rows deleted, nothing inserted
    KillPoint("features", "before_commit"),  # deleted + inserted, not committed
    KillPoint("signals", "after_commit"),  # committed, only in the WAL
)


@dataclass
class Killed:
    project: Project
    before: dict[str, pl.DataFrame]  # tables when the killed run started
    marker: dict  # the state the writer saw at the kill (see _crash._park)
    seconds_to_kill: float


def tables(project: Project) -> dict[str, pl.DataFrame]:
    """Every warehouse table, run-time columns dropped, rows sorted on all columns."""
    with duckdb.connect(str(warehouse_path(project.home)), read_only=True) as conn:
        names = [
            r[0]
            for r in conn.execute(
                "select table_name from information_schema.tables where table_schema = ?",
                [WAREHOUSE_SCHEMA],
            ).fetchall()
        ]
        frames = {n: conn.execute(f"select * from {WAREHOUSE_SCHEMA}.{n}").pl() for n in names}
    result = {}
    for name, frame in frames.items():
        frame = frame.drop([c for c in RUN_TIME_COLUMNS if c in frame.columns])
        result[name] = frame.sort(frame.columns)
    return result


def differing_partitions(frame: pl.DataFrame, expected: pl.DataFrame) -> list[tuple]:
    """The (ticker, year window) keys whose rows differ between two versions of a table."""
    keys = [c for c in ("ticker",) if c in frame.columns]

    def groups(f: pl.DataFrame) -> dict[tuple, pl.DataFrame]:
        f = f.with_columns(pl.col("date").dt.year().alias("_window"))
        return {k: g.drop("_window") for k, g in f.group_by([*keys, "_window"])}

    mine, theirs = groups(frame), groups(expected)
    return sorted(
        k
        for k in mine.keys() | theirs.keys()
        if k not in mine or k not in theirs or not mine[k].sort(frame.columns).equals(theirs[k])
    )


def run_in_process(project: Project, start: date, end: date) -> None:
    outcomes = materialize(load_settings(project.config_dir), project.home, ["signals"], start, end)
    assert outcomes and all(o.success for o in outcomes), [o.error for o in outcomes]


def cli_env(project: Project) -> dict[str, str]:
    return {
        **os.environ,
        "QUANT_ASSETS_HOME": str(project.home),
        "QUANT_ASSETS_CONFIG": str(project.config_dir),
    }


@pytest.fixture(scope="module")
def clean(tmp_path_factory) -> dict[str, pl.DataFrame]:
    """The tables of an uninterrupted run, in a directory of its own."""
    project = write_project(tmp_path_factory.mktemp("clean"), TICKERS, START, END, grain="year")
    run_in_process(project, START, END)
    return tables(project)


@pytest.fixture(scope="module")
def killed(tmp_path_factory) -> dict[KillPoint, Killed]:
    """One project per kill point, each killed at its point; the kills run in parallel."""
    root = tmp_path_factory.mktemp("crash")
    base = write_project(root / "base", TICKERS, START, END, grain="year")
    run_in_process(base, START, BEFORE_END)
    before = tables(base)
    assert {"bars", "features", "signals"} <= before.keys()
    started = time.monotonic()
    running = {}
    for kill in KILL_POINTS:
        project = copy_project(base, root / f"{kill.table}-{kill.point}")
        marker = project.home / "crash-marker.json"
        args = [sys.executable, "-m", "quant_assets_tests.defs._crash"]
        args += [kill.table, kill.point, str(marker), "--", *COMMAND]
        process = subprocess.Popen(
            args,
            env=cli_env(project),
            cwd=Path(__file__).resolve().parents[2],
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
        )
        running[kill] = (project, marker, process)
    result = {}
    try:
        for kill, (project, marker, process) in running.items():
            while not marker.exists():
                if process.poll() is not None:
                    output = process.stdout.read().decode() if process.stdout else ""
                    pytest.fail(f"{kill} exited {process.returncode} before its kill:\n{output}")
                if time.monotonic() - started > MARKER_TIMEOUT_SECONDS:
                    pytest.fail(f"{kill}: no marker after {MARKER_TIMEOUT_SECONDS}s")
                time.sleep(0.05)
            state = json.loads(marker.read_text())
            process.send_signal(signal.SIGKILL)
            assert process.wait(timeout=30) == -signal.SIGKILL
            result[kill] = Killed(project, before, state, time.monotonic() - started)
    finally:
        for _, _, process in running.values():
            if process.poll() is None:
                process.kill()
                process.wait()
            if process.stdout:
                process.stdout.close()
    return result


@pytest.mark.parametrize("kill", KILL_POINTS, ids=lambda k: f"{k.table}-{k.point}")
def test_killed_write_leaves_whole_tables_and_a_rerun_equals_a_clean_run(kill, killed, clean):
    crash = killed[kill]
    assert crash.marker["table"] == kill.table and crash.marker["point"] == kill.point
    before_rows = crash.before[kill.table].height
    if kill.point == "after_delete":  # the kill lands inside the range write's transaction
        assert crash.marker["rows_seen_by_writer"] == 0 < before_rows
    elif kill.point == "before_commit":
        assert crash.marker["rows_seen_by_writer"] == clean[kill.table].height > before_rows
    else:  # committed and not checkpointed: the new rows are in the WAL only
        assert crash.marker["wal_exists"], crash.marker

    # DuckDB opens the killed file (replaying the WAL) and every table is whole: the state
    # before the killed run, or the clean run's when its write committed before the kill.
    after = tables(crash.project)
    for name in sorted(clean.keys() | after.keys() | crash.before.keys()):
        frame = after.get(name)
        old, new = crash.before.get(name), clean[name]
        if name == kill.table:
            expected = new if kill.committed else old
            assert frame is not None and expected is not None
            assert frame.equals(expected), (name, differing_partitions(frame, expected))
        elif frame is None:
            assert old is None, f"{name} vanished"
        else:
            assert (old is not None and frame.equals(old)) or frame.equals(new), (
                name,
                differing_partitions(frame, new),
            )

    # The killed run stays STARTED in Dagster: it must not block the re-run.
    instance = open_instance(crash.project.home)
    try:
        stuck = instance.get_runs(dg.RunsFilter(statuses=[dg.DagsterRunStatus.STARTED]))
    finally:
        instance.dispose()
    assert len(stuck) == 1

    # The same CLI command (in this process: the cold start is the cost of a subprocess).
    result = CliRunner().invoke(app, COMMAND, env=cli_env(crash.project))
    assert result.exit_code == 0, result.output
    # ... and the re-run marked it failed (its process is gone), so nothing shows it in progress.
    instance = open_instance(crash.project.home)
    try:
        killed = instance.get_run_by_id(stuck[0].run_id)
        assert killed is not None and killed.status == dg.DagsterRunStatus.FAILURE
        assert not instance.get_runs(dg.RunsFilter(statuses=[dg.DagsterRunStatus.STARTED]))
    finally:
        instance.dispose()
    rerun = tables(crash.project)
    assert rerun.keys() == clean.keys()
    for name, frame in rerun.items():
        assert frame.equals(clean[name]), (name, differing_partitions(frame, clean[name]))
