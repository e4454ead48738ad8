"""The accounting core: ONE order step that the backtest, the paper book and any future book
reuse, and the target-weight book simulated over (n_dates, n_tickers) NumPy arrays.

Modeled on vectorbt's ``portfolio/nb.py``: every function is ``@njit(cache=True)``, takes only
NumPy arrays and scalars, and raises ``ValueError`` naming the wrong argument. Rows are
sessions (dates), columns are tickers; prices are in currency per share, quantities in shares,
costs and cash in currency, costs given in basis points (1 bp = 1e-4).

The steps of one session, each a kernel of its own (as vectorbt's ``execute_order_nb`` is
reused by every ``simulate_*``):

* :func:`decide_orders_nb` — at the CLOSE of a session: target shares = target weight ×
  equity at that close / that close, rounded toward zero to the lot; the order is the
  difference to the shares held. A kill switch (``flat_only``) orders every position closed.
* :func:`fill_reference_nb` — the next session's reference price: its open (``fill_at`` =
  :data:`FILL_NEXT_OPEN`, the close when there is no open) or its close
  (:data:`FILL_NEXT_CLOSE`).
* :func:`execute_orders_nb` — fills the decided quantities at the reference price moved by
  slippage and square-root impact, pays commission, sells first, then buys scaled together
  so cash never goes below zero unless borrowing is allowed; updates shares and cash.
* :func:`mark_to_close_nb` — values the book at the close: marks, equity, per-ticker pnl.

:func:`simulate_book` chains them over a whole array of sessions (the backtest);
``quant_assets.execution.paper`` calls the same steps one session at a time (the paper book,
which adds order records, a kill switch and pending-order state). Both therefore produce the
same fills, costs and equity from the same inputs, bit for bit.

Why orders are sized at the close, not at the fill price: a desk decides its orders after
the close of ``t`` from what it knows then — that close and the book's equity at it — and
sends share quantities to the next session. Sizing at the next open (as a target-percent
order in vectorbt with the fill price as valuation price would) uses a price nobody knows
when the order is placed; the quantity a real book trades can only be the one decided at the
close, so that is the quantity both the backtest and the paper book fill.
"""

from __future__ import annotations

import math

import numpy as np
from numba import njit

# Fill-price enum (``fill_at``): which price of the execution session an order trades at.
FILL_NEXT_OPEN = 0  # the open of the session after the decision (the close when it has none)
FILL_NEXT_CLOSE = 1  # the close of the session after the decision

# One record per executed trade, in (date, execution order): sells before buys within a date.
TRADE_DTYPE = np.dtype(
    [
        ("date_index", np.int64),  # row of the session the trade executed on
        ("ticker_index", np.int64),  # column of the ticker
        ("quantity", np.float64),  # shares, positive bought, negative sold
        ("reference_price", np.float64),  # the open (or close) before costs, per share
        ("fill_price", np.float64),  # reference price moved by slippage and impact, per share
        ("commission", np.float64),  # currency, |quantity| × fill_price × commission_bps / 1e4
        ("slippage_cost", np.float64),  # currency, |quantity| × reference_price × slippage
        ("impact_cost", np.float64),  # currency, |quantity| × reference_price × impact fraction
    ]
)

BPS = 1e-4  # one basis point as a fraction
# Lot 0 in the settings means fractional shares; they still trade in steps (a broker's 4
# decimals, seed 003 §9.1), so a weight that has not moved yields no dust order from
# floating-point noise. The books pass ``share_step(lot_size)`` to the kernels as their lot.
FRACTIONAL_STEP = 1e-4
# Rounding to the lot tolerates this many lots of floating-point error: 2.9999999999 lots (a
# product that should be 3) rounds to 3, not 2.
LOT_TOLERANCE = 1e-9
# What :func:`simulate_book` returns, in order (the frame-facing wrapper and tests name them).
SIMULATE_BOOK_OUTPUTS = (
    "shares",
    "trade_quantity",
    "fill_price",
    "commission",
    "slippage_cost",
    "impact_cost",
    "pnl",
    "mark_price",
    "cash",
    "equity",
    "trades",
)
# Rounding in a sequential cash sum can overshoot a scaled buy budget by a few ulps; each retry
# shaves the scale factor by a growing margin, and the last retry buys nothing.
_MAX_SCALE_ATTEMPTS = 8
_SCALE_SHAVE = 1e-12


def share_step(lot_size: float) -> float:
    """The quantum order quantities are rounded to: ``lot_size``, or :data:`FRACTIONAL_STEP`
    for lot 0 (fractional shares). Raises ``ValueError`` for a negative or non-finite lot."""
    if not math.isfinite(lot_size) or lot_size < 0:
        raise ValueError(f"lot_size must be finite and >= 0, got {lot_size}")
    return float(lot_size) if lot_size > 0 else FRACTIONAL_STEP


