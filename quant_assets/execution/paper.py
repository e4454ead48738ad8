"""The paper book: orders decided at each close, filled on the next session, marked at its close.

Seed 003 §9.2's mock broker for the strategies' target weights. One session ``D``:

1. **Fill** the orders decided at the previous session's close (``state.pending`` for the
   first session) with the backtest's order step,
   :func:`quant_assets.backtest.kernel.execute_orders_nb`, at ``D``'s reference price: the
   open (``fill: next_open``; the close when there is no open) or the close (``next_close``).
   The quantity was fixed when the order was decided. Fill price = reference × (1 ±
   (slippage + impact)) against the trader, the square-root impact k × σ × √(|q| / ADV)
   priced from the daily volatility and average daily volume known at the decision;
   commission on the traded value at the fill price; sells first (in ticker order), then
   buys, scaled down together (to whole lots) when their cash need exceeds the cash after
   the sells, unless borrowing is allowed. An order whose ticker has no price on ``D``
   expires unfilled (a day order).
2. **Mark** at ``D``'s close (the last close when ``D`` has none) with the kernel's
   :func:`~quant_assets.backtest.kernel.mark_to_close_nb`: cash, shares, equity = cash +
   Σ shares × mark, exposures.
3. **Decide** the orders for the next session (:func:`quant_assets.execution.orders.
   decide_orders`, the kernel's decision rule) from the target weights of ``D`` and the
   equity at ``D``'s close; with the kill switch on for ``D`` every order closes a position.

The backtest (:func:`quant_assets.backtest.book.run_book`) runs these same three steps, so
given the same bars, targets and capital the two books fill the same quantities at the same
prices and costs and report the same equity; what the paper book adds is the order desk: the
orders table (sides, quantities, reference prices, reason codes, client order ids), the kill
switch, and a state that carries the pending orders rather than the target weights.

In the stored book rows ``slippage_cost`` is the whole price concession of a fill against its
reference (slippage and impact: |q| × reference × (s + m)), so ``cash_flow`` = −(fill_notional
+ commission + slippage_cost) is exactly the cash the fill moved; :attr:`PaperResult.trades`
has the two apart, in the backtest's trade columns.

As of: an order row dated ``D`` uses bars up to ``D`` only; its fill is a book row dated at the
next session. The book rows carry the whole state (cash, shares, marks) unrounded and the
order rows the pending quantities, so :meth:`PaperBookState.from_rows` of one date's rows
continues a run exactly where it stopped (given the same look-back bars before the start,
which the volatility and ADV of the impact are computed from).
"""

from __future__ import annotations

import math
from collections.abc import Collection, Sequence
from dataclasses import dataclass, field
from datetime import date

import numpy as np
import polars as pl

from quant_assets import schemas
from quant_assets.backtest.frames import (
    check_state,
    check_tickers,
    clean_bars,
    clean_targets,
    grid,
    market_grids,
    require_columns,
    row_index,
    sessions_from,
    trades_frame,
)
from quant_assets.backtest.kernel import (
    FILL_NEXT_CLOSE,
    FILL_NEXT_OPEN,
    TRADE_DTYPE,
    execute_orders_nb,
    fill_reference_nb,
    mark_to_close_nb,
    share_step,
)
from quant_assets.execution.orders import BUY, SELL, decide_orders, with_order_codes
from quant_assets.settings import BacktestSettings

_BOOK_STATE_REQUIRED = ("date", "ticker", "cash", "shares", "mark_price")
_ORDER_STATE_REQUIRED = ("date", "ticker", "side", "quantity")


