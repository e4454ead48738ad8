"""The paper book: orders decided at each close, filled on the next session, marked at its close.

Seed 003 §9.2's mock broker for the strategies' target weights. One session ``D``:

1. **Fill** the orders decided at the previous session's close (``state.pending`` for the
   first session) at ``D``'s price: the open (``fill: next_open``; the close when there is no
   open) or the close (``next_close``). The quantity was fixed when the order was decided.
   Fill price = reference × (1 ± slippage) against the trader; commission on the traded value
   at the fill price; sells first (in ticker order), then buys, scaled down together (to whole
   lots) when their cash need exceeds the cash after the sells, unless borrowing is allowed.
   An order whose ticker has no price on ``D`` expires unfilled (a day order). The square-root
   impact of the backtest is not charged: the paper book prices what a broker would report.
2. **Mark** at ``D``'s close (the last close when ``D`` has none): cash, shares, equity =
   cash + Σ shares × mark, exposures.
3. **Decide** the orders for the next session (:func:`quant_assets.execution.orders.
   decide_orders`) from the target weights of ``D`` and the equity at ``D``'s close; with the
   kill switch on for ``D`` every order closes a position.

As of: an order row dated ``D`` uses bars up to ``D`` only; its fill is a book row dated at the
next session. The book rows carry the whole state (cash, shares, marks) unrounded and the
order rows the pending quantities, so :meth:`PaperBookState.from_rows` of one date's rows
continues a run exactly where it stopped.

Accounting is exact by construction: cash changes only by ``cash_flow`` = −(fill_notional +
commission + slippage_cost) per fill, summed with :func:`math.fsum` (correctly rounded), and
equity = cash + fsum(position values).
"""

from __future__ import annotations

import math
from collections.abc import Collection, Sequence
from dataclasses import dataclass, field
from datetime import date

import numpy as np
import polars as pl

from quant_assets import schemas
from quant_assets.execution.orders import (
    BUY,
    SELL,
    decide_orders,
    round_down,
    share_step,
    with_order_codes,
)
from quant_assets.settings import BacktestSettings

