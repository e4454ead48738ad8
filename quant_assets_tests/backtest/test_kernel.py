"""The numba kernel: orders sized at the close and filled the next session, costs, cash
constraint, lots, missing data and the accounting identities, on small books whose answers
are computed by hand in the comments; and the order step on its own."""

from __future__ import annotations

import math
from typing import Any

import numpy as np
import pytest

from quant_assets.backtest.kernel import (
    FILL_NEXT_CLOSE,
    FILL_NEXT_OPEN,
    SIMULATE_BOOK_OUTPUTS,
    TRADE_DTYPE,
    decide_orders_nb,
    execute_orders_nb,
    mark_to_close_nb,
    portfolio_value,
    simulate_book,
    trailing_mean,
    trailing_volatility,
)

NAN = np.nan
OUTPUTS = SIMULATE_BOOK_OUTPUTS


def simulate(
    close: Any,
    target_weight: Any = None,
    *,
    open_price: Any = None,
    daily_vol: Any = None,
    adv_shares: Any = None,
    cash: float = 1000.0,
    shares: Any = None,
    mark: Any = None,
    initial_target: Any = None,
    fill_at: int = FILL_NEXT_CLOSE,
    commission_bps: float = 0.0,
    slippage_bps: float = 0.0,
    impact_coefficient: float = 0.0,
    lot_size: float = 0.0,
    allow_borrowing: bool = False,
) -> dict[str, np.ndarray]:
    """``simulate_book`` with the outputs by name; 1-D price lists are one ticker."""
    close = np.asarray(close, dtype=np.float64)
    if close.ndim == 1:
        close = close[:, None]
    n_dates, n_tickers = close.shape

    def grid(values: Any) -> np.ndarray:
        if values is None:
            return np.full((n_dates, n_tickers), NAN)
        return np.asarray(values, dtype=np.float64).reshape(n_dates, n_tickers)

    def row(values: Any, default: float) -> np.ndarray:
        if values is None:
            return np.full(n_tickers, default)
        return np.asarray(values, dtype=np.float64).reshape(n_tickers)

    result = simulate_book(
        grid(target_weight),
        grid(open_price),
        close,
        grid(daily_vol),
        grid(adv_shares),
        cash,
        row(shares, 0.0),
        row(mark, NAN),
        row(initial_target, NAN),
        fill_at,
        commission_bps,
        slippage_bps,
        impact_coefficient,
        lot_size,
        allow_borrowing,
    )
    return dict(zip(OUTPUTS, result, strict=True))


def test_buy_and_hold_equity_follows_the_price_exactly() -> None:
    # 1000 cash, weight 1 decided at the close of 10 before day 0: 100 shares, filled at day
    # 0's close of 10.
    book = simulate([10.0, 11.0, 12.0, 9.0], mark=[10.0], initial_target=[1.0])
    assert book["shares"][:, 0].tolist() == [100.0, 100.0, 100.0, 100.0]
    assert book["cash"].tolist() == [0.0, 0.0, 0.0, 0.0]
    assert book["equity"].tolist() == [1000.0, 1100.0, 1200.0, 900.0]
    assert book["pnl"][:, 0].tolist() == [0.0, 100.0, 100.0, -300.0]
    assert len(book["trades"]) == 1


