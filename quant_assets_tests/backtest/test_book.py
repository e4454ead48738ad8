"""The polars book: exact continuation, no look-ahead, the per-date columns, and clear errors."""

from __future__ import annotations

from datetime import date
from typing import Any

import numpy as np
import polars as pl
import pytest

from quant_assets.backtest.book import (
    BOOK_COLUMNS,
    TRADE_COLUMNS,
    BookResult,
    BookState,
    run_book,
)
from quant_assets.settings import BacktestSettings
from quant_assets_tests.conftest import weekdays

TICKERS = ["BBB", "AAA", "CCC"]  # deliberately unsorted: the kernel's column order
SETTINGS = BacktestSettings(
    initial_capital=1e6,
    fill="next_open",
    commission_bps=1.0,
    slippage_bps=2.0,
    impact_coefficient=0.1,
    adv_window=5,
    vol_window=5,
    lot_size=1.0,
)
START = date(2024, 2, 1)


def make_bars(n_days: int = 60, seed: int = 1) -> pl.DataFrame:
    """Seeded random-walk bars from 2024-01-02, with a few missing opens, volumes and closes."""
    rng = np.random.default_rng(seed)
    days = weekdays(date(2024, 1, 2), n_days)
    rows = []
    for ticker in TICKERS:
        close = 50 * np.exp(np.cumsum(rng.normal(0, 0.02, n_days)))
        open_ = close * np.exp(rng.normal(0, 0.005, n_days))
        volume = rng.uniform(1e4, 1e5, n_days)
        for k, day in enumerate(days):
            rows.append(
                {
                    "date": day,
                    "ticker": ticker,
                    "open": None if rng.random() < 0.05 else float(open_[k]),
                    "close": None if rng.random() < 0.02 else float(close[k]),
                    "volume": None if rng.random() < 0.05 else float(volume[k]),
                }
            )
    return pl.DataFrame(rows, schema_overrides={"date": pl.Date})


def make_targets(bars: pl.DataFrame, seed: int = 2) -> pl.DataFrame:
    """Random long/short weights (gross up to ~1.2) on every session from START, some missing."""
    rng = np.random.default_rng(seed)
    keys = bars.filter(pl.col("date") >= START).select("date", "ticker").sort("date", "ticker")
    weights = rng.uniform(-0.1, 0.4, keys.height)
    weights[rng.random(keys.height) < 0.15] = np.nan
    return keys.with_columns(pl.Series("target_weight", weights, nan_to_null=True))


def run(bars: pl.DataFrame, targets: pl.DataFrame, **kwargs: Any) -> BookResult:
    options = {"start": START, "state": BookState.initial(1e6), "tickers": TICKERS, **kwargs}
    return run_book(bars, targets, SETTINGS, **options)


def test_book_and_trades_have_the_documented_columns() -> None:
    bars = make_bars()
    result = run(bars, make_targets(bars))
    assert result.book.columns == list(BOOK_COLUMNS)
    assert result.trades.columns == list(TRADE_COLUMNS)
    sessions = bars.filter(pl.col("date") >= START)["date"].n_unique()
    assert result.book.height == sessions * len(TICKERS)
    assert result.book.select("date", "ticker").equals(
        result.book.select("date", "ticker").sort("date", "ticker")
    )
    assert result.trades.height == (result.book["trade_quantity"] != 0).sum()
    assert set(result.trades["side"]) == {"buy", "sell"}


def test_per_date_columns_are_consistent() -> None:
    bars = make_bars()
    book = run(bars, make_targets(bars)).book
    per_date = book.group_by("date", maintain_order=True).agg(
        pl.col("equity").first(),
        pl.col("cash").first(),
        pl.col("portfolio_pnl").first(),
        pl.col("portfolio_return").first(),
        pl.col("pnl").sum().alias("ticker_pnl"),
        (pl.col("shares") * pl.col("mark_price").fill_null(0)).sum().alias("holdings"),
        pl.col("weight").sum().alias("weights"),
        pl.col("net_exposure").first(),
    )
    equity = per_date["equity"].to_numpy()
    np.testing.assert_allclose(equity, per_date["cash"] + per_date["holdings"], rtol=1e-12)
    np.testing.assert_allclose(per_date["ticker_pnl"], per_date["portfolio_pnl"], atol=1e-6)
    previous = np.concatenate([[1e6], equity[:-1]])
    np.testing.assert_allclose(per_date["portfolio_return"], equity / previous - 1, rtol=1e-12)
    np.testing.assert_allclose(per_date["weights"], per_date["net_exposure"], atol=1e-12)


