"""Next-session orders and the paper book that fills them (pure domain, no Dagster).

The fills, costs and equity come from the backtest's order step; ``test_books_agree`` checks
the two books row for row, these tests the paper book's own behaviour by hand."""

from __future__ import annotations

import json
import math
from datetime import date, timedelta

import numpy as np
import polars as pl
import pytest
from polars.testing import assert_frame_equal

from quant_assets.backtest.book import BookState, run_book
from quant_assets.execution import PaperBookState, decide_orders, run_paper_book
from quant_assets.settings import BacktestSettings

D0, D1, D2 = date(2024, 1, 2), date(2024, 1, 3), date(2024, 1, 4)
COSTLY = BacktestSettings(
    initial_capital=10_000, commission_bps=10, slippage_bps=20, lot_size=1, impact_coefficient=0
)


def bars(rows: dict[str, list[tuple]]) -> pl.DataFrame:
    """ticker → [(date, open, close)] or [(date, open, close, volume)]; volume 1e6 when not
    given."""
    return pl.DataFrame(
        [
            {"date": d, "ticker": t, "open": o, "close": c, "volume": rest[0] if rest else 1e6}
            for t, series in rows.items()
            for d, o, c, *rest in series
        ],
        schema={
            "date": pl.Date,
            "ticker": pl.Utf8,
            "open": pl.Float64,
            "close": pl.Float64,
            "volume": pl.Float64,
        },
    )


def targets(rows: list[tuple[date, str, float]], codes: str | None = None) -> pl.DataFrame:
    return pl.DataFrame(
        [{"date": d, "ticker": t, "target_weight": w, "reason_codes": codes} for d, t, w in rows],
        schema={
            "date": pl.Date,
            "ticker": pl.Utf8,
            "target_weight": pl.Float64,
            "reason_codes": pl.Utf8,
        },
    )


def run(bar_frame, target_frame, settings=COSTLY, state=None, start=D0, tickers=("AAA",), **kw):
    return run_paper_book(
        bar_frame,
        target_frame,
        settings,
        start=start,
        state=state or PaperBookState.initial(settings.initial_capital),
        tickers=list(tickers),
        strategy="test",
        **kw,
    )


def test_one_buy_is_decided_at_the_close_and_filled_at_the_next_open_with_known_costs():
    result = run(
        bars({"AAA": [(D0, 99.0, 100.0), (D1, 101.0, 102.0)]}),
        targets([(D0, "AAA", 0.5), (D1, "AAA", 0.5)], codes='["KELLY:0.5"]'),
    )
    first = result.orders.row(0, named=True)
    assert first["date"] == D0 and first["side"] == "BUY" and first["quantity"] == 50
    assert first["reference_price"] == 100.0 and first["notional"] == 5000.0
    assert first["current_shares"] == 0 and first["target_shares"] == 50
    assert json.loads(first["reason_codes"]) == ["KELLY:0.5", "OPEN"]
    assert first["kill_switch"] is False and first["strategy"] == "test"

    filled = result.book.filter(pl.col("date") == D1).row(0, named=True)
    assert filled["order_quantity"] == 50 and filled["filled_quantity"] == 50
    assert filled["fill_reference_price"] == 101.0
    assert filled["fill_price"] == pytest.approx(101.0 * 1.002)
    assert filled["slippage_cost"] == pytest.approx(50 * 101.0 * 0.002)
    assert filled["commission"] == pytest.approx(50 * 101.0 * 1.002 * 0.001)
    cash = 10_000 - 50 * 101.0 - 10.1 - 5.0601
    assert filled["cash"] == pytest.approx(cash, rel=1e-12)
    assert filled["equity"] == pytest.approx(cash + 50 * 102.0, rel=1e-12)
    # D1's decision: 0.5 × 10034.8399 / 102 = 49.19 → 49 shares, one to sell.
    second = result.orders.filter(pl.col("date") == D1).row(0, named=True)
    assert (second["side"], second["quantity"], second["target_shares"]) == ("SELL", 1, 49)
    assert json.loads(second["reason_codes"])[-1] == "REDUCE"
    assert result.final_state.pending == {"AAA": -1.0}
    # Nothing fills on the decision session itself.
    assert result.book.filter(pl.col("date") == D0)["filled_quantity"].to_list() == [0.0]


def test_next_close_fills_at_the_close_and_a_missing_open_falls_back_to_the_close():
    bar_frame = bars({"AAA": [(D0, 99.0, 100.0), (D1, None, 102.0)]})
    target_frame = targets([(D0, "AAA", 0.5)])
    for fill in ("next_open", "next_close"):
        settings = COSTLY.model_copy(update={"fill": fill})
        book = run(bar_frame, target_frame, settings=settings).book
        assert book.filter(pl.col("date") == D1)["fill_reference_price"].to_list() == [102.0]