def test_round_trip_costs_by_hand() -> None:
    # Fill at the open, 10 bp commission, 20 bp slippage, 10,000 cash.
    # Before day 0: weight 0.5 at the close of 100 → 0.5 × 10,000 / 100 = 50 shares.
    # Day 0: 50 shares bought at the open of 100 × 1.002 = 100.2,
    #        commission 50 × 100.2 × 0.001 = 5.01, cash 10,000 - 5,010 - 5.01 = 4,984.99.
    # Day 0: no order (NaN). Day 1: weight 0 → sell 50 on day 2 at 110 × 0.998 = 109.78,
    #        commission 5,489 × 0.001 = 5.489, cash 4,984.99 + 5,489 - 5.489 = 10,468.501.
    book = simulate(
        [101.0, 105.0, 111.0],
        [NAN, 0.0, NAN],
        open_price=[100.0, 104.0, 110.0],
        cash=10_000.0,
        mark=[100.0],
        initial_target=[0.5],
        fill_at=FILL_NEXT_OPEN,
        commission_bps=10.0,
        slippage_bps=20.0,
        lot_size=1.0,
    )
    assert book["trade_quantity"][:, 0].tolist() == [50.0, 0.0, -50.0]
    np.testing.assert_allclose(book["fill_price"][[0, 2], 0], [100.2, 109.78], rtol=1e-14)
    assert math.isnan(book["fill_price"][1, 0])
    np.testing.assert_allclose(book["commission"][:, 0], [5.01, 0.0, 5.489], rtol=1e-12)
    np.testing.assert_allclose(book["slippage_cost"][:, 0], [10.0, 0.0, 11.0], rtol=1e-12)
    np.testing.assert_allclose(book["cash"], [4984.99, 4984.99, 10468.501], rtol=1e-14)
    # Marked at the close: 4,984.99 + 50 × 101, then + 50 × 105, then flat.
    np.testing.assert_allclose(book["equity"], [10034.99, 10234.99, 10468.501], rtol=1e-14)
    # The round trip earns 50 × (109.78 - 100.2) - 5.01 - 5.489 = 468.501.
    np.testing.assert_allclose(book["pnl"].sum(), 468.501, rtol=1e-12)


def test_buys_are_scaled_to_the_cash_left_after_sells() -> None:
    # Cash 0, 100 shares of A at 10: equity 1,000. Targets A 0.2, B 0.9 (gross 1.1).
    # Sell 80 A first (+800 cash); B wants 90 shares (900) but only 800 is there:
    # scaled by 800 / 900 to 80 shares, and cash ends at (not below) zero.
    book = simulate(
        [[10.0, 10.0]],
        cash=0.0,
        shares=[100.0, 0.0],
        mark=[10.0, 10.0],
        initial_target=[0.2, 0.9],
    )
    np.testing.assert_allclose(book["trade_quantity"][0], [-80.0, 80.0], rtol=1e-12)
    assert book["cash"][0] >= 0.0
    assert book["cash"][0] < 1e-9
    # Execution order: the sell comes before the buy.
    assert book["trades"]["quantity"].tolist()[0] < 0 < book["trades"]["quantity"].tolist()[1]


def test_scaled_buys_round_down_to_the_lot_and_pay_commission() -> None:
    # 1,000 cash, two tickers at 10, targets 0.6 each, 10 bp commission, lot 1:
    # each wants 60 shares; need 2 × 600 × 1.001 = 1,201.2 → k = 1,000 / 1,201.2,
    # 60 k = 49.95 → 49 shares; cash 1,000 - 2 × (490 + 0.49) = 19.02.
    book = simulate(
        [[10.0, 10.0]],
        mark=[10.0, 10.0],
        initial_target=[0.6, 0.6],
        commission_bps=10.0,
        lot_size=1.0,
    )
    assert book["shares"][0].tolist() == [49.0, 49.0]
    np.testing.assert_allclose(book["cash"][0], 19.02, rtol=1e-12)


def test_borrowing_lets_cash_go_negative() -> None:
    book = simulate(
        [[10.0, 10.0]],
        cash=0.0,
        shares=[100.0, 0.0],
        mark=[10.0, 10.0],
        initial_target=[0.2, 0.9],
        allow_borrowing=True,
    )
    assert book["shares"][0].tolist() == [20.0, 90.0]
    assert book["cash"][0] == -100.0  # 800 from the sale, 900 spent


def test_cash_never_negative_without_borrowing_on_a_random_book() -> None:
    rng = np.random.default_rng(3)
    close = 50 * np.exp(np.cumsum(rng.normal(0, 0.02, (300, 8)), axis=0))
    targets = rng.uniform(0, 0.3, (300, 8))  # gross up to 2.4: buys are often scaled
    book = simulate(
        close,
        targets,
        open_price=close * 1.001,
        daily_vol=np.full((300, 8), 0.02),
        adv_shares=np.full((300, 8), 1_000.0),
        cash=1e5,
        fill_at=FILL_NEXT_OPEN,
        commission_bps=5.0,
        slippage_bps=5.0,
        impact_coefficient=0.5,
        lot_size=1.0,
    )
    assert (book["cash"] >= 0.0).all()
    assert (book["shares"] >= 0.0).all()


