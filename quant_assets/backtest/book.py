"""The simulated book over polars frames: bars and target weights in, one row per (date, ticker)
and one row per trade out, around :func:`quant_assets.backtest.kernel.simulate_book`.

Timing (see the kernel for the full semantics): a target decided at the close of session ``d``
is sized there — target weight × the book's equity at that close / that close, rounded to the
lot (``share_step(lot_size)``: 1e-4 shares for lot 0), minus the shares held — and that
quantity trades on the next session, at its open (``fill: next_open``, the close when it has
no open) or its close (``next_close``); the book is marked at every close. Impact uses the
daily volatility and the average daily volume known at the decision (the close BEFORE the
trading session). The order step is the kernel's :func:`~quant_assets.backtest.kernel.
execute_orders_nb`, the same one the paper book (:mod:`quant_assets.execution.paper`) fills
its orders with, so both books agree on every fill, cost and equity given the same inputs.

A run continues exactly from the stored rows of its last date: :meth:`BookState.from_rows` of
those rows, passed as ``state`` with ``start`` = the next session, gives rows bit-identical to
one uninterrupted run. The book rows therefore carry the whole state (cash, shares, mark price,
target weight) unrounded.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import date

import numpy as np
import polars as pl

from quant_assets.backtest.frames import (
    TRADE_COLUMNS,
    check_state,
    check_tickers,
    clean_bars,
    clean_targets,
    grid,
    market_grids,
    present,
    require_columns,
    row_index,
    sessions_from,
    trades_frame,
)
from quant_assets.backtest.kernel import (
    FILL_NEXT_CLOSE,
    FILL_NEXT_OPEN,
    SIMULATE_BOOK_OUTPUTS,
    portfolio_value,
    share_step,
    simulate_book,
)
from quant_assets.settings import BacktestSettings

__all__ = ["BOOK_COLUMNS", "TRADE_COLUMNS", "BookResult", "BookState", "run_book"]

BOOK_COLUMNS: dict[str, str] = {
    "date": "trading session",
    "ticker": "instrument symbol",
    "shares": "shares held after the session's trade",
    "trade_quantity": "shares traded on the session (+ bought, - sold, 0 none)",
    "fill_price": "price per share paid or received, after slippage and impact (null: no trade)",
    "reference_price": "the open (next_open fills, else the close) before costs; null: no price",
    "commission": "commission paid on the session's trade (currency)",
    "slippage_cost": "fixed slippage cost of the session's trade (currency)",
    "impact_cost": "square-root market impact cost of the session's trade (currency)",
    "pnl": "the ticker's profit and loss over the session, net of costs (currency)",
    "mark_price": "close the position is valued at (else the last close, else the open)",
    "target_weight": "weight of equity decided at this session's close, traded next session",
    "weight": "shares × mark_price / equity after the session",
    "cash": "the book's cash at the close (same on every ticker row of the date)",
    "equity": "cash + Σ shares × mark_price at the close",
    "gross_exposure": "Σ |shares × mark_price| / equity",
    "net_exposure": "Σ shares × mark_price / equity",
    "portfolio_pnl": "equity - previous equity (currency)",
    "portfolio_return": "equity / previous equity - 1",
    "turnover": "Σ |trade_quantity × fill_price| / previous equity",
}
_STATE_REQUIRED = ("date", "ticker", "cash", "shares", "mark_price", "target_weight")


@dataclass(frozen=True)
class BookState:
    """The book at the close of ``as_of``, from which the next session continues.

    ``shares``: shares per ticker (missing = 0). ``mark_price``: the last close per ticker
    (missing = never priced). ``target_weight``: the weights decided at the close of
    ``as_of``, which trade on the next session (missing = no order).
    """

    as_of: date | None
    cash: float
    shares: dict[str, float] = field(default_factory=dict)
    mark_price: dict[str, float] = field(default_factory=dict)
    target_weight: dict[str, float] = field(default_factory=dict)

    @classmethod
    def initial(cls, capital: float) -> BookState:
        """An all-cash book of ``capital`` (currency) before its first session."""
        if not math.isfinite(capital) or capital <= 0:
            raise ValueError(f"capital must be finite and positive, got {capital}")
        return cls(as_of=None, cash=float(capital))

    @classmethod
    def from_rows(cls, rows: pl.DataFrame) -> BookState:
        """The state stored in the book rows of ONE date (the ``book`` frame of
        :func:`run_book`, filtered to that date)."""
        require_columns(rows, "book rows", _STATE_REQUIRED)
        if rows.is_empty():
            raise ValueError("book rows are empty: BookState.from_rows needs one date's rows")
        dates = rows["date"].unique()
        if dates.len() != 1:
            raise ValueError(
                f"book rows span {dates.len()} dates: BookState.from_rows needs one date's rows"
            )
        as_of = dates[0]
        if rows["ticker"].is_duplicated().any():
            ticker = rows.filter(pl.col("ticker").is_duplicated())["ticker"][0]
            raise ValueError(f"book rows have ticker {ticker} more than once on {as_of}")
        cash = rows["cash"].unique()
        if cash.len() != 1 or cash.null_count():
            raise ValueError(f"book rows of {as_of} disagree on cash (or it is null)")
        if rows["shares"].null_count():
            raise ValueError(f"book rows of {as_of} have null shares")
        tickers = rows["ticker"].to_list()
        return cls(
            as_of=as_of,
            cash=float(cash[0]),
            shares=dict(zip(tickers, rows["shares"].to_list(), strict=True)),
            mark_price=present(tickers, rows["mark_price"].to_list()),
            target_weight=present(tickers, rows["target_weight"].to_list()),
        )


@dataclass(frozen=True)
class BookResult:
    """``book``: one row per (session, ticker), columns :data:`BOOK_COLUMNS`; ``trades``: one
    row per executed trade in execution order, columns :data:`TRADE_COLUMNS`; ``final_state``:
    the book at the close of the last session."""

    book: pl.DataFrame
    trades: pl.DataFrame
    final_state: BookState


def run_book(
    bars: pl.DataFrame,
    targets: pl.DataFrame,
    settings: BacktestSettings,
    *,
    start: date,
    state: BookState,
    tickers: Sequence[str],
) -> BookResult:
    """Simulate the book on every session of ``bars`` from ``start``, continuing ``state``.

    ``bars``: date, ticker, open, close, volume (open, close and volume may be null),
    including look-back rows before ``start``: they only feed the daily volatility (sample std
    of daily log returns over ``settings.vol_window`` sessions) and the ADV (mean volume over
    ``settings.adv_window`` sessions), both ending the session before the trading session.
    The sessions are the distinct dates of ``bars`` on or after ``start``.

    ``targets``: date, ticker, target_weight decided at that session's close (rows outside
    the sessions' span are ignored; a missing row or a null weight is no order).
    ``state.target_weight`` was decided at the close before ``start`` and is sized against
    the state's equity and marks; it trades on the first session. ``tickers`` fixes the order
    of the kernel's columns (and so of its sums): keep it the same across continued runs.

    Raises ``ValueError`` naming the column, ticker and date of bad input.
    """
    tickers = check_tickers(tickers)
    bars = clean_bars(bars, tickers, require_close=False)
    all_dates, sessions = sessions_from(bars, start)
    targets = clean_targets(targets, tickers, sessions)
    first = all_dates.len() - sessions.len()  # look-back dates before the first session
    check_state(
        as_of=state.as_of,
        cash=state.cash,
        per_ticker={"shares": state.shares, "target_weight": state.target_weight},
        tickers=tickers,
        start=start,
        all_dates=all_dates,
        book="book",
        may_be_nan=("target_weight",),
    )

    market = market_grids(
        bars, tickers, all_dates, vol_window=settings.vol_window, adv_window=settings.adv_window
    )
    target_weight = grid(targets, "target_weight", row_index(sessions), tickers)
    initial_shares = np.array([float(state.shares.get(t, 0.0)) for t in tickers])
    initial_mark = np.array([float(state.mark_price.get(t, np.nan)) for t in tickers])
    initial_target = np.array([float(state.target_weight.get(t, np.nan)) for t in tickers])
    fill_at = FILL_NEXT_OPEN if settings.fill == "next_open" else FILL_NEXT_CLOSE
    open_price, close_price = market["open"][first:], market["close"][first:]
    outputs = dict(
        zip(
            SIMULATE_BOOK_OUTPUTS,
            simulate_book(
                target_weight,
                open_price,
                close_price,
                market["daily_vol"][first:],
                market["adv_shares"][first:],
                float(state.cash),
                initial_shares,
                initial_mark,
                initial_target,
                fill_at,
                float(settings.commission_bps),
                float(settings.slippage_bps),
                float(settings.impact_coefficient),
                share_step(settings.lot_size),
                bool(settings.allow_borrowing),
            ),
            strict=True,
        )
    )
    # The kernel's reference price, for the book rows (the trade records carry their own).
    reference_price = close_price
    if fill_at == FILL_NEXT_OPEN:
        reference_price = np.where(np.isfinite(open_price), open_price, close_price)
    # The previous equity is summed exactly as the kernel sums it, so a continued run's first
    # return and turnover equal the uninterrupted run's bit for bit.
    start_equity = portfolio_value(float(state.cash), initial_shares, initial_mark)

    shares, mark_price = outputs["shares"], outputs["mark_price"]
    final_state = BookState(
        as_of=sessions[-1],
        cash=float(outputs["cash"][-1]),
        shares={t: float(shares[-1, i]) for i, t in enumerate(tickers)},
        mark_price=present(tickers, mark_price[-1].tolist()),
        target_weight=present(tickers, target_weight[-1].tolist()),
    )
    return BookResult(
        book=_book_frame(outputs, sessions, tickers, target_weight, reference_price, start_equity),
        trades=trades_frame(outputs["trades"], sessions, tickers),
        final_state=final_state,
    )


def _book_frame(
    outputs: dict[str, np.ndarray],
    sessions: pl.Series,
    tickers: list[str],
    target_weight: np.ndarray,
    reference_price: np.ndarray,
    start_equity: float,
) -> pl.DataFrame:
    """One row per (session, ticker), sorted by date and ticker: the kernel's arrays and the
    per-date portfolio columns (repeated on each ticker row of the date)."""
    n_dates, n_tickers = target_weight.shape
    shares, mark_price = outputs["shares"], outputs["mark_price"]
    trade_quantity, fill_price = outputs["trade_quantity"], outputs["fill_price"]
    cash, equity = outputs["cash"], outputs["equity"]
    previous_equity = np.concatenate([[start_equity], equity[:-1]])
    position_value = np.where(shares != 0.0, shares * mark_price, 0.0)
    traded_value = np.where(trade_quantity != 0.0, np.abs(trade_quantity * fill_price), 0.0)

    def cells(name: str, values: np.ndarray) -> pl.Series:
        return pl.Series(name, values.ravel(), nan_to_null=True)

    def per_date(name: str, values: np.ndarray) -> pl.Series:
        return pl.Series(name, np.repeat(values, n_tickers))

    cell = np.arange(n_dates * n_tickers)
    return pl.DataFrame(
        [
            sessions.gather(cell // n_tickers).alias("date"),
            pl.Series("ticker", tickers, dtype=pl.Utf8).gather(cell % n_tickers),
            cells("shares", shares),
            cells("trade_quantity", trade_quantity),
            cells("fill_price", fill_price),
            cells("reference_price", reference_price),
            cells("commission", outputs["commission"]),
            cells("slippage_cost", outputs["slippage_cost"]),
            cells("impact_cost", outputs["impact_cost"]),
            cells("pnl", outputs["pnl"]),
            cells("mark_price", mark_price),
            cells("target_weight", target_weight),
            cells("weight", position_value / equity[:, None]),
            per_date("cash", cash),
            per_date("equity", equity),
            per_date("gross_exposure", np.abs(position_value).sum(axis=1) / equity),
            per_date("net_exposure", position_value.sum(axis=1) / equity),
            per_date("portfolio_pnl", equity - previous_equity),
            per_date("portfolio_return", equity / previous_equity - 1.0),
            per_date("turnover", traded_value.sum(axis=1) / previous_equity),
        ]
    ).sort("date", "ticker", maintain_order=True)
