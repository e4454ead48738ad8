"""The DuckDB IO manager: range runs over date windows × tickers, written transactionally.

Built on dagster-duckdb's ``DbIOManager``, with three changes, each for a measured trap:

1. **Rectangles.** The stock manager reads ``asset_partition_key_range`` and fails when one run
   covers several windows × several tickers ("there are (20) key ranges associated with this
   output", dagster#19408). We build the table slice from the whole partition subset as one
   rectangle — a date window and a ticker list — for outputs and for inputs (including the
   look-back an input's partition mapping adds).
2. **Transactions.** The stock manager deletes the slice and inserts the new rows in separate
   statements; a failure in between loses data. Here delete + insert are one DuckDB
   transaction: a failed write leaves the previous rows intact.
3. **Insert by name, deterministic reads.** ``INSERT ... BY NAME`` (a new feature column adds a
   table column instead of misaligning), and reads ordered by (ticker, date).
"""

from __future__ import annotations

import time
from collections.abc import Sequence
from contextlib import contextmanager
from datetime import datetime
from typing import Any, cast

import dagster as dg
import duckdb
import pandas as pd
import polars as pl
from dagster_duckdb import DuckDBIOManager

from quant_assets.dagster_internals import (
    DbIOManager,
    DbTypeHandler,
    DuckDbClient,
    TablePartitionDimension,
    TableSlice,
    backoff,
    duckdb_cleanup_statement,
)
from quant_assets.defs.partitions import (
    DATE_DIMENSION,
    TICKER_DIMENSION,
    rectangle_from_keys,
)
from quant_assets.tickers import validate_ticker


def _order_by(table_slice: TableSlice) -> str:
    exprs = [d.partition_expr for d in table_slice.partition_dimensions or []]
    ordered = [e for e in ("ticker", "date") if e in exprs] or exprs
    return f" ORDER BY {', '.join(ordered)}" if ordered else ""


class OrderedDuckDbClient(DuckDbClient):
    """DuckDbClient with ordered selects, a delete that is safe inside a transaction, and a
    connection that is closed even when the step fails (the stock one leaks it, and DuckDB
    then refuses every other connection to the file in the process)."""

    @staticmethod
    def get_select_statement(table_slice: TableSlice) -> str:
        return DuckDbClient.get_select_statement(table_slice) + _order_by(table_slice)

    @staticmethod
    def delete_table_slice(context, table_slice: TableSlice, connection) -> None:
        # The stock client swallows CatalogException for a missing table, but inside a
        # transaction that error has already aborted it: check first instead.
        if _table_exists(connection, table_slice):
            _run(connection, duckdb_cleanup_statement(table_slice))

    @staticmethod
    @contextmanager
    def connect(context, _table_slice):
        conn = backoff(
            fn=duckdb.connect,
            retry_on=(RuntimeError, duckdb.IOException),
            kwargs={"database": context.resource_config["database"], "read_only": False},
            max_retries=10,
        )
        try:
            yield conn
        finally:
            conn.close()


class RectangleDbIOManager(DbIOManager):
    """DbIOManager that slices multi-partitioned assets as one rectangle and writes atomically."""

    def _get_table_slice(
        self, context: dg.OutputContext | dg.InputContext, output_context: dg.OutputContext
    ) -> TableSlice:
        base = super()._get_table_slice(context, output_context) if not _is_multi(context) else None
        if base is not None:
            return base
        metadata = output_context.definition_metadata or {}
        asset_path = context.asset_key.path
        partition_expr = cast("dict[str, str]", metadata["partition_expr"])
        keys = list(context.asset_partition_keys)
        rectangle = rectangle_from_keys(keys, context.asset_partitions_def)
        for ticker in rectangle.tickers:  # partition keys reach SQL: refuse anything odd
            validate_ticker(ticker)
        dims = [
            TablePartitionDimension(
                partition_expr=partition_expr[DATE_DIMENSION],
                partitions=dg.TimeWindow(
                    datetime.combine(rectangle.start, datetime.min.time()),
                    datetime.combine(rectangle.end, datetime.min.time()),
                ),
            ),
            TablePartitionDimension(
                partition_expr=partition_expr[TICKER_DIMENSION],
                partitions=list(rectangle.tickers),
            ),
        ]
        return TableSlice(
            table=asset_path[-1],
            schema=cast("str", metadata.get("schema") or self._schema or "public"),
            database=self._database,
            partition_dimensions=dims,
            columns=(context.definition_metadata or {}).get("columns"),
        )

    def handle_output(self, context: dg.OutputContext, obj: object) -> None:
        if obj is None:
            raise dg.DagsterInvariantViolationError("asset returned None instead of a frame")
        self._check_supported_type(type(obj))
        table_slice = self._get_table_slice(context, context)
        handler = self._resolve_handler(type(obj))
        started = time.perf_counter()
        with self._db_client.connect(context, table_slice) as conn:
            _run(conn, f"create schema if not exists {table_slice.schema}")
            conn.begin()
            try:
                self._db_client.delete_table_slice(context, table_slice, conn)
                metadata = handler.handle_output(context, table_slice, obj, conn)
                conn.commit()
            except BaseException:
                conn.rollback()
                raise
        context.add_output_metadata(
            {
                **(metadata or {}),
                "query": slice_query(self._db_client.get_table_name(table_slice), table_slice),
                "dagster/table_name": self._db_client.get_table_name(table_slice),
                "duckdb_write_seconds": round(time.perf_counter() - started, 4),
            }
        )


SLICE_TICKERS_SHOWN = 4