@pytest.mark.parametrize(
    ("fill_at", "fill_price", "equity"),
    [
        # Day 1's open 30: cash 1,200 - 15 × 30 = 750, worth 750 + 15 × 20, then + 15 × 10.
        (FILL_NEXT_OPEN, 30.0, [1200.0, 1050.0, 900.0]),
        # Day 1's close 20: cash 1,200 - 15 × 20 = 900, worth 900 + 15 × 20, then + 15 × 10.
        (FILL_NEXT_CLOSE, 20.0, [1200.0, 1200.0, 1050.0]),
    ],
)
def test_orders_of_day_t_are_sized_at_its_close_and_fill_on_day_t_plus_1(
    fill_at: int, fill_price: float, equity: list[float]
) -> None:
    # Decided at day 0's close of 40: 0.5 × 1,200 / 40 = 15 shares, whichever price fills
    # them. (Until the books shared one order step the backtest sized at the fill price: 20
    # shares at the open of 30, 30 at the close of 20.)
    book = simulate(
        [40.0, 20.0, 10.0],
        [0.5, NAN, 0.0],  # the last day's 0 would sell everything: it is never executed
        open_price=[45.0, 30.0, 5.0],
        cash=1200.0,
        fill_at=fill_at,
    )
    assert book["trade_quantity"][:, 0].tolist() == [0.0, 15.0, 0.0]
    assert book["shares"][:, 0].tolist() == [0.0, 15.0, 15.0]
    assert book["fill_price"][1, 0] == fill_price
    assert book["equity"].tolist() == equity
    assert book["trades"]["date_index"].tolist() == [1]


def test_a_gap_at_the_open_does_not_resize_the_order() -> None:
    # 10,000 cash; weight 0.5 decided at day 0's close of 100 → 50 shares. Day 1 opens at 80
    # (a sizing at the fill price would buy 62): 50 bought for 4,000, cash 6,000; the close
    # of 90 marks the book at 6,000 + 50 × 90 = 10,500.
    book = simulate(
        [100.0, 90.0],
        [0.5, NAN],
        open_price=[NAN, 80.0],
        cash=10_000.0,
        fill_at=FILL_NEXT_OPEN,
        lot_size=1.0,
    )
    assert book["trade_quantity"][:, 0].tolist() == [0.0, 50.0]
    assert book["cash"].tolist() == [10_000.0, 6_000.0]
    assert book["equity"].tolist() == [10_000.0, 10_500.0]


def test_next_open_falls_back_to_the_close_without_an_open() -> None:
    # 0.5 × 1,000 / 10 = 50 shares decided at the close of 10, filled at day 1's close of 20.
    book = simulate([10.0, 20.0], [0.5, NAN], open_price=[NAN, NAN], fill_at=FILL_NEXT_OPEN)
    assert book["fill_price"][1, 0] == 20.0
    assert book["trade_quantity"][1, 0] == 50.0


def test_impact_grows_with_the_square_root_of_participation() -> None:
    # k = 0.5, σ = 2 %/day, ADV 10,000 shares, price 100, equity 1e6.
    # weight 0.1 → 1,000 shares: m = 0.5 × 0.02 × √(1,000 / 10,000) = 0.01 × √0.1;
    # weight 0.4 → 4,000 shares: m = 0.01 × √0.4, twice as much.
    impact = {}
    for weight, quantity in ((0.1, 1_000.0), (0.4, 4_000.0)):
        book = simulate(
            [100.0],
            cash=1e6,
            mark=[100.0],
            daily_vol=[0.02],
            adv_shares=[10_000.0],
            initial_target=[weight],
            impact_coefficient=0.5,
        )
        expected = 0.5 * 0.02 * math.sqrt(quantity / 10_000.0)
        fraction = book["fill_price"][0, 0] / 100.0 - 1.0
        np.testing.assert_allclose(fraction, expected, rtol=1e-12)
        np.testing.assert_allclose(
            book["impact_cost"][0, 0], quantity * 100.0 * expected, rtol=1e-12
        )
        impact[quantity] = expected
    np.testing.assert_allclose(impact[4_000.0], 2 * impact[1_000.0], rtol=1e-14)