def test_a_sell_closes_the_position_and_credits_the_proceeds_net_of_costs():
    state = PaperBookState(as_of=D0, cash=0.0, shares={"AAA": 100.0}, mark_price={"AAA": 50.0})
    result = run(
        bars({"AAA": [(D1, 50.0, 50.0), (D2, 40.0, 41.0)]}),
        targets([(D1, "AAA", 0.0)]),
        state=state,
        start=D1,
    )
    order = result.orders.row(0, named=True)
    assert (order["side"], order["quantity"], order["target_shares"]) == ("SELL", 100, 0)
    assert json.loads(order["reason_codes"]) == ["CLOSE"]
    row = result.book.filter(pl.col("date") == D2).row(0, named=True)
    proceeds = 100 * 40.0 * (1 - 0.002)
    assert row["fill_price"] == pytest.approx(40.0 * 0.998)
    assert row["cash"] == pytest.approx(proceeds - proceeds * 0.001, rel=1e-12)
    assert row["shares"] == 0 and row["equity"] == row["cash"]


def test_target_shares_round_toward_zero_to_the_lot():
    orders = decide_orders(
        np.array([0.5, -0.5]),
        np.zeros(2),
        np.array([30.0, 30.0]),
        10_000.0,
        lot_size=10,
        kill_switch=False,
    )
    assert orders.target_shares.tolist() == [160.0, -160.0]  # 166.7 lots of 1 → 16 lots of 10
    assert orders.quantity.tolist() == [160.0, -160.0]


def test_buys_are_scaled_down_to_whole_lots_when_cash_is_short():
    state = PaperBookState(
        as_of=D0, cash=1_000.0, pending={"AAA": 10.0, "BBB": 10.0}, mark_price={}
    )
    result = run(
        bars({"AAA": [(D1, 100.0, 100.0)], "BBB": [(D1, 50.0, 50.0)]}),
        targets([]),
        state=state,
        start=D1,
        tickers=("AAA", "BBB"),
    )
    filled = result.book.sort("ticker")
    # need ≈ 1500 × 1.003: scale ≈ 0.664 → 6.6 → 6 shares each.
    assert filled["filled_quantity"].to_list() == [6.0, 6.0]
    assert filled["cash"][0] >= 0
    assert filled["cash"][0] == pytest.approx(1_000 - 900 * 1.002 - 900 * 1.002 * 0.001)
    borrowing = COSTLY.model_copy(update={"allow_borrowing": True})
    borrowed = run(
        bars({"AAA": [(D1, 100.0, 100.0)], "BBB": [(D1, 50.0, 50.0)]}),
        targets([]),
        settings=borrowing,
        state=state,
        start=D1,
        tickers=("AAA", "BBB"),
    ).book
    assert borrowed["filled_quantity"].to_list() == [10.0, 10.0]
    assert borrowed["cash"][0] < 0


def test_sells_fill_before_buys_and_fund_them():
    state = PaperBookState(
        as_of=D0,
        cash=0.0,
        shares={"BBB": 20.0},
        mark_price={"BBB": 50.0},
        pending={"AAA": 5.0, "BBB": -20.0},
    )
    book = run(
        bars({"AAA": [(D1, 100.0, 100.0)], "BBB": [(D1, 50.0, 50.0)]}),
        targets([]),
        settings=COSTLY.model_copy(update={"commission_bps": 0, "slippage_bps": 0}),
        state=state,
        start=D1,
        tickers=("AAA", "BBB"),
    ).book
    assert book.sort("ticker")["filled_quantity"].to_list() == [5.0, -20.0]
    assert book["cash"][0] == pytest.approx(500.0)


def test_kill_switch_flattens_the_book_and_never_opens_or_increases():
    state = PaperBookState(as_of=D0, cash=5_000.0, shares={"AAA": 50.0}, mark_price={"AAA": 100.0})
    result = run(
        bars({"AAA": [(D1, 100.0, 100.0), (D2, 100.0, 100.0)], "BBB": [(D1, 10.0, 10.0)]}),
        targets([(D1, "AAA", 0.9), (D1, "BBB", 0.5), (D2, "AAA", 0.9)], codes='["KELLY:0.9"]'),
        state=state,
        start=D1,
        tickers=("AAA", "BBB"),
        kill_switch_sessions={D1},
    )
    killed = result.orders.filter(pl.col("date") == D1)
    assert killed["ticker"].to_list() == ["AAA"]  # no order opens BBB
    row = killed.row(0, named=True)
    assert (row["side"], row["quantity"], row["target_shares"]) == ("SELL", 50, 0)
    assert row["kill_switch"] is True and row["target_weight"] == 0.0
    assert row["position_target_weight"] == 0.9
    assert json.loads(row["reason_codes"]) == ["KELLY:0.9", "CLOSE", "KILL_SWITCH"]
    # Every kill-switch order reduces |shares|.
    assert (killed["target_shares"].abs() < killed["current_shares"].abs()).all()
    # The next session (switch off) buys again.
    assert result.orders.filter(pl.col("date") == D2)["side"].to_list() == ["BUY"]


