"""The PostgreSQL data backend: the IO manager and the warehouse resource for shared storage.

Same contract as the DuckDB pair (``io_manager.py``, ``resources.py``): a run writes a
rectangle (date window × tickers) of a table as one transaction that deletes the slice and
bulk-inserts the new rows (``COPY``), new columns are added by name, reads are ordered by
(ticker, date). The rectangle slicing is the DuckDB manager's (``RectangleDbIOManager``).

What is different is that several processes and machines write at once:

- **DDL** (``create schema``/``create table``/``alter table add column``) runs in its own short
  transaction under a transaction-scoped advisory lock per schema, and re-reads the catalog
  under the lock. Concurrent ``CREATE TABLE IF NOT EXISTS`` otherwise fails with a unique
  violation on ``pg_type``, and two writers could both try to add the same column.
- **Data**: the write transaction first takes one advisory lock per (table, ticker) it
  replaces, in a fixed order. Writers of different tickers run in parallel; two writers of the
  same ticker queue instead of both deleting the old rows and both inserting (under READ
  COMMITTED the second ``DELETE`` does not see the first one's new rows: duplicates).

The password comes only from an environment variable (a Dagster ``EnvVar``), resolved when
the resource is built: it is never in a config file, the run config shown in the UI, the
logs or the output metadata.
"""

from __future__ import annotations

import time
import zlib
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from datetime import date
from typing import Any, cast

import dagster as dg
import pandas as pd
import polars as pl
import psycopg
from pydantic import Field

from quant_assets.dagster_internals import (
    DbClient,
    DbIOManager,
    DbTypeHandler,
    DuckDbClient,
    TableSlice,
    duckdb_cleanup_statement,
)
from quant_assets.defs.io_manager import RectangleDbIOManager, _order_by, slice_query
from quant_assets.defs.resources import WAREHOUSE_SCHEMA, WarehouseResource
from quant_assets.store import select_rows

STORAGE_KIND = "postgres"

# polars dtype class -> PostgreSQL column type (dtypes with parameters handled in _pg_type).
_PG_TYPES: dict[type[pl.DataType], str] = {
    pl.Boolean: "boolean",
    pl.Int8: "smallint",
    pl.Int16: "smallint",
    pl.Int32: "integer",
    pl.Int64: "bigint",
    pl.UInt8: "smallint",
    pl.UInt16: "integer",
    pl.UInt32: "bigint",
    pl.UInt64: "numeric(20, 0)",
    pl.Float32: "real",
    pl.Float64: "double precision",
    pl.Decimal: "numeric",
    pl.String: "text",
    pl.Categorical: "text",
    pl.Enum: "text",
    pl.Null: "text",
    pl.Date: "date",
    pl.Time: "time",
    pl.Duration: "interval",
    pl.Binary: "bytea",
}
# PostgreSQL type OID -> polars dtype, for reads (also gives empty results their schema).
_POLARS_TYPES: dict[int, pl.DataType] = {
    16: pl.Boolean(),
    20: pl.Int64(),
    21: pl.Int16(),
    23: pl.Int32(),
    700: pl.Float32(),
    701: pl.Float64(),
    1700: pl.Float64(),
    25: pl.String(),
    1043: pl.String(),
    1082: pl.Date(),
    1083: pl.Time(),
    1114: pl.Datetime("us"),
    1184: pl.Datetime("us", "UTC"),
    1186: pl.Duration("us"),
    17: pl.Binary(),
    1000: pl.List(pl.Boolean()),
    1005: pl.List(pl.Int16()),
    1007: pl.List(pl.Int32()),
    1016: pl.List(pl.Int64()),
    1021: pl.List(pl.Float32()),
    1022: pl.List(pl.Float64()),
    1009: pl.List(pl.String()),
}
# CSV is the fast COPY path; these dtypes have no faithful CSV text, they go row by row.
_ROW_COPY = (pl.List, pl.Array, pl.Struct, pl.Duration, pl.Binary, pl.Object)


class PostgresTableMissingError(dg.Failure):
    """An input's table has not been materialised yet."""


def _pg_type(dtype: pl.DataType | type[pl.DataType]) -> str:
    if isinstance(dtype, type):
        dtype = dtype()
    if isinstance(dtype, pl.Datetime):
        return "timestamptz" if dtype.time_zone else "timestamp"
    if isinstance(dtype, pl.List | pl.Array):
        return f"{_pg_type(cast('pl.DataType', dtype.inner))}[]"
    found = _PG_TYPES.get(dtype.base_type())
    if found is None:
        raise TypeError(f"no PostgreSQL column type for polars dtype {dtype}")
    return found


