"""The simulated book over polars frames: bars and target weights in, one row per (date, ticker)
and one row per trade out, around :func:`quant_assets.backtest.kernel.simulate_book`.

Timing (see the kernel for the full semantics): a target decided at the close of session ``d``
trades on the next session, at its open (``fill: next_open``, the close when it has no open)
or its close (``next_close``), and the book is marked at every close. Impact uses the daily
volatility and the average daily volume known at the close BEFORE the trading session.

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

from quant_assets.backtest.kernel import (
    FILL_NEXT_CLOSE,
    FILL_NEXT_OPEN,
    SIMULATE_BOOK_OUTPUTS,
    portfolio_value,
    simulate_book,
    trailing_mean,
    trailing_volatility,
)
from quant_assets.settings import BacktestSettings

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
TRADE_COLUMNS: dict[str, str] = {
    "date": "session the trade executed on",
    "ticker": "instrument symbol",
    "quantity": "shares, + bought, - sold",
    "side": "buy | sell",
    "reference_price": "the open or close before costs, per share",
    "fill_price": "price per share after slippage and impact",
    "commission": "currency",
    "slippage_cost": "currency",
    "impact_cost": "currency",
}
_BARS_REQUIRED = ("date", "ticker", "open", "close", "volume")
_TARGETS_REQUIRED = ("date", "ticker", "target_weight")
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
        _require(rows, "book rows", _STATE_REQUIRED)
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
            mark_price=_present(tickers, rows["mark_price"]),
            target_weight=_present(tickers, rows["target_weight"]),
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

    ``bars``: date, ticker, open, close, volume (open and volume may be null), including
    look-back rows before ``start``: they only feed the daily volatility (sample std of daily
    log returns over ``settings.vol_window`` sessions) and the ADV (mean volume over
    ``settings.adv_window`` sessions), both ending the session before the trading session.
    The sessions are the distinct dates of ``bars`` on or after ``start``.

    ``targets``: date, ticker, target_weight decided at that session's close (rows before
    ``start`` are ignored; a missing row or a null weight is no order). ``state.target_weight``
    trades on the first session. ``tickers`` fixes the order of the kernel's columns (and
    so of its sums): keep it the same across continued runs.
    """
    tickers = list(tickers)
    if not tickers:
        raise ValueError("tickers must not be empty")
    if len(set(tickers)) != len(tickers):
        raise ValueError("tickers must be distinct")
    _require(bars, "bars", _BARS_REQUIRED)
    _require(targets, "targets", _TARGETS_REQUIRED)
    bars = _clean_bars(bars, tickers)
    targets = _clean_targets(targets, tickers, start)

    all_dates = bars["date"].unique().sort()
    sessions = all_dates.filter(all_dates >= start)
    if sessions.is_empty():
        raise ValueError(f"bars have no session on or after start {start}")
    first = all_dates.len() - sessions.len()  # look-back dates before the first session
    _check_state(state, tickers, start, all_dates)
    stray = targets.filter(~pl.col("date").is_in(sessions.implode()))
    if not stray.is_empty():
        row = stray.sort("date", "ticker").row(0, named=True)
        raise ValueError(
            f"targets have a row for ticker {row['ticker']} on {row['date']}, "
            "which is not a session of bars"
        )

    market = _market_grids(bars, tickers, all_dates, settings)
    row_of = pl.DataFrame({"date": sessions, "_row": np.arange(sessions.len())})
    target_weight = _grid(targets, "target_weight", row_of, tickers)
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
                float(settings.lot_size),
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
        mark_price={
            t: float(mark_price[-1, i])
            for i, t in enumerate(tickers)
            if not math.isnan(mark_price[-1, i])
        },
        target_weight={
            t: float(target_weight[-1, i])
            for i, t in enumerate(tickers)
            if not math.isnan(target_weight[-1, i])
        },
    )
    return BookResult(
        book=_book_frame(outputs, sessions, tickers, target_weight, reference_price, start_equity),
        trades=_trades_frame(outputs["trades"], sessions, tickers),
        final_state=final_state,
    )


def _grid(frame: pl.DataFrame, column: str, row_of: pl.DataFrame, tickers: list[str]) -> np.ndarray:
    """``frame[column]`` as a C-contiguous float64 (dates × tickers) grid: rows by
    ``row_of`` (date → _row), columns in ``tickers`` order, NaN where there is no value."""
    column_of = pl.DataFrame({"ticker": tickers, "_column": np.arange(len(tickers))})
    located = frame.join(row_of, on="date").join(column_of, on="ticker")
    grid = np.full((row_of.height, len(tickers)), np.nan)
    grid[located["_row"].to_numpy(), located["_column"].to_numpy()] = located[column].to_numpy()
    return grid


def _market_grids(
    bars: pl.DataFrame, tickers: list[str], all_dates: pl.Series, settings: BacktestSettings
) -> dict[str, np.ndarray]:
    """Open, close, and the daily volatility and ADV known the session before, as grids over
    every date of ``bars`` (look-back included)."""
    row_of = pl.DataFrame({"date": all_dates, "_row": np.arange(all_dates.len())})
    close = _grid(bars, "close", row_of, tickers)
    return {
        "open": _grid(bars, "open", row_of, tickers),
        "close": close,
        "daily_vol": trailing_volatility(close, settings.vol_window),
        "adv_shares": trailing_mean(_grid(bars, "volume", row_of, tickers), settings.adv_window),
    }


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


