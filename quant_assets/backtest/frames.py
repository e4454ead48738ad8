"""Frames to kernel arrays and back, shared by the backtest book (:mod:`quant_assets.backtest.
book`) and the paper book (:mod:`quant_assets.execution.paper`): input checks that name the
ticker and date at fault, the (n_dates, n_tickers) grids the kernels read, the daily
volatility and ADV the impact is priced from, and the trade records as a frame.

Both books take the same bars (date, ticker, open, close, volume) and target weights and run
the same order step on them, so they clean and grid them here, once.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from datetime import date
from typing import Any

import numpy as np
import polars as pl

from quant_assets.backtest.kernel import trailing_mean, trailing_volatility

BARS_REQUIRED = ("date", "ticker", "open", "close", "volume")
TARGETS_REQUIRED = ("date", "ticker", "target_weight")
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


def require_columns(frame: pl.DataFrame, name: str, columns: Sequence[str]) -> None:
    """Raise ``ValueError`` naming the ``columns`` that ``frame`` (called ``name``) lacks."""
    missing = [c for c in columns if c not in frame.columns]
    if missing:
        raise ValueError(f"{name} lacks column(s) {', '.join(missing)}")


def check_tickers(tickers: Sequence[str]) -> list[str]:
    """``tickers`` as a list; refuses an empty or repeated list."""
    tickers = list(tickers)
    if not tickers:
        raise ValueError("tickers must not be empty")
    if len(set(tickers)) != len(tickers):
        raise ValueError("tickers must be distinct")
    return tickers


def first_row(frame: pl.DataFrame) -> dict[str, Any]:
    """The first row of ``frame`` by date and ticker: the one an error message names."""
    return frame.sort("date", "ticker").row(0, named=True)


def present(tickers: Sequence[str], values: Sequence[float | None]) -> dict[str, float]:
    """Ticker → value for the non-null (and non-NaN) values."""
    return {
        t: float(v)
        for t, v in zip(tickers, values, strict=True)
        if v is not None and not math.isnan(v)
    }


def _reject_duplicates(frame: pl.DataFrame, name: str) -> None:
    duplicated = frame.filter(pl.struct("date", "ticker").is_duplicated())
    if not duplicated.is_empty():
        row = first_row(duplicated)
        raise ValueError(
            f"{name} have more than one row for ticker {row['ticker']} on {row['date']}"
        )


def clean_bars(bars: pl.DataFrame, tickers: Sequence[str], *, require_close: bool) -> pl.DataFrame:
    """The bars of ``tickers``: date, ticker, open, close, volume, prices and volume as
    Float64 with NaN read as missing (null). Refuses a non-Date date column, duplicate
    (date, ticker) rows and non-positive prices, and a missing close when ``require_close``
    (the paper book decides live orders at the close, so it needs one on every row)."""
    require_columns(bars, "bars", BARS_REQUIRED)
    if bars.schema["date"] != pl.Date:
        raise ValueError(f"bars column date must be of type Date, got {bars.schema['date']}")
    bars = bars.select(
        "date",
        pl.col("ticker").cast(pl.Utf8),
        *(pl.col(c).cast(pl.Float64).fill_nan(None) for c in ("open", "close", "volume")),
    ).filter(pl.col("ticker").is_in(list(tickers)))
    _reject_duplicates(bars, "bars")
    bad = (pl.col("open") <= 0) | (pl.col("close") <= 0)
    if require_close:
        bad = bad | pl.col("close").is_null()
    broken = bars.filter(bad)
    if not broken.is_empty():
        row = first_row(broken)
        problem = "a missing or non-positive" if require_close else "a non-positive"
        raise ValueError(
            f"bars have {problem} price for ticker {row['ticker']} on {row['date']} "
            f"(open {row['open']}, close {row['close']})"
        )
    return bars


def with_exit_prints(bars: pl.DataFrame, exits: Mapping[str, date]) -> pl.DataFrame:
    """``bars`` plus, for each ticker leaving a point-in-time universe, one bar at its last
    close (open = close = the last close, no volume) on the second date of ``bars`` after
    its exit: the price a position still held is sold at.

    ``exits``: ticker → its last member session (``universe.yaml`` ``to``); its bars stop
    there. The order decided at the exit's close expires on the next session (there is no
    market for it any more, as when the print is missing); at that session's close the name
    has no alpha, so its target is 0, and the closing order fills on the session after, at
    the print, with the book's usual costs. Without the print that order would expire too
    and the position stay at its last mark for ever. Only a ticker whose last bar on or
    before its exit is in ``bars`` gets a print (a book continued from a later start holds
    nothing there any more), and a date where the ticker has a row keeps that row. Missing
    columns of a print are null; the order of ``bars`` is kept, prints appended.
    """
    if not exits or bars.is_empty():
        return bars
    dates = bars["date"].unique().sort()
    prints = []
    for ticker, exit_day in exits.items():
        mine = pl.col("ticker") == ticker
        last = bars.filter(mine & (pl.col("date") <= exit_day) & pl.col("close").is_not_null())
        after = dates.filter(dates > exit_day)
        if last.is_empty() or after.len() < 2:
            continue
        day = after[1]
        if not bars.filter(mine & (pl.col("date") == day)).is_empty():
            continue
        close = last.sort("date")["close"][-1]
        columns: dict[str, list] = {"date": [day], "ticker": [ticker]}
        columns.update({c: [close] for c in ("open", "close") if c in bars.columns})
        prints.append(pl.DataFrame(columns).cast({c: bars.schema[c] for c in columns}))
    if not prints:
        return bars
    return pl.concat([bars, *prints], how="diagonal_relaxed").select(bars.columns)


def sessions_from(bars: pl.DataFrame, start: date) -> tuple[pl.Series, pl.Series]:
    """(every date of ``bars``, the sessions: its dates on or after ``start``), sorted.
    Refuses bars without a session from ``start``."""
    all_dates = bars["date"].unique().sort()
    sessions = all_dates.filter(all_dates >= start)
    if sessions.is_empty():
        raise ValueError(f"bars have no session on or after start {start}")
    return all_dates, sessions


def clean_targets(
    targets: pl.DataFrame,
    tickers: Sequence[str],
    sessions: pl.Series,
    *,
    reason_codes: bool = False,
) -> pl.DataFrame:
    """The target rows from the first to the last of ``sessions`` (rows outside that span are
    ignored): date, ticker, target_weight as Float64 (NaN read as null = no order), and with
    ``reason_codes`` that column as Utf8 (null when ``targets`` has none). Refuses rows that
    name a ticker not in ``tickers``, fall between sessions, repeat a (date, ticker), carry an
    infinite weight, or (``reason_codes``) codes that are not a JSON list."""
    require_columns(targets, "targets", TARGETS_REQUIRED)
    if targets.schema["date"] != pl.Date:
        raise ValueError(f"targets column date must be of type Date, got {targets.schema['date']}")
    columns = [
        "date",
        pl.col("ticker").cast(pl.Utf8),
        pl.col("target_weight").cast(pl.Float64).fill_nan(None),
    ]
    if reason_codes:
        codes = pl.col("reason_codes") if "reason_codes" in targets.columns else pl.lit(None)
        columns.append(codes.cast(pl.Utf8).alias("reason_codes"))
    targets = targets.select(columns).filter(pl.col("date").is_between(sessions[0], sessions[-1]))
    checks = [
        (~pl.col("ticker").is_in(list(tickers)), " names a ticker not in tickers"),
        (~pl.col("date").is_in(sessions.implode()), ", which is not a session of bars"),
        (pl.struct("date", "ticker").is_duplicated(), " is there more than once"),
        (pl.col("target_weight").is_infinite(), " has an infinite target_weight"),
    ]
    if reason_codes:
        listed = pl.col("reason_codes").str.strip_chars()
        checks.append(
            (
                ~(listed.str.starts_with("[") & listed.str.ends_with("]")),
                " has reason_codes that are not a JSON list",
            )
        )
    for condition, problem in checks:
        bad = targets.filter(condition)
        if not bad.is_empty():
            row = first_row(bad)
            raise ValueError(
                f"targets have a bad row: ticker {row['ticker']} on {row['date']}{problem}"
            )
    return targets


def check_state(
    *,
    as_of: date | None,
    cash: float,
    per_ticker: Mapping[str, Mapping[str, float]],
    tickers: Sequence[str],
    start: date,
    all_dates: pl.Series,
    book: str,
    may_be_nan: Sequence[str] = (),
) -> None:
    """A book's state (as of ``as_of``, with ``cash`` and the ``per_ticker`` values by name)
    must come before ``start`` with no session of ``all_dates`` in between, have finite cash
    and finite values (NaN allowed, meaning none, for the names in ``may_be_nan``), and hold,
    price or order only ``tickers``. ``book`` names the book in the messages."""
    if as_of is not None:
        if as_of >= start:
            raise ValueError(f"state is as of {as_of}, not before start {start}")
        skipped = all_dates.filter((all_dates > as_of) & (all_dates < start))
        if not skipped.is_empty():
            raise ValueError(
                f"bars have session {skipped[0]} between the state's date {as_of} and "
                f"start {start}: the {book} would skip it"
            )
    if not math.isfinite(cash):
        raise ValueError(f"state cash must be finite, got {cash}")
    known = set(tickers)
    for name, values in per_ticker.items():
        for ticker, value in values.items():
            if math.isinf(value) or (math.isnan(value) and name not in may_be_nan):
                raise ValueError(f"state {name} of ticker {ticker} must be finite, got {value}")
            if ticker not in known and value != 0 and not math.isnan(value):
                raise ValueError(f"state {name} has ticker {ticker}, which is not in tickers")


def grid(
    frame: pl.DataFrame, column: str, row_of: pl.DataFrame, tickers: Sequence[str]
) -> np.ndarray:
    """``frame[column]`` as a C-contiguous float64 (n_dates, n_tickers) grid: rows by
    ``row_of`` (date → _row), columns in ``tickers`` order, NaN where there is no value."""
    column_of = pl.DataFrame({"ticker": list(tickers), "_column": np.arange(len(tickers))})
    located = frame.join(row_of, on="date").join(column_of, on="ticker")
    values = located[column].cast(pl.Float64).fill_null(np.nan).to_numpy()
    out = np.full((row_of.height, len(tickers)), np.nan)
    out[located["_row"].to_numpy(), located["_column"].to_numpy()] = values
    return out


def row_index(dates: pl.Series) -> pl.DataFrame:
    """date → _row, the row of each of ``dates`` in a grid."""
    return pl.DataFrame({"date": dates, "_row": np.arange(dates.len())})


def market_grids(
    bars: pl.DataFrame,
    tickers: Sequence[str],
    all_dates: pl.Series,
    *,
    vol_window: int,
    adv_window: int,
) -> dict[str, np.ndarray]:
    """Open, close, and the daily volatility (``vol_window`` sessions of log returns) and ADV
    (``adv_window`` sessions of volume) known the session before, as (n_dates, n_tickers)
    grids over every date of ``all_dates`` (look-back included) — the inputs of the order
    step's square-root impact, as known at the decision."""
    row_of = row_index(all_dates)
    close = grid(bars, "close", row_of, tickers)
    return {
        "open": grid(bars, "open", row_of, tickers),
        "close": close,
        "daily_vol": trailing_volatility(close, vol_window),
        "adv_shares": trailing_mean(grid(bars, "volume", row_of, tickers), adv_window),
    }


def trades_frame(records: np.ndarray, sessions: pl.Series, tickers: Sequence[str]) -> pl.DataFrame:
    """The kernel's ``TRADE_DTYPE`` records with dates and tickers, in execution order;
    columns :data:`TRADE_COLUMNS`."""
    quantity = records["quantity"]
    return pl.DataFrame(
        [
            sessions.gather(records["date_index"]).alias("date"),
            pl.Series("ticker", list(tickers), dtype=pl.Utf8).gather(records["ticker_index"]),
            pl.Series("quantity", quantity, dtype=pl.Float64),
            pl.Series("side", np.where(quantity > 0, "buy", "sell"), dtype=pl.Utf8),
            *(
                pl.Series(name, records[name], dtype=pl.Float64)
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
