"""The backtest kernel: a target-weight book simulated over (n_dates, n_tickers) NumPy arrays.

Modeled on vectorbt's ``portfolio/nb.py``: every function is ``@njit(cache=True)``, takes only
NumPy arrays and scalars, and raises ``ValueError`` naming the wrong argument. Rows are
sessions (dates), columns are tickers; prices are in currency per share, quantities in shares,
costs and cash in currency, costs given in basis points (1 bp = 1e-4).

One session ``t`` of :func:`simulate_book`:

1. **Order.** The target decided at the close of ``t - 1`` (``initial_target`` for ``t == 0``)
   is sized against the equity at the reference prices of ``t`` and rounded to the lot.
2. **Execution.** Sells first (they raise cash), then buys; without borrowing the buys are
   scaled down together so cash never goes below zero through buying.
3. **Mark.** Positions are valued at the close of ``t`` (the last close when ``t`` has none).

The last target row is never executed here: it is the ``initial_target`` of the next call,
which is how a book continues exactly from one call to the next.
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
def _round_to_lot(quantity: float, lot_size: float) -> float:
    """Round toward zero to a multiple of ``lot_size`` (unchanged when fractional, lot 0)."""
    if lot_size > 0.0:
        return math.trunc(quantity / lot_size) * lot_size
    return quantity


@njit(cache=True)
def _price_buys(
    scale: float,
    n_buys: int,
    buy_ticker: np.ndarray,
    buy_quantity: np.ndarray,
    reference_price: np.ndarray,
    vol_row: np.ndarray,
    adv_row: np.ndarray,
    cash: float,
    slippage: float,
    commission_rate: float,
    impact_coefficient: float,
    lot_size: float,
    trade_row: np.ndarray,
    fill_row: np.ndarray,
    commission_row: np.ndarray,
    slippage_row: np.ndarray,
    impact_row: np.ndarray,
) -> float:
    """Price the session's ``n_buys`` buys (tickers ``buy_ticker``, unscaled quantities
    ``buy_quantity``) scaled by ``scale`` into the session's output rows, and return the cash
    left after paying for them in that order: the order the book pays them in, so the
    returned cash is exactly the cash the book ends the session with."""
    for b in range(n_buys):
        i = buy_ticker[b]
        quantity = buy_quantity[b]
        if scale != 1.0:
            # Scaled buys round DOWN to the lot so the scaled budget still fits.
            quantity = quantity * scale
            if lot_size > 0.0:
                quantity = math.floor(quantity / lot_size) * lot_size
        if quantity <= 0.0:
            trade_row[i] = 0.0
            continue
        reference = reference_price[i]
        impact = _impact_fraction(impact_coefficient, vol_row[i], adv_row[i], quantity)
        fill = reference * (1.0 + slippage + impact)
        fee = quantity * fill * commission_rate
        trade_row[i] = quantity
        fill_row[i] = fill
        commission_row[i] = fee
        slippage_row[i] = quantity * reference * slippage
        impact_row[i] = quantity * reference * impact
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
        target_weight: fraction of equity decided at the CLOSE of row ``t``, executed on row
            ``t + 1``; NaN = no order (keep the shares). Negative = short. The last row is
            never executed here (it is the next call's ``initial_target``). ±inf raises.
        open_price, close_price: currency per share; NaN when missing. Finite prices must be
            positive.
        daily_vol: std of daily log returns known before row ``t`` (fraction per day).
        adv_shares: average daily volume known before row ``t`` (shares per day).
        initial_cash: cash before row 0 (currency).
        initial_shares: (n_tickers,) shares held before row 0.
        initial_mark: (n_tickers,) last close before row 0; NaN when never priced.
        initial_target: (n_tickers,) weights decided at the close before row 0 and executed on
            row 0; NaN = none.
        fill_at: ``FILL_NEXT_OPEN`` or ``FILL_NEXT_CLOSE``.
        commission_bps: commission on traded value at the fill price (bp).
        slippage_bps: fixed slippage s as a fraction of the reference price (bp).
        impact_coefficient: k of the square-root impact m = k × σ_daily × √(|q| / ADV),
            dimensionless; m is 0 when σ or ADV is unknown or ADV ≤ 0.
        lot_size: trade quantities are multiples of it (rounded toward zero); 0 = fractional.
        allow_borrowing: False scales all of a session's buys down by one factor so that cash
            never goes below zero through buying.

    Semantics of row ``t``:
        * Reference price: ``open_price[t]`` when filling at the open and it is finite, else
          ``close_price[t]``; not finite → that ticker does not trade on ``t``.
        * Sizing equity = cash + Σ shares × (reference price, else the last mark). With a
          non-positive (or unknown) sizing equity no order is sized that day.
        * desired = target × equity / reference price; delta = desired − shares, rounded
          toward zero to the lot; a zero delta is no trade.
        * Fill = reference × (1 ± (s + m)), + for buys, − for sells; commission =
          |delta| × fill × commission_bps / 1e4; slippage_cost = |delta| × reference × s;
          impact_cost = |delta| × reference × m. Impact is not capped.
        * Sells (delta < 0) execute first, then buys. Without borrowing, when the buys'
          cash need Σ delta × fill + commission exceeds the cash after sells (floored at 0),
          every buy is scaled by k = available / need, rounded down to the lot and repriced
          (impact per share shrinks with the quantity, so the scaled need fits). Short sales
          credit cash (no margin model); covering a short is a buy.
        * cash −= delta × fill + commission per trade.
        * mark = ``close_price[t]`` if finite, else the previous mark (``initial_mark`` on row
          0), else (never closed yet) the reference price of ``t``, else NaN; equity = cash +
          Σ shares × mark (0 for flat never-priced tickers).
        * pnl = shares_before × (mark − previous mark) + delta × (mark − fill) − commission,
          each term 0 when its share count is 0, so Σ pnl[t] = equity[t] − equity[t − 1]
          (equity[−1] = initial_cash + Σ initial_shares × initial_mark) up to rounding.

    An order whose ticker has no reference price on ``t`` is dropped, not carried to the next
    session; a buy scaled down to zero shares is no trade.

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

    slippage = slippage_bps * BPS
    commission_rate = commission_bps * BPS

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

    # Per-ticker scratch, allocated once: the state carried from session to session ...
    position = initial_shares.copy()
    mark = initial_mark.copy()
    # ... and one session's reference prices and pending buys, overwritten every session.
    reference_price = np.empty(n_tickers)
    buy_ticker = np.empty(n_tickers, dtype=np.int64)
    buy_quantity = np.empty(n_tickers)

    cash = initial_cash
    n_trades = 0
    for t in range(n_dates):
        target_row = initial_target if t == 0 else target_weight[t - 1]
        vol_row = daily_vol[t]
        adv_row = adv_shares[t]
        # The session's output rows double as its scratch: each is written once per cell.
        row = t if dense_trades else 0
        trade_row = trade_quantity_out[row]
        fill_row = fill_price_out[row]
        commission_row = commission_out[row]
        slippage_row = slippage_cost_out[row]
        impact_row = impact_cost_out[row]

        # 1. Reference prices, and the equity the targets are fractions of.
        sizing_equity = cash
        for i in range(n_tickers):
            reference = np.nan
            if fill_at == FILL_NEXT_OPEN and np.isfinite(open_price[t, i]):
                reference = open_price[t, i]
                if reference <= 0.0:
                    raise ValueError("open_price must be positive where finite")
            elif np.isfinite(close_price[t, i]):
                reference = close_price[t, i]
                if reference <= 0.0:
                    raise ValueError("close_price must be positive where finite")
            reference_price[i] = reference
            if position[i] != 0.0:
                sizing_equity += position[i] * (reference if np.isfinite(reference) else mark[i])
        can_size = sizing_equity > 0.0  # False also when NaN: an unpriced position

        # 2. Orders: the share change that reaches each target, rounded to the lot. Sells
        # execute right away, in column order: they raise the cash the buys spend. Buys wait
        # in a compact list, so the buy pass touches only them.
        n_buys = 0
        for i in range(n_tickers):
            trade_row[i] = 0.0
            fill_row[i] = np.nan
            commission_row[i] = 0.0
            slippage_row[i] = 0.0
            impact_row[i] = 0.0
            target = target_row[i]
            if np.isinf(target):
                raise ValueError("target_weight must be finite or NaN")
            reference = reference_price[i]
            if not (can_size and np.isfinite(target) and np.isfinite(reference)):
                continue
            quantity = _round_to_lot(target * sizing_equity / reference - position[i], lot_size)
            if quantity > 0.0:
                buy_ticker[n_buys] = i
                buy_quantity[n_buys] = quantity
                n_buys += 1
            elif quantity < 0.0:
                impact = _impact_fraction(impact_coefficient, vol_row[i], adv_row[i], quantity)
                fill = reference * (1.0 - slippage - impact)
                fee = -quantity * fill * commission_rate
                slippage_cost = -quantity * reference * slippage
                impact_cost = -quantity * reference * impact
                trade_row[i] = quantity
                fill_row[i] = fill
                commission_row[i] = fee
                slippage_row[i] = slippage_cost
                impact_row[i] = impact_cost
                cash -= quantity * fill + fee
                _record_trade(
                    trades[n_trades],
                    t,
                    i,
                    quantity,
                    reference,
                    fill,
                    fee,
                    slippage_cost,
                    impact_cost,
                )
                n_trades += 1

        # 3. Buys, scaled together when they would push cash below zero.
        if n_buys > 0:
            cash_before_buys = cash
            cash_after_buys = _price_buys(
                1.0,
                n_buys,
                buy_ticker,
                buy_quantity,
                reference_price,
                vol_row,
                adv_row,
                cash,
                slippage,
                commission_rate,
                impact_coefficient,
                lot_size,
                trade_row,
                fill_row,
                commission_row,
                slippage_row,
                impact_row,
            )
            if not allow_borrowing and cash_after_buys < 0.0:
                available = max(cash_before_buys, 0.0)
                scale = available / (cash_before_buys - cash_after_buys)
                for attempt in range(_MAX_SCALE_ATTEMPTS):
                    cash_after_buys = _price_buys(
                        scale,
                        n_buys,
                        buy_ticker,
                        buy_quantity,
                        reference_price,
                        vol_row,
                        adv_row,
                        cash_before_buys,
                        slippage,
                        commission_rate,
                        impact_coefficient,
                        lot_size,
                        trade_row,
                        fill_row,
                        commission_row,
                        slippage_row,
                        impact_row,
                    )
                    if cash_after_buys >= min(cash_before_buys, 0.0) or scale == 0.0:
                        break
                    if attempt == _MAX_SCALE_ATTEMPTS - 2:
                        scale = 0.0
                    else:
                        scale *= 1.0 - _SCALE_SHAVE * 10.0**attempt
            cash = cash_after_buys
            for b in range(n_buys):
                i = buy_ticker[b]
                if trade_row[i] > 0.0:
                    _record_trade(
                        trades[n_trades],
                        t,
                        i,
                        trade_row[i],
                        reference_price[i],
                        fill_row[i],
                        commission_row[i],
                        slippage_row[i],
                        impact_row[i],
                    )
                    n_trades += 1
                else:
                    # A buy scaled down to nothing is no trade and has no fill price.
                    fill_row[i] = np.nan
                    commission_row[i] = 0.0
                    slippage_row[i] = 0.0
                    impact_row[i] = 0.0

        # 4. Mark to the close, attribute the day's pnl, and value the book.
        equity = cash
        for i in range(n_tickers):
            previous_mark = mark[i]
            current_mark = close_price[t, i]
            if np.isfinite(current_mark):
                if current_mark <= 0.0:
                    raise ValueError("close_price must be positive where finite")
            elif np.isfinite(previous_mark):
                current_mark = previous_mark
            else:
                # Never closed yet, but traded (or tradable) at today's open: that open is the
                # only price known, and it keeps a position bought there from valuing at NaN.
                current_mark = reference_price[i]
            shares_before = position[i]
            quantity = trade_row[i]
            pnl = 0.0
            if shares_before != 0.0:
                pnl += shares_before * (current_mark - previous_mark)
            if quantity != 0.0:
                pnl += quantity * (current_mark - fill_row[i]) - commission_row[i]
            shares_after = shares_before + quantity
            position[i] = shares_after
            mark[i] = current_mark
            if shares_after != 0.0:
                equity += shares_after * current_mark
            shares_out[t, i] = shares_after
            pnl_out[t, i] = pnl
            mark_out[t, i] = current_mark
        # ``cash`` is a running sum over every trade of the run: its rounding error grows only
        # like n_trades × ulp(equity), ~1e-12 relative over decades, and the equity and pnl
        # identities hold per session regardless because both are computed from it.
        cash_out[t] = cash
        equity_out[t] = equity

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