@njit(cache=True)
def portfolio_value(cash: float, shares: np.ndarray, mark_price: np.ndarray) -> float:
    """Cash plus Σ shares × mark price, summed in column order; a flat position counts 0 even
    when it was never priced (NaN mark). ``shares`` and ``mark_price``: (n_tickers,).

    The book sums in exactly this order everywhere, so the value of a stored state is
    bit-identical to the equity the kernel reported for it.
    """
    if shares.shape[0] != mark_price.shape[0]:
        raise ValueError("mark_price must have the same length as shares")
    value = cash
    for i in range(shares.shape[0]):
        if shares[i] != 0.0:
            value += shares[i] * mark_price[i]
    return value


@njit(cache=True)
def trailing_volatility(close_price: np.ndarray, window: int) -> np.ndarray:
    """Sample standard deviation (ddof 1) of daily log returns over the ``window`` sessions
    ending the session BEFORE each row: row ``t`` uses the returns of rows ``t - window`` …
    ``t - 1``, so it never sees row ``t``'s own close.

    ``close_price``: (n_dates, n_tickers), currency per share, NaN when missing. Returns
    (n_dates, n_tickers) as a fraction per day; NaN unless all ``window`` returns (so
    ``window + 1`` consecutive closes) exist. Each window is computed from scratch (two-pass
    mean, then squared deviations) rather than by a running sum, so a value does not depend on
    where the series starts: a book continued from a later start sees identical numbers.
    """
    if window < 2:
        raise ValueError("window must be at least 2 (a sample std needs two returns)")
    n_dates, n_tickers = close_price.shape
    out = np.full((n_dates, n_tickers), np.nan)
    log_return = np.full(n_dates, np.nan)
    for i in range(n_tickers):
        for t in range(1, n_dates):
            previous, current = close_price[t - 1, i], close_price[t, i]
            if previous > 0.0 and current > 0.0 and np.isfinite(previous) and np.isfinite(current):
                log_return[t] = math.log(current / previous)
            else:
                log_return[t] = np.nan
        for t in range(window + 1, n_dates):
            total = 0.0
            complete = True
            for s in range(t - window, t):
                if np.isnan(log_return[s]):
                    complete = False
                    break
                total += log_return[s]
            if not complete:
                continue
            mean = total / window
            squares = 0.0
            for s in range(t - window, t):
                squares += (log_return[s] - mean) ** 2
            out[t, i] = math.sqrt(squares / (window - 1))
    return out


@njit(cache=True)
def trailing_mean(values: np.ndarray, window: int) -> np.ndarray:
    """Mean of ``values`` over the ``window`` rows BEFORE each row (rows ``t - window`` …
    ``t - 1``), so row ``t`` never sees its own value.

    ``values``: (n_dates, n_tickers), e.g. shares traded per session, NaN when missing.
    Returns (n_dates, n_tickers) in the unit of ``values``; NaN unless all ``window`` values
    exist. Summed from scratch per window, like :func:`trailing_volatility`.
    """
    if window < 1:
        raise ValueError("window must be at least 1")
    n_dates, n_tickers = values.shape
    out = np.full((n_dates, n_tickers), np.nan)
    for i in range(n_tickers):
        for t in range(window, n_dates):
            total = 0.0
            complete = True
            for s in range(t - window, t):
                if not np.isfinite(values[s, i]):
                    complete = False
                    break
                total += values[s, i]
            if complete:
                out[t, i] = total / window
    return out


@njit(cache=True)
def _impact_fraction(
    impact_coefficient: float, daily_vol: float, adv_shares: float, quantity: float
) -> float:
    """Square-root impact as a fraction of the reference price: k × σ_daily × √(|q| / ADV).
    Zero when volatility or ADV is unknown (NaN) or ADV is not positive: no basis to price it."""
    if impact_coefficient == 0.0 or not np.isfinite(daily_vol) or not np.isfinite(adv_shares):
        return 0.0
    if adv_shares <= 0.0:
        return 0.0
    return impact_coefficient * daily_vol * math.sqrt(abs(quantity) / adv_shares)


@njit(cache=True)
def round_toward_zero_nb(quantity: float, lot_size: float) -> float:
    """``quantity`` rounded toward zero to a multiple of ``lot_size`` (unchanged for lot 0),
    tolerating :data:`LOT_TOLERANCE` lots of floating-point error; never -0.0."""
    if lot_size <= 0.0:
        return quantity + 0.0
    # Whole shares skip the division and the product: x / 1 and x × 1 are x exactly, and a
    # division is the slowest step of the decision.
    lots = quantity if lot_size == 1.0 else quantity / lot_size
    if lots > 0.0:
        lots += LOT_TOLERANCE
    elif lots < 0.0:
        lots -= LOT_TOLERANCE
    if lot_size == 1.0:
        return np.trunc(lots) + 0.0
    return np.trunc(lots) * lot_size + 0.0