BPS = 1e-4
# Each retry shaves the buy scale by a growing margin when a rounding ulp still overshoots the
# cash; the last one buys nothing (as the backtest kernel does).
_MAX_SCALE_ATTEMPTS = 8
_SCALE_SHAVE = 1e-12
_BARS_REQUIRED = ("date", "ticker", "open", "close")
_TARGETS_REQUIRED = ("date", "ticker", "target_weight")
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
        _require(book_rows, "paper book rows", _BOOK_STATE_REQUIRED)
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
            _require(order_rows, "order rows", _ORDER_STATE_REQUIRED)
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
    ``final_state``: the book and pending orders after the last session."""

    orders: pl.DataFrame
    book: pl.DataFrame
    final_state: PaperBookState


@dataclass
class _Fills:
    """One session's fills, arrays of shape (n_tickers,); zeros / NaN where nothing filled."""

    quantity: np.ndarray
    reference_price: np.ndarray
    fill_price: np.ndarray
    commission: np.ndarray
    slippage_cost: np.ndarray
    cash: float


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

    ``bars``: date, ticker, open, close (open may be null); its distinct dates on or after
    ``start`` are the sessions (rows before ``start`` only prove no session was skipped since
    ``state.as_of``). ``targets``: date, ticker, target_weight decided at that close, and
    optionally ``reason_codes`` (a JSON list, copied onto the orders); a missing row or a null
    weight is no order; rows outside the sessions' span are ignored.
    ``kill_switch_sessions``: sessions whose orders are flat-only. ``tickers`` fixes the
    column order (and so the order of sells and of buys).

    Uses ``settings.fill``, ``commission_bps``, ``slippage_bps``, ``lot_size`` and
    ``allow_borrowing``. Raises ``ValueError`` naming the ticker and date of bad input.
    """
    tickers = list(tickers)
    if not tickers or len(set(tickers)) != len(tickers):
        raise ValueError("tickers must be non-empty and distinct")
    _require(bars, "bars", _BARS_REQUIRED)
    _require(targets, "targets", _TARGETS_REQUIRED)
    bars = _clean_bars(bars, tickers)
    all_dates = bars["date"].unique().sort()
    sessions = all_dates.filter(all_dates >= start)
    if sessions.is_empty():
        raise ValueError(f"bars have no session on or after start {start}")
    _check_state(state, tickers, start, all_dates)
    targets = _clean_targets(targets, tickers, sessions)

    n_dates, n = sessions.len(), len(tickers)
    row_of = pl.DataFrame({"date": sessions, "_row": np.arange(n_dates)})
    open_price = _grid(bars, "open", row_of, tickers)
    close_price = _grid(bars, "close", row_of, tickers)
    target_weight = _grid(targets, "target_weight", row_of, tickers)
    killed = set(kill_switch_sessions)
    step = share_step(settings.lot_size)

    shares = np.array([float(state.shares.get(t, 0.0)) for t in tickers])
    mark = np.array([float(state.mark_price.get(t, np.nan)) for t in tickers])
    pending = np.array([float(state.pending.get(t, 0.0)) for t in tickers])
    cash = float(state.cash)

    book_parts: list[dict[str, np.ndarray]] = []
    order_parts: list[dict[str, np.ndarray]] = []
    order_dates: list[date] = []
    for t, session in enumerate(sessions.to_list()):
        reference = (
            np.where(np.isfinite(open_price[t]), open_price[t], close_price[t])
            if settings.fill == "next_open"
            else close_price[t]
        )
        fills = _fill(pending, reference, cash, settings, step)
        cash = fills.cash
        shares = shares + fills.quantity
        mark = np.where(
            np.isfinite(close_price[t]),
            close_price[t],
            np.where(np.isfinite(mark), mark, np.where(fills.quantity != 0, reference, np.nan)),
        )
        position_value = np.where(shares != 0.0, shares * mark, 0.0)
        equity = cash + math.fsum(position_value)
        book_parts.append(
            {
                "order_quantity": pending,
                "filled_quantity": fills.quantity,
                "fill_reference_price": fills.reference_price,
                "fill_price": fills.fill_price,
                "commission": fills.commission,
                "slippage_cost": fills.slippage_cost,
                "shares": shares,
                "mark_price": mark,
                "position_value": position_value,
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
    return PaperResult(
        orders=_orders_frame(order_parts, order_dates, tickers, targets, strategy),
        book=_book_frame(book_parts, sessions, tickers),
        final_state=final_state,
    )


def _fill(
    pending: np.ndarray,
    reference: np.ndarray,
    cash: float,
    settings: BacktestSettings,
    step: float,
) -> _Fills:
    """Fill ``pending`` (signed shares) at ``reference`` (NaN: expires): sells, then buys
    scaled to the cash after the sells unless borrowing is allowed."""
    slippage, commission_rate = settings.slippage_bps * BPS, settings.commission_bps * BPS
    priced = np.isfinite(reference)
    sells = priced & (pending < 0)
    buys = priced & (pending > 0)

    def costs(quantity: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
        """fill price, notional, commission and slippage of ``quantity`` (0 where none)."""
        traded = quantity != 0
        with np.errstate(invalid="ignore"):
            fill = np.where(traded, reference * (1.0 + np.sign(quantity) * slippage), np.nan)
            notional = np.where(traded, quantity * reference, 0.0)
            commission = np.where(traded, np.abs(quantity) * fill * commission_rate, 0.0)
            slippage_cost = np.where(traded, np.abs(quantity) * reference * slippage, 0.0)
        return fill, notional, commission, slippage_cost

    def cash_needed(quantity: np.ndarray) -> float:
        _, notional, commission, slippage_cost = costs(quantity)
        return math.fsum(notional) + math.fsum(commission) + math.fsum(slippage_cost)

    sell_quantity = np.where(sells, pending, 0.0)
    cash_after_sells = cash - cash_needed(sell_quantity)
    buy_quantity = np.where(buys, pending, 0.0)
    if buys.any() and not settings.allow_borrowing:
        available = max(cash_after_sells, 0.0)
        need = cash_needed(buy_quantity)
        if need > available:
            scale = available / need
            for attempt in range(_MAX_SCALE_ATTEMPTS):
                scaled = round_down(buy_quantity * scale, step)
                if cash_needed(scaled) <= available or scale == 0.0:
                    break
                scale = (
                    0.0
                    if attempt == _MAX_SCALE_ATTEMPTS - 2
                    else scale * (1.0 - _SCALE_SHAVE * 10.0**attempt)
                )
            buy_quantity = scaled
    quantity = sell_quantity + buy_quantity
    fill, _, commission, slippage_cost = costs(quantity)
    return _Fills(
        quantity=quantity,
        reference_price=np.where(quantity != 0, reference, np.nan),
        fill_price=fill,
        commission=commission,
        slippage_cost=slippage_cost,
        cash=cash_after_sells - cash_needed(buy_quantity),
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


def _grid(frame: pl.DataFrame, column: str, row_of: pl.DataFrame, tickers: list[str]) -> np.ndarray:
    """``frame[column]`` as a float64 (n_dates, n_tickers) grid, NaN where there is no value."""
    column_of = pl.DataFrame({"ticker": tickers, "_column": np.arange(len(tickers))})
    located = frame.join(row_of, on="date").join(column_of, on="ticker")
    grid = np.full((row_of.height, len(tickers)), np.nan)
    values = located[column].cast(pl.Float64).fill_null(np.nan).to_numpy()
    grid[located["_row"].to_numpy(), located["_column"].to_numpy()] = values
    return grid


def _require(frame: pl.DataFrame, name: str, columns: Sequence[str]) -> None:
    missing = [c for c in columns if c not in frame.columns]
    if missing:
        raise ValueError(f"{name} lack column(s) {', '.join(missing)}")


def _first_row(frame: pl.DataFrame) -> dict:
    return frame.sort("date", "ticker").row(0, named=True)


def _clean_bars(bars: pl.DataFrame, tickers: list[str]) -> pl.DataFrame:
    """The bars of ``tickers``, prices as Float64 (NaN read as missing); refuses duplicates,
    non-positive prices and a missing close."""
    if bars.schema["date"] != pl.Date:
        raise ValueError(f"bars column date must be of type Date, got {bars.schema['date']}")
    bars = bars.select(
        "date",
        pl.col("ticker").cast(pl.Utf8),
        *(pl.col(c).cast(pl.Float64).fill_nan(None) for c in ("open", "close")),
    ).filter(pl.col("ticker").is_in(tickers))
    duplicated = bars.filter(pl.struct("date", "ticker").is_duplicated())
    if not duplicated.is_empty():
        row = _first_row(duplicated)
        raise ValueError(f"bars have more than one row for ticker {row['ticker']} on {row['date']}")
    bad = bars.filter((pl.col("open") <= 0) | (pl.col("close") <= 0) | pl.col("close").is_null())
    if not bad.is_empty():
        row = _first_row(bad)
        raise ValueError(
            f"bars have a missing or non-positive price for ticker {row['ticker']} on "
            f"{row['date']} (open {row['open']}, close {row['close']})"
        )
    return bars


def _clean_targets(targets: pl.DataFrame, tickers: list[str], sessions: pl.Series) -> pl.DataFrame:
    """The targets on the sessions, weights as Float64 (null = no order) with reason codes
    (null when not given); refuses unknown tickers, stray dates, duplicates, infinities."""
    if targets.schema["date"] != pl.Date:
        raise ValueError(f"targets column date must be of type Date, got {targets.schema['date']}")
    codes = pl.col("reason_codes") if "reason_codes" in targets.columns else pl.lit(None)
    targets = targets.select(
        "date",
        pl.col("ticker").cast(pl.Utf8),
        pl.col("target_weight").cast(pl.Float64).fill_nan(None),
        codes.cast(pl.Utf8).alias("reason_codes"),
    ).filter(pl.col("date").is_between(sessions[0], sessions[-1]))
    listed = pl.col("reason_codes").str.strip_chars()
    checks = (
        (~pl.col("ticker").is_in(tickers), "names a ticker not in tickers"),
        (~pl.col("date").is_in(sessions.implode()), "is not on a session of bars"),
        (pl.struct("date", "ticker").is_duplicated(), "is duplicated"),
        (pl.col("target_weight").is_infinite(), "has an infinite target_weight"),
        (
            ~(listed.str.starts_with("[") & listed.str.ends_with("]")),
            "has reason_codes that are not a JSON list",
        ),
    )
    for condition, problem in checks:
        bad = targets.filter(condition)
        if not bad.is_empty():
            row = _first_row(bad)
            raise ValueError(f"the target row of ticker {row['ticker']} on {row['date']} {problem}")
    return targets


def _check_state(
    state: PaperBookState, tickers: list[str], start: date, all_dates: pl.Series
) -> None:
    """The state must come before ``start`` with no session in between, and hold, price or
    order only tickers of the run."""
    if state.as_of is not None:
        if state.as_of >= start:
            raise ValueError(f"state is as of {state.as_of}, not before start {start}")
        skipped = all_dates.filter((all_dates > state.as_of) & (all_dates < start))
        if not skipped.is_empty():
            raise ValueError(
                f"bars have session {skipped[0]} between the state's date {state.as_of} and "
                f"start {start}: the paper book would skip it"
            )
    if not math.isfinite(state.cash):
        raise ValueError(f"state cash must be finite, got {state.cash}")
    known = set(tickers)
    for name, values in (("shares", state.shares), ("pending", state.pending)):
        for ticker, value in values.items():
            if ticker not in known and value != 0:
                raise ValueError(f"state {name} has ticker {ticker}, which is not in tickers")
            if not math.isfinite(value):
                raise ValueError(f"state {name} of ticker {ticker} must be finite, got {value}")
