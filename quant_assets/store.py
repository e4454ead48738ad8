"""Read the stored tables (DuckDB) for the CLI and notebooks, outside Dagster runs."""

from __future__ import annotations

from collections.abc import Collection, Sequence
from datetime import date, timedelta
from pathlib import Path

import duckdb
import polars as pl

from quant_assets.errors import QuantAssetsError
from quant_assets.names import MARKET_SCHEMA, WAREHOUSE_FILE
from quant_assets.schemas import SORT_KEYS
from quant_assets.tickers import validate_ticker

SCHEMA = MARKET_SCHEMA
DATABASE_FILE = WAREHOUSE_FILE


def key_order(columns: Collection[str]) -> tuple[str, ...]:
    """The order rows of a table with ``columns`` are read in: :data:`schemas.SORT_KEYS` it
    has (rows per ticker by date, by horizon within a date; models by cut-off)."""
    return tuple(c for c in SORT_KEYS if c in set(columns))


def database_path(home: Path) -> Path:
    return home / DATABASE_FILE


def _connect(home: Path) -> duckdb.DuckDBPyConnection:
    path = database_path(home)
    if not path.exists():
        raise QuantAssetsError(f"no data yet: {path} does not exist (run `make demo`)")
    return duckdb.connect(str(path), read_only=True)


def _exists(conn: duckdb.DuckDBPyConnection, table: str, schema: str = SCHEMA) -> bool:
    rows = conn.execute(
        "select count(*) from information_schema.tables where table_schema = ? and table_name = ?",
        [schema, table],
    ).fetchall()
    return bool(rows[0][0])


def table_columns(conn: duckdb.DuckDBPyConnection, table: str, schema: str = SCHEMA) -> list[str]:
    """The column names of ``schema.table`` in order (empty when the table does not exist)."""
    rows = conn.execute(
        "select column_name from information_schema.columns where table_schema = ? and "
        "table_name = ? order by ordinal_position",
        [schema, table],
    ).fetchall()
    return [r[0] for r in rows]


def select_rows(
    table: str,
    *,
    present: Collection[str],
    schema: str = SCHEMA,
    start: date | None = None,
    end_exclusive: date | None = None,
    tickers: list[str] | tuple[str, ...] | None = None,
    columns: list[str] | None = None,
) -> tuple[str, list]:
    """SQL and bound parameters selecting ``start <= date < end_exclusive`` for ``tickers``.

    ``present`` are the table's columns: rows come ordered by :func:`key_order` and a model
    table (with ``cutoff``) filters its cut-offs. Values are bound as parameters; table,
    column and ticker names are validated first.
    """
    names = [table, schema, *(columns or [])]
    if not all(name.isidentifier() for name in names):
        raise QuantAssetsError(f"invalid table or column name in {names!r}")
    order = key_order(present)
    day = "cutoff" if "cutoff" in order else "date"
    where: list[str] = []
    params: list = []
    if start is not None:
        where.append(f"{day} >= ?")
        params.append(start)
    if end_exclusive is not None:
        where.append(f"{day} < ?")
        params.append(end_exclusive)
    if tickers is not None:
        where.append("list_contains(?, ticker)")
        params.append([validate_ticker(t) for t in tickers])
    sql = f"select {', '.join(columns) if columns else '*'} from {schema}.{table}"
    if where:
        sql += " where " + " and ".join(where)
    return sql + (" order by " + ", ".join(order) if order else ""), params


def table_location(name: str) -> tuple[str, str]:
    """(schema, table) of a stored asset: ``hybrid_alpha/positions`` lives in the schema of its
    strategy, an unprefixed asset (``bars``) in the market schema."""
    parts = name.split("/")
    schema, table = (parts[0], parts[1]) if len(parts) == 2 else (SCHEMA, parts[0])
    if len(parts) > 2 or not schema.isidentifier() or not table.isidentifier():
        raise QuantAssetsError(f"not a table name: {name!r}")
    return schema, table