@njit(cache=True)
def decide_orders_nb(
    target_weight: np.ndarray,
    shares: np.ndarray,
    reference_price: np.ndarray,
    equity: float,
    lot_size: float,
    flat_only: bool,
    order_quantity: np.ndarray,
) -> None:
    """The orders decided at a close, written into ``order_quantity`` (signed shares to trade
    next session: + buy, − sell, 0 no order).

    All arrays (n_tickers,): ``target_weight`` fraction of equity (NaN: no order, keep the
    shares; ±inf raises); ``shares`` held at the close; ``reference_price`` the close (else
    the last close; NaN when never priced), currency per share; ``equity`` the book's equity
    at that close (currency); ``lot_size`` the share quantum (0: unrounded).

    Target shares = weight × equity / price rounded toward zero to the lot; the order is
    target − held, rounded toward zero as well, except that a target of 0 closes the whole
    position. No order where the weight or the price is missing, or when the equity is not
    positive (or NaN). ``flat_only`` (a kill switch) orders every held position closed,
    whatever the weight, price or equity, and opens nothing.
    """
    n = shares.shape[0]
    if target_weight.shape[0] != n:
        raise ValueError("target_weight must have the length of shares (n_tickers)")
    if reference_price.shape[0] != n:
        raise ValueError("reference_price must have the length of shares (n_tickers)")
    if order_quantity.shape[0] != n:
        raise ValueError("order_quantity must have the length of shares (n_tickers)")
    can_size = equity > 0.0  # False also when NaN: an unpriced position
    for i in range(n):
        target = target_weight[i]
        if np.isinf(target):
            raise ValueError("target_weight must be finite or NaN")
        held = shares[i]
        if flat_only:
            order_quantity[i] = -held + 0.0 if held != 0.0 else 0.0
            continue
        price = reference_price[i]
        if not (can_size and np.isfinite(target) and np.isfinite(price)):
            order_quantity[i] = 0.0
            continue
        if price <= 0.0:
            raise ValueError("reference_price must be positive where finite")
        target_shares = round_toward_zero_nb(target * equity / price, lot_size)
        if target_shares == 0.0:
            order_quantity[i] = -held + 0.0
        else:
            order_quantity[i] = round_toward_zero_nb(target_shares - held, lot_size)


@njit(cache=True)
def fill_reference_nb(
    open_price: np.ndarray, close_price: np.ndarray, fill_at: int, reference_price: np.ndarray
) -> None:
    """The session's reference (pre-cost) fill price per ticker, written into
    ``reference_price``: the open when ``fill_at`` is :data:`FILL_NEXT_OPEN` and the open is
    finite, else the close; NaN when neither is finite (the ticker does not trade).
    All arrays (n_tickers,), currency per share; a finite price used must be positive."""
    if fill_at != FILL_NEXT_OPEN and fill_at != FILL_NEXT_CLOSE:
        raise ValueError("fill_at must be FILL_NEXT_OPEN (0) or FILL_NEXT_CLOSE (1)")
    n = reference_price.shape[0]
    if open_price.shape[0] != n or close_price.shape[0] != n:
        raise ValueError("open_price and close_price must have the length of reference_price")
    for i in range(n):
        reference = np.nan
        if fill_at == FILL_NEXT_OPEN and np.isfinite(open_price[i]):
            reference = open_price[i]
            if reference <= 0.0:
                raise ValueError("open_price must be positive where finite")
        elif np.isfinite(close_price[i]):
            reference = close_price[i]
            if reference <= 0.0:
                raise ValueError("close_price must be positive where finite")
        reference_price[i] = reference


@njit(cache=True)
def _price_buys(
    scale: float,
    n_buys: int,
    buy_ticker: np.ndarray,
    order_quantity: np.ndarray,
    reference_price: np.ndarray,
    daily_vol: np.ndarray,
    adv_shares: np.ndarray,
    cash: float,
    slippage: float,
    commission_rate: float,
    impact_coefficient: float,
    lot_size: float,
    trade_quantity: np.ndarray,
    fill_price: np.ndarray,
    commission: np.ndarray,
    slippage_cost: np.ndarray,
    impact_cost: np.ndarray,
) -> float:
    """Price the session's ``n_buys`` buys (tickers ``buy_ticker``, unscaled quantities in
    ``order_quantity``) scaled by ``scale`` into the output rows, and return the cash left
    after paying for them in that order: the order the book pays them in, so the returned
    cash is exactly the cash the book ends the session with."""
    for b in range(n_buys):
        i = buy_ticker[b]
        quantity = order_quantity[i]
        if scale != 1.0:
            # Scaled buys round DOWN to the lot so the scaled budget still fits.
            quantity = quantity * scale
            if lot_size > 0.0:
                quantity = math.floor(quantity / lot_size) * lot_size
        if quantity <= 0.0:
            trade_quantity[i] = 0.0
            continue
        reference = reference_price[i]
        impact = _impact_fraction(impact_coefficient, daily_vol[i], adv_shares[i], quantity)
        fill = reference * (1.0 + slippage + impact)
        fee = quantity * fill * commission_rate
        trade_quantity[i] = quantity
        fill_price[i] = fill
        commission[i] = fee
        slippage_cost[i] = quantity * reference * slippage
        impact_cost[i] = quantity * reference * impact
        cash -= quantity * fill + fee
    return cash