@dataclass(frozen=True)
class PaperBookState:
    """The paper book at the close of ``as_of``, from which the next session continues.

    ``shares``: per ticker (missing = 0); ``mark_price``: the last close per ticker (missing =
    never priced); ``pending``: signed quantities ordered at the close of ``as_of``, to fill on
    the next session (missing = no order).
    """

    as_of: date | None
    cash: float
    shares: dict[str, float] = field(default_factory=dict)
    mark_price: dict[str, float] = field(default_factory=dict)
    pending: dict[str, float] = field(default_factory=dict)

    @classmethod
    def initial(cls, capital: float) -> PaperBookState:
        """An all-cash book of ``capital`` (currency) before its first session."""
        if not math.isfinite(capital) or capital <= 0:
            raise ValueError(f"capital must be finite and positive, got {capital}")
        return cls(as_of=None, cash=float(capital))

    @classmethod
    def from_rows(cls, book_rows: pl.DataFrame, order_rows: pl.DataFrame) -> PaperBookState:
        """The state stored in the paper book rows of ONE date and that date's order rows
        (possibly none: no pending order). Refuses rows of several dates, disagreeing cash,
        or orders of another date."""
        require_columns(book_rows, "paper book rows", _BOOK_STATE_REQUIRED)
        if book_rows.is_empty():
            raise ValueError("paper book rows are empty: from_rows needs one date's rows")
        dates = book_rows["date"].unique()
        if dates.len() != 1:
            raise ValueError(f"paper book rows span {dates.len()} dates, from_rows needs one")
        as_of = dates[0]
        if book_rows["ticker"].is_duplicated().any():
            raise ValueError(f"paper book rows have a ticker more than once on {as_of}")
        cash = book_rows["cash"].unique()
        if cash.len() != 1 or cash.null_count():
            raise ValueError(f"paper book rows of {as_of} disagree on cash (or it is null)")
        pending: dict[str, float] = {}
        if not order_rows.is_empty():
            require_columns(order_rows, "order rows", _ORDER_STATE_REQUIRED)
            stray = order_rows.filter(pl.col("date") != as_of)
            if not stray.is_empty():
                raise ValueError(
                    f"order rows of {stray['date'][0]} given with the paper book of {as_of}"
                )
            for row in order_rows.iter_rows(named=True):
                sign = 1.0 if row["side"] == BUY else -1.0
                pending[row["ticker"]] = sign * float(row["quantity"])
        tickers = book_rows["ticker"].to_list()
        return cls(
            as_of=as_of,
            cash=float(cash[0]),
            shares={
                t: float(s)
                for t, s in zip(tickers, book_rows["shares"].to_list(), strict=True)
                if s
            },
            mark_price={
                t: float(m)
                for t, m in zip(tickers, book_rows["mark_price"].to_list(), strict=True)
                if m is not None and not math.isnan(m)
            },
            pending=pending,
        )


@dataclass(frozen=True)
class PaperResult:
    """``orders``: one row per order (schema :data:`quant_assets.schemas.ORDERS`), by date
    then ticker; ``book``: one row per (session, ticker) (:data:`schemas.PAPER_BOOK`);
    ``final_state``: the book and pending orders after the last session; ``trades``: one row
    per fill in execution order, slippage and impact apart (the backtest's
    :data:`quant_assets.backtest.book.TRADE_COLUMNS`; not stored)."""

    orders: pl.DataFrame
    book: pl.DataFrame
    final_state: PaperBookState
    trades: pl.DataFrame