def _quote(identifier: str) -> str:
    return '"' + identifier.replace('"', '""') + '"'


def _qualified(table_slice: TableSlice) -> str:
    return f"{_quote(table_slice.schema)}.{_quote(table_slice.table)}"


def _lock_key(*parts: str) -> int:
    """A signed 32-bit advisory-lock key (stable across processes, unlike ``hash``)."""
    value = zlib.crc32("\x1f".join(parts).encode())
    return value - (1 << 32) if value >= 1 << 31 else value


def _columns(conn: psycopg.Connection, schema: str, table: str) -> dict[str, str]:
    rows = conn.execute(
        "select column_name, data_type from information_schema.columns "
        "where table_schema = %s and table_name = %s order by ordinal_position",
        [schema, table],
    ).fetchall()
    return {name: kind for name, kind in rows}


def _ensure_table(conn: psycopg.Connection, table_slice: TableSlice, frame: pl.DataFrame) -> None:
    """Create the schema/table, or add the frame's missing columns, safely under concurrency."""
    wanted = {name: _pg_type(dtype) for name, dtype in frame.schema.items()}
    existing = _columns(conn, table_slice.schema, table_slice.table)
    if existing and wanted.keys() <= existing.keys():
        return  # the common case takes no lock at all
    with conn.transaction():
        # One DDL lock per schema: creating a schema or a table races on the catalog.
        conn.execute("select pg_advisory_xact_lock(%s)", [_lock_key("ddl", table_slice.schema)])
        conn.execute(f"create schema if not exists {_quote(table_slice.schema)}")
        existing = _columns(conn, table_slice.schema, table_slice.table)  # re-read under lock
        if not existing:
            columns = ", ".join(f"{_quote(n)} {t}" for n, t in wanted.items())
            conn.execute(f"create table {_qualified(table_slice)} ({columns})")
            return
        for name, kind in wanted.items():
            if name not in existing:
                conn.execute(
                    f"alter table {_qualified(table_slice)} add column {_quote(name)} {kind}"
                )


def _lock_slice(conn: psycopg.Connection, table_slice: TableSlice) -> None:
    """Advisory locks (until commit) on each (table, ticker) the write replaces, in order."""
    table_key = _lock_key("data", table_slice.schema, table_slice.table)
    tickers: list[str] = []
    for dim in table_slice.partition_dimensions or []:
        if isinstance(dim.partitions, list):
            tickers.extend(str(p) for p in dim.partitions)
    keys = sorted({_lock_key(t) for t in tickers}) or [0]  # no tickers: the whole table
    conn.execute(
        "select count(pg_advisory_xact_lock(%s, k)) from unnest(%s::int4[]) as k",
        [table_key, keys],
    )


def _copy(conn: psycopg.Connection, table_slice: TableSlice, frame: pl.DataFrame) -> None:
    columns = ", ".join(_quote(c) for c in frame.columns)
    target = f"copy {_qualified(table_slice)} ({columns}) from stdin"
    with conn.cursor() as cursor:
        if any(isinstance(dtype, _ROW_COPY) for dtype in frame.dtypes):
            with cursor.copy(target) as copy:
                for row in frame.iter_rows():
                    copy.write_row(row)
            return
        text = frame.write_csv(include_header=False, null_value="\\N")
        with cursor.copy(f"{target} (format csv, null '\\N')") as copy:
            copy.write(text)


def write_frame(conn: psycopg.Connection, table_slice: TableSlice, frame: pl.DataFrame) -> None:
    """Replace ``table_slice`` with ``frame``: one transaction (lock, delete, copy).

    ``conn`` must be in autocommit mode (each ``conn.transaction()`` is then a transaction).
    A failure rolls the whole write back: the previous rows stay. An empty frame with columns
    still creates the table (an asset that ran and found nothing to write, e.g. predictions
    with no model yet, reads back as empty, not as "not materialised").
    """
    if frame.height or frame.width:
        _ensure_table(conn, table_slice, frame)
    with conn.transaction():
        _lock_slice(conn, table_slice)
        if _columns(conn, table_slice.schema, table_slice.table):
            conn.execute(duckdb_cleanup_statement(table_slice))
        if frame.height:
            _copy(conn, table_slice, frame)


def _frame(cursor: psycopg.Cursor) -> pl.DataFrame:
    """The cursor's rows as a polars frame, typed from the result's column types."""
    description = cursor.description or []
    schema = {c.name: _POLARS_TYPES.get(c.type_code, pl.Object()) for c in description}
    rows = cursor.fetchall()
    return pl.DataFrame(rows, schema=schema, orient="row", strict=False)


