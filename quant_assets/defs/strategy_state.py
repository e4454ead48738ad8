"""What a strategy's path-dependent assets share: the stored state they continue from, and
the refusals that keep a range run equal to one run over the whole history.

Alpha scores, positions, the backtest and the paper book are decided **across tickers** per
date, and positions and the books are **path-dependent**. So every run computes the whole
cross-section from its inputs (all tickers), continues from the stored state at the close
before its first date, checks the whole result, and writes the rows of its own tickers.
"""

from __future__ import annotations

from datetime import date

import dagster as dg
import polars as pl

from quant_assets.defs.partitions import PartitionRectangle
from quant_assets.defs.resources import WarehouseResource


def stored_state_rows(
    warehouse: WarehouseResource, schema: str, table: str, before: date, sessions: int
) -> pl.DataFrame:
    """The stored rows of the last ``sessions`` dates before ``before`` (empty if none)."""
    if not warehouse.table_exists(table, schema=schema):
        return pl.DataFrame()
    return warehouse.read_sql(
        "select * from {table} where date in (select distinct date from {table} "
        "where date < ? order by date desc limit ?) order by date, ticker",
        table,
        [before, sessions],
        schema=schema,
    )


def require_continuity(
    rows: pl.DataFrame,
    rect: PartitionRectangle,
    first_start: date,
    previous_window: date,
    what: str,
) -> None:
    """A range after the first window continues from the stored close before it."""
    if rect.start <= first_start:
        return
    last = rows["date"].max() if not rows.is_empty() else None
    if not isinstance(last, date) or last < previous_window:
        stored = last.isoformat() if isinstance(last, date) else "none"
        raise dg.Failure(
            description=(
                f"{what} for {rect.start} continues from the book at the close before it, "
                f"which is not stored (last stored date: {stored}); materialise the "
                f"window {previous_window} first (ranges run in order)"
            )
        )


def require_cross_section(rows: pl.DataFrame, bars: pl.DataFrame, key: dg.AssetKey) -> None:
    """Refuse to decide across tickers on a partial cross-section: every ticker with a bar in
    the range must have rows in ``rows`` (a backfill split per ticker may not have written
    the others yet)."""
    have = set(rows["ticker"].unique().to_list()) if rows.height else set()
    missing = sorted(set(bars["ticker"].unique().to_list()) - have)
    if missing:
        raise dg.Failure(
            description=(
                f"{key.to_user_string()} has no rows for {', '.join(missing)} in this range: "
                "decisions across tickers need every ticker; materialise it for all tickers "
                "first (`quant-assets materialize` runs them together)"
            )
        )
