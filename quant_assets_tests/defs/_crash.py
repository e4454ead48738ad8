"""Run the ``quant-assets`` CLI, parked at an exact point of one table write, for a SIGKILL.

``python -m quant_assets_tests.defs._crash TABLE POINT MARKER -- <cli args>`` runs the real
CLI (``quant_assets.cli.main``) with one change: when the warehouse IO manager writes
``TABLE`` it stops at ``POINT``, writes ``MARKER`` (JSON: what the open transaction holds,
whether the DuckDB WAL exists) and sleeps until killed. The test waits for the marker and
sends SIGKILL, so the kill lands at the same statement every time, however slow the machine.

Points, in the order the IO manager reaches them (one DuckDB transaction per output):

- ``after_delete``: the slice is deleted, nothing inserted, not committed;
- ``before_commit``: the slice is deleted and the new rows inserted, not committed;
- ``after_commit``: committed, the connection not yet closed (so not checkpointed): the
  rows are only in the WAL, and DuckDB must replay it on the next open.
"""

from __future__ import annotations

import json
import os
import sys
import time
from contextlib import contextmanager
from pathlib import Path

POINTS = ("after_delete", "before_commit", "after_commit")


def _park(marker: Path, table: str, point: str, connection) -> None:
    """Record the state at the kill point, then wait for the SIGKILL."""
    schema = os.environ.get("QUANT_ASSETS_CRASH_SCHEMA", "market")
    rows = connection.execute(
        "select count(*) from information_schema.tables where table_schema = ? and table_name = ?",
        [schema, table],
    ).fetchall()[0][0]
    if rows:
        rows = connection.execute(f"select count(*) from {schema}.{table}").fetchall()[0][0]
    database = connection.execute(
        "select path from duckdb_databases() where not internal"
    ).fetchall()
    path = Path(database[0][0]) if database and database[0][0] else None
    wal = path.with_name(path.name + ".wal") if path is not None else None
    state = {
        "table": table,
        "point": point,
        "pid": os.getpid(),
        "rows_seen_by_writer": int(rows),
        "wal_exists": bool(wal and wal.exists()),
        "wal_bytes": wal.stat().st_size if wal and wal.exists() else 0,
    }
    partial = marker.with_name(marker.name + ".part")
    partial.write_text(json.dumps(state))
    partial.rename(marker)  # the test sees the marker whole or not at all
    while True:
        time.sleep(60)


def install(table: str, point: str, marker: Path) -> None:
    """Patch the warehouse IO manager so that writing ``table`` parks at ``point``."""
    from quant_assets.defs import io_manager

    if point not in POINTS:
        raise ValueError(f"point: {point!r} is not one of {POINTS}")
    client = io_manager.OrderedDuckDbClient
    handler = io_manager.PolarsTypeHandler
    original_delete = client.delete_table_slice
    original_output = handler.handle_output
    original_connect = client.connect

    def delete_table_slice(context, table_slice, connection) -> None:
        original_delete(context, table_slice, connection)
        if point == "after_delete" and table_slice.table == table:
            _park(marker, table, point, connection)

    def handle_output(self, context, table_slice, obj, connection):
        metadata = original_output(self, context, table_slice, obj, connection)
        if point == "before_commit" and table_slice.table == table:
            _park(marker, table, point, connection)
        return metadata

    @contextmanager
    def connect(context, table_slice):
        with original_connect(context, table_slice) as conn:
            yield conn
            # Only an output reaches here with the target table after a write (reads of the
            # same table happen in later steps, and the marker stops the first one).
            if point == "after_commit" and table_slice.table == table and _wrote(context):
                _park(marker, table, point, conn)

    client.delete_table_slice = staticmethod(delete_table_slice)  # type: ignore[method-assign]
    handler.handle_output = handle_output  # type: ignore[method-assign]
    client.connect = staticmethod(connect)  # type: ignore[method-assign]


def _wrote(context) -> bool:
    import dagster as dg

    return isinstance(context, dg.OutputContext)


def main(argv: list[str]) -> None:
    table, point, marker, separator, *cli_args = argv
    if separator != "--":
        raise SystemExit("usage: _crash TABLE POINT MARKER -- <quant-assets args>")
    install(table, point, Path(marker))
    from quant_assets.cli import main as cli_main

    sys.argv = ["quant-assets", *cli_args]
    cli_main()


if __name__ == "__main__":
    main(sys.argv[1:])
