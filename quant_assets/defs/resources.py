"""Resources: the DuckDB warehouse (explicit reads) and where things live on disk."""

from __future__ import annotations

from datetime import date
from pathlib import Path

import dagster as dg
import duckdb
import polars as pl

from quant_assets.names import MARKET_SCHEMA, WAREHOUSE_FILE
from quant_assets.store import select_rows, table_columns

WAREHOUSE_SCHEMA = MARKET_SCHEMA


def warehouse_path(home: Path) -> Path:
    """The DuckDB file inside the data directory."""
    return home / WAREHOUSE_FILE


class WarehouseResource(dg.ConfigurableResource):
    """Read access to the pipeline's DuckDB tables, for look-backs an asset reads explicitly."""

    database: str
    schema_name: str = WAREHOUSE_SCHEMA

    def table_exists(self, table: str, schema: str | None = None) -> bool:
        with duckdb.connect(self.database) as conn:
            row = conn.execute(
                "select count(*) from information_schema.tables "
                "where table_schema = ? and table_name = ?",
                [schema or self.schema_name, table],
            ).fetchall()
        return bool(row and row[0][0])

    def read_sql(
        self, template: str, table: str, params: list | None = None, schema: str | None = None
    ) -> pl.DataFrame:
        """Run ``template`` with ``{table}`` replaced by the qualified table name."""
        schema = schema or self.schema_name
        if not table.isidentifier() or not schema.isidentifier():
            raise ValueError(f"not a table name: {schema!r}.{table!r}")
        with duckdb.connect(self.database) as conn:
            return conn.execute(template.format(table=f"{schema}.{table}"), params or []).pl()

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
        with duckdb.connect(self.database) as conn:
            sql, params = select_rows(
                table,
                present=table_columns(conn, table, schema),
                schema=schema,
                start=start,
                end_exclusive=end,
                tickers=tickers,
                columns=columns,
            )
            return conn.execute(sql, params).pl()
