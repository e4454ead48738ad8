"""Next-session orders and the paper book that fills them: ``s/orders`` and ``s/paper_book``.

One ``multi_asset`` per strategy computes both in one sequential pass (orders of session D need
the book at D's close, the book at D+1 needs the orders of D), partitioned by the date windows
from the first model cut-off (the strategy is the asset prefix and the DuckDB schema: in
effect date × strategy, one row per (date, ticker) inside). It reads ``s/positions`` of every
ticker of its windows through Dagster, the bars of those windows from the warehouse, and
continues from the stored paper book and pending orders at the close before its first date.

The kill switch (seed 003 §12.2) is the file ``KILL_SWITCH`` in the data directory. It makes
the orders of the newest session in the data (the live, pending orders: that session has no
next one yet) flat-only. Re-materialising history stays deterministic: the file never touches
older sessions, and the sessions on which it was applied are read back from the stored orders
(``kill_switch = true``) whenever their window is recomputed.
"""

from collections.abc import Iterator
from datetime import date
from pathlib import Path

import dagster as dg
import polars as pl

from quant_assets import schemas
from quant_assets.defs.common import check_metadata, code_version, column_schema, markdown
from quant_assets.defs.partitions import (
    DATE_DIMENSION,
    PartitionRectangle,
    date_partitions,
    rectangle_from_keys,
)
from quant_assets.defs.resources import WarehouseResource
from quant_assets.defs.strategy_assets import (
    require_continuity,
    require_cross_section,
    stored_state_rows,
)
from quant_assets.settings import Settings, StrategySettings

KILL_SWITCH_FILE = "KILL_SWITCH"
_PENDING_COLUMNS = ("ticker", "side", "quantity", "reference_price", "notional", "reason_codes")


def kill_switch_path(warehouse: WarehouseResource) -> Path:
    """``<data home>/KILL_SWITCH``: the data home is the warehouse file's directory."""
    return Path(warehouse.database).parent / KILL_SWITCH_FILE


def order_asset_names(settings: Settings) -> list[str]:
    """The execution assets as user strings (``s/orders``, ``s/paper_book``)."""
    return [f"{s}/{a}" for s in settings.strategies for a in ("orders", "paper_book")]