def test_impact_is_zero_without_volatility_or_volume() -> None:
    for vol, adv in ((NAN, 1e4), (0.02, NAN), (0.02, 0.0)):
        book = simulate(
            [100.0],
            cash=1e6,
            mark=[100.0],
            daily_vol=[vol],
            adv_shares=[adv],
            initial_target=[0.5],
            impact_coefficient=1.0,
        )
        assert book["fill_price"][0, 0] == 100.0
        assert book["impact_cost"][0, 0] == 0.0


def test_sell_fill_is_lowered_by_slippage_and_impact() -> None:
    # 1,000 shares sold at 100: s = 10 bp, m = 1 × 0.01 × √(1,000 / 1,000) = 1 %.
    book = simulate(
        [100.0],
        cash=0.0,
        shares=[1_000.0],
        mark=[100.0],
        daily_vol=[0.01],
        adv_shares=[1_000.0],
        initial_target=[0.0],
        slippage_bps=10.0,
        impact_coefficient=1.0,
    )
    np.testing.assert_allclose(book["fill_price"][0, 0], 100.0 * (1 - 0.001 - 0.01))
    np.testing.assert_allclose(book["cash"][0], 1_000 * 100.0 * (1 - 0.001 - 0.01))


def test_trades_round_toward_zero_to_the_lot() -> None:
    # Buy: 0.5 × 10,000 / 30 = 166.7 shares → a target of 100.
    buy = simulate([30.0], cash=10_000.0, mark=[30.0], initial_target=[0.5], lot_size=100.0)
    assert buy["trade_quantity"][0, 0] == 100.0
    # Target 0 closes the whole position, odd lot included: 250 → 0 is -250. (Until the
    # books shared one order step the backtest rounded the delta: -200, leaving 50.)
    sell = simulate(
        [30.0], cash=0.0, shares=[250.0], mark=[30.0], initial_target=[0.0], lot_size=100.0
    )
    assert sell["trade_quantity"][0, 0] == -250.0
    assert sell["shares"][0, 0] == 0.0
    # A partial sell: equity 2,500 + 250 × 30 = 10,000, target 0.5 → 166.7 → 100 shares;
    # the order 100 - 250 = -150 rounds toward zero to -100, leaving 150.
    partial = simulate(
        [30.0], cash=2_500.0, shares=[250.0], mark=[30.0], initial_target=[0.5], lot_size=100.0
    )
    assert partial["trade_quantity"][0, 0] == -100.0
    assert partial["shares"][0, 0] == 150.0


def test_a_nan_target_keeps_the_shares() -> None:
    book = simulate([10.0, 12.0], [NAN, NAN], shares=[10.0], mark=[9.0], initial_target=[NAN])
    assert book["shares"][:, 0].tolist() == [10.0, 10.0]
    assert len(book["trades"]) == 0
    # 1,000 cash + 10 shares marked 10 then 12; pnl 10 × (10 - 9) then 10 × 2.
    assert book["equity"].tolist() == [1100.0, 1120.0]
    assert book["pnl"][:, 0].tolist() == [10.0, 20.0]


def test_a_missing_price_skips_the_trade_and_keeps_the_mark() -> None:
    # Day 0 buys 100 at 10. The sell decided at day 0's close meets no price on day 1:
    # no trade (the order is dropped, not delayed), marked at the last close 10.
    book = simulate([10.0, NAN, 12.0], [0.0, NAN, NAN], mark=[10.0], initial_target=[1.0])
    assert book["trade_quantity"][:, 0].tolist() == [100.0, 0.0, 0.0]
    assert book["mark_price"][:, 0].tolist() == [10.0, 10.0, 12.0]
    assert book["equity"].tolist() == [1000.0, 1000.0, 1200.0]