def run_paper_book(
    bars: pl.DataFrame,
    targets: pl.DataFrame,
    settings: BacktestSettings,
    *,
    start: date,
    state: PaperBookState,
    tickers: Sequence[str],
    kill_switch_sessions: Collection[date] = (),
    strategy: str = "",
) -> PaperResult:
    """Run the paper book on every session of ``bars`` from ``start``, continuing ``state``.

    ``bars``: date, ticker, open, close, volume (open and volume may be null, close may not);
    its distinct dates on or after ``start`` are the sessions. Rows before ``start`` are the
    look-back of the impact's daily volatility (``settings.vol_window`` sessions of log
    returns) and ADV (``settings.adv_window`` sessions of volume), both ending the session
    before the fill, exactly as :func:`quant_assets.backtest.book.run_book` reads them — pass
    the same look-back to both books (and to every piece of a split run) — and prove that no
    session was skipped since ``state.as_of``. ``targets``: date, ticker, target_weight
    decided at that close, and optionally ``reason_codes`` (a JSON list, copied onto the
    orders); a missing row or a null weight is no order; rows outside the sessions' span are
    ignored. ``kill_switch_sessions``: sessions whose orders are flat-only. ``tickers`` fixes
    the column order (and so the order of sells, of buys and of the sums).

    Uses ``settings.fill``, ``commission_bps``, ``slippage_bps``, ``impact_coefficient``,
    ``vol_window``, ``adv_window``, ``lot_size`` and ``allow_borrowing``. Raises
    ``ValueError`` naming the column, ticker and date of bad input.
    """
    tickers = check_tickers(tickers)
    bars = clean_bars(bars, tickers, require_close=True)
    all_dates, sessions = sessions_from(bars, start)
    check_state(
        as_of=state.as_of,
        cash=state.cash,
        per_ticker={"shares": state.shares, "pending": state.pending},
        tickers=tickers,
        start=start,
        all_dates=all_dates,
        book="paper book",
    )
    targets = clean_targets(targets, tickers, sessions, reason_codes=True)

    n = len(tickers)
    first = all_dates.len() - sessions.len()  # look-back dates before the first session
    market = market_grids(
        bars, tickers, all_dates, vol_window=settings.vol_window, adv_window=settings.adv_window
    )
    open_price, close_price = market["open"][first:], market["close"][first:]
    daily_vol, adv_shares = market["daily_vol"][first:], market["adv_shares"][first:]
    target_weight = grid(targets, "target_weight", row_index(sessions), tickers)
    fill_at = FILL_NEXT_OPEN if settings.fill == "next_open" else FILL_NEXT_CLOSE
    step = share_step(settings.lot_size)
    killed = set(kill_switch_sessions)

    shares = np.array([float(state.shares.get(t, 0.0)) for t in tickers])
    mark = np.array([float(state.mark_price.get(t, np.nan)) for t in tickers])
    pending = np.array([float(state.pending.get(t, 0.0)) for t in tickers])
    cash = float(state.cash)
    reference = np.empty(n)
    pnl = np.empty(n)  # the order step's attribution: the paper book does not store it
    records = np.empty(n, dtype=TRADE_DTYPE)

    book_parts: list[dict[str, np.ndarray]] = []
    trade_parts: list[np.ndarray] = []
    order_parts: list[dict[str, np.ndarray]] = []
    order_dates: list[date] = []
    for t, session in enumerate(sessions.to_list()):
        fill_reference_nb(open_price[t], close_price[t], fill_at, reference)
        shares_before, shares = shares, np.empty(n)
        filled_quantity, fill_price, commission, slippage_cost, impact_cost = np.empty((5, n))
        cash, n_fills = execute_orders_nb(
            pending,
            reference,
            daily_vol[t],
            adv_shares[t],
            shares_before,
            cash,
            float(settings.commission_bps),
            float(settings.slippage_bps),
            float(settings.impact_coefficient),
            step,
            bool(settings.allow_borrowing),
            shares,
            filled_quantity,
            fill_price,
            commission,
            slippage_cost,
            impact_cost,
            records,
            0,
            t,
        )
        mark_before, mark = mark, np.empty(n)
        equity = mark_to_close_nb(
            close_price[t],
            reference,
            shares_before,
            shares,
            filled_quantity,
            fill_price,
            commission,
            mark_before,
            mark,
            cash,
            pnl,
        )
        if n_fills:
            trade_parts.append(records[:n_fills].copy())
        book_parts.append(
            {
                "order_quantity": pending,
                "filled_quantity": filled_quantity,
                "fill_reference_price": np.where(filled_quantity != 0.0, reference, np.nan),
                "fill_price": fill_price,
                "commission": commission,
                "slippage_cost": slippage_cost + impact_cost,
                "shares": shares,
                "mark_price": mark,
                "position_value": np.where(shares != 0.0, shares * mark, 0.0),
                "cash": np.full(n, cash),
                "equity": np.full(n, equity),
            }
        )
        kill_switch = session in killed
        decided = decide_orders(
            target_weight[t], shares, mark, equity, settings.lot_size, kill_switch
        )
        pending = decided.quantity
        placed = pending != 0.0
        if placed.any():
            order_dates += [session] * int(placed.sum())
            order_parts.append(
                {
                    "ticker_index": np.flatnonzero(placed),
                    "signed_quantity": pending[placed],
                    "reference_price": mark[placed],
                    "target_weight": decided.target_weight[placed],
                    "position_target_weight": target_weight[t][placed],
                    "current_shares": shares[placed],
                    "target_shares": decided.target_shares[placed],
                    "sizing_equity": np.full(int(placed.sum()), equity),
                    "kill_switch": np.full(int(placed.sum()), kill_switch),
                }
            )

    final_state = PaperBookState(
        as_of=sessions[-1],
        cash=cash,
        shares={t: float(s) for t, s in zip(tickers, shares, strict=True) if s != 0.0},
        mark_price={t: float(m) for t, m in zip(tickers, mark, strict=True) if math.isfinite(m)},
        pending={t: float(q) for t, q in zip(tickers, pending, strict=True) if q != 0.0},
    )
    trade_records = np.concatenate(trade_parts) if trade_parts else records[:0]
    return PaperResult(
        orders=_orders_frame(order_parts, order_dates, tickers, targets, strategy),
        book=_book_frame(book_parts, sessions, tickers),
        final_state=final_state,
        trades=trades_frame(trade_records, sessions, tickers),
    )