def random_market(n_sessions: int = 40, seed: int = 3) -> tuple[pl.DataFrame, pl.DataFrame]:
    rng = np.random.default_rng(seed)
    days = [D0 + timedelta(days=i) for i in range(n_sessions)]
    rows, weights = [], []
    for ticker in ("AAA", "BBB", "CCC"):
        close = 50 * np.exp(np.cumsum(rng.normal(0, 0.02, n_sessions)))
        opening = close * np.exp(rng.normal(0, 0.005, n_sessions))
        for i, d in enumerate(days):
            if ticker == "CCC" and i % 7 == 3:
                continue  # a missing bar: no fill, marked at the last close
            rows.append((d, ticker, float(opening[i]), float(close[i]), 5_000.0 + 100.0 * i))
            weights.append((d, ticker, float(rng.uniform(-0.1, 0.5))))
    frame = pl.DataFrame(rows, schema=["date", "ticker", "open", "close", "volume"], orient="row")
    return frame, targets(weights, codes='["KELLY"]')


TICKERS = ("AAA", "BBB", "CCC")
# With square-root impact priced from 5-session windows: the splits and look-ahead tests below
# also cover the impact's look-back.
LONG_SHORT = COSTLY.model_copy(
    update={
        "initial_capital": 100_000.0,
        "impact_coefficient": 0.5,
        "vol_window": 5,
        "adv_window": 5,
    }
)


def test_future_bars_do_not_change_past_orders_or_book():
    bar_frame, target_frame = random_market()
    cut = bar_frame["date"].unique().sort()[20]
    base = run(bar_frame, target_frame, LONG_SHORT, tickers=TICKERS, kill_switch_sessions={cut})
    future = pl.col("date") > cut
    perturbed_bars = bar_frame.with_columns(
        pl.when(future).then(pl.col("open") * 3).otherwise(pl.col("open")).alias("open"),
        pl.when(future).then(pl.col("close") * 0.2).otherwise(pl.col("close")).alias("close"),
    ).filter(~(future & (pl.col("ticker") == "BBB")))
    perturbed_targets = target_frame.with_columns(
        pl.when(future).then(0.9).otherwise(pl.col("target_weight")).alias("target_weight")
    )
    other = run(
        perturbed_bars, perturbed_targets, LONG_SHORT, tickers=TICKERS, kill_switch_sessions={cut}
    )
    for table in ("orders", "book"):
        past = pl.col("date") <= cut
        assert_frame_equal(getattr(base, table).filter(past), getattr(other, table).filter(past))
        assert getattr(base, table).filter(~past).height > 0


def test_a_range_run_in_two_pieces_equals_one_run_with_a_pending_order_across_the_split():
    bar_frame, target_frame = random_market()
    sessions = bar_frame["date"].unique().sort()
    split = sessions[25]
    kills = {sessions[10], sessions[30]}
    whole = run(bar_frame, target_frame, LONG_SHORT, tickers=TICKERS, kill_switch_sessions=kills)
    first = run(
        bar_frame.filter(pl.col("date") < split),
        target_frame,
        LONG_SHORT,
        tickers=TICKERS,
        kill_switch_sessions=kills,
    )
    last_day = sessions[24]
    state = PaperBookState.from_rows(
        first.book.filter(pl.col("date") == last_day),
        first.orders.filter(pl.col("date") == last_day),
    )
    assert state.pending, "the split must carry a pending order"
    assert state == first.final_state
    second = run(
        bar_frame,
        target_frame,
        LONG_SHORT,
        state=state,
        start=split,
        tickers=TICKERS,
        kill_switch_sessions=kills,
    )
    assert_frame_equal(pl.concat([first.book, second.book]), whole.book)
    assert_frame_equal(pl.concat([first.orders, second.orders]), whole.orders)