def test_first_target_trades_on_the_next_session_at_its_open() -> None:
    bars = make_bars()
    targets = make_targets(bars)
    book = run(bars, targets).book
    first, second = sorted(book["date"].unique())[:2]
    # Nothing trades on the first session: the initial state has no target.
    assert (book.filter(pl.col("date") == first)["trade_quantity"] == 0).all()
    traded = book.filter((pl.col("date") == second) & (pl.col("trade_quantity") != 0))
    opens = bars.filter(pl.col("date") == second).select("ticker", "open", "close")
    check = traded.join(opens, on="ticker")
    reference = check["open"].fill_null(check["close"])
    assert check["reference_price"].equals(reference.alias("reference_price"))


def test_a_split_run_equals_one_run_bit_for_bit() -> None:
    bars = make_bars()
    targets = make_targets(bars)
    whole = run(bars, targets)
    sessions = sorted(whole.book["date"].unique())
    for cut in (sessions[0], sessions[7], sessions[-2]):
        first = run(bars.filter(pl.col("date") <= cut), targets.filter(pl.col("date") <= cut))
        state = BookState.from_rows(first.book.filter(pl.col("date") == cut))
        assert state == first.final_state
        after = sessions[sessions.index(cut) + 1]
        second = run(bars, targets, start=after, state=state)
        assert pl.concat([first.book, second.book]).equals(whole.book)
        assert pl.concat([first.trades, second.trades]).equals(whole.trades)
        assert second.final_state == whole.final_state


def test_the_continued_run_needs_only_look_back_bars() -> None:
    # The second leg may get just enough bars before its start for the vol and ADV windows.
    bars = make_bars()
    targets = make_targets(bars)
    whole = run(bars, targets)
    sessions = sorted(whole.book["date"].unique())
    cut, after = sessions[9], sessions[10]
    first = run(bars.filter(pl.col("date") <= cut), targets.filter(pl.col("date") <= cut))
    all_dates = sorted(bars["date"].unique())
    look_back_start = all_dates[all_dates.index(after) - SETTINGS.vol_window - 1]
    second = run(
        bars.filter(pl.col("date") >= look_back_start),
        targets,
        start=after,
        state=BookState.from_rows(first.book.filter(pl.col("date") == cut)),
    )
    assert pl.concat([first.book, second.book]).equals(whole.book)


def test_no_look_ahead() -> None:
    bars = make_bars()
    targets = make_targets(bars)
    whole = run(bars, targets)
    sessions = sorted(whole.book["date"].unique())
    cut = sessions[12]
    rng = np.random.default_rng(9)
    later = pl.col("date") > cut
    shaken = bars.with_columns(
        *(
            pl.when(later).then(pl.col(c) * rng.uniform(0.5, 1.5)).otherwise(pl.col(c)).alias(c)
            for c in ("open", "close", "volume")
        )
    )
    reshuffled = targets.with_columns(
        pl.when(later).then(-pl.col("target_weight")).otherwise(pl.col("target_weight"))
    )
    perturbed = run(shaken, reshuffled)
    up_to_cut = pl.col("date") <= cut
    assert perturbed.book.filter(up_to_cut).equals(whole.book.filter(up_to_cut))
    assert perturbed.trades.filter(up_to_cut).equals(whole.trades.filter(up_to_cut))
    # ...while the next session's trades do move: it fills at the (perturbed) next open.
    next_day = pl.col("date") == sessions[13]
    assert not perturbed.book.filter(next_day).equals(whole.book.filter(next_day))