@njit(cache=True)
def _record_trade(
    record: np.void,
    date_index: int,
    ticker_index: int,
    quantity: float,
    reference_price: float,
    fill_price: float,
    commission: float,
    slippage_cost: float,
    impact_cost: float,
) -> None:
    """Fill one ``TRADE_DTYPE`` record in place."""
    record["date_index"] = date_index
    record["ticker_index"] = ticker_index
    record["quantity"] = quantity
    record["reference_price"] = reference_price
    record["fill_price"] = fill_price
    record["commission"] = commission
    record["slippage_cost"] = slippage_cost
    record["impact_cost"] = impact_cost


@njit(cache=True)
def execute_orders_nb(
    order_quantity: np.ndarray,
    reference_price: np.ndarray,
    daily_vol: np.ndarray,
    adv_shares: np.ndarray,
    shares: np.ndarray,
    cash: float,
    commission_bps: float,
    slippage_bps: float,
    impact_coefficient: float,
    lot_size: float,
    allow_borrowing: bool,
    shares_after: np.ndarray,
    trade_quantity: np.ndarray,
    fill_price: np.ndarray,
    commission: np.ndarray,
    slippage_cost: np.ndarray,
    impact_cost: np.ndarray,
    trades: np.ndarray,
    n_trades: int,
    date_index: int,
) -> tuple[float, int]:
    """THE order step: fill one session's orders and return ``(cash, n_trades)`` after them.

    Inputs, arrays of shape (n_tickers,):
        order_quantity: signed shares decided at the previous close (+ buy, − sell, 0 none).
        reference_price: the fill session's open or close (:func:`fill_reference_nb`),
            currency per share; NaN = no price: the order expires unfilled (a day order).
        daily_vol, adv_shares: σ of daily log returns (fraction per day) and average daily
            volume (shares) as known at the decision; NaN = unknown (no impact charged).
        shares: held before the session.
    Scalars: ``cash`` before the session (currency); ``commission_bps`` on the traded value at
    the fill price; ``slippage_bps`` s on the reference price; ``impact_coefficient`` k of the
    square-root impact m = k × σ × √(|q| / ADV) (0 when σ or ADV is unknown or ADV ≤ 0; not
    capped); ``lot_size`` the share quantum scaled buys round down to (0: unrounded);
    ``allow_borrowing``.

    Semantics: fill = reference × (1 ± (s + m)) against the trader; commission = |q| × fill ×
    commission_bps / 1e4; slippage_cost = |q| × reference × s; impact_cost = |q| × reference
    × m; cash −= q × fill + commission. Sells execute first, in column order (they raise the
    cash the buys spend), then buys in column order. Without borrowing, when the buys would
    take cash below min(cash after sells, 0), every buy is scaled by one factor k = available
    / need, rounded down to the lot and repriced (impact per share shrinks with the
    quantity), with a few shaved retries against rounding, the last one buying nothing.
    Short sales credit cash (no margin model); covering a short is a buy.

    Outputs, written in place: ``shares_after`` = shares + fills (may be ``shares`` itself,
    updated in place), ``trade_quantity`` (0: no trade), ``fill_price`` (NaN: no trade),
    ``commission``, ``slippage_cost``, ``impact_cost`` (n_tickers,), and one
    ``TRADE_DTYPE`` record per trade at ``trades[n_trades:]`` (sells, then buys, each in
    column order) dated ``date_index``; ``trades`` needs room for n_tickers more records, or
    has length 0: no records are written (a book that only counts its trades, as a study's
    trial book; the returned count is the same).
    """
    n = shares.shape[0]
    if (
        order_quantity.shape[0] != n
        or reference_price.shape[0] != n
        or daily_vol.shape[0] != n
        or adv_shares.shape[0] != n
    ):
        raise ValueError(
            "order_quantity, reference_price, daily_vol and adv_shares must have the length of "
            "shares (n_tickers)"
        )
    if (
        shares_after.shape[0] != n
        or trade_quantity.shape[0] != n
        or fill_price.shape[0] != n
        or commission.shape[0] != n
        or slippage_cost.shape[0] != n
        or impact_cost.shape[0] != n
    ):
        raise ValueError(
            "shares_after, trade_quantity, fill_price, commission, slippage_cost and "
            "impact_cost must have the length of shares (n_tickers)"
        )
    record = trades.shape[0] > 0
    if n_trades < 0 or (record and trades.shape[0] - n_trades < n):
        raise ValueError("trades must have room for n_tickers records after n_trades")
    if not np.isfinite(cash):
        raise ValueError("cash must be finite")
    if not np.isfinite(commission_bps) or commission_bps < 0.0:
        raise ValueError("commission_bps must be finite and >= 0")
    if not np.isfinite(slippage_bps) or slippage_bps < 0.0:
        raise ValueError("slippage_bps must be finite and >= 0")
    if not np.isfinite(impact_coefficient) or impact_coefficient < 0.0:
        raise ValueError("impact_coefficient must be finite and >= 0")
    if not np.isfinite(lot_size) or lot_size < 0.0:
        raise ValueError("lot_size must be finite and >= 0")
    slippage = slippage_bps * BPS
    commission_rate = commission_bps * BPS

    # Sells execute right away, in column order: they raise the cash the buys spend. Buys
    # wait in a compact list, so the buy passes touch only them (scanning the columns instead,
    # without the list, measured 1.5x slower in the trial book: a mispredicted branch per
    # column in each of the three buy passes costs more than the list's allocation).
    buy_ticker = np.empty(n, dtype=np.int64)
    n_buys = 0
    for i in range(n):
        shares_after[i] = shares[i]
        trade_quantity[i] = 0.0
        fill_price[i] = np.nan
        commission[i] = 0.0
        slippage_cost[i] = 0.0
        impact_cost[i] = 0.0
        quantity = order_quantity[i]
        if not np.isfinite(quantity):
            raise ValueError("order_quantity must be finite")
        reference = reference_price[i]
        if quantity == 0.0 or not np.isfinite(reference):
            continue
        if quantity > 0.0:
            buy_ticker[n_buys] = i
            n_buys += 1
            continue
        impact = _impact_fraction(impact_coefficient, daily_vol[i], adv_shares[i], quantity)
        fill = reference * (1.0 - slippage - impact)
        fee = -quantity * fill * commission_rate
        trade_quantity[i] = quantity
        fill_price[i] = fill
        commission[i] = fee
        slippage_cost[i] = -quantity * reference * slippage
        impact_cost[i] = -quantity * reference * impact
        cash -= quantity * fill + fee
        shares_after[i] = shares[i] + quantity
        if record:
            _record_trade(
                trades[n_trades],
                date_index,
                i,
                quantity,
                reference,
                fill,
                fee,
                slippage_cost[i],
                impact_cost[i],
            )
        n_trades += 1
    if n_buys == 0:
        return cash, n_trades

    # Buys, scaled together when they would push cash below zero.
    cash_before_buys = cash
    cash_after_buys = _price_buys(
        1.0,
        n_buys,
        buy_ticker,
        order_quantity,
        reference_price,
        daily_vol,
        adv_shares,
        cash,
        slippage,
        commission_rate,
        impact_coefficient,
        lot_size,
        trade_quantity,
        fill_price,
        commission,
        slippage_cost,
        impact_cost,
    )
    if not allow_borrowing and cash_after_buys < 0.0:
        available = max(cash_before_buys, 0.0)
        scale = available / (cash_before_buys - cash_after_buys)
        for attempt in range(_MAX_SCALE_ATTEMPTS):
            cash_after_buys = _price_buys(
                scale,
                n_buys,
                buy_ticker,
                order_quantity,
                reference_price,
                daily_vol,
                adv_shares,
                cash_before_buys,
                slippage,
                commission_rate,
                impact_coefficient,
                lot_size,
                trade_quantity,
                fill_price,
                commission,
                slippage_cost,
                impact_cost,
            )
            if cash_after_buys >= min(cash_before_buys, 0.0) or scale == 0.0:
                break
            if attempt == _MAX_SCALE_ATTEMPTS - 2:
                scale = 0.0
            else:
                scale *= 1.0 - _SCALE_SHAVE * 10.0**attempt
    for b in range(n_buys):
        i = buy_ticker[b]
        quantity = trade_quantity[i]
        if quantity > 0.0:
            shares_after[i] = shares[i] + quantity
            if record:
                _record_trade(
                    trades[n_trades],
                    date_index,
                    i,
                    quantity,
                    reference_price[i],
                    fill_price[i],
                    commission[i],
                    slippage_cost[i],
                    impact_cost[i],
                )
            n_trades += 1
        else:
            # A buy scaled down to nothing is no trade and has no fill price.
            fill_price[i] = np.nan
            commission[i] = 0.0
            slippage_cost[i] = 0.0
            impact_cost[i] = 0.0
    return cash_after_buys, n_trades