def read_table(
    home: Path,
    table: str,
    *,
    start: date | None = None,
    end: date | None = None,
    tickers: list[str] | None = None,
    known: Collection[str] | None = None,
) -> pl.DataFrame:
    """Rows of the stored asset ``table`` (``bars``, ``hybrid_alpha/positions``) with
    ``start <= date <= end`` (inclusive) for ``tickers``; ``known`` (the graph's stored
    tables) refuses any other name."""
    if known is not None and table not in known:
        raise QuantAssetsError(f"unknown table {table!r}; tables: {', '.join(sorted(known))}")
    schema, name = table_location(table)
    with _connect(home) as conn:
        present = table_columns(conn, name, schema)
        if not present:
            raise QuantAssetsError(f"table {table} has not been materialised yet")
        sql, params = select_rows(
            name,
            present=present,
            schema=schema,
            start=start,
            end_exclusive=end + timedelta(days=1) if end is not None else None,
            tickers=tickers or None,
        )
        return conn.execute(sql, params).pl()


def table_summary(home: Path, tables: Sequence[str]) -> list[tuple]:
    """(table, rows, tickers, first date, last date) for each stored asset of ``tables``
    (models: cut-offs instead of dates, no tickers; zeros before it is materialised)."""
    out = []
    try:
        conn = _connect(home)
    except QuantAssetsError:
        return [(t, 0, 0, "-", "-") for t in tables]
    with conn:
        for label in tables:
            schema, table = table_location(label)
            columns = set(table_columns(conn, table, schema))
            key = "date" if "date" in columns else "cutoff" if "cutoff" in columns else None
            if not columns:
                out.append((label, 0, 0, "-", "-"))
                continue
            tickers = "count(distinct ticker)" if "ticker" in columns else "0"
            span = f"min({key}), max({key})" if key else "null, null"
            rows, count, first, last = conn.execute(
                f"select count(*), {tickers}, {span} from {schema}.{table}"
            ).fetchall()[0]
            out.append((label, rows, count, first or "-", last or "-"))
    return out


def read_report(home: Path, strategy: str) -> dict:
    """The stored ``backtest_report`` row of ``strategy`` as a dict."""
    if not strategy.isidentifier():
        raise QuantAssetsError(f"invalid strategy name {strategy!r}")
    with _connect(home) as conn:
        if not _exists(conn, "backtest_report", schema=strategy):
            raise QuantAssetsError(
                f"no report for strategy {strategy!r} yet: run "
                f"`quant-assets materialize --select {strategy}/backtest_report`"
            )
        rows = conn.execute(f"select * from {strategy}.backtest_report").pl()
    return rows.row(0, named=True)


def stored_tables(home: Path) -> set[str]:
    """The tables of the warehouse's market schema (by name) that exist."""
    if not database_path(home).exists():
        return set()
    with _connect(home) as conn:
        rows = conn.execute(
            "select table_name from information_schema.tables where table_schema = ?", [SCHEMA]
        ).fetchall()
    return {row[0] for row in rows}


def read_study_decision(home: Path, study: str) -> dict:
    """The stored ``decision`` row of ``study`` as a dict."""
    if not study.isidentifier():
        raise QuantAssetsError(f"invalid study name {study!r}")
    with _connect(home) as conn:
        if not _exists(conn, "decision", schema=study):
            raise QuantAssetsError(
                f"no decision for study {study!r} yet: run `quant-assets study {study}`"
            )
        rows = conn.execute(f"select * from {study}.decision").pl()
    return rows.row(0, named=True)


def read_latest_orders(home: Path, strategy: str) -> tuple[pl.DataFrame, dict | None]:
    """``strategy``'s orders of its latest session (the ones to act on next session) and
    the paper book's latest state (date, cash, equity, exposures), or None before any."""
    if not strategy.isidentifier():
        raise QuantAssetsError(f"invalid strategy name {strategy!r}")
    with _connect(home) as conn:
        if not _exists(conn, "paper_book", schema=strategy):
            raise QuantAssetsError(
                f"no orders for strategy {strategy!r} yet: run "
                f"`quant-assets materialize --select {strategy}/orders`"
            )
        book = conn.execute(
            f"select date, any_value(cash) as cash, any_value(equity) as equity, "
            f"any_value(gross_exposure) as gross_exposure, "
            f"any_value(net_exposure) as net_exposure from {strategy}.paper_book "
            f"group by date order by date desc limit 1"
        ).pl()
        latest = book.row(0, named=True) if book.height else None
        orders = pl.DataFrame()
        if latest is not None and _exists(conn, "orders", schema=strategy):
            orders = conn.execute(
                f"select * from {strategy}.orders where date = ? order by ticker",
                [latest["date"]],
            ).pl()
    return orders, latest
