"""The study's trial book: the backtest's equity, returns and turnover, bit for bit, from reused
work buffers, one trial or many."""

from __future__ import annotations

from datetime import date

import numpy as np
import polars as pl
import pytest

from quant_assets.backtest.book import BookState, run_book
from quant_assets.backtest.trial_book import (
    BOOK_PARAMETER_COLUMNS,
    TrialMarket,
    _pairwise_sum,
    book_parameters,
    simulate_trial_returns,
    simulate_trials,
    target_grid,
    trial_market,
    trial_work_buffers,
)
from quant_assets.settings import BacktestSettings
from quant_assets_tests.conftest import weekdays

# Twelve tickers, deliberately unsorted: more than numpy's 8-way unrolled block, so the
# turnover's pairwise summation order is exercised beyond a plain loop.
TICKERS = ["LLL", "BBB", "AAA", "CCC", "KKK", "DDD", "JJJ", "EEE", "III", "FFF", "HHH", "GGG"]
START = date(2024, 2, 1)
CAPITAL = 1e6


def make_bars(n_days: int = 80, seed: int = 1) -> pl.DataFrame:
    """Seeded random-walk bars from 2024-01-02 with missing opens, closes and volumes, a ticker
    that lists only after START (never priced at first), and a whole missing bar."""
    rng = np.random.default_rng(seed)
    days = weekdays(date(2024, 1, 2), n_days)
    rows = []
    for k_ticker, ticker in enumerate(TICKERS):
        close = rng.uniform(5, 200) * np.exp(np.cumsum(rng.normal(0, 0.02, n_days)))
        open_ = close * np.exp(rng.normal(0, 0.005, n_days))
        volume = rng.uniform(1e3, 1e5, n_days)
        for k, day in enumerate(days):
            if k_ticker == 0 and day < date(2024, 2, 15):
                continue  # lists late
            if rng.random() < 0.02:
                continue  # no bar at all
            rows.append(
                {
                    "date": day,
                    "ticker": ticker,
                    "open": None if rng.random() < 0.08 else float(open_[k]),
                    "close": None if rng.random() < 0.04 else float(close[k]),
                    "volume": None if rng.random() < 0.08 else float(volume[k]),
                }
            )
    return pl.DataFrame(rows, schema_overrides={"date": pl.Date})


def make_targets(bars: pl.DataFrame, seed: int, gross: float) -> pl.DataFrame:
    """Random long/short weights from START summing to about ``gross``, some missing."""
    rng = np.random.default_rng(seed)
    keys = bars.filter(pl.col("date") >= START).select("date", "ticker").sort("date", "ticker")
    weights = rng.uniform(-0.3, 1.0, keys.height) * 2 * gross / len(TICKERS)
    weights[rng.random(keys.height) < 0.15] = np.nan
    return keys.with_columns(pl.Series("target_weight", weights, nan_to_null=True))


def settings(fill: str, lot_size: float, **kwargs: float | bool) -> BacktestSettings:
    options = {
        "initial_capital": CAPITAL,
        "fill": fill,
        "commission_bps": 1.0,
        "slippage_bps": 2.0,
        "impact_coefficient": 0.3,
        "adv_window": 5,
        "vol_window": 5,
        "lot_size": lot_size,
        **kwargs,
    }
    return BacktestSettings.model_validate(options)


def backtest(bars: pl.DataFrame, targets: pl.DataFrame, config: BacktestSettings) -> pl.DataFrame:
    """run_book's per-date rows: date, equity, portfolio_return, turnover, and its trades."""
    result = run_book(
        bars, targets, config, start=START, state=BookState.initial(CAPITAL), tickers=TICKERS
    )
    per_date = result.book.group_by("date", maintain_order=True).first()
    filled = result.trades.group_by("date").len()
    return (
        per_date.select("date", "equity", "portfolio_return", "turnover")
        .with_columns(pl.lit(result.trades.height).alias("trades"))
        .join(filled, on="date", how="left")
        .with_columns(pl.col("len").fill_null(0).alias("session_trades"))
    )


def one_trial(
    market: TrialMarket, target_weight: np.ndarray, config: BacktestSettings
) -> dict[str, np.ndarray | int]:
    n_dates = market.sessions.len()
    work = trial_work_buffers(len(market.tickers))
    work[:] = 12345.0  # stale values from a previous trial must not leak
    out = {name: np.full(n_dates, np.nan) for name in ("equity", "portfolio_return", "turnover")}
    per_session = np.full(n_dates, -1, dtype=np.int64)
    count = simulate_trial_returns(
        target_weight,
        market.open_price,
        market.close_price,
        market.daily_vol,
        market.adv_shares,
        book_parameters(config),
        work,
        out["equity"],
        out["portfolio_return"],
        out["turnover"],
        per_session,
    )
    assert per_session.sum() == count  # the sessions' trades add up to the book's
    return {**out, "trades": count, "session_trades": per_session}


def market_for(bars: pl.DataFrame, config: BacktestSettings) -> TrialMarket:
    return trial_market(
        bars, TICKERS, start=START, vol_window=config.vol_window, adv_window=config.adv_window
    )