@njit(cache=True)
def mark_to_close_nb(
    close_price: np.ndarray,
    reference_price: np.ndarray,
    shares_before: np.ndarray,
    shares: np.ndarray,
    trade_quantity: np.ndarray,
    fill_price: np.ndarray,
    commission: np.ndarray,
    previous_mark: np.ndarray,
    mark: np.ndarray,
    cash: float,
    pnl: np.ndarray,
) -> float:
    """Value the book at the session's close and return its equity (currency).

    Arrays (n_tickers,): ``close_price`` of the session (NaN: none); ``reference_price``,
    ``trade_quantity``, ``fill_price``, ``commission``: the session's fills
    (:func:`execute_orders_nb`); ``shares_before`` / ``shares`` held before / after them;
    ``previous_mark`` the marks before the session. Written in place: ``mark`` (may be
    ``previous_mark`` itself, updated in place) and ``pnl``.

    mark = the close if finite, else the previous mark, else (never closed yet, but traded
    today) the reference price, else NaN. equity = cash + Σ shares × mark in column order,
    a flat ticker counting 0 even when never priced (the order :func:`portfolio_value` sums
    in, so a stored state's value is bit-identical to the equity reported for it). pnl =
    shares_before × (mark − previous mark) + q × (mark − fill) − commission, each term 0 when
    its share count is 0, so Σ pnl = the change of equity up to rounding.
    """
    n = shares.shape[0]
    if (
        close_price.shape[0] != n
        or reference_price.shape[0] != n
        or shares_before.shape[0] != n
        or trade_quantity.shape[0] != n
        or fill_price.shape[0] != n
        or commission.shape[0] != n
        or previous_mark.shape[0] != n
        or mark.shape[0] != n
        or pnl.shape[0] != n
    ):
        raise ValueError(
            "close_price, reference_price, shares_before, trade_quantity, fill_price, "
            "commission, previous_mark, mark and pnl must have the length of shares (n_tickers)"
        )
    equity = cash
    for i in range(n):
        last_mark = previous_mark[i]
        current_mark = close_price[i]
        quantity = trade_quantity[i]
        if np.isfinite(current_mark):
            if current_mark <= 0.0:
                raise ValueError("close_price must be positive where finite")
        elif np.isfinite(last_mark):
            current_mark = last_mark
        elif quantity != 0.0:
            # Never closed yet, but traded today: the fill's reference price is the only
            # price known, and it keeps the position from valuing at NaN.
            current_mark = reference_price[i]
        else:
            current_mark = np.nan
        held_before = shares_before[i]
        value = 0.0
        if held_before != 0.0:
            value += held_before * (current_mark - last_mark)
        if quantity != 0.0:
            value += quantity * (current_mark - fill_price[i]) - commission[i]
        pnl[i] = value
        mark[i] = current_mark
        held = shares[i]
        if held != 0.0:
            equity += held * current_mark
    return equity