def test_book_state_round_trips_through_the_last_rows() -> None:
    bars = make_bars()
    result = run(bars, make_targets(bars))
    last = result.book.filter(pl.col("date") == result.book["date"].max())
    assert BookState.from_rows(last) == result.final_state
    assert BookState.initial(5.0) == BookState(as_of=None, cash=5.0)


# --- errors ---


def test_missing_columns_are_named() -> None:
    bars = make_bars()
    targets = make_targets(bars)
    with pytest.raises(ValueError, match=r"bars lacks column.*volume"):
        run(bars.drop("volume"), targets)
    with pytest.raises(ValueError, match=r"targets lacks column.*target_weight"):
        run(bars, targets.drop("target_weight"))
    with pytest.raises(ValueError, match=r"book rows lacks column.*mark_price"):
        BookState.from_rows(pl.DataFrame({"date": [START], "ticker": ["AAA"]}))


def test_duplicate_rows_are_named() -> None:
    bars = make_bars()
    targets = make_targets(bars)
    with pytest.raises(
        ValueError, match="bars have more than one row for ticker AAA on 2024-01-02"
    ):
        run(pl.concat([bars, bars.filter(pl.col("ticker") == "AAA").head(1)]), targets)
    duplicate = targets.filter(pl.col("ticker") == "CCC").head(1)
    with pytest.raises(ValueError, match=rf"targets .* ticker CCC on {duplicate['date'][0]}"):
        run(bars, pl.concat([targets, duplicate]))


def test_non_positive_prices_are_named() -> None:
    bars = make_bars()
    broken = bars.with_columns(
        pl.when((pl.col("ticker") == "BBB") & (pl.col("date") == date(2024, 1, 10)))
        .then(0.0)
        .otherwise(pl.col("close"))
        .alias("close")
    )
    with pytest.raises(ValueError, match="non-positive price for ticker BBB on 2024-01-10"):
        run(broken, make_targets(bars))


def test_targets_must_name_known_tickers_and_sessions() -> None:
    bars = make_bars()
    targets = make_targets(bars)
    stranger = pl.DataFrame(
        {"date": [START], "ticker": ["ZZZ"], "target_weight": [0.1]},
        schema_overrides={"date": pl.Date},
    )
    with pytest.raises(ValueError, match="ticker ZZZ"):
        run(bars, pl.concat([targets, stranger]))
    saturday = stranger.with_columns(pl.lit(date(2024, 2, 3)).alias("date"), ticker=pl.lit("AAA"))
    with pytest.raises(ValueError, match="2024-02-03, which is not a session"):
        run(bars, pl.concat([targets, saturday]))


def test_state_must_precede_start_without_gaps() -> None:
    bars = make_bars()
    targets = make_targets(bars)
    with pytest.raises(ValueError, match="not before start"):
        run(bars, targets, state=BookState(as_of=START, cash=1.0))
    with pytest.raises(ValueError, match="would skip it"):
        run(bars, targets, state=BookState(as_of=date(2024, 1, 10), cash=1.0))
    with pytest.raises(ValueError, match="ticker XYZ"):
        run(bars, targets, state=BookState(as_of=None, cash=1.0, shares={"XYZ": 3.0}))


def test_from_rows_needs_exactly_one_date() -> None:
    bars = make_bars()
    book = run(bars, make_targets(bars)).book
    with pytest.raises(ValueError, match="span 2 dates"):
        BookState.from_rows(book.head(len(TICKERS) + 1))
    with pytest.raises(ValueError, match="empty"):
        BookState.from_rows(book.head(0))
    with pytest.raises(ValueError, match="ticker AAA more than once"):
        BookState.from_rows(pl.concat([book.head(1), book.head(1)]))