@pytest.mark.parametrize("fill", ["next_open", "next_close"])
@pytest.mark.parametrize("lot_size", [1.0, 0.0])
@pytest.mark.parametrize("gross", [0.8, 1.6])  # 1.6: buys are scaled down to the cash
def test_a_trial_reproduces_the_backtest_per_date_bit_for_bit(
    fill: str, lot_size: float, gross: float
) -> None:
    bars = make_bars()
    targets = make_targets(bars, seed=2, gross=gross)
    config = settings(fill, lot_size)
    expected = backtest(bars, targets, config)
    market = market_for(bars, config)
    assert market.sessions.equals(expected["date"], check_names=False)

    got = one_trial(market, target_grid(targets, market), config)

    # Same steps in the same order and the same summation order (numpy's pairwise sum for the
    # turnover): equal bit for bit, not merely close.
    for column in ("equity", "portfolio_return", "turnover"):
        np.testing.assert_array_equal(got[column], expected[column].to_numpy(), err_msg=column)
    assert got["trades"] == expected["trades"][0] > 0
    np.testing.assert_array_equal(got["session_trades"], expected["session_trades"].to_numpy())


def test_borrowing_books_match_too() -> None:
    bars = make_bars(seed=5)
    targets = make_targets(bars, seed=6, gross=1.6)
    config = settings("next_open", 1.0, allow_borrowing=True)
    expected = backtest(bars, targets, config)
    market = market_for(bars, config)
    got = one_trial(market, target_grid(targets, market), config)
    np.testing.assert_array_equal(got["equity"], expected["equity"].to_numpy())


def test_a_batch_of_trials_equals_each_trial_run_alone() -> None:
    bars = make_bars(seed=3)
    base = settings("next_open", 1.0)
    market = market_for(bars, base)
    grids = np.stack(
        [target_grid(make_targets(bars, seed=s, gross=g), market) for s, g in ((4, 0.9), (5, 1.5))]
    )
    configs = [
        base,
        settings("next_close", 0.0),
        settings("next_open", 1.0, commission_bps=5.0, slippage_bps=0.0, impact_coefficient=0.0),
        settings("next_close", 1.0, allow_borrowing=True),
        base,
    ]
    target_of_trial = np.array([0, 0, 1, 1, 1])
    n_trials, n_dates = len(configs), market.sessions.len()
    parameters = np.stack([book_parameters(c) for c in configs])
    equity, returns, turnover = (np.full((n_trials, n_dates), np.nan) for _ in range(3))
    trade_count = np.zeros(n_trials, dtype=np.int64)

    simulate_trials(
        grids,
        target_of_trial,
        market.open_price,
        market.close_price,
        market.daily_vol,
        market.adv_shares,
        parameters,
        equity,
        returns,
        turnover,
        trade_count,
    )

    serial = [np.full((n_trials, n_dates), np.nan) for _ in range(3)]
    simulate_trials(
        grids,
        target_of_trial,
        market.open_price,
        market.close_price,
        market.daily_vol,
        market.adv_shares,
        parameters,
        *serial,
        np.zeros(n_trials, dtype=np.int64),
        n_threads=1,
    )
    np.testing.assert_array_equal(serial[0], equity)
    for trial, config in enumerate(configs):
        alone = one_trial(market, grids[target_of_trial[trial]], config)
        np.testing.assert_array_equal(equity[trial], alone["equity"])
        np.testing.assert_array_equal(returns[trial], alone["portfolio_return"])
        np.testing.assert_array_equal(turnover[trial], alone["turnover"])
        assert trade_count[trial] == alone["trades"]
    # The trials differ: parameters and targets reach the books.
    assert len({equity[k, -1] for k in range(n_trials)}) == n_trials
    expected = backtest(bars, make_targets(bars, seed=5, gross=1.5), base)
    np.testing.assert_array_equal(equity[4], expected["equity"].to_numpy())


def test_book_parameters_follow_the_documented_columns() -> None:
    row = book_parameters(settings("next_close", 0.0, allow_borrowing=True))
    assert dict(zip(BOOK_PARAMETER_COLUMNS, row.tolist(), strict=True)) == {
        "initial_cash": CAPITAL,
        "fill_at": 1.0,
        "commission_bps": 1.0,
        "slippage_bps": 2.0,
        "impact_coefficient": 0.3,
        "lot_size": 1e-4,
        "allow_borrowing": 1.0,
    }


@pytest.mark.parametrize("n", [1, 7, 8, 9, 127, 128, 129, 300, 2001, 5000])
def test_turnover_sums_in_numpys_pairwise_order(n: int) -> None:
    rng = np.random.default_rng(n)
    values = rng.random((3, n)) * 10.0 ** rng.uniform(-3, 6, (3, n))
    expected = values.sum(axis=1)
    for row in range(3):
        assert 0.0 + _pairwise_sum(values[row], 0, n) == expected[row]


def test_wrong_shapes_are_refused_naming_the_argument() -> None:
    bars = make_bars()
    config = settings("next_open", 1.0)
    market = market_for(bars, config)
    target_weight = target_grid(make_targets(bars, seed=2, gross=1.0), market)
    n_dates = target_weight.shape[0]
    work = trial_work_buffers(len(TICKERS))
    outputs = [np.empty(n_dates) for _ in range(3)]
    args = [
        target_weight,
        market.open_price,
        market.close_price,
        market.daily_vol,
        market.adv_shares,
        book_parameters(config),
        work,
        *outputs,
        np.empty(n_dates, dtype=np.int64),
    ]
    with pytest.raises(ValueError, match="close_price must have the shape"):
        simulate_trial_returns(*args[:2], market.close_price[1:], *args[3:])
    with pytest.raises(ValueError, match="work must have shape"):
        simulate_trial_returns(*args[:6], work[:, 1:], *args[7:])
    with pytest.raises(ValueError, match="turnover must have length"):
        simulate_trial_returns(*args[:9], np.empty(n_dates - 1), args[10])
    with pytest.raises(ValueError, match="n_tickers must be at least 1"):
        trial_work_buffers(0)