@njit(cache=True)
def simulate_book(
    target_weight: np.ndarray,
    open_price: np.ndarray,
    close_price: np.ndarray,
    daily_vol: np.ndarray,
    adv_shares: np.ndarray,
    initial_cash: float,
    initial_shares: np.ndarray,
    initial_mark: np.ndarray,
    initial_target: np.ndarray,
    fill_at: int,
    commission_bps: float,
    slippage_bps: float,
    impact_coefficient: float,
    lot_size: float,
    allow_borrowing: bool,
) -> tuple[np.ndarray, ...]:
    """Simulate a book that trades to target weights of its equity, session by session.

    Args (2-D arrays are float64 of shape (n_dates, n_tickers), rows = sessions):
        target_weight: fraction of equity decided at the CLOSE of row ``t`` and sized there
            (:func:`decide_orders_nb`), filled on row ``t + 1``; NaN = no order (keep the
            shares). Negative = short. The last row is never executed here (it is the next
            call's ``initial_target``). ±inf raises.
        open_price, close_price: currency per share; NaN when missing. Finite prices must be
            positive.
        daily_vol: std of daily log returns known before row ``t``, i.e. at the decision
            (fraction per day).
        adv_shares: average daily volume known before row ``t`` (shares per day).
        initial_cash: cash before row 0 (currency).
        initial_shares: (n_tickers,) shares held before row 0.
        initial_mark: (n_tickers,) last close before row 0; NaN when never priced.
        initial_target: (n_tickers,) weights decided at the close before row 0 (sized against
            ``initial_cash + Σ initial_shares × initial_mark`` at ``initial_mark``) and
            executed on row 0; NaN = none.
        fill_at: ``FILL_NEXT_OPEN`` or ``FILL_NEXT_CLOSE``.
        commission_bps: commission on traded value at the fill price (bp).
        slippage_bps: fixed slippage s as a fraction of the reference price (bp).
        impact_coefficient: k of the square-root impact m = k × σ_daily × √(|q| / ADV),
            dimensionless; m is 0 when σ or ADV is unknown or ADV ≤ 0.
        lot_size: order quantities are multiples of it (rounded toward zero); 0 = unrounded.
            The frame-facing books pass ``share_step(settings.lot_size)``.
        allow_borrowing: False scales all of a session's buys down by one factor so that cash
            never goes below zero through buying.

    Semantics of row ``t`` (the steps documented on each kernel):
        * Decision, at the close of ``t − 1``: quantity = round(target × equity_{t−1} /
          mark_{t−1}) − shares, rounded toward zero to the lot; a target of 0 closes the
          whole position. No order for a ticker never priced, or when equity ≤ 0.
        * Reference price: ``open_price[t]`` when filling at the open and it is finite, else
          ``close_price[t]``; not finite → that ticker's order expires (dropped, not delayed).
        * Execution (:func:`execute_orders_nb`): fill = reference × (1 ± (s + m)), sells
          first, then buys scaled to the cash unless borrowing; a buy scaled down to zero
          shares is no trade.
        * Mark (:func:`mark_to_close_nb`): mark = ``close_price[t]`` if finite, else the
          previous mark (``initial_mark`` on row 0), else (never closed, traded today) the
          reference price, else NaN; equity = cash + Σ shares × mark (0 for flat
          never-priced tickers); pnl = shares_before × (mark − previous mark) + delta ×
          (mark − fill) − commission, so Σ pnl[t] = equity[t] − equity[t − 1]
          (equity[−1] = initial_cash + Σ initial_shares × initial_mark) up to rounding.

    Returns:
        shares (after trading), trade_quantity (0 without trade), fill_price (NaN without
        trade), commission, slippage_cost, impact_cost, pnl, mark_price: (n_dates,
        n_tickers); cash, equity: (n_dates,) at the close; trades: ``TRADE_DTYPE`` records
        in (date, execution order) — sells in column order, then buys in column order (a view
        trimmed from a buffer with room for one trade per cell).

    Arrays of the wrong number of dimensions fail numba's typing (``TypingError``) before any
    of the checks here run.
    """
    return _simulate(
        target_weight,
        open_price,
        close_price,
        daily_vol,
        adv_shares,
        initial_cash,
        initial_shares,
        initial_mark,
        initial_target,
        fill_at,
        commission_bps,
        slippage_bps,
        impact_coefficient,
        lot_size,
        allow_borrowing,
        True,
    )


