"""Specification of the synthetic provider: deterministic, calendar-true, stylised-fact bars."""

from __future__ import annotations

from datetime import date

import exchange_calendars as xcals
import numpy as np
import polars as pl
import pytest

from quant_assets.errors import InvalidTickerError
from quant_assets.providers.base import BAR_COLUMNS, BAR_SCHEMA, BarProvider
from quant_assets.providers.synthetic import REGIME_NAMES, SyntheticProvider

# A fixed generation end keeps every test independent of today's date.
GENERATION_END = date(2024, 12, 31)
FULL_START = date(1990, 1, 1)


@pytest.fixture(scope="module")
def provider() -> SyntheticProvider:
    return SyntheticProvider(seed=7, end=GENERATION_END)


@pytest.fixture(scope="module")
def long_sample(provider: SyntheticProvider) -> pl.DataFrame:
    """35 years of the index and two stocks, with daily log returns and the true regime."""
    bars = provider.fetch_bars(["SYNTH", "AAPL", "KO"], FULL_START, GENERATION_END)
    return (
        bars.with_columns(log_return=pl.col("close").log().diff().over("ticker"))
        .drop_nulls("log_return")
        .join(provider.regimes(FULL_START, GENERATION_END), on="date")
    )


def _log_returns(sample: pl.DataFrame, ticker: str) -> np.ndarray:
    return sample.filter(pl.col("ticker") == ticker)["log_return"].to_numpy()


def test_is_a_bar_provider(provider: SyntheticProvider) -> None:
    assert isinstance(provider, BarProvider)
    assert provider.name == "synthetic"


def test_frame_has_the_bar_schema_sorted_by_ticker_then_date(
    provider: SyntheticProvider,
) -> None:
    bars = provider.fetch_bars(["MSFT", "AAPL"], date(2010, 1, 1), date(2010, 3, 31))

    assert tuple(bars.columns) == BAR_COLUMNS
    assert dict(bars.schema) == BAR_SCHEMA
    assert bars.equals(bars.sort(["ticker", "date"]))
    assert bars["ticker"].unique().sort().to_list() == ["AAPL", "MSFT"]
    assert bars.null_count().sum_horizontal().item() == 0


def test_same_seed_gives_identical_frames() -> None:
    request = (["AAPL", "SYNTH"], date(2005, 1, 1), date(2006, 12, 31))
    first = SyntheticProvider(seed=11, end=GENERATION_END).fetch_bars(*request)
    second = SyntheticProvider(seed=11, end=GENERATION_END).fetch_bars(*request)

    assert first.equals(second)


def test_different_seed_gives_different_prices() -> None:
    request = (["AAPL"], date(2005, 1, 1), date(2006, 12, 31))
    seven = SyntheticProvider(seed=7, end=GENERATION_END).fetch_bars(*request)
    eight = SyntheticProvider(seed=8, end=GENERATION_END).fetch_bars(*request)

    assert seven["date"].equals(eight["date"])
    assert not np.allclose(seven["close"].to_numpy(), eight["close"].to_numpy())


def test_ticker_rows_do_not_depend_on_other_tickers_or_the_requested_range(
    provider: SyntheticProvider,
) -> None:
    window = (date(2000, 1, 1), date(2001, 12, 31))
    alone = provider.fetch_bars(["AAPL"], *window)
    with_msft = provider.fetch_bars(["AAPL", "MSFT"], date(1995, 1, 1), date(2010, 12, 31))
    # 150 names puts AAPL in a different generation block than when it is requested alone.
    crowd = [f"N{i}" for i in range(150)] + ["AAPL"]
    in_crowd = SyntheticProvider(seed=7, end=GENERATION_END).fetch_bars(crowd, *window)

    def aapl_in_window(frame: pl.DataFrame) -> pl.DataFrame:
        return frame.filter(pl.col("ticker") == "AAPL", pl.col("date").is_between(*window))

    assert alone.height > 400
    assert alone.equals(aapl_in_window(with_msft))
    assert alone.equals(aapl_in_window(in_crowd))


def test_a_later_generation_end_only_appends_sessions() -> None:
    window = (date(1990, 1, 1), date(2003, 6, 30))
    short = SyntheticProvider(seed=7, end=date(2003, 6, 30))
    long = SyntheticProvider(seed=7, end=GENERATION_END)

    assert short.fetch_bars(["AAPL", "SYNTH"], *window).equals(
        long.fetch_bars(["AAPL", "SYNTH"], *window)
    )
    assert short.regimes(*window).equals(long.regimes(*window))


def test_bars_are_consistent_positive_and_trade_volume(provider: SyntheticProvider) -> None:
    bars = provider.fetch_bars(["AAPL", "KO", "ZZZ", "SYNTH"], FULL_START, GENERATION_END)
    body_low = pl.min_horizontal("open", "close")
    body_high = pl.max_horizontal("open", "close")

    broken = bars.filter(
        (pl.col("low") > body_low)
        | (pl.col("high") < body_high)
        | (pl.col("low") <= 0)
        | (pl.col("volume") <= 0)
    )

    assert broken.is_empty()
    # The open gaps away from the previous close (a small overnight return), not equal to it.
    gaps = bars.with_columns(gap=(pl.col("open") / pl.col("close").shift().over("ticker")).log())
    assert gaps["gap"].drop_nulls().abs().median() > 0
    assert gaps["gap"].drop_nulls().abs().max() < 0.5


