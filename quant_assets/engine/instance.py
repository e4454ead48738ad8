"""The persistent Dagster instance of a data directory, and its housekeeping before each run:
runs killed mid-run marked failed, ticker partitions synced with ``universe.yaml``."""

from __future__ import annotations

import os
import socket
from collections.abc import Sequence
from pathlib import Path

import dagster as dg

from quant_assets.defs.partitions import TICKER_PARTITIONS
from quant_assets.defs.sensors import universe_partition_requests

_INSTANCE_YAML = """\
# Written by quant-assets: the Dagster instance of this data directory.
storage:
  sqlite:
    base_dir: {storage}
telemetry:
  enabled: false
"""
PID_TAG = "quant_assets/pid"
HOST_TAG = "quant_assets/host"


def dagster_home(home: Path) -> Path:
    """The Dagster instance directory of a data directory (created with its dagster.yaml)."""
    path = home / "dagster"
    path.mkdir(parents=True, exist_ok=True)
    config = path / "dagster.yaml"
    if not config.exists():
        # Local artifacts (compute logs) default to the instance directory itself.
        config.write_text(_INSTANCE_YAML.format(storage=path / "storage"))
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