def test_a_never_priced_flat_ticker_does_not_poison_equity() -> None:
    book = simulate([[10.0, NAN], [11.0, NAN]], mark=[10.0, NAN], initial_target=[0.5, 0.5])
    assert book["shares"][0].tolist() == [50.0, 0.0]
    assert book["equity"].tolist() == [1000.0, 1050.0]
    assert math.isnan(book["mark_price"][1, 1])
    assert book["pnl"][:, 1].tolist() == [0.0, 0.0]


def test_a_ticker_is_ordered_only_once_it_has_a_close_to_size_at() -> None:
    # Day 0 has an open but no close: nothing to size the targets before day 0 and at day
    # 0's close at. Day 1 closes at 12: 0.5 × 1,000 / 12 = 41.7 → 41 shares, bought at day
    # 2's open of 12.5: cash 487.5, worth 487.5 + 41 × 13 = 1,020.5.
    book = simulate(
        [NAN, 12.0, 13.0],
        [0.5, 0.5, NAN],
        open_price=[10.0, 11.0, 12.5],
        initial_target=[0.5],
        fill_at=FILL_NEXT_OPEN,
        lot_size=1.0,
    )
    assert book["trade_quantity"][:, 0].tolist() == [0.0, 0.0, 41.0]
    np.testing.assert_array_equal(book["mark_price"][:, 0], [NAN, 12.0, 13.0])
    assert book["equity"].tolist() == [1000.0, 1000.0, 1020.5]


def test_a_position_never_closed_is_marked_at_its_fill_reference() -> None:
    # 50 shares bought at the open of 10 before any close (as a state can hold): the open is
    # the only price known, so equity is 500 + 50 × 10 = 1,000, not NaN.
    previous_mark, mark, pnl = np.array([NAN]), np.empty(1), np.empty(1)
    equity = mark_to_close_nb(
        np.array([NAN]),  # close
        np.array([10.0]),  # reference price of the fill
        np.array([0.0]),  # shares before
        np.array([50.0]),  # shares after
        np.array([50.0]),  # trade quantity
        np.array([10.0]),  # fill price
        np.array([0.0]),  # commission
        previous_mark,
        mark,
        500.0,
        pnl,
    )
    assert equity == 1000.0
    assert mark.tolist() == [10.0]
    assert pnl.tolist() == [0.0]


def _valid_arguments() -> dict[str, Any]:
    grid = np.full((3, 2), 10.0)
    return {
        "target_weight": grid.copy(),
        "open_price": grid.copy(),
        "close_price": grid.copy(),
        "daily_vol": grid.copy(),
        "adv_shares": grid.copy(),
        "initial_cash": 1000.0,
        "initial_shares": np.zeros(2),
        "initial_mark": np.full(2, NAN),
        "initial_target": np.full(2, NAN),
        "fill_at": FILL_NEXT_OPEN,
        "commission_bps": 1.0,
        "slippage_bps": 1.0,
        "impact_coefficient": 0.1,
        "lot_size": 1.0,
        "allow_borrowing": False,
    }


@pytest.mark.parametrize(
    ("argument", "value"),
    [
        ("open_price", np.full((3, 3), 10.0)),
        ("close_price", np.full((2, 2), 10.0)),
        ("daily_vol", np.full((3, 1), 0.01)),
        ("adv_shares", np.full((4, 2), 1.0)),
        ("initial_shares", np.zeros(3)),
        ("initial_shares", np.array([NAN, 0.0])),
        ("initial_mark", np.full(1, 10.0)),
        ("initial_mark", np.array([-1.0, 10.0])),
        ("initial_target", np.full(3, NAN)),
        ("initial_target", np.array([np.inf, 0.0])),
        ("initial_cash", NAN),
        ("fill_at", 2),
        ("commission_bps", -1.0),
        ("slippage_bps", NAN),
        ("impact_coefficient", np.inf),
        ("lot_size", -1.0),
        ("close_price", np.array([[10.0, 10.0], [0.0, 10.0], [10.0, 10.0]])),
        ("open_price", np.array([[10.0, -1.0], [10.0, 10.0], [10.0, 10.0]])),
        ("target_weight", np.array([[np.inf, 0.0], [0.0, 0.0], [0.0, 0.0]])),
    ],
)
def test_invalid_inputs_raise_naming_the_argument(argument: str, value: Any) -> None:
    arguments = _valid_arguments()
    arguments[argument] = value
    with pytest.raises(ValueError, match=argument):
        simulate_book(*arguments.values())