@njit(cache=True)
def simulate_book_records(
    target_weight: np.ndarray,
    open_price: np.ndarray,
    close_price: np.ndarray,
    daily_vol: np.ndarray,
    adv_shares: np.ndarray,
    initial_cash: float,
    initial_shares: np.ndarray,
    initial_mark: np.ndarray,
    initial_target: np.ndarray,
    fill_at: int,
    commission_bps: float,
    slippage_bps: float,
    impact_coefficient: float,
    lot_size: float,
    allow_borrowing: bool,
) -> tuple[np.ndarray, ...]:
    """:func:`simulate_book` without the five dense per-cell trade arrays: returns (shares,
    pnl, mark_price, cash, equity, trades). The trade records carry every trade's quantity,
    prices and costs (like vectorbt's order records); skipping the dense copies saves five
    (n_dates, n_tickers) arrays of fresh memory, most of the cost of a wide book."""
    out = _simulate(
        target_weight,
        open_price,
        close_price,
        daily_vol,
        adv_shares,
        initial_cash,
        initial_shares,
        initial_mark,
        initial_target,
        fill_at,
        commission_bps,
        slippage_bps,
        impact_coefficient,
        lot_size,
        allow_borrowing,
        False,
    )
    # shares, pnl, mark_price, cash, equity, trades (see SIMULATE_BOOK_OUTPUTS)
    return out[0], out[6], out[7], out[8], out[9], out[10]


