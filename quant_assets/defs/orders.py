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
from quant_assets.defs.automation import follows_inputs
from quant_assets.defs.common import (
    WAREHOUSE_IO_MANAGER,
    RunScope,
    asset_tags,
    blocking_check,
    checked_output,
    code_version,
    domain_call,
    markdown,
    table_metadata,
)
from quant_assets.defs.partitions import (
    by_date,
    date_partitions,
    first_window_start,
    previous_window_start,
)
from quant_assets.defs.resources import WarehouseResource
from quant_assets.defs.strategy_state import (
    require_continuity,
    require_cross_section,
    stored_state_rows,
)
from quant_assets.models.cutoffs import days_for_sessions
from quant_assets.settings import Settings, StrategySettings

KILL_SWITCH_FILE = "KILL_SWITCH"
_PENDING_COLUMNS = ("ticker", "side", "quantity", "reference_price", "notional", "reason_codes")
_BARS_COLUMNS = ["date", "ticker", "open", "close", "volume"]


def kill_switch_path(warehouse: WarehouseResource) -> Path:
    """``<data home>/KILL_SWITCH``: the data home is the warehouse file's directory."""
    return Path(warehouse.database).parent / KILL_SWITCH_FILE


def _out_args(strategy: StrategySettings, columns, description: str) -> dict:
    return dict(
        io_manager_key=WAREHOUSE_IO_MANAGER,
        group_name=strategy.name,
        code_version=code_version(strategy.backtest),
        kinds={"duckdb", "polars"},
        # A date-only window partition: the IO manager's stock path takes a plain column name.
        metadata=table_metadata(columns, partition_expr="date", schema=strategy.name),
        description=description,
        # It follows the positions; the bars it reads arrive with them.
        automation_condition=follows_inputs(ignore=["bars"]),
        tags=asset_tags(path_dependent=True),  # the paper book continues from its stored state
    )


def orders_asset(settings: Settings, strategy: StrategySettings) -> dg.AssetsDefinition:
    """``strategy``'s ``orders`` and ``paper_book`` (one multi-asset) with ``orders_valid``."""
    universe, name = settings.universe, strategy.name
    windows = date_partitions(universe, start=settings.models.resolved_first_cutoff(universe.start))
    orders_key, positions_key = dg.AssetKey([name, "orders"]), dg.AssetKey([name, "positions"])

    @dg.multi_asset(
        name=f"{name}__orders",
        outs={
            "orders": dg.AssetOut(
                key=orders_key, **_out_args(strategy, schemas.ORDERS, _ORDERS_DESCRIPTION)
            ),
            "paper_book": dg.AssetOut(
                key=dg.AssetKey([name, "paper_book"]),
                **_out_args(strategy, schemas.PAPER_BOOK, _BOOK_DESCRIPTION),
            ),
        },
        partitions_def=windows,
        backfill_policy=dg.BackfillPolicy.single_run(),
        ins={"positions": dg.AssetIn(key=positions_key, partition_mapping=by_date())},
        deps=[dg.AssetDep("bars", partition_mapping=by_date())],
        check_specs=[blocking_check(orders_key, "orders_valid", _CHECK_DESCRIPTION)],
    )
    def orders_and_paper_book(
        context: dg.AssetExecutionContext, positions: pl.DataFrame, warehouse: WarehouseResource
    ) -> Iterator:
        """Decide each session's orders at its close and fill them on the next session in a
        paper book, continuing from the stored book and pending orders before the range."""
        from quant_assets.quality.derived import validate_orders

        scope = RunScope.of(context)
        state = _paper_state(warehouse, strategy, scope, first_window_start(windows), windows)
        switch, kill_sessions, live = _kill_switch(warehouse, name, scope)
        result = domain_call(
            orders_key,
            lambda: _paper_book(
                warehouse, settings, strategy, scope, positions, state, kill_sessions
            ),
        )
        report = validate_orders(result.orders, result.book, strategy.backtest.lot_size)
        metadata = _orders_metadata(result, live, switch, kill_sessions)
        yield from checked_output(
            "orders_valid",
            report,
            result.orders,
            metadata["orders"],
            scope=scope,
            asset_key=orders_key,
            output_name="orders",
            tickers_in_metadata=False,
        )
        yield dg.Output(result.book, output_name="paper_book", metadata=metadata["paper_book"])

    return orders_and_paper_book


_ORDERS_DESCRIPTION = (
    "Orders for the next session, decided at each close from the latest positions: side, "
    "quantity (whole lots), reference price, reason codes; flat-only while the kill switch is on."
)
_BOOK_DESCRIPTION = (
    "The paper book that fills the orders on the next session (open or close, commission, "
    "slippage, square-root impact), marked at every close: cash, shares, equity."
)
_CHECK_DESCRIPTION = (
    "Great Expectations: side BUY/SELL, quantity > 0 in whole lots, reference price > 0, every "
    "kill-switch order reduces |shares|; the paper book's equity = cash + Σ shares × mark and "
    "cash moves only by the fills."
)