def test_trade_records_match_the_arrays() -> None:
    rng = np.random.default_rng(5)
    close = 20 * np.exp(np.cumsum(rng.normal(0, 0.02, (60, 5)), axis=0))
    open_price = close * np.exp(rng.normal(0, 0.005, (60, 5)))
    open_price[rng.random((60, 5)) < 0.2] = NAN  # these fill at the close
    targets = np.where(rng.random((60, 5)) < 0.3, NAN, rng.uniform(-0.2, 0.3, (60, 5)))
    book = simulate(
        close,
        targets,
        open_price=open_price,
        daily_vol=np.full((60, 5), 0.02),
        adv_shares=np.full((60, 5), 5_000.0),
        cash=1e5,
        fill_at=FILL_NEXT_OPEN,
        commission_bps=2.0,
        slippage_bps=3.0,
        impact_coefficient=0.2,
        lot_size=1.0,
    )
    trades = book["trades"]
    assert trades.dtype == TRADE_DTYPE
    assert len(trades) == np.count_nonzero(book["trade_quantity"])
    dates, tickers = trades["date_index"], trades["ticker_index"]
    for name in ("fill_price", "commission", "slippage_cost", "impact_cost"):
        assert np.array_equal(trades[name], book[name][dates, tickers])
    assert np.array_equal(trades["quantity"], book["trade_quantity"][dates, tickers])
    reference = np.where(np.isfinite(open_price), open_price, close)[dates, tickers]
    assert np.array_equal(trades["reference_price"], reference)
    # In (date, execution order): dates never decrease, and within a date sells come first.
    assert (np.diff(dates) >= 0).all()
    for date_index in np.unique(dates):
        sides = np.sign(trades["quantity"][dates == date_index])
        assert (np.diff(sides) >= 0).all()


def test_accounting_identities_hold_on_a_ten_year_book() -> None:
    # 20 tickers × 2,520 sessions, random long/short targets (some missing), every cost on.
    rng = np.random.default_rng(11)
    n_dates, n_tickers = 2520, 20
    close = 40 * np.exp(np.cumsum(rng.normal(0, 0.015, (n_dates, n_tickers)), axis=0))
    open_price = close * np.exp(rng.normal(0, 0.004, (n_dates, n_tickers)))
    missing = rng.random((n_dates, n_tickers)) < 0.01
    close[missing] = NAN
    open_price[rng.random((n_dates, n_tickers)) < 0.02] = NAN
    targets = rng.uniform(-0.05, 0.12, (n_dates, n_tickers))
    targets[rng.random((n_dates, n_tickers)) < 0.2] = NAN
    book = simulate(
        close,
        targets,
        open_price=open_price,
        daily_vol=rng.uniform(0.005, 0.04, (n_dates, n_tickers)),
        adv_shares=rng.uniform(1e4, 1e6, (n_dates, n_tickers)),
        cash=1e7,
        fill_at=FILL_NEXT_OPEN,
        commission_bps=1.0,
        slippage_bps=2.0,
        impact_coefficient=0.1,
        lot_size=1.0,
    )
    assert len(book["trades"]) > n_dates * n_tickers // 2
    equity = book["equity"]
    holdings = np.where(book["shares"] != 0, book["shares"] * book["mark_price"], 0.0)
    np.testing.assert_allclose(equity, book["cash"] + holdings.sum(axis=1), rtol=1e-9)
    previous_equity = np.concatenate([[1e7], equity[:-1]])
    daily_change = equity - previous_equity
    np.testing.assert_allclose(
        book["pnl"].sum(axis=1), daily_change, rtol=0, atol=1e-9 * np.abs(equity).max()
    )


def test_portfolio_value_ignores_flat_never_priced_tickers() -> None:
    assert portfolio_value(5.0, np.array([2.0, 0.0]), np.array([10.0, NAN])) == 25.0