def test_equity_is_cash_plus_holdings_and_cash_moves_only_by_the_fills():
    bar_frame, target_frame = random_market()
    result = run(bar_frame, target_frame, LONG_SHORT, tickers=TICKERS)
    daily = (
        result.book.group_by("date")
        .agg(
            pl.col("cash").first(),
            pl.col("equity").first(),
            (pl.col("shares") * pl.col("mark_price")).fill_null(0).sum().alias("holdings"),
            pl.col("cash_flow").sum(),
            (pl.col("filled_quantity") != 0).sum().alias("fills"),
        )
        .sort("date")
    )
    assert daily["fills"].sum() > 20
    np.testing.assert_allclose(daily["cash"] + daily["holdings"], daily["equity"], rtol=1e-9)
    start = np.concatenate([[LONG_SHORT.initial_capital], daily["cash"].to_numpy()[:-1]])
    np.testing.assert_allclose(
        daily["cash"].to_numpy() - start, daily["cash_flow"].to_numpy(), rtol=0, atol=1e-6
    )
    book = result.book
    assert (book["cash"] >= 0).all()  # no borrowing: buys scaled to the cash
    # Shares only change by fills, and orders are whole lots with a positive price.
    assert (result.orders["quantity"] > 0).all()
    assert (result.orders["quantity"] % 1 == 0).all()
    assert (result.orders["reference_price"] > 0).all()


def test_bad_input_is_refused_naming_the_ticker_and_date():
    bar_frame = bars({"AAA": [(D0, 99.0, 100.0), (D1, 101.0, -1.0)]})
    with pytest.raises(ValueError, match="AAA on 2024-01-03"):
        run(bar_frame, targets([]))
    good = bars({"AAA": [(D0, 99.0, 100.0)]})
    with pytest.raises(ValueError, match="ticker ZZZ on 2024-01-02 names a ticker"):
        run(good, targets([(D0, "ZZZ", 0.1)]))
    state = PaperBookState(as_of=D0, cash=1.0)
    with pytest.raises(ValueError, match="not before start"):
        run(good, targets([]), state=state)


def test_the_fill_charges_square_root_impact_from_the_volatility_and_volume_known_at_the_decision():
    # vol_window 2, adv_window 1, k = 1, no commission or slippage. The order is decided at
    # D2's close of 99: 0.5 × 10,000 / 99 = 50.5 → 50 shares, filled at D3's open of 100.
    # σ known at D2's close: the sample std of the log returns log 1.1 and log 0.9, i.e.
    # |log 1.1 − log 0.9| / √2; ADV = D2's volume 50: m = σ × √(50 / 50) = σ.
    d3 = D2 + timedelta(days=1)
    settings = BacktestSettings(
        initial_capital=10_000,
        commission_bps=0,
        slippage_bps=0,
        impact_coefficient=1.0,
        vol_window=2,
        adv_window=1,
        lot_size=1,
    )
    bar_frame = bars(
        {
            "AAA": [
                (D0, 100.0, 100.0, 70.0),
                (D1, 100.0, 110.0, 60.0),
                (D2, 100.0, 99.0, 50.0),
                (d3, 100.0, 101.0, 40.0),
            ]
        }
    )
    result = run(bar_frame, targets([(D2, "AAA", 0.5)]), settings=settings)
    sigma = abs(math.log(1.1) - math.log(0.9)) / math.sqrt(2)
    row = result.book.filter(pl.col("date") == d3).row(0, named=True)
    assert row["filled_quantity"] == 50
    assert row["fill_price"] == pytest.approx(100.0 * (1 + sigma), rel=1e-14)
    # The stored slippage_cost is the whole concession against the reference (s + m).
    assert row["slippage_cost"] == pytest.approx(50 * 100.0 * sigma, rel=1e-12)
    assert row["cash_flow"] == pytest.approx(-50 * 100.0 * (1 + sigma), rel=1e-12)
    assert row["cash"] == pytest.approx(10_000 - 50 * 100.0 * (1 + sigma), rel=1e-12)
    trade = result.trades.row(0, named=True)
    assert (trade["date"], trade["quantity"], trade["slippage_cost"]) == (d3, 50.0, 0.0)
    assert trade["impact_cost"] == pytest.approx(50 * 100.0 * sigma, rel=1e-12)
    # The backtest fills the same order at the same price.
    backtest = run_book(
        bar_frame,
        targets([(D2, "AAA", 0.5)]),
        settings,
        start=D0,
        state=BookState.initial(10_000),
        tickers=["AAA"],
    )
    assert backtest.trades.equals(result.trades)


def test_bars_without_volume_are_refused():
    with pytest.raises(ValueError, match=r"bars lacks column.*volume"):
        run(bars({"AAA": [(D0, 99.0, 100.0)]}).drop("volume"), targets([]))