def _paper_book(
    warehouse: WarehouseResource,
    settings: Settings,
    strategy: StrategySettings,
    scope: RunScope,
    positions: pl.DataFrame,
    state,
    kill_sessions: set[date],
):
    """Run the paper book over the run's sessions on the stored bars (and the look-back its
    costs need), refusing a partial cross-section."""
    from quant_assets.backtest.frames import with_exit_prints
    from quant_assets.execution import run_paper_book

    tickers = list(settings.universe.tickers)
    history = max(strategy.backtest.adv_window, strategy.backtest.vol_window) + 1
    start = scope.rect.start - days_for_sessions(history)
    bars = warehouse.read(
        "bars", start=start, end=scope.rect.end, tickers=tickers, columns=_BARS_COLUMNS
    )
    in_run = scope.within(bars)
    if in_run.is_empty():
        raise ValueError(
            f"no bars in {scope.rect.start}..{scope.rect.last_day}; materialise bars for these "
            "windows first"
        )
    positions_key = dg.AssetKey([strategy.name, "positions"])
    require_cross_section(positions, in_run, positions_key)
    targets = positions.select("date", "ticker", "target_weight", "reason_codes")
    return run_paper_book(
        with_exit_prints(bars, settings.universe.exits),  # a name leaving: sold at its last close
        targets,
        strategy.backtest,
        start=scope.rect.start,
        state=state,
        tickers=tickers,
        kill_switch_sessions=kill_sessions,
        strategy=strategy.name,
    )


def _paper_state(
    warehouse: WarehouseResource,
    strategy: StrategySettings,
    scope: RunScope,
    first_start: date,
    windows: dg.TimeWindowPartitionsDefinition,
):
    """The stored paper book and pending orders at the close before the run (a fresh book on
    the first window); a gap before the run is refused."""
    from quant_assets.execution import PaperBookState

    name = strategy.name
    rows = stored_state_rows(warehouse, name, "paper_book", scope.rect.start, 1)
    previous = previous_window_start(windows, scope.rect.start)
    require_continuity(rows, scope.rect, first_start, previous, f"{name}/orders")
    if scope.rect.start <= first_start:
        return PaperBookState.initial(strategy.backtest.initial_capital)
    return PaperBookState.from_rows(rows, _orders_on(warehouse, name, rows["date"].max()))


def _kill_switch(
    warehouse: WarehouseResource, schema: str, scope: RunScope
) -> tuple[Path, set[date], bool]:
    """The switch file, the sessions it applies to in this run, and whether the run holds the
    live session (the newest in the bars: its orders are the pending ones)."""
    switch = kill_switch_path(warehouse)
    sessions = _stored_kill_sessions(warehouse, schema, scope)
    latest = _latest_session(warehouse)
    live = latest is not None and scope.rect.start <= latest < scope.rect.end
    if switch.exists() and live:
        assert latest is not None
        sessions.add(latest)
    return switch, sessions, live


def _orders_metadata(result, live: bool, switch: Path, kill_sessions: set[date]) -> dict:
    last_session = result.final_state.as_of
    pending = result.orders.filter(pl.col("date") == last_session)
    book_last = result.book.filter(pl.col("date") == last_session)
    equity = round(float(book_last["equity"][0]), 2)
    orders = {
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
        "paper_equity": equity,
    }
    book = {
        "rows": result.book.height,
        "paper_equity": equity,
        "paper_cash": round(float(book_last["cash"][0]), 2),
        "gross_exposure": round(float(book_last["gross_exposure"][0]), 4),
        "fills": int((result.book["filled_quantity"] != 0).sum()),
        "commission": round(float(result.book["commission"].sum()), 2),
    }
    return {"orders": orders, "paper_book": book}


def _orders_on(warehouse: WarehouseResource, schema: str, day: object) -> pl.DataFrame:
    """The stored orders decided on ``day`` (the pending orders of the stored state)."""
    if not warehouse.table_exists("orders", schema=schema):
        return pl.DataFrame()
    return warehouse.read_sql(
        "select * from {table} where date = ? order by ticker", "orders", [day], schema=schema
    )


def _stored_kill_sessions(warehouse: WarehouseResource, schema: str, scope: RunScope) -> set[date]:
    """Sessions of the run whose stored orders were issued under the kill switch."""
    if not warehouse.table_exists("orders", schema=schema):
        return set()
    rows = warehouse.read_sql(
        "select distinct date from {table} where kill_switch and date >= ? and date < ?",
        "orders",
        [scope.rect.start, scope.rect.end],
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