def _leaving(exit_day: date) -> tuple[pl.DataFrame, pl.DataFrame]:
    """Bars where AAA's history stops at ``exit_day`` (it left the universe), and targets
    holding 30 % of AAA through it — and none after (no alpha: target 0)."""
    bars = make_bars().with_columns(pl.col("close").fill_null(50.0))
    bars = bars.filter((pl.col("ticker") != "AAA") | (pl.col("date") <= exit_day))
    keys = bars.filter(pl.col("date") >= START).select("date", "ticker").unique()
    all_keys = keys.select("date").unique().join(pl.DataFrame({"ticker": TICKERS}), how="cross")
    targets = all_keys.with_columns(
        pl.when(pl.col("ticker") != "AAA")
        .then(0.2)
        .when(pl.col("date") <= exit_day)
        .then(0.3)
        .otherwise(0.0)
        .alias("target_weight")
    ).sort("date", "ticker")
    return bars, targets


def test_a_name_leaving_the_universe_is_sold_at_its_last_close_two_sessions_later() -> None:
    """The exit's own order expires (no market), the next close decides 0, the session after
    sells at the print: the last close, less the usual costs."""
    from quant_assets.backtest.frames import with_exit_prints

    sessions = sorted(make_bars()["date"].unique())
    exit_day = sessions[40]
    bars, targets = _leaving(exit_day)
    last_close = bars.filter((pl.col("ticker") == "AAA") & (pl.col("date") == exit_day))["close"][0]
    stuck = run(bars, targets)  # without the prints the closing order expires
    held = stuck.book.filter(pl.col("ticker") == "AAA").sort("date")
    assert held["shares"][-1] != 0 and held["mark_price"][-1] == last_close
    printed = with_exit_prints(bars, {"AAA": exit_day})
    added = printed.join(bars, on=["date", "ticker"], how="anti")
    assert added["date"].to_list() == [sessions[42]] and added["volume"].is_null().all()
    assert (added["open"] == last_close).all() and (added["close"] == last_close).all()
    result = run(printed, targets)
    aaa = result.book.filter(pl.col("ticker") == "AAA").sort("date")
    shares = dict(zip(aaa["date"], aaa["shares"], strict=True))
    assert shares[exit_day] > 0 and shares[sessions[41]] == shares[exit_day]
    assert all(shares[d] == 0 for d in sessions[42:])
    sale = result.trades.filter(pl.col("ticker") == "AAA").sort("date").tail(1).row(0, named=True)
    assert sale["date"] == sessions[42] and sale["quantity"] == -shares[exit_day]
    assert sale["reference_price"] == last_close  # minus slippage: the usual costs
    assert sale["fill_price"] == pytest.approx(last_close * (1 - 2e-4), rel=1e-12)
    # The book's value did not jump: the mark stayed at the last close until the sale.
    assert aaa.filter(pl.col("date") == sessions[41])["mark_price"][0] == last_close


def test_exit_prints_need_the_last_bar_and_never_replace_a_row() -> None:
    from quant_assets.backtest.frames import with_exit_prints

    bars = make_bars()
    sessions = sorted(bars["date"].unique())
    assert with_exit_prints(bars, {}).equals(bars)
    # Still trading after the "exit": rows are kept, nothing is added.
    assert with_exit_prints(bars, {"AAA": sessions[10]}).equals(bars)
    # The last bar before the exit is outside the bars read: nothing to sell at.
    later = bars.filter(pl.col("date") >= sessions[20])
    gone = later.filter(pl.col("ticker") != "AAA")
    assert with_exit_prints(gone, {"AAA": sessions[10]}).equals(gone)


def test_positions_after_an_exit_say_so_first_among_their_codes() -> None:
    from quant_assets.risk import mark_exits

    rows = pl.DataFrame(
        {
            "ticker": ["AAA", "AAA", "BBB"],
            "date": [date(2024, 1, 2), date(2024, 1, 3), date(2024, 1, 3)],
            "reason_codes": ['["KELLY:0.1"]', '["NO_ALPHA", "VAR:x0.9"]', "[]"],
        }
    )
    tagged = mark_exits(rows, {"AAA": date(2024, 1, 2), "BBB": date(2024, 1, 2)})
    assert tagged["reason_codes"].to_list() == [
        '["KELLY:0.1"]',
        '["LEFT_UNIVERSE:2024-01-02", "NO_ALPHA", "VAR:x0.9"]',
        '["LEFT_UNIVERSE:2024-01-02"]',
    ]
    assert mark_exits(rows, {}).equals(rows)