def test_trailing_mean_uses_only_earlier_rows() -> None:
    values = np.array([[1.0], [2.0], [3.0], [NAN], [5.0], [6.0]])
    # Row t averages rows t-2 and t-1; a gap in the window gives NaN.
    out = trailing_mean(values, 2)[:, 0]
    np.testing.assert_array_equal(out, [NAN, NAN, 1.5, 2.5, NAN, NAN])


def test_trailing_volatility_uses_only_earlier_returns() -> None:
    # Log returns r1 = log 1.1, r2 = log 0.9, r3 = log 1.1. Row 3 uses r1 and r2:
    # the sample std of two values is |r1 - r2| / √2. Row 2 would need r0: NaN.
    close = np.array([[100.0], [110.0], [99.0], [108.9], [1e6]])
    out = trailing_volatility(close, 2)[:, 0]
    assert np.isnan(out[:3]).all()
    np.testing.assert_allclose(out[3], abs(math.log(1.1) - math.log(0.9)) / math.sqrt(2))
    np.testing.assert_allclose(out[4], abs(math.log(0.9) - math.log(1.1)) / math.sqrt(2))


def test_the_records_only_entry_point_returns_the_same_book_and_trades() -> None:
    from quant_assets.backtest.kernel import simulate_book_records

    rng = np.random.default_rng(9)
    n_dates, n_tickers = 60, 5
    close = 50 * np.exp(np.cumsum(rng.normal(0, 0.02, (n_dates, n_tickers)), axis=0))
    open_price = close * np.exp(rng.normal(0, 0.005, close.shape))
    targets = rng.uniform(0, 0.3, close.shape)
    vol = np.full(close.shape, 0.02)
    adv = np.full(close.shape, 5_000.0)
    args = (
        targets, open_price, close, vol, adv, 100_000.0, np.zeros(n_tickers),
        np.full(n_tickers, NAN), np.full(n_tickers, NAN), FILL_NEXT_OPEN, 1.0, 2.0, 0.1, 1.0,
        False,
    )  # fmt: skip
    dense = dict(zip(OUTPUTS, simulate_book(*args), strict=True))
    shares, pnl, mark, cash, equity, trades = simulate_book_records(*args)
    for name, values in (("shares", shares), ("pnl", pnl), ("mark_price", mark)):
        np.testing.assert_array_equal(values, dense[name])
    np.testing.assert_array_equal(cash, dense["cash"])
    np.testing.assert_array_equal(equity, dense["equity"])
    np.testing.assert_array_equal(trades, dense["trades"])
    traded = dense["trade_quantity"][trades["date_index"], trades["ticker_index"]]
    np.testing.assert_array_equal(trades["quantity"], traded)


# --- the order step and the decision on their own (what the paper book calls) ---


def _execute(
    order: list[float],
    reference: list[float],
    shares: np.ndarray,
    cash: float,
    *,
    daily_vol: list[float] | None = None,
    adv_shares: list[float] | None = None,
    commission_bps: float = 0.0,
    slippage_bps: float = 0.0,
    impact_coefficient: float = 0.0,
    lot_size: float = 1.0,
    allow_borrowing: bool = False,
    record: bool = True,
) -> tuple[float, dict[str, np.ndarray]]:
    n = len(order)
    rows = {name: np.empty(n) for name in OUTPUTS[1:6]}
    trades = np.empty(n + 2 if record else 0, dtype=TRADE_DTYPE)
    cash, n_trades = execute_orders_nb(
        np.array(order),
        np.array(reference),
        np.array(daily_vol if daily_vol is not None else [NAN] * n),
        np.array(adv_shares if adv_shares is not None else [NAN] * n),
        shares,
        cash,
        commission_bps,
        slippage_bps,
        impact_coefficient,
        lot_size,
        allow_borrowing,
        shares,  # updated in place
        *rows.values(),
        trades,
        2,  # two records already written: the step appends after them
        7,
    )
    rows["trades"] = trades[2:n_trades]
    rows["n_trades"] = np.array(n_trades)
    return cash, rows


