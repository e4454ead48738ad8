"""The book of a parameter study: per trial, only the daily equity, return, turnover and the
number of trades, from the same accounting core as the backtest.

A study runs the book of every trial (variant of a strategy) over the same market. It needs per
trial the daily portfolio returns, equity and turnover, never the per-(date, ticker) rows that
:func:`quant_assets.backtest.book.run_book` builds. :func:`simulate_trial_returns` chains the
kernel's own steps (:func:`~quant_assets.backtest.kernel.fill_reference_nb`,
:func:`~quant_assets.backtest.kernel.execute_orders_nb`,
:func:`~quant_assets.backtest.kernel.mark_to_close_nb`,
:func:`~quant_assets.backtest.kernel.decide_orders_nb`) exactly as
:func:`~quant_assets.backtest.kernel.simulate_book` does, so its equity is bit-identical to the
backtest's, but keeps the book's state in a few (n_tickers,) rows of caller-provided work
memory instead of (n_dates, n_tickers) outputs. :func:`simulate_trials` runs many trials,
threaded over trials, each thread reusing one set of work rows: nothing of size
(n_dates, n_tickers) is allocated per trial (fresh pages cost more than the accounting).

Every book starts all cash (no shares, no marks, no order before the first session), like
``BookState.initial(initial_cash)``. The market grids — open, close, daily volatility and ADV
from :func:`quant_assets.backtest.frames.market_grids` — are shared by all trials; trials
that differ in ``vol_window`` or ``adv_window`` need grids of their own (another batch).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from datetime import date

import numba
import numpy as np
import polars as pl
from numba import njit, prange

from quant_assets.backtest.frames import (
    check_tickers,
    clean_bars,
    clean_targets,
    grid,
    market_grids,
    row_index,
    sessions_from,
)
from quant_assets.backtest.kernel import (
    FILL_NEXT_CLOSE,
    FILL_NEXT_OPEN,
    TRADE_DTYPE,
    decide_orders_nb,
    execute_orders_nb,
    fill_reference_nb,
    mark_to_close_nb,
    portfolio_value,
    share_step,
)
from quant_assets.settings import BacktestSettings

__all__ = [
    "BOOK_PARAMETER_COLUMNS",
    "N_BOOK_PARAMETERS",
    "TRIAL_WORK_ROWS",
    "TrialMarket",
    "book_parameters",
    "simulate_trial_returns",
    "simulate_trials",
    "target_grid",
    "trial_market",
    "trial_work_buffers",
]

# The columns of a trial's book parameter row (:func:`book_parameters`), in order.
BOOK_PARAMETER_COLUMNS: dict[str, str] = {
    "initial_cash": "cash before the first session (currency)",
    "fill_at": "FILL_NEXT_OPEN (0) or FILL_NEXT_CLOSE (1)",
    "commission_bps": "commission on the traded value at the fill price (bp)",
    "slippage_bps": "slippage as a fraction of the reference price (bp)",
    "impact_coefficient": "k of the square-root impact k × σ_daily × √(|q| / ADV)",
    "lot_size": "share quantum orders round to: share_step(lot_size), 1e-4 for lot 0",
    "allow_borrowing": "1: cash may go negative; 0: buys are scaled to the cash",
}
_INITIAL_CASH, _FILL_AT, _COMMISSION, _SLIPPAGE, _IMPACT, _LOT, _BORROWING = range(7)
N_BOOK_PARAMETERS = len(BOOK_PARAMETER_COLUMNS)

# Rows of the work buffer (TRIAL_WORK_ROWS, n_tickers): the book's state and one session's
# scratch. Shares and marks ping-pong between two rows each so that the step functions see the
# state before and after a session as distinct arrays, as in the backtest.
_SHARES_A, _SHARES_B, _MARK_A, _MARK_B = 0, 1, 2, 3
_ORDER, _REFERENCE, _TRADE, _FILL, _COMMISSION_PAID, _SLIPPAGE_PAID, _IMPACT_PAID = range(4, 11)
_PNL, _TRADED_VALUE = 11, 12
TRIAL_WORK_ROWS = 13

# numpy's pairwise summation (``np.add.reduce`` over a contiguous row): below this many items a
# plain loop, up to _PAIRWISE_BLOCK an 8-way unrolled loop, above that halves.
_PAIRWISE_UNROLL = 8
_PAIRWISE_BLOCK = 128
_PAIRWISE_DEPTH = 64  # halving from 2**63 items reaches a block in fewer levels


@dataclass(frozen=True)
class TrialMarket:
    """The market every trial of a batch trades: ``sessions`` (the grid rows) and, as
    (n_sessions, n_tickers) float64 grids in ``tickers`` order, ``open_price``,
    ``close_price``, ``daily_vol`` and ``adv_shares`` as :func:`run_book` feeds its kernel."""

    sessions: pl.Series
    tickers: list[str]
    open_price: np.ndarray
    close_price: np.ndarray
    daily_vol: np.ndarray
    adv_shares: np.ndarray


def trial_market(
    bars: pl.DataFrame,
    tickers: Sequence[str],
    *,
    start: date,
    vol_window: int,
    adv_window: int,
) -> TrialMarket:
    """The shared market grids of a batch from ``bars`` (date, ticker, open, close, volume,
    with look-back rows before ``start``), built by :func:`market_grids` exactly as
    :func:`quant_assets.backtest.book.run_book` builds them; the sessions are the dates of
    ``bars`` on or after ``start``. Raises ``ValueError`` naming bad bars (as ``run_book``)."""
    tickers = check_tickers(tickers)
    bars = clean_bars(bars, tickers, require_close=False)
    all_dates, sessions = sessions_from(bars, start)
    first = all_dates.len() - sessions.len()
    market = market_grids(bars, tickers, all_dates, vol_window=vol_window, adv_window=adv_window)
    return TrialMarket(
        sessions=sessions,
        tickers=tickers,
        open_price=np.ascontiguousarray(market["open"][first:]),
        close_price=np.ascontiguousarray(market["close"][first:]),
        daily_vol=np.ascontiguousarray(market["daily_vol"][first:]),
        adv_shares=np.ascontiguousarray(market["adv_shares"][first:]),
    )


def target_grid(targets: pl.DataFrame, market: TrialMarket) -> np.ndarray:
    """A trial's target weights (date, ticker, target_weight) as the (n_sessions, n_tickers)
    float64 grid of ``market``, NaN = no order; refuses the rows ``run_book`` refuses."""
    cleaned = clean_targets(targets, market.tickers, market.sessions)
    return grid(cleaned, "target_weight", row_index(market.sessions), market.tickers)


def book_parameters(settings: BacktestSettings) -> np.ndarray:
    """A trial's book parameter row (float64, :data:`BOOK_PARAMETER_COLUMNS` in order) from its
    backtest settings; ``lot_size`` is already the share step (1e-4 for lot 0), as
    ``run_book`` passes it. ``vol_window`` and ``adv_window`` are not in it: they shape the
    market grids shared by a batch."""
    return np.array(
        [
            float(settings.initial_capital),
            float(FILL_NEXT_OPEN if settings.fill == "next_open" else FILL_NEXT_CLOSE),
            float(settings.commission_bps),
            float(settings.slippage_bps),
            float(settings.impact_coefficient),
            share_step(settings.lot_size),
            1.0 if settings.allow_borrowing else 0.0,
        ]
    )


def trial_work_buffers(n_tickers: int) -> np.ndarray:
    """The work memory of one book, (TRIAL_WORK_ROWS, n_tickers) float64, to pass to
    :func:`simulate_trial_returns` again and again."""
    if n_tickers < 1:
        raise ValueError(f"n_tickers must be at least 1, got {n_tickers}")
    return np.empty((TRIAL_WORK_ROWS, n_tickers))


@njit(cache=True)
def _pairwise_block(values: np.ndarray, start: int, n: int) -> float:
    """numpy's pairwise sum of ``values[start : start + n]`` for n <= _PAIRWISE_BLOCK: a plain
    loop below 8 items, else eight running sums combined as ((0+1)+(2+3))+((4+5)+(6+7)) and
    the remainder added one by one."""
    if n < _PAIRWISE_UNROLL:
        total = 0.0
        for i in range(start, start + n):
            total += values[i]
        return total
    r0, r1, r2, r3 = values[start], values[start + 1], values[start + 2], values[start + 3]
    r4, r5, r6, r7 = values[start + 4], values[start + 5], values[start + 6], values[start + 7]
    i = _PAIRWISE_UNROLL
    whole = n - n % _PAIRWISE_UNROLL
    while i < whole:
        j = start + i
        r0 += values[j]
        r1 += values[j + 1]
        r2 += values[j + 2]
        r3 += values[j + 3]
        r4 += values[j + 4]
        r5 += values[j + 5]
        r6 += values[j + 6]
        r7 += values[j + 7]
        i += _PAIRWISE_UNROLL
    total = ((r0 + r1) + (r2 + r3)) + ((r4 + r5) + (r6 + r7))
    while i < n:
        total += values[start + i]
        i += 1
    return total


@njit(cache=True)
def _pairwise_sum(values: np.ndarray, start: int, n: int) -> float:
    """Σ values[start : start + n] in numpy's pairwise order, so the sum is bit-identical to
    ``values.sum()`` (and to a row of ``.sum(axis=1)`` on a C-contiguous grid): blocks of at
    most _PAIRWISE_BLOCK items, larger spans split at half rounded down to a multiple of 8,
    the halves' sums added. The recursion runs on an explicit stack: numba's cache cannot
    hold a recursive function (loading one crashes)."""
    if n <= _PAIRWISE_BLOCK:
        return _pairwise_block(values, start, n)
    # A node's state: 0 not split yet, 1 its left half is being summed, 2 its right half.
    node_start = np.empty(_PAIRWISE_DEPTH, dtype=np.int64)
    node_size = np.empty(_PAIRWISE_DEPTH, dtype=np.int64)
    node_state = np.empty(_PAIRWISE_DEPTH, dtype=np.int64)
    left_sum = np.empty(_PAIRWISE_DEPTH)
    top = 0
    node_start[0], node_size[0], node_state[0] = start, n, 0
    while True:
        size = node_size[top]
        if size > _PAIRWISE_BLOCK:
            half = size // 2
            half -= half % _PAIRWISE_UNROLL
            node_state[top] = 1
            top += 1
            node_start[top], node_size[top], node_state[top] = node_start[top - 1], half, 0
            continue
        value = _pairwise_block(values, node_start[top], size)
        top -= 1
        # Hand the finished sum up: a left half waits for its right, a right half completes.
        while top >= 0 and node_state[top] == 2:
            value = left_sum[top] + value
            top -= 1
        if top < 0:
            return value
        left_sum[top] = value
        node_state[top] = 2
        half = node_size[top] // 2
        half -= half % _PAIRWISE_UNROLL
        parent = top
        top += 1
        node_start[top] = node_start[parent] + half
        node_size[top] = node_size[parent] - half
        node_state[top] = 0


@njit(cache=True)
def simulate_trial_returns(
    target_weight: np.ndarray,
    open_price: np.ndarray,
    close_price: np.ndarray,
    daily_vol: np.ndarray,
    adv_shares: np.ndarray,
    parameters: np.ndarray,
    work: np.ndarray,
    equity: np.ndarray,
    portfolio_return: np.ndarray,
    turnover: np.ndarray,
    session_trades: np.ndarray,
) -> int:
    """Run one trial's book from all cash and return its number of trades.

    Args (2-D arrays float64 (n_dates, n_tickers), rows = sessions, as in
    :func:`~quant_assets.backtest.kernel.simulate_book`):
        target_weight: fraction of equity decided at the close of row ``t``, traded on row
            ``t + 1``; NaN = no order. ±inf raises.
        open_price, close_price, daily_vol, adv_shares: the market grids (currency per share,
            fraction per day, shares per day); NaN when missing.
        parameters: (N_BOOK_PARAMETERS,) the row of :func:`book_parameters`.
        work: the buffer of :func:`trial_work_buffers` for n_tickers; overwritten.
    Outputs, (n_dates,) float64, written in place:
        equity: cash + Σ shares × mark at each close (currency), bit-identical to
            ``simulate_book``'s and ``run_book``'s ``equity``.
        portfolio_return: equity / previous equity − 1 (the first against initial_cash).
        turnover: Σ |trade quantity × fill price| / previous equity, the per-ticker traded
            values summed in numpy's pairwise order, as ``run_book`` sums them.
        session_trades: (n_dates,) int64, the trades filled on each session (a study's
            constraints count them on a fold's train window).

    Raises ``ValueError`` naming the argument of the wrong shape or value (and the step
    functions' own errors: non-positive prices, ±inf targets).
    """
    n_dates, n_tickers = target_weight.shape
    if open_price.shape != target_weight.shape:
        raise ValueError("open_price must have the shape of target_weight (n_dates, n_tickers)")
    if close_price.shape != target_weight.shape:
        raise ValueError("close_price must have the shape of target_weight (n_dates, n_tickers)")
    if daily_vol.shape != target_weight.shape:
        raise ValueError("daily_vol must have the shape of target_weight (n_dates, n_tickers)")
    if adv_shares.shape != target_weight.shape:
        raise ValueError("adv_shares must have the shape of target_weight (n_dates, n_tickers)")
    if parameters.shape[0] != N_BOOK_PARAMETERS:
        raise ValueError("parameters must hold the N_BOOK_PARAMETERS columns of book_parameters")
    if work.shape[0] != TRIAL_WORK_ROWS or work.shape[1] != n_tickers:
        raise ValueError("work must have shape (TRIAL_WORK_ROWS, n_tickers)")
    if equity.shape[0] != n_dates or portfolio_return.shape[0] != n_dates:
        raise ValueError("equity and portfolio_return must have length n_dates")
    if turnover.shape[0] != n_dates:
        raise ValueError("turnover must have length n_dates")
    if session_trades.shape[0] != n_dates:
        raise ValueError("session_trades must have length n_dates")
    initial_cash = parameters[_INITIAL_CASH]
    if not np.isfinite(initial_cash):
        raise ValueError("parameters: initial_cash must be finite")
    fill_at = int(parameters[_FILL_AT])
    if fill_at != FILL_NEXT_OPEN and fill_at != FILL_NEXT_CLOSE:
        raise ValueError("parameters: fill_at must be FILL_NEXT_OPEN (0) or FILL_NEXT_CLOSE (1)")
    commission_bps = parameters[_COMMISSION]
    slippage_bps = parameters[_SLIPPAGE]
    impact_coefficient = parameters[_IMPACT]
    lot_size = parameters[_LOT]
    allow_borrowing = parameters[_BORROWING] != 0.0

    shares_before, shares_now = work[_SHARES_A], work[_SHARES_B]
    mark_before, mark_now = work[_MARK_A], work[_MARK_B]
    order_quantity, reference_price = work[_ORDER], work[_REFERENCE]
    trade_quantity, fill_price = work[_TRADE], work[_FILL]
    commission, pnl, traded_value = work[_COMMISSION_PAID], work[_PNL], work[_TRADED_VALUE]
    slippage_cost, impact_cost = work[_SLIPPAGE_PAID], work[_IMPACT_PAID]
    shares_before[:] = 0.0
    mark_before[:] = np.nan
    # No order before the first session (an all-cash book has nothing decided yet).
    order_quantity[:] = 0.0
    cash = initial_cash
    previous_equity = portfolio_value(cash, shares_before, mark_before)
    n_trades = 0
    no_records = np.empty(0, dtype=TRADE_DTYPE)
    for t in range(n_dates):
        close_now = close_price[t]
        fill_reference_nb(open_price[t], close_now, fill_at, reference_price)
        # No trade records (an empty array): a study counts trades and never reads them.
        cash, filled = execute_orders_nb(
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
            trade_quantity,
            fill_price,
            commission,
            slippage_cost,
            impact_cost,
            no_records,
            0,
            t,
        )
        n_trades += filled
        session_trades[t] = filled
        equity_now = mark_to_close_nb(
            close_now,
            reference_price,
            shares_before,
            shares_now,
            trade_quantity,
            fill_price,
            commission,
            mark_before,
            mark_now,
            cash,
            pnl,
        )
        for i in range(n_tickers):
            quantity = trade_quantity[i]
            traded_value[i] = abs(quantity * fill_price[i]) if quantity != 0.0 else 0.0
        equity[t] = equity_now
        portfolio_return[t] = equity_now / previous_equity - 1.0
        turnover[t] = (0.0 + _pairwise_sum(traded_value, 0, n_tickers)) / previous_equity
        previous_equity = equity_now
        decide_orders_nb(
            target_weight[t], shares_now, mark_now, equity_now, lot_size, False, order_quantity
        )
        # The state after the session is the state before the next one.
        shares_before, shares_now = shares_now, shares_before
        mark_before, mark_now = mark_now, mark_before
    return n_trades


def simulate_trials(
    target_weight: np.ndarray,
    target_of_trial: np.ndarray,
    open_price: np.ndarray,
    close_price: np.ndarray,
    daily_vol: np.ndarray,
    adv_shares: np.ndarray,
    parameters: np.ndarray,
    equity: np.ndarray,
    portfolio_return: np.ndarray,
    turnover: np.ndarray,
    trade_count: np.ndarray,
    *,
    trades_per_date: np.ndarray | None = None,
    n_threads: int | None = None,
) -> None:
    """The books of many trials over one market, threaded over trials.

    Args:
        target_weight: (n_targets, n_dates, n_tickers) distinct target-weight grids.
        target_of_trial: (n_trials,) int64, the grid of each trial (trials may share one and
            differ only in their book parameters: parameter broadcasting).
        open_price, close_price, daily_vol, adv_shares: (n_dates, n_tickers), shared.
        parameters: (n_trials, N_BOOK_PARAMETERS) one :func:`book_parameters` row per trial.
        n_threads: threads to run trials on (default: numba's thread count; at most
            NUMBA_NUM_THREADS).
    Outputs written in place: equity, portfolio_return, turnover (n_trials, n_dates) as in
    :func:`simulate_trial_returns`; trade_count (n_trials,) int64; ``trades_per_date``
    (n_trials, n_dates) int64 when given (else a scratch array).

    Each thread has one :func:`trial_work_buffers`, allocated once per call and reused
    for every trial it runs; the results do not depend on the number of threads. Raises
    ``ValueError`` naming the argument of the wrong shape, or a target index out of range.
    """
    threads = numba.get_num_threads() if n_threads is None else n_threads
    if threads < 1:
        raise ValueError(f"n_threads must be at least 1, got {threads}")
    threads = min(threads, numba.config.NUMBA_NUM_THREADS)  # type: ignore[attr-defined]
    if trades_per_date is None:
        trades_per_date = np.empty(equity.shape, dtype=np.int64)
    previous = numba.get_num_threads()
    numba.set_num_threads(threads)
    try:
        # Trials are handed out one at a time as threads free up (dynamic scheduling): on a
        # shared machine a thread that is descheduled does not hold back a block of trials.
        with numba.parallel_chunksize(1):
            _simulate_trials_nb(
                target_weight,
                target_of_trial,
                open_price,
                close_price,
                daily_vol,
                adv_shares,
                parameters,
                equity,
                portfolio_return,
                turnover,
                trade_count,
                trades_per_date,
                threads,
            )
    finally:
        numba.set_num_threads(previous)


@njit(cache=True, parallel=True)
def _simulate_trials_nb(
    target_weight: np.ndarray,
    target_of_trial: np.ndarray,
    open_price: np.ndarray,
    close_price: np.ndarray,
    daily_vol: np.ndarray,
    adv_shares: np.ndarray,
    parameters: np.ndarray,
    equity: np.ndarray,
    portfolio_return: np.ndarray,
    turnover: np.ndarray,
    trade_count: np.ndarray,
    trades_per_date: np.ndarray,
    n_threads: int,
) -> None:
    """The batch loop of :func:`simulate_trials`: one set of work buffers per thread (numba's
    ``get_thread_id`` picks it), trials spread over ``n_threads`` threads."""
    n_trials = target_of_trial.shape[0]
    n_targets, n_dates, n_tickers = target_weight.shape
    if parameters.shape[0] != n_trials or parameters.shape[1] != N_BOOK_PARAMETERS:
        raise ValueError("parameters must have shape (n_trials, N_BOOK_PARAMETERS)")
    if equity.shape[0] != n_trials or equity.shape[1] != n_dates:
        raise ValueError("equity must have shape (n_trials, n_dates)")
    if portfolio_return.shape[0] != n_trials or portfolio_return.shape[1] != n_dates:
        raise ValueError("portfolio_return must have shape (n_trials, n_dates)")
    if turnover.shape[0] != n_trials or turnover.shape[1] != n_dates:
        raise ValueError("turnover must have shape (n_trials, n_dates)")
    if trade_count.shape[0] != n_trials:
        raise ValueError("trade_count must have length n_trials")
    if trades_per_date.shape[0] != n_trials or trades_per_date.shape[1] != n_dates:
        raise ValueError("trades_per_date must have shape (n_trials, n_dates)")
    for trial in range(n_trials):
        if target_of_trial[trial] < 0 or target_of_trial[trial] >= n_targets:
            raise ValueError("target_of_trial must index the first axis of target_weight")
    work = np.empty((n_threads, TRIAL_WORK_ROWS, n_tickers))
    for trial in prange(n_trials):
        thread = numba.get_thread_id()
        trade_count[trial] = simulate_trial_returns(
            target_weight[target_of_trial[trial]],
            open_price,
            close_price,
            daily_vol,
            adv_shares,
            parameters[trial],
            work[thread],
            equity[trial],
            portfolio_return[trial],
            turnover[trial],
            trades_per_date[trial],
        )
