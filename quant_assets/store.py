"""Read the stored tables (DuckDB) for the CLI and notebooks, outside Dagster runs."""

from __future__ import annotations

from datetime import date, timedelta
from pathlib import Path

import duckdb
import polars as pl

from quant_assets.errors import QuantAssetsError
from quant_assets.tickers import validate_ticker

TABLES: tuple[str, ...] = (
    "bars",
    "benchmark_bars",
    "features",
    "signals",
    "labels",
    "regime_model",
    "regimes",
    "next_state_model",
    "predictions",
)
SCHEMA = "market"
# How each table is ordered and which column a date range filters (default: ticker, date).
_ORDER = {
    "regimes": ("date",),
    "regime_model": ("cutoff",),
    "next_state_model": ("cutoff", "horizon"),
    "labels": ("ticker", "date", "horizon"),
    "predictions": ("ticker", "date", "horizon"),
}
DATABASE_FILE = "warehouse.duckdb"


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


def select_rows(
    table: str,
    *,
    schema: str = SCHEMA,
    start: date | None = None,
    end_exclusive: date | None = None,
    tickers: list[str] | tuple[str, ...] | None = None,
    columns: list[str] | None = None,
) -> tuple[str, list]:
    """SQL and bound parameters selecting ``start <= date < end_exclusive`` for ``tickers``.

    Values are bound as parameters; table, column and ticker names are validated first.
    """
    names = [table, schema, *(columns or [])]
    if not all(name.isidentifier() for name in names):
        raise QuantAssetsError(f"invalid table or column name in {names!r}")
    order = _ORDER.get(table, ("ticker", "date"))
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
    return sql + " order by " + ", ".join(order), params


def read_table(
    home: Path,
    table: str,
    *,
    start: date | None = None,
    end: date | None = None,
    tickers: list[str] | None = None,
) -> pl.DataFrame:
    """Rows of ``table`` with ``start <= date <= end`` (inclusive) for ``tickers``."""
    if table not in TABLES:
        raise QuantAssetsError(f"unknown table {table!r}; tables: {', '.join(TABLES)}")
    sql, params = select_rows(
        table,
        start=start,
        end_exclusive=end + timedelta(days=1) if end is not None else None,
        tickers=tickers or None,
    )
    with _connect(home) as conn:
        if not _exists(conn, table):
            raise QuantAssetsError(f"table {table} has not been materialised yet")
        return conn.execute(sql, params).pl()


def table_summary(home: Path) -> list[tuple]:
    """(table, rows, tickers, first date, last date) for every stored table (models: cut-offs
    instead of dates, no tickers)."""
    out = []
    try:
        conn = _connect(home)
    except QuantAssetsError:
        return [(t, 0, 0, "-", "-") for t in TABLES]
    with conn:
        strategy_tables = conn.execute(
            "select table_schema, table_name from information_schema.tables "
            "where table_schema not in (?, 'main') and table_name in "
            "('alpha_scores', 'positions', 'backtest') order by table_schema, table_name",
            [SCHEMA],
        ).fetchall()
        names = [(SCHEMA, t) for t in TABLES] + [(s, t) for s, t in strategy_tables]
        for schema, table in names:
            label = table if schema == SCHEMA else f"{schema}.{table}"
            if schema == SCHEMA and not _exists(conn, table):
                out.append((label, 0, 0, "-", "-"))
                continue
            columns = {r[0] for r in conn.execute(f"describe {schema}.{table}").fetchall()}
            key = "date" if "date" in columns else "cutoff"
            tickers = "count(distinct ticker)" if "ticker" in columns else "0"
            rows, count, first, last = conn.execute(
                f"select count(*), {tickers}, min({key}), max({key}) from {schema}.{table}"
            ).fetchall()[0]
            out.append((label, rows, count, first, last))
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