def test_the_order_step_sells_first_updates_shares_and_lets_an_unpriced_order_expire() -> None:
    # 200 cash; sell 100 at 10 (+1,000), then buy 60 at 20 (-1,200): exactly 0 left. The
    # order for the third ticker meets no price and expires.
    shares = np.array([100.0, 0.0, 10.0])
    cash, rows = _execute([-100.0, 60.0, 5.0], [10.0, 20.0, NAN], shares, 200.0)
    assert cash == 0.0
    assert shares.tolist() == [0.0, 60.0, 10.0]
    assert rows["trade_quantity"].tolist() == [-100.0, 60.0, 0.0]
    np.testing.assert_array_equal(rows["fill_price"], [10.0, 20.0, NAN])
    trades = rows["trades"]
    assert trades["ticker_index"].tolist() == [0, 1]
    assert trades["date_index"].tolist() == [7, 7]
    assert trades["quantity"].tolist() == [-100.0, 60.0]


def test_without_a_records_array_the_order_step_fills_and_counts_the_same() -> None:
    # A study's trial book passes an empty records array: same fills, cash and count.
    def step(record: bool) -> tuple[float, np.ndarray, dict[str, np.ndarray]]:
        shares = np.array([100.0, 0.0, 10.0, 0.0])
        cash, rows = _execute(
            [-100.0, 60.0, 5.0, 30.0],
            [10.0, 20.0, NAN, 50.0],
            shares,
            500.0,
            commission_bps=3.0,
            record=record,
        )
        return cash, shares, rows

    cash, shares, rows = step(True)
    cash_bare, shares_bare, rows_bare = step(False)
    assert cash_bare == cash and shares_bare.tolist() == shares.tolist()
    for name in OUTPUTS[1:6]:
        np.testing.assert_array_equal(rows_bare[name], rows[name])
    assert int(rows_bare["n_trades"]) == int(rows["n_trades"]) == 2 + 3
    assert len(rows["trades"]) == 3 and len(rows_bare["trades"]) == 0


def test_the_order_step_charges_slippage_impact_and_commission_by_hand() -> None:
    # Sell 1,000 at 100 with s = 10 bp, m = 1 × 0.01 × √(1,000 / 1,000) = 1 %, 5 bp
    # commission: fill 100 × (1 - 0.001 - 0.01) = 98.9; commission 98,900 × 0.0005 = 49.45;
    # slippage 1,000 × 100 × 0.001 = 100; impact 1,000 × 100 × 0.01 = 1,000.
    shares = np.array([1_000.0])
    cash, rows = _execute(
        [-1_000.0],
        [100.0],
        shares,
        0.0,
        daily_vol=[0.01],
        adv_shares=[1_000.0],
        commission_bps=5.0,
        slippage_bps=10.0,
        impact_coefficient=1.0,
    )
    np.testing.assert_allclose(rows["fill_price"], [98.9], rtol=1e-14)
    np.testing.assert_allclose(rows["commission"], [49.45], rtol=1e-12)
    np.testing.assert_allclose(rows["slippage_cost"], [100.0], rtol=1e-12)
    np.testing.assert_allclose(rows["impact_cost"], [1_000.0], rtol=1e-12)
    np.testing.assert_allclose(cash, 98_900.0 - 49.45, rtol=1e-14)
    assert shares.tolist() == [0.0]


def test_the_decision_sizes_at_the_close_and_the_kill_switch_only_closes() -> None:
    order = np.empty(3)
    # Equity 1,000: 0.5 × 1,000 / 30 = 16.7 → 16; a NaN weight keeps the 3 shares; a short
    # of 0.25 × 1,000 / 10 = 25 shares.
    decide_orders_nb(
        np.array([0.5, NAN, -0.25]),
        np.array([0.0, 3.0, 0.0]),
        np.array([30.0, 10.0, 10.0]),
        1_000.0,
        1.0,
        False,
        order,
    )
    assert order.tolist() == [16.0, 0.0, -25.0]
    # Flat only: every held position is closed, whatever its weight, price or the equity.
    decide_orders_nb(
        np.array([0.9, NAN, 0.5]),
        np.array([10.0, -5.0, 0.0]),
        np.array([NAN, 10.0, 10.0]),
        NAN,
        1.0,
        True,
        order,
    )
    assert order.tolist() == [-10.0, 5.0, 0.0]