def build_order_assets(settings: Settings, strategy: StrategySettings) -> list:
    """``strategy``'s ``orders`` and ``paper_book`` (one multi-asset) with its blocking
    ``orders_valid`` check."""
    universe = settings.universe
    name = strategy.name
    windows = date_partitions(universe, start=settings.models.resolved_first_cutoff(universe.start))
    first_key = windows.get_first_partition_key()
    assert first_key is not None
    first_start = date.fromisoformat(first_key)
    tickers = list(universe.tickers)
    orders_key = dg.AssetKey([name, "orders"])
    book_key = dg.AssetKey([name, "paper_book"])
    positions_key = dg.AssetKey([name, "positions"])
    by_date = dg.MultiToSingleDimensionPartitionMapping(partition_dimension_name=DATE_DIMENSION)
    version = code_version(strategy.backtest)
    kinds = {"duckdb", "polars"}

    def table(columns: tuple[schemas.Column, ...]) -> dict:
        # A date-only window partition: the IO manager's stock path takes a plain column name.
        return {
            "partition_expr": "date",
            "schema": name,
            "dagster/column_schema": column_schema(columns),
        }

    def previous_window(rect: PartitionRectangle) -> date:
        window = windows.get_prev_partition_window(
            windows.time_window_for_partition_key(rect.start.isoformat()).start
        )
        return window.start.date() if window else rect.start

    @dg.multi_asset(
        name=f"{name}__orders",
        outs={
            "orders": dg.AssetOut(
                key=orders_key,
                io_manager_key="warehouse_io_manager",
                group_name=name,
                code_version=version,
                kinds=kinds,
                metadata=table(schemas.ORDERS),
                description=(
                    "Orders for the next session, decided at each close from the latest "
                    "positions: side, quantity (whole lots), reference price, reason codes; "
                    "flat-only while the kill switch is on."
                ),
            ),
            "paper_book": dg.AssetOut(
                key=book_key,
                io_manager_key="warehouse_io_manager",
                group_name=name,
                code_version=version,
                kinds=kinds,
                metadata=table(schemas.PAPER_BOOK),
                description=(
                    "The paper book that fills the orders on the next session (open or close, "
                    "commission, slippage), marked at every close: cash, shares, equity."
                ),
            ),
        },
        partitions_def=windows,
        backfill_policy=dg.BackfillPolicy.single_run(),
        ins={"positions": dg.AssetIn(key=positions_key, partition_mapping=by_date)},
        deps=[dg.AssetDep("bars", partition_mapping=by_date)],
        check_specs=[
            dg.AssetCheckSpec(
                "orders_valid",
                asset=orders_key,
                blocking=True,
                description=(
                    "Great Expectations: side BUY/SELL, quantity > 0 in whole lots, reference "
                    "price > 0, every kill-switch order reduces |shares|; the paper book's "
                    "equity = cash + Σ shares × mark and cash moves only by the fills."
                ),
            )
        ],
    )
    def orders_and_paper_book(
        context: dg.AssetExecutionContext, positions: pl.DataFrame, warehouse: WarehouseResource
    ) -> Iterator:
        """Decide each session's orders at its close and fill them on the next session in a
        paper book, continuing from the stored book and pending orders before the range."""
        from quant_assets.execution import PaperBookState, run_paper_book
        from quant_assets.quality.derived import validate_orders

        rect = rectangle_from_keys(context.partition_keys, windows)
        book_rows = stored_state_rows(warehouse, name, "paper_book", rect.start, 1)
        require_continuity(
            book_rows, rect, first_start, previous_window(rect), orders_key.to_user_string()
        )
        if rect.start > first_start:
            as_of = book_rows["date"].max()
            state = PaperBookState.from_rows(book_rows, _orders_on(warehouse, name, as_of))
        else:
            state = PaperBookState.initial(strategy.backtest.initial_capital)
        bars = warehouse.read(
            "bars",
            start=rect.start,
            end=rect.end,
            tickers=tickers,
            columns=["date", "ticker", "open", "close"],
        )
        if bars.is_empty():
            raise dg.Failure(
                description=f"{orders_key.to_user_string()}: no bars in {rect.start}"
                f"..{rect.last_day}; materialise bars for these windows first"
            )
        require_cross_section(positions, bars, positions_key)
        switch = kill_switch_path(warehouse)
        kill_sessions = _stored_kill_sessions(warehouse, name, rect)
        latest = _latest_session(warehouse)
        live = latest is not None and rect.start <= latest < rect.end
        if switch.exists() and live:
            assert latest is not None
            kill_sessions.add(latest)
        targets = positions.select("date", "ticker", "target_weight", "reason_codes")
        try:
            result = run_paper_book(
                bars,
                targets,
                strategy.backtest,
                start=rect.start,
                state=state,
                tickers=tickers,
                kill_switch_sessions=kill_sessions,
                strategy=name,
            )
        except ValueError as exc:
            raise dg.Failure(description=f"{orders_key.to_user_string()}: {exc}") from exc
        report = validate_orders(result.orders, result.book, strategy.backtest.lot_size)
        yield dg.AssetCheckResult(
            check_name="orders_valid",
            asset_key=orders_key,
            passed=report.success,
            metadata=check_metadata(report, rect.windows, ()),
        )
        if not report.success:
            raise dg.Failure(description=report.summary())
        last_session = result.final_state.as_of
        pending = result.orders.filter(pl.col("date") == last_session)
        book_last = result.book.filter(pl.col("date") == last_session)
        equity = float(book_last["equity"][0])
        yield dg.Output(
            result.orders,
            output_name="orders",
            metadata={
                "orders": result.orders.height,
                "latest_session": str(last_session),
                "latest_session_is_live": live,
                "pending_orders": pending.height,
                "pending_orders_table": dg.MetadataValue.md(
                    markdown(pending.select(_PENDING_COLUMNS)) if pending.height else "none"
                ),
                "kill_switch_active": switch.exists(),
                "kill_switch_file": str(switch),
                "kill_switch_sessions": ", ".join(str(d) for d in sorted(kill_sessions)) or "-",
                "paper_equity": round(equity, 2),
            },
        )
        yield dg.Output(
            result.book,
            output_name="paper_book",
            metadata={
                "rows": result.book.height,
                "paper_equity": round(equity, 2),
                "paper_cash": round(float(book_last["cash"][0]), 2),
                "gross_exposure": round(float(book_last["gross_exposure"][0]), 4),
                "fills": int((result.book["filled_quantity"] != 0).sum()),
                "commission": round(float(result.book["commission"].sum()), 2),
            },
        )

    return [orders_and_paper_book]


def _orders_on(warehouse: WarehouseResource, schema: str, day: object) -> pl.DataFrame:
    """The stored orders decided on ``day`` (the pending orders of the stored state)."""
    if not warehouse.table_exists("orders", schema=schema):
        return pl.DataFrame()
    return warehouse.read_sql(
        "select * from {table} where date = ? order by ticker", "orders", [day], schema=schema
    )


def _stored_kill_sessions(
    warehouse: WarehouseResource, schema: str, rect: PartitionRectangle
) -> set[date]:
    """Sessions of ``rect`` whose stored orders were issued under the kill switch."""
    if not warehouse.table_exists("orders", schema=schema):
        return set()
    rows = warehouse.read_sql(
        "select distinct date from {table} where kill_switch and date >= ? and date < ?",
        "orders",
        [rect.start, rect.end],
        schema=schema,
    )
    return set(rows["date"].to_list()) if rows.height else set()


def _latest_session(warehouse: WarehouseResource) -> date | None:
    """The newest session in the bars: the one whose orders are live (no next session yet)."""
    if not warehouse.table_exists("bars"):
        return None
    rows = warehouse.read_sql("select max(date) as date from {table}", "bars")
    latest = rows["date"][0] if rows.height else None
    return latest if isinstance(latest, date) else None
