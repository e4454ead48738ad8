"""Specification of the bundled provider: real, offline bars shipped inside skfolio and arch.

- 20 S&P 500 stocks (skfolio): closes only, 1990-01-02 to 2022-12-28;
- SP500 (skfolio): the index closes over the same sessions;
- GSPC / IXIC (arch): index OHLCV, 1999-01-04 to 2018-12-31.

A column the source lacks is null, never fabricated; every date is an XNYS session.
"""

from __future__ import annotations

from datetime import date

import exchange_calendars as xcals
import polars as pl
import pytest

from quant_assets.errors import InvalidTickerError, ProviderError
from quant_assets.providers.base import BAR_COLUMNS, BAR_SCHEMA, BarProvider
from quant_assets.providers.bundled import (
    BUNDLED_SYMBOLS,
    INDEX_SYMBOLS,
    SKFOLIO_STOCKS,
    BundledProvider,
)

SKFOLIO_FIRST, SKFOLIO_LAST = date(1990, 1, 2), date(2022, 12, 28)
ARCH_FIRST, ARCH_LAST = date(1999, 1, 4), date(2018, 12, 31)
EVERYTHING = (date(1980, 1, 1), date(2030, 12, 31))


@pytest.fixture(scope="module")
def provider() -> BundledProvider:
    return BundledProvider()


@pytest.fixture(scope="module")
def all_bars(provider: BundledProvider) -> pl.DataFrame:
    """Every bundled symbol over its whole history."""
    return provider.fetch_bars(list(BUNDLED_SYMBOLS), *EVERYTHING)


@pytest.fixture(scope="module")
def xnys_sessions() -> list[date]:
    calendar = xcals.get_calendar("XNYS", start="1990-01-01", end="2023-12-31")
    return [ts.date() for ts in calendar.sessions_in_range("1990-01-02", "2023-12-29")]


def sessions_between(sessions: list[date], first: date, last: date) -> list[date]:
    return [d for d in sessions if first <= d <= last]


def of(bars: pl.DataFrame, ticker: str) -> pl.DataFrame:
    return bars.filter(pl.col("ticker") == ticker)


def test_is_a_bar_provider(provider: BundledProvider) -> None:
    assert isinstance(provider, BarProvider)
    assert provider.name == "bundled"


def test_the_symbols_on_offer() -> None:
    assert len(SKFOLIO_STOCKS) == 20
    assert len(set(SKFOLIO_STOCKS)) == 20
    assert {"AAPL", "MSFT", "JPM", "XOM", "KO"} <= set(SKFOLIO_STOCKS)
    assert INDEX_SYMBOLS == ("SP500", "GSPC", "IXIC")
    assert set(BUNDLED_SYMBOLS) == set(SKFOLIO_STOCKS) | set(INDEX_SYMBOLS)


def test_the_frame_has_exactly_the_bar_schema(all_bars: pl.DataFrame) -> None:
    assert tuple(all_bars.columns) == BAR_COLUMNS
    assert dict(all_bars.schema) == BAR_SCHEMA


def test_every_symbol_is_delivered(all_bars: pl.DataFrame) -> None:
    assert sorted(all_bars["ticker"].unique()) == sorted(BUNDLED_SYMBOLS)


def test_rows_are_sorted_by_ticker_then_date(provider: BundledProvider) -> None:
    # Requested out of order, mixing both sources.
    bars = provider.fetch_bars(["XOM", "IXIC", "AAPL", "GSPC"], date(2010, 1, 1), date(2010, 3, 1))
    assert bars.equals(bars.sort(["ticker", "date"]))
    assert bars["ticker"].unique(maintain_order=True).to_list() == ["AAPL", "GSPC", "IXIC", "XOM"]


def test_ticker_and_date_are_unique(all_bars: pl.DataFrame) -> None:
    assert all_bars.select("ticker", "date").is_unique().all()


@pytest.mark.parametrize("ticker", SKFOLIO_STOCKS)
def test_a_stock_has_closes_on_exactly_the_xnys_sessions_1990_to_2022(
    all_bars: pl.DataFrame, xnys_sessions: list[date], ticker: str
) -> None:
    bars = of(all_bars, ticker)
    assert bars["date"].to_list() == sessions_between(xnys_sessions, SKFOLIO_FIRST, SKFOLIO_LAST)
    assert bars["close"].null_count() == 0
    assert bars["close"].min() > 0


@pytest.mark.parametrize("ticker", [*SKFOLIO_STOCKS, "SP500"])
def test_close_only_sources_are_never_fabricated(all_bars: pl.DataFrame, ticker: str) -> None:
    bars = of(all_bars, ticker)
    assert bars.height > 0
    for column in ("open", "high", "low", "volume"):
        assert bars[column].null_count() == bars.height, f"{ticker} {column} is not all-null"


def test_the_sp500_index_covers_the_same_sessions(
    all_bars: pl.DataFrame, xnys_sessions: list[date]
) -> None:
    bars = of(all_bars, "SP500")
    assert bars["date"].to_list() == sessions_between(xnys_sessions, SKFOLIO_FIRST, SKFOLIO_LAST)
    assert bars["close"].null_count() == 0
    # The S&P 500 was between 295 and 4800 over 1990-2022.
    assert 290 < bars["close"].min() < 300
    assert 4700 < bars["close"].max() < 4800