def _book_frame(
    parts: list[dict[str, np.ndarray]], sessions: pl.Series, tickers: list[str]
) -> pl.DataFrame:
    n = len(tickers)
    columns = {name: np.concatenate([p[name] for p in parts]) for name in parts[0]}
    frame = pl.DataFrame(
        {
            "date": sessions.gather(np.repeat(np.arange(sessions.len()), n)),
            "ticker": pl.Series(tickers * sessions.len(), dtype=pl.Utf8),
            **{name: pl.Series(name, v, nan_to_null=True) for name, v in columns.items()},
        }
    )
    cash_flow = -(pl.col("fill_notional") + pl.col("commission") + pl.col("slippage_cost"))
    value = pl.col("position_value")
    frame = frame.with_columns(
        (pl.col("filled_quantity") * pl.col("fill_reference_price"))
        .fill_null(0.0)
        .alias("fill_notional"),
    ).with_columns(
        cash_flow.alias("cash_flow"),
        (value / pl.col("equity")).alias("weight"),
        (value.abs().sum().over("date") / pl.col("equity")).alias("gross_exposure"),
        (value.sum().over("date") / pl.col("equity")).alias("net_exposure"),
    )
    return schemas.conform(frame, schemas.PAPER_BOOK)


def _orders_frame(
    parts: list[dict[str, np.ndarray]],
    order_dates: list[date],
    tickers: list[str],
    targets: pl.DataFrame,
    strategy: str,
) -> pl.DataFrame:
    if not parts:
        return pl.DataFrame(schema={c.name: c.dtype for c in schemas.ORDERS})
    columns = {name: np.concatenate([p[name] for p in parts]) for name in parts[0]}
    signed = columns.pop("signed_quantity")
    ticker_names = pl.Series(tickers, dtype=pl.Utf8).gather(columns.pop("ticker_index"))
    frame = pl.DataFrame(
        {
            "date": pl.Series(order_dates, dtype=pl.Date),
            "ticker": ticker_names,
            "side": pl.Series(np.where(signed > 0, BUY, SELL), dtype=pl.Utf8),
            "quantity": np.abs(signed),
            **{name: pl.Series(name, v, nan_to_null=True) for name, v in columns.items()},
        }
    )
    position_codes = targets.select("date", "ticker", pl.col("reason_codes").alias("_codes"))
    frame = frame.join(position_codes, on=["date", "ticker"], how="left").with_columns(
        with_order_codes(
            pl.col("_codes"),
            pl.col("current_shares"),
            pl.col("target_shares"),
            pl.col("kill_switch"),
        ).alias("reason_codes"),
        pl.concat_str(
            pl.lit(strategy), pl.col("date").dt.strftime("%Y%m%d"), pl.col("ticker"), separator="-"
        ).alias("client_order_id"),
        pl.lit(strategy, dtype=pl.Utf8).alias("strategy"),
        (pl.col("quantity") * pl.col("reference_price")).alias("notional"),
    )
    return schemas.conform(frame, schemas.ORDERS)