def _trades_frame(records: np.ndarray, sessions: pl.Series, tickers: list[str]) -> pl.DataFrame:
    """The kernel's trade records with dates and tickers, in execution order."""
    quantity = records["quantity"]
    return pl.DataFrame(
        [
            sessions.gather(records["date_index"]).alias("date"),
            pl.Series("ticker", tickers, dtype=pl.Utf8).gather(records["ticker_index"]),
            pl.Series("quantity", quantity),
            pl.Series("side", np.where(quantity > 0, "buy", "sell"), dtype=pl.Utf8),
            *(
                pl.Series(name, records[name])
                for name in (
                    "reference_price",
                    "fill_price",
                    "commission",
                    "slippage_cost",
                    "impact_cost",
                )
            ),
        ]
    )


def _require(frame: pl.DataFrame, name: str, columns: Sequence[str]) -> None:
    missing = [c for c in columns if c not in frame.columns]
    if missing:
        raise ValueError(f"{name} lacks column(s) {', '.join(missing)}")


def _present(tickers: list[str], values: pl.Series) -> dict[str, float]:
    """Ticker → value for the non-null (and non-NaN) values."""
    return {
        t: float(v)
        for t, v in zip(tickers, values.to_list(), strict=True)
        if v is not None and not math.isnan(v)
    }


def _reject_duplicates(frame: pl.DataFrame, name: str) -> None:
    duplicated = frame.filter(pl.struct("date", "ticker").is_duplicated())
    if not duplicated.is_empty():
        row = duplicated.sort("date", "ticker").row(0, named=True)
        raise ValueError(
            f"{name} have more than one row for ticker {row['ticker']} on {row['date']}"
        )


def _clean_bars(bars: pl.DataFrame, tickers: list[str]) -> pl.DataFrame:
    """The bars of ``tickers``, prices and volume as Float64 with NaN read as missing,
    checked for duplicates and non-positive prices."""
    if bars.schema["date"] != pl.Date:
        raise ValueError(f"bars column date must be of type Date, got {bars.schema['date']}")
    bars = bars.select(
        "date",
        pl.col("ticker").cast(pl.Utf8),
        *(pl.col(c).cast(pl.Float64).fill_nan(None) for c in ("open", "close", "volume")),
    ).filter(pl.col("ticker").is_in(tickers))
    _reject_duplicates(bars, "bars")
    bad = bars.filter((pl.col("open") <= 0) | (pl.col("close") <= 0))
    if not bad.is_empty():
        row = bad.sort("date", "ticker").row(0, named=True)
        raise ValueError(
            f"bars have a non-positive price for ticker {row['ticker']} on {row['date']} "
            f"(open {row['open']}, close {row['close']})"
        )
    return bars


def _clean_targets(targets: pl.DataFrame, tickers: list[str], start: date) -> pl.DataFrame:
    """The targets from ``start``, weights as Float64 (null = no order), checked for unknown
    tickers, duplicates and infinite weights."""
    if targets.schema["date"] != pl.Date:
        raise ValueError(f"targets column date must be of type Date, got {targets.schema['date']}")
    targets = targets.select(
        "date",
        pl.col("ticker").cast(pl.Utf8),
        pl.col("target_weight").cast(pl.Float64).fill_nan(None),
    ).filter(pl.col("date") >= start)
    unknown = targets.filter(~pl.col("ticker").is_in(tickers))
    if not unknown.is_empty():
        row = unknown.sort("date", "ticker").row(0, named=True)
        raise ValueError(
            f"targets name ticker {row['ticker']} (on {row['date']}), which is not in tickers"
        )
    _reject_duplicates(targets, "targets")
    infinite = targets.filter(pl.col("target_weight").is_infinite())
    if not infinite.is_empty():
        row = infinite.sort("date", "ticker").row(0, named=True)
        raise ValueError(
            f"targets have an infinite weight for ticker {row['ticker']} on {row['date']}"
        )
    return targets


def _check_state(state: BookState, tickers: list[str], start: date, all_dates: pl.Series) -> None:
    """The state must come before ``start`` with no session skipped in between, and hold or
    target only tickers the run trades."""
    if state.as_of is not None:
        if state.as_of >= start:
            raise ValueError(f"state is as of {state.as_of}, not before start {start}")
        skipped = all_dates.filter((all_dates > state.as_of) & (all_dates < start))
        if not skipped.is_empty():
            raise ValueError(
                f"bars have session {skipped[0]} between the state's date {state.as_of} and "
                f"start {start}: the book would skip it"
            )
    if not math.isfinite(state.cash):
        raise ValueError(f"state cash must be finite, got {state.cash}")
    known = set(tickers)
    for name, values in (("shares", state.shares), ("target_weight", state.target_weight)):
        for ticker, value in values.items():
            if ticker not in known and value != 0 and not math.isnan(value):
                raise ValueError(f"state {name} has ticker {ticker}, which is not in tickers")
