"""The persistent Dagster instance of a data directory, and its housekeeping before each run:
runs killed mid-run marked failed, ticker partitions synced with ``universe.yaml``."""

from __future__ import annotations

import os
import socket
from collections.abc import Sequence
from pathlib import Path

import dagster as dg

from quant_assets.dagster_internals import (
    EVENT_LOG_STORAGE_MODULE,
    RUN_STORAGE_MODULE,
    SCHEDULE_STORAGE_MODULE,
)
from quant_assets.defs.partitions import TICKER_PARTITIONS
from quant_assets.defs.sensors import universe_partition_requests

_HEADER = "# Written by quant-assets: the Dagster instance of this data directory."
# The stock SQLite layout (what ``storage: sqlite: base_dir`` makes of <storage>), spelled out
# per storage so that the event log can be the batched one (dagster_internals.py).
_STORAGES = (  # (key in dagster.yaml, (module, class), base directory under <storage>)
    ("run_storage", RUN_STORAGE_MODULE, "history"),
    ("event_log_storage", EVENT_LOG_STORAGE_MODULE, "history/runs"),
    ("schedule_storage", SCHEDULE_STORAGE_MODULE, "schedules"),
)


def _storage_blocks(storage: Path) -> str:
    """The three storage blocks of the instance YAML for SQLite storage under ``storage``."""
    return "".join(
        f"{key}:\n  module: {module}\n  class: {name}\n  config:\n"
        f"    base_dir: {storage}/{directory}\n"
        for key, (module, name), directory in _STORAGES
    )


def instance_yaml(storage: Path) -> str:
    """The dagster.yaml of an instance whose SQLite storage is under ``storage``."""
    return (
        f"{_HEADER}\n"
        f"# Stock SQLite storages in the stock layout under {storage}; the event log writes a "
        "step's\n# materialisations in one transaction per database "
        "(BatchedSqliteEventLogStorage).\n"
        f"{_storage_blocks(storage)}telemetry:\n  enabled: false\n"
    )


PID_TAG = "quant_assets/pid"
HOST_TAG = "quant_assets/host"


def dagster_home(home: Path) -> Path:
    """The Dagster instance directory of a data directory (created with its dagster.yaml)."""
    path = home / "dagster"
    path.mkdir(parents=True, exist_ok=True)
    config = path / "dagster.yaml"
    storage = path / "storage"
    if not config.exists():
        # Local artifacts (compute logs) default to the instance directory itself.
        config.write_text(instance_yaml(storage))
        return path
    # A file an older quant-assets wrote (``storage: sqlite:``) gets the batched event log:
    # the same directory and layout, so its history stays; anything else is left alone.
    text = config.read_text()
    legacy = f"storage:\n  sqlite:\n    base_dir: {storage}\n"
    if text.startswith(_HEADER) and legacy in text:
        config.write_text(text.replace(legacy, _storage_blocks(storage)))
    return path


def open_instance(home: Path) -> dg.DagsterInstance:
    """The persistent Dagster instance under ``home`` (SQLite storage)."""
    return dg.DagsterInstance.from_config(str(dagster_home(home)))


def process_tags() -> dict[str, str]:
    """Tags naming the process that executes an in-process run (see :func:`fail_dead_runs`)."""
    return {PID_TAG: str(os.getpid()), HOST_TAG: socket.gethostname()}


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:  # exists, owned by someone else
        return True
    return True


def fail_dead_runs(instance: dg.DagsterInstance) -> list[str]:
    """Mark as failed the runs this machine started in-process whose process is gone (killed
    mid-run: SIGKILL, OOM, power loss). Dagster's run monitoring does this for runs its
    launcher started; in-process runs have no launcher, so we do it before every new run, or
    they would show as in progress forever and hold back the automation (``~in_progress``).
    Returns the run ids marked failed."""
    host = socket.gethostname()
    failed = []
    for run in instance.get_runs(dg.RunsFilter(statuses=[dg.DagsterRunStatus.STARTED])):
        pid, where = run.tags.get(PID_TAG), run.tags.get(HOST_TAG)
        if pid is None or where != host or not pid.isdigit() or _alive(int(pid)):
            continue
        instance.report_run_failed(
            run, f"the process running it (pid {pid} on {host}) no longer exists: killed mid-run"
        )
        failed.append(run.run_id)
    return failed


def sync_ticker_partitions(instance: dg.DagsterInstance, tickers: Sequence[str]) -> None:
    """Make the dynamic ticker partitions equal ``tickers`` (universe.yaml), in that order."""
    name = TICKER_PARTITIONS.name or "ticker"
    existing = list(instance.get_dynamic_partitions(name))
    for request in universe_partition_requests(list(tickers), existing):
        if isinstance(request, dg.AddDynamicPartitionsRequest):
            instance.add_dynamic_partitions(name, list(request.partition_keys))
        else:
            for key in request.partition_keys:
                instance.delete_dynamic_partition(name, key)