@njit(cache=True)
def _simulate(
    target_weight: np.ndarray,
    open_price: np.ndarray,
    close_price: np.ndarray,
    daily_vol: np.ndarray,
    adv_shares: np.ndarray,
    initial_cash: float,
    initial_shares: np.ndarray,
    initial_mark: np.ndarray,
    initial_target: np.ndarray,
    fill_at: int,
    commission_bps: float,
    slippage_bps: float,
    impact_coefficient: float,
    lot_size: float,
    allow_borrowing: bool,
    dense_trades: bool,
) -> tuple[np.ndarray, ...]:
    """The loop behind both entry points; ``dense_trades`` False keeps the per-cell trade
    arrays as one reused row of scratch (returned with a single row)."""
    # --- validation: every message names the argument at fault ---
    n_dates, n_tickers = target_weight.shape
    if open_price.shape != target_weight.shape:
        raise ValueError("open_price must have the shape of target_weight (n_dates, n_tickers)")
    if close_price.shape != target_weight.shape:
        raise ValueError("close_price must have the shape of target_weight (n_dates, n_tickers)")
    if daily_vol.shape != target_weight.shape:
        raise ValueError("daily_vol must have the shape of target_weight (n_dates, n_tickers)")
    if adv_shares.shape != target_weight.shape:
        raise ValueError("adv_shares must have the shape of target_weight (n_dates, n_tickers)")
    if initial_shares.ndim != 1 or initial_shares.shape[0] != n_tickers:
        raise ValueError("initial_shares must be 1-D of length n_tickers")
    if initial_mark.ndim != 1 or initial_mark.shape[0] != n_tickers:
        raise ValueError("initial_mark must be 1-D of length n_tickers")
    if initial_target.ndim != 1 or initial_target.shape[0] != n_tickers:
        raise ValueError("initial_target must be 1-D of length n_tickers")
    if not np.isfinite(initial_cash):
        raise ValueError("initial_cash must be finite")
    if fill_at != FILL_NEXT_OPEN and fill_at != FILL_NEXT_CLOSE:
        raise ValueError("fill_at must be FILL_NEXT_OPEN (0) or FILL_NEXT_CLOSE (1)")
    if not np.isfinite(commission_bps) or commission_bps < 0.0:
        raise ValueError("commission_bps must be finite and >= 0")
    if not np.isfinite(slippage_bps) or slippage_bps < 0.0:
        raise ValueError("slippage_bps must be finite and >= 0")
    if not np.isfinite(impact_coefficient) or impact_coefficient < 0.0:
        raise ValueError("impact_coefficient must be finite and >= 0")
    if not np.isfinite(lot_size) or lot_size < 0.0:
        raise ValueError("lot_size must be finite and >= 0")
    for i in range(n_tickers):
        if not np.isfinite(initial_shares[i]):
            raise ValueError("initial_shares must be finite")
        if initial_mark[i] <= 0.0 or np.isinf(initial_mark[i]):
            raise ValueError("initial_mark must be positive or NaN")
        if np.isinf(initial_target[i]):
            raise ValueError("initial_target must be finite or NaN")

    shares_out = np.empty((n_dates, n_tickers))
    trade_rows = n_dates if dense_trades else 1
    trade_quantity_out = np.empty((trade_rows, n_tickers))
    fill_price_out = np.empty((trade_rows, n_tickers))
    commission_out = np.empty((trade_rows, n_tickers))
    slippage_cost_out = np.empty((trade_rows, n_tickers))
    impact_cost_out = np.empty((trade_rows, n_tickers))
    pnl_out = np.empty((n_dates, n_tickers))
    mark_out = np.empty((n_dates, n_tickers))
    cash_out = np.empty(n_dates)
    equity_out = np.empty(n_dates)
    # Room for a trade in every cell, written in execution order and trimmed at the end. The
    # operating system backs only the pages actually written, so unused capacity costs address
    # space, not memory, and no second pass over the outputs is needed to count trades first.
    trades = np.empty(n_dates * n_tickers, dtype=TRADE_DTYPE)

    # The state before row 0 (C-contiguous copies, like the output rows that carry it from
    # session to session), and one session's scratch.
    shares_at_start = initial_shares.copy()
    mark_at_start = initial_mark.copy()
    order_quantity = np.empty(n_tickers)
    reference_price = np.empty(n_tickers)

    cash = initial_cash
    # The orders decided at the close before row 0, from the state as stored.
    decide_orders_nb(
        initial_target,
        shares_at_start,
        mark_at_start,
        portfolio_value(cash, shares_at_start, mark_at_start),
        lot_size,
        False,
        order_quantity,
    )
    n_trades = 0
    for t in range(n_dates):
        # The session's trade rows: dense outputs, or one reused row of scratch.
        row = t if dense_trades else 0
        trade_row = trade_quantity_out[row]
        fill_row = fill_price_out[row]
        commission_row = commission_out[row]
        # The state before the session: the previous rows of the outputs.
        shares_before = shares_at_start if t == 0 else shares_out[t - 1]
        mark_before = mark_at_start if t == 0 else mark_out[t - 1]
        shares_now, mark_now = shares_out[t], mark_out[t]

        # 1. Fill the orders decided at the previous close.
        fill_reference_nb(open_price[t], close_price[t], fill_at, reference_price)
        cash, n_trades = execute_orders_nb(
            order_quantity,
            reference_price,
            daily_vol[t],
            adv_shares[t],
            shares_before,
            cash,
            commission_bps,
            slippage_bps,
            impact_coefficient,
            lot_size,
            allow_borrowing,
            shares_now,
            trade_row,
            fill_row,
            commission_row,
            slippage_cost_out[row],
            impact_cost_out[row],
            trades,
            n_trades,
            t,
        )

        # 2. Mark to the close, attribute the day's pnl, and value the book.
        equity = mark_to_close_nb(
            close_price[t],
            reference_price,
            shares_before,
            shares_now,
            trade_row,
            fill_row,
            commission_row,
            mark_before,
            mark_now,
            cash,
            pnl_out[t],
        )
        # ``cash`` is a running sum over every trade of the run: its rounding error grows only
        # like n_trades × ulp(equity), ~1e-12 relative over decades, and the equity and pnl
        # identities hold per session regardless because both are computed from it.
        cash_out[t] = cash
        equity_out[t] = equity

        # 3. Decide the next session's orders at this close.
        decide_orders_nb(
            target_weight[t], shares_now, mark_now, equity, lot_size, False, order_quantity
        )

    return (
        shares_out,
        trade_quantity_out,
        fill_price_out,
        commission_out,
        slippage_cost_out,
        impact_cost_out,
        pnl_out,
        mark_out,
        cash_out,
        equity_out,
        trades[:n_trades],
    )