def _select(table_slice: TableSlice) -> str:
    return DuckDbClient.get_select_statement(table_slice) + _order_by(table_slice)


def read_frame(
    context: dg.InputContext, table_slice: TableSlice, conn: psycopg.Connection
) -> pl.DataFrame | None:
    """The slice's rows ordered by (ticker, date); None when the input has no partitions."""
    if table_slice.partition_dimensions and len(context.asset_partition_keys) == 0:
        return None
    if not _columns(conn, table_slice.schema, table_slice.table):
        raise PostgresTableMissingError(
            description=(
                f"table {table_slice.schema}.{table_slice.table} does not exist yet: materialize "
                f"{context.asset_key.to_user_string()} for these partitions first"
            )
        )
    with conn.cursor() as cursor:
        cursor.execute(_select(table_slice))  # type: ignore[arg-type]  # built from validated names
        return _frame(cursor)


class PostgresDbClient(DbClient):
    """Connects with the factory's settings; statements shared with the DuckDB client."""

    def __init__(self, connect_kwargs: dict[str, Any]) -> None:
        self._connect_kwargs = connect_kwargs

    @staticmethod
    def delete_table_slice(context, table_slice: TableSlice, connection) -> None:
        if _columns(connection, table_slice.schema, table_slice.table):
            connection.execute(duckdb_cleanup_statement(table_slice))

    @staticmethod
    def ensure_schema_exists(context, table_slice: TableSlice, connection) -> None:
        pass  # done by _ensure_table under the DDL lock

    @staticmethod
    def get_select_statement(table_slice: TableSlice) -> str:
        return _select(table_slice)

    @staticmethod
    def get_table_name(table_slice: TableSlice) -> str:
        return f"{table_slice.database}.{table_slice.schema}.{table_slice.table}"

    @contextmanager
    def connect(self, context, table_slice: TableSlice) -> Iterator[psycopg.Connection]:  # type: ignore[override]
        conn = psycopg.connect(**self._connect_kwargs, autocommit=True)
        try:
            yield conn
        finally:
            conn.close()


class PostgresRectangleDbIOManager(RectangleDbIOManager):
    """The DuckDB manager's rectangle slicing; the write is the handler's (see write_frame)."""

    def handle_output(self, context: dg.OutputContext, obj: object) -> None:
        if obj is None:
            raise dg.DagsterInvariantViolationError("asset returned None instead of a frame")
        self._check_supported_type(type(obj))
        table_slice = self._get_table_slice(context, context)
        handler = self._resolve_handler(type(obj))
        started = time.perf_counter()
        with self._db_client.connect(context, table_slice) as conn:
            metadata = handler.handle_output(context, table_slice, obj, conn)
        context.add_output_metadata(
            {
                **(metadata or {}),
                "query": slice_query(self._db_client.get_table_name(table_slice), table_slice),
                "dagster/table_name": self._db_client.get_table_name(table_slice),
                "postgres_write_seconds": round(time.perf_counter() - started, 4),
            }
        )


class PostgresPolarsTypeHandler(DbTypeHandler[pl.DataFrame]):
    """Stores and loads polars DataFrames."""

    def handle_output(
        self, context: dg.OutputContext, table_slice: TableSlice, obj: pl.DataFrame, connection
    ) -> dict[str, Any]:
        write_frame(connection, table_slice, obj)
        return {"dagster/partition_row_count": obj.height, "storage_kind": STORAGE_KIND}

    def load_input(
        self, context: dg.InputContext, table_slice: TableSlice, connection
    ) -> pl.DataFrame:
        frame = read_frame(context, table_slice, connection)
        return pl.DataFrame() if frame is None else frame

    @property
    def supported_types(self) -> Sequence[type[object]]:
        return [pl.DataFrame]


class PostgresPandasTypeHandler(DbTypeHandler[pd.DataFrame]):
    """Stores and loads pandas DataFrames (for user assets and notebooks)."""

    def handle_output(
        self, context: dg.OutputContext, table_slice: TableSlice, obj: pd.DataFrame, connection
    ) -> dict[str, Any]:
        write_frame(connection, table_slice, pl.from_pandas(obj))
        return {"dagster/partition_row_count": len(obj), "storage_kind": STORAGE_KIND}

    def load_input(
        self, context: dg.InputContext, table_slice: TableSlice, connection
    ) -> pd.DataFrame:
        frame = read_frame(context, table_slice, connection)
        return pd.DataFrame() if frame is None else frame.to_pandas()

    @property
    def supported_types(self) -> Sequence[type[object]]:
        return [pd.DataFrame]