def slice_query(table: str, table_slice: TableSlice) -> str:
    """The rows a run wrote, for the materialisation metadata: the table and the rectangle
    (date window, tickers), with the tickers named only up to :data:`SLICE_TICKERS_SHOWN`.
    Dagster copies run metadata onto every partition's event, so a SELECT listing 500
    tickers would be stored 10,000 times (~10 KB per asset-partition)."""
    where = []
    for dimension in table_slice.partition_dimensions or []:
        partitions = dimension.partitions
        if isinstance(partitions, dg.TimeWindow):
            where.append(
                f"{dimension.partition_expr} >= '{partitions.start.date()}' and "
                f"{dimension.partition_expr} < '{partitions.end.date()}'"
            )
            continue
        keys = list(partitions)
        if len(keys) <= SLICE_TICKERS_SHOWN:
            shown = ", ".join(f"'{k}'" for k in keys)
        else:
            shown = f"{len(keys)} keys: '{keys[0]}' … '{keys[-1]}'"
        where.append(f"{dimension.partition_expr} in ({shown})")
    return f"select * from {table}" + (f" where {' and '.join(where)}" if where else "")


def _is_multi(context: dg.OutputContext | dg.InputContext) -> bool:
    return (
        context.has_asset_key
        and context.has_asset_partitions
        and isinstance(context.asset_partitions_def, dg.MultiPartitionsDefinition)
    )


def _run(connection: duckdb.DuckDBPyConnection, sql: str, params: list | None = None) -> list:
    # DuckDB 2 refuses new work on a connection with an unconsumed result: always drain it.
    return connection.execute(sql, params or []).fetchall()


def _table_exists(connection: duckdb.DuckDBPyConnection, table_slice: TableSlice) -> bool:
    found = _run(
        connection,
        "select count(*) from information_schema.tables where table_schema = ? and table_name = ?",
        [table_slice.schema, table_slice.table],
    )
    return bool(found and found[0][0])


def _write(connection: duckdb.DuckDBPyConnection, table_slice: TableSlice, arrow: Any) -> None:
    name = f"{table_slice.schema}.{table_slice.table}"
    connection.register("_incoming", arrow)
    try:
        if not _table_exists(connection, table_slice):
            _run(connection, f"create table {name} as select * from _incoming")
            return
        existing = {
            row[0]
            for row in _run(
                connection,
                "select column_name from information_schema.columns "
                "where table_schema = ? and table_name = ?",
                [table_slice.schema, table_slice.table],
            )
        }
        for column, column_type, *_ in _run(connection, "describe _incoming"):
            if column not in existing:
                _run(connection, f'alter table {name} add column "{column}" {column_type}')
        _run(connection, f"insert into {name} by name select * from _incoming")
    finally:
        connection.unregister("_incoming")


def _read(
    context: dg.InputContext, table_slice: TableSlice, connection: duckdb.DuckDBPyConnection
) -> duckdb.DuckDBPyRelation | None:
    if table_slice.partition_dimensions and len(context.asset_partition_keys) == 0:
        return None
    if not _table_exists(connection, table_slice):
        raise dg.Failure(
            description=(
                f"table {table_slice.schema}.{table_slice.table} does not exist yet: materialize "
                f"{context.asset_key.to_user_string()} for these partitions first"
            )
        )
    return connection.sql(OrderedDuckDbClient.get_select_statement(table_slice))


class PolarsTypeHandler(DbTypeHandler[pl.DataFrame]):
    """Stores and loads polars DataFrames."""

    def handle_output(
        self, context: dg.OutputContext, table_slice: TableSlice, obj: pl.DataFrame, connection
    ) -> dict[str, Any]:
        # An empty frame with columns still creates the table: an asset that ran and found
        # nothing to write (predictions with no model yet) reads back as empty downstream.
        if obj.height or (obj.width and not _table_exists(connection, table_slice)):
            _write(connection, table_slice, obj.to_arrow())
        return {"dagster/partition_row_count": obj.height, "storage_kind": "duckdb"}

    def load_input(
        self, context: dg.InputContext, table_slice: TableSlice, connection
    ) -> pl.DataFrame:
        relation = _read(context, table_slice, connection)
        return pl.DataFrame() if relation is None else relation.pl()

    @property
    def supported_types(self) -> Sequence[type[object]]:
        return [pl.DataFrame]


class PandasTypeHandler(DbTypeHandler[pd.DataFrame]):
    """Stores and loads pandas DataFrames (for user assets and notebooks)."""

    def handle_output(
        self, context: dg.OutputContext, table_slice: TableSlice, obj: pd.DataFrame, connection
    ) -> dict[str, Any]:
        if len(obj):
            _write(connection, table_slice, obj)
        return {"dagster/partition_row_count": len(obj), "storage_kind": "duckdb"}

    def load_input(
        self, context: dg.InputContext, table_slice: TableSlice, connection
    ) -> pd.DataFrame:
        relation = _read(context, table_slice, connection)
        return pd.DataFrame() if relation is None else relation.df()

    @property
    def supported_types(self) -> Sequence[type[object]]:
        return [pd.DataFrame]


class WarehouseIOManager(DuckDBIOManager):
    """DuckDB IO manager for the pipeline's tables (polars by default, pandas on request)."""

    @staticmethod
    def type_handlers() -> Sequence[DbTypeHandler]:
        return [PolarsTypeHandler(), PandasTypeHandler()]

    @staticmethod
    def default_load_type() -> type | None:
        return pl.DataFrame

    def create_io_manager(self, context) -> DbIOManager:
        return RectangleDbIOManager(
            db_client=OrderedDuckDbClient(),
            database=self.database,
            schema=self.schema_,
            type_handlers=self.type_handlers(),
            default_load_type=self.default_load_type(),
            io_manager_name="WarehouseIOManager",
        )