def test_volume_rises_with_the_size_of_the_move(long_sample: pl.DataFrame) -> None:
    for ticker in ("SYNTH", "AAPL"):
        rows = long_sample.filter(pl.col("ticker") == ticker)
        move = rows["log_return"].abs().to_numpy()
        log_volume = np.log(rows["volume"].to_numpy())

        assert np.corrcoef(move, log_volume)[0, 1] > 0.3, ticker


def test_dates_are_exactly_the_xnys_sessions(provider: SyntheticProvider) -> None:
    start, end = date(2001, 9, 1), date(2020, 7, 31)
    bars = provider.fetch_bars(["AAPL"], start, end)
    sessions = xcals.get_calendar("XNYS", start="2001-01-01", end="2020-12-31").sessions_in_range(
        start.isoformat(), end.isoformat()
    )

    assert bars["date"].to_list() == [session.date() for session in sessions]
    dates = set(bars["date"].to_list())
    for closed in (date(2020, 7, 3), *(date(2001, 9, day) for day in range(11, 15))):
        assert closed not in dates


def test_start_after_end_gives_an_empty_frame(provider: SyntheticProvider) -> None:
    bars = provider.fetch_bars(["AAPL"], date(2010, 2, 1), date(2010, 1, 1))

    assert bars.is_empty()
    assert dict(bars.schema) == BAR_SCHEMA


def test_a_range_outside_the_generated_span_gives_no_rows(provider: SyntheticProvider) -> None:
    assert provider.fetch_bars(["AAPL"], date(2030, 1, 1), date(2030, 12, 31)).is_empty()
    assert provider.fetch_bars(["AAPL"], date(1985, 1, 1), date(1989, 12, 31)).is_empty()


@pytest.mark.parametrize("symbol", ["aapl", "../etc", "A B", "X;DROP", "", "TOOLONGTICKER"])
def test_invalid_ticker_is_refused(provider: SyntheticProvider, symbol: str) -> None:
    with pytest.raises(InvalidTickerError):
        provider.fetch_bars(["AAPL", symbol], date(2010, 1, 1), date(2010, 1, 31))


def test_a_bare_string_is_refused_rather_than_read_as_letters(
    provider: SyntheticProvider,
) -> None:
    with pytest.raises(TypeError):
        provider.fetch_bars("AAPL", date(2010, 1, 1), date(2010, 1, 31))  # type: ignore[arg-type]


def test_returns_have_fat_tails_and_volatility_clustering(long_sample: pl.DataFrame) -> None:
    for ticker in ("SYNTH", "AAPL"):
        returns = _log_returns(long_sample, ticker)
        centred = returns - returns.mean()
        excess_kurtosis = (centred**4).mean() / centred.var() ** 2 - 3.0
        size = np.abs(returns)
        lag1_autocorrelation = np.corrcoef(size[1:], size[:-1])[0, 1]

        assert excess_kurtosis > 1.0, ticker
        assert lag1_autocorrelation > 0.08, ticker


def test_crash_regime_appears_and_is_far_worse_than_bull(long_sample: pl.DataFrame) -> None:
    market = long_sample.filter(pl.col("ticker") == "SYNTH")
    by_regime = {
        row["regime"]: row
        for row in market.group_by("regime")
        .agg(
            mean=pl.col("log_return").mean(),
            vol=pl.col("log_return").std(),
            days=pl.len(),
        )
        .iter_rows(named=True)
    }

    assert set(by_regime) == set(REGIME_NAMES)
    crash, bull = by_regime["crash"], by_regime["bull"]
    assert 10 <= crash["days"] < 0.05 * market.height  # present but rare
    assert crash["mean"] < bull["mean"] - 0.005
    assert crash["vol"] > 2.0 * bull["vol"]
    assert by_regime["bear"]["mean"] < 0 < bull["mean"]


def test_benchmark_is_the_market_index_and_stocks_move_with_it(
    provider: SyntheticProvider, long_sample: pl.DataFrame
) -> None:
    index = provider.fetch_bars(["SYNTH"], FULL_START, GENERATION_END)
    wide = long_sample.pivot(on="ticker", index="date", values="log_return")

    assert index["date"][0] == date(1990, 1, 2)
    assert 900 < index["open"][0] < 1100
    for stock in ("AAPL", "KO"):
        assert np.corrcoef(wide["SYNTH"].to_numpy(), wide[stock].to_numpy())[0, 1] > 0.3
    # A stock is not the index under another name.
    assert not np.allclose(wide["SYNTH"].to_numpy(), wide["AAPL"].to_numpy())


def test_benchmark_symbol_is_configurable() -> None:
    provider = SyntheticProvider(seed=7, benchmark="MKT", end=GENERATION_END)
    window = (date(2010, 1, 1), date(2010, 12, 31))

    default = SyntheticProvider(seed=7, end=GENERATION_END).fetch_bars(["SYNTH"], *window)
    renamed = provider.fetch_bars(["MKT"], *window)

    assert renamed.drop("ticker").equals(default.drop("ticker"))
    with pytest.raises(InvalidTickerError):
        SyntheticProvider(benchmark="not a ticker")


def test_regimes_cover_each_session_with_a_known_name(provider: SyntheticProvider) -> None:
    window = (date(2008, 1, 1), date(2009, 12, 31))
    regimes = provider.regimes(*window)
    bars = provider.fetch_bars(["SYNTH"], *window)

    assert dict(regimes.schema) == {"date": pl.Date(), "regime": pl.Utf8()}
    assert regimes["date"].equals(bars["date"])
    assert set(regimes["regime"].unique()) <= set(REGIME_NAMES)
    assert provider.regimes(date(2009, 1, 1), date(2008, 1, 1)).is_empty()