class _PostgresConnection(dg.Config):
    """Connection settings; ``password`` is meant to be a ``dg.EnvVar``."""

    host: str = "127.0.0.1"
    port: int = 5432
    dbname: str = "quant_assets"
    user: str = "quant_assets"
    password: str = ""
    sslmode: str = "prefer"

    def connect_kwargs(self) -> dict[str, Any]:
        return {
            "host": self.host,
            "port": self.port,
            "dbname": self.dbname,
            "user": self.user,
            "password": self.password,
            "sslmode": self.sslmode,
            "options": "-c timezone=UTC",
            "connect_timeout": 10,
        }


class PostgresIOManager(dg.ConfigurableIOManagerFactory):
    """PostgreSQL IO manager for the pipeline's tables (polars by default, pandas on request)."""

    host: str = "127.0.0.1"
    port: int = 5432
    dbname: str = "quant_assets"
    user: str = "quant_assets"
    password: str = ""  # pass dg.EnvVar("...")
    sslmode: str = "prefer"
    schema_: str = Field(default=WAREHOUSE_SCHEMA, alias="schema")

    def create_io_manager(self, context) -> DbIOManager:
        connection = _PostgresConnection(
            host=self.host,
            port=self.port,
            dbname=self.dbname,
            user=self.user,
            password=self.password,
            sslmode=self.sslmode,
        )
        return PostgresRectangleDbIOManager(
            db_client=PostgresDbClient(connection.connect_kwargs()),
            database=self.dbname,
            schema=self.schema_,
            type_handlers=[PostgresPolarsTypeHandler(), PostgresPandasTypeHandler()],
            default_load_type=pl.DataFrame,
            io_manager_name="PostgresIOManager",
        )


def _placeholders(template: str) -> str:
    """``?`` placeholders (DuckDB style, used by the shared SQL templates) to psycopg's ``%s``."""
    return template.replace("%", "%%").replace("?", "%s")


class PostgresWarehouseResource(WarehouseResource):
    """Read access to the PostgreSQL tables; the same methods as :class:`WarehouseResource`.

    ``database`` stays the local DuckDB path of the data directory: reports and MLflow runs
    are files next to it (``Path(warehouse.database).parent``); the tables are in PostgreSQL.
    """

    host: str = "127.0.0.1"
    port: int = 5432
    dbname: str = "quant_assets"
    user: str = "quant_assets"
    password: str = ""  # pass dg.EnvVar("...")
    sslmode: str = "prefer"

    @contextmanager
    def _connect(self) -> Iterator[psycopg.Connection]:
        kwargs = _PostgresConnection(
            host=self.host,
            port=self.port,
            dbname=self.dbname,
            user=self.user,
            password=self.password,
            sslmode=self.sslmode,
        ).connect_kwargs()
        with psycopg.connect(**kwargs, autocommit=True) as conn:
            yield conn

    def _query(self, sql: str, params: Sequence[Any] | None) -> pl.DataFrame:
        with self._connect() as conn, conn.cursor() as cursor:
            cursor.execute(_placeholders(sql), list(params or []))  # type: ignore[arg-type]
            return _frame(cursor)

    def table_exists(self, table: str, schema: str | None = None) -> bool:
        with self._connect() as conn:
            return bool(_columns(conn, schema or self.schema_name, table))

    def read_sql(
        self, template: str, table: str, params: list | None = None, schema: str | None = None
    ) -> pl.DataFrame:
        """Run ``template`` (``?`` placeholders) with ``{table}`` replaced by the table name."""
        schema = schema or self.schema_name
        if not table.isidentifier() or not schema.isidentifier():
            raise ValueError(f"not a table name: {schema!r}.{table!r}")
        return self._query(template.format(table=f"{schema}.{table}"), params)

    def read(
        self,
        table: str,
        *,
        start: date | None = None,
        end: date | None = None,
        tickers: list[str] | tuple[str, ...] | None = None,
        columns: list[str] | None = None,
        schema: str | None = None,
    ) -> pl.DataFrame:
        """Rows of ``table`` with ``start <= date < end`` and ticker in ``tickers`` (if given)."""
        schema = schema or self.schema_name
        with self._connect() as conn:
            present = list(_columns(conn, schema, table))
        sql, params = select_rows(
            table,
            present=present,
            schema=schema,
            start=start,
            end_exclusive=end,
            tickers=tickers,
            columns=columns,
        )
        # The shared builder speaks DuckDB's list filter; PostgreSQL's is ``= any(array)``.
        return self._query(sql.replace("list_contains(?, ticker)", "ticker = any(?)"), params)