@pytest.mark.parametrize("ticker", ["GSPC", "IXIC"])
def test_arch_indices_have_ohlcv_on_exactly_the_xnys_sessions_1999_to_2018(
    all_bars: pl.DataFrame, xnys_sessions: list[date], ticker: str
) -> None:
    bars = of(all_bars, ticker)
    assert bars["date"].to_list() == sessions_between(xnys_sessions, ARCH_FIRST, ARCH_LAST)
    for column in ("open", "high", "low", "close", "volume"):
        assert bars[column].null_count() == 0, column
    assert bars["low"].min() > 0
    assert bars["volume"].min() >= 0


@pytest.mark.parametrize("ticker", ["GSPC", "IXIC"])
def test_arch_bars_are_consistent_low_le_open_close_le_high(
    all_bars: pl.DataFrame, ticker: str
) -> None:
    bars = of(all_bars, ticker)
    broken = bars.filter(
        (pl.col("low") > pl.col("open"))
        | (pl.col("low") > pl.col("close"))
        | (pl.col("open") > pl.col("high"))
        | (pl.col("close") > pl.col("high"))
    )
    assert broken.is_empty(), broken.head()


def test_gspc_is_the_real_sp500(provider: BundledProvider) -> None:
    # 1999-01-04: the S&P 500 closed at 1228.10 (arch) ...
    first = provider.fetch_bars(["GSPC"], ARCH_FIRST, ARCH_FIRST)
    assert first["close"].to_list() == [pytest.approx(1228.10, abs=0.01)]
    # ... and both sources of the S&P 500 agree on every common session.
    both = provider.fetch_bars(["GSPC", "SP500"], ARCH_FIRST, ARCH_LAST)
    wide = both.pivot(on="ticker", index="date", values="close")
    assert wide.height == 5031
    assert wide.null_count().sum_horizontal().item() == 0
    assert ((wide["GSPC"] / wide["SP500"] - 1).abs() < 1e-6).all()


def test_date_filtering_is_inclusive_at_both_ends(provider: BundledProvider) -> None:
    start, end = date(2020, 3, 9), date(2020, 3, 13)  # Monday to Friday
    bars = provider.fetch_bars(["AAPL", "GSPC", "SP500"], start, end)
    aapl = of(bars, "AAPL")
    assert aapl["date"].to_list() == [date(2020, 3, d) for d in (9, 10, 11, 12, 13)]
    assert of(bars, "SP500")["date"].to_list() == aapl["date"].to_list()
    assert of(bars, "GSPC").is_empty()  # arch data ends in 2018


def test_a_single_day_range(provider: BundledProvider) -> None:
    bars = provider.fetch_bars(["AAPL", "GSPC"], date(2008, 10, 10), date(2008, 10, 10))
    assert bars["date"].to_list() == [date(2008, 10, 10)] * 2
    assert bars["ticker"].to_list() == ["AAPL", "GSPC"]


def test_a_weekend_range_has_no_rows(provider: BundledProvider) -> None:
    bars = provider.fetch_bars(["AAPL", "GSPC"], date(2010, 1, 9), date(2010, 1, 10))
    assert bars.is_empty()
    assert dict(bars.schema) == BAR_SCHEMA


def test_a_range_outside_the_data_has_no_rows(provider: BundledProvider) -> None:
    assert provider.fetch_bars(["AAPL"], date(1980, 1, 1), date(1989, 12, 31)).is_empty()
    assert provider.fetch_bars(["IXIC"], date(2019, 1, 1), date(2022, 12, 31)).is_empty()


def test_boundaries_of_the_data(provider: BundledProvider) -> None:
    bars = provider.fetch_bars(["AAPL", "IXIC"], *EVERYTHING)
    aapl, ixic = of(bars, "AAPL"), of(bars, "IXIC")
    assert (aapl["date"].min(), aapl["date"].max()) == (SKFOLIO_FIRST, SKFOLIO_LAST)
    assert (ixic["date"].min(), ixic["date"].max()) == (ARCH_FIRST, ARCH_LAST)


def test_no_tickers_gives_an_empty_frame_with_the_schema(provider: BundledProvider) -> None:
    bars = provider.fetch_bars([], *EVERYTHING)
    assert bars.is_empty()
    assert dict(bars.schema) == BAR_SCHEMA


def test_the_result_does_not_depend_on_other_tickers_requested(provider: BundledProvider) -> None:
    alone = provider.fetch_bars(["KO"], date(2000, 1, 1), date(2000, 12, 31))
    together = provider.fetch_bars(["KO", "PEP", "GSPC"], date(2000, 1, 1), date(2000, 12, 31))
    assert of(together, "KO").equals(alone)


def test_an_unknown_ticker_is_a_provider_error_naming_it(provider: BundledProvider) -> None:
    with pytest.raises(ProviderError, match="'ZZZZ'") as excinfo:
        provider.fetch_bars(["AAPL", "ZZZZ"], date(2020, 1, 1), date(2020, 2, 1))
    assert "AAPL" in str(excinfo.value)  # the message lists what is available


def test_a_malformed_ticker_is_refused_before_lookup(provider: BundledProvider) -> None:
    with pytest.raises(InvalidTickerError):
        provider.fetch_bars(["../etc"], date(2020, 1, 1), date(2020, 2, 1))
    with pytest.raises(InvalidTickerError):
        provider.fetch_bars(["aapl"], date(2020, 1, 1), date(2020, 2, 1))


def test_a_ticker_requested_twice_is_delivered_once(provider: BundledProvider) -> None:
    bars = provider.fetch_bars(["AAPL", "AAPL", "GSPC", "GSPC"], date(2018, 3, 1), date(2018, 3, 2))
    assert bars.height == 4
    assert bars.select("ticker", "date").is_unique().all()
