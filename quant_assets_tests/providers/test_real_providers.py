"""The bundled (real, offline) and files providers deliver the same clean bar schema."""

from __future__ import annotations

from datetime import date

import exchange_calendars as xcals
import polars as pl
import pytest

from quant_assets.errors import ProviderError
from quant_assets.providers.base import BAR_SCHEMA
from quant_assets.providers.bundled import SKFOLIO_STOCKS, BundledProvider
from quant_assets.providers.files import FilesProvider


def test_bundled_stocks_are_real_close_only_bars_on_exchange_sessions():
    bars = BundledProvider().fetch_bars(list(SKFOLIO_STOCKS), date(1990, 1, 1), date(2022, 12, 31))
    assert dict(bars.schema) == BAR_SCHEMA
    assert bars["ticker"].n_unique() == 20
    assert bars["date"].min() == date(1990, 1, 2) and bars["date"].max() == date(2022, 12, 28)
    for column in ("open", "high", "low", "volume"):  # never fabricated
        assert bars[column].null_count() == bars.height, column
    assert bars["close"].null_count() == 0 and bars["close"].min() > 0
    calendar = xcals.get_calendar("XNYS", start="1990-01-01")
    sessions = calendar.sessions_in_range("1990-01-02", "2022-12-28")
    aapl = bars.filter(pl.col("ticker") == "AAPL")["date"].to_list()
    assert aapl == [s.date() for s in sessions]
    assert bars.sort(["ticker", "date"]).equals(bars)


def test_bundled_index_ohlcv_is_consistent_and_filtered_inclusively():
    bars = BundledProvider().fetch_bars(["GSPC", "SP500"], date(2008, 10, 1), date(2008, 10, 31))
    gspc = bars.filter(pl.col("ticker") == "GSPC")
    assert gspc["date"].min() == date(2008, 10, 1) and gspc["date"].max() == date(2008, 10, 31)
    assert (gspc["low"] <= gspc["close"]).all() and (gspc["close"] <= gspc["high"]).all()
    assert gspc["volume"].min() > 0
    assert bars.filter(pl.col("ticker") == "SP500").height == gspc.height


def test_bundled_refuses_unknown_tickers_by_name():
    with pytest.raises(ProviderError, match="ZZZZ"):
        BundledProvider().fetch_bars(["ZZZZ"], date(2020, 1, 1), date(2020, 2, 1))


def test_files_provider_reads_csv_and_parquet_with_optional_columns(tmp_path):
    pl.DataFrame({"date": ["2020-01-02", "2020-01-03"], "close": [1.0, 2.0]}).write_csv(
        tmp_path / "AAA.csv"
    )
    pl.DataFrame(
        {
            "date": [date(2020, 1, 2)],
            "open": [1.0],
            "high": [2.0],
            "low": [0.5],
            "close": [1.5],
            "volume": [10.0],
        }
    ).write_parquet(tmp_path / "BBB.parquet")
    bars = FilesProvider(tmp_path).fetch_bars(["AAA", "BBB"], date(2020, 1, 1), date(2020, 1, 31))
    assert dict(bars.schema) == BAR_SCHEMA
    assert bars.filter(pl.col("ticker") == "AAA")["open"].null_count() == 2
    assert bars.filter(pl.col("ticker") == "BBB")["volume"].to_list() == [10.0]


@pytest.mark.parametrize(
    ("content", "message"),
    [
        ("date,open\n2020-01-02,1.0\n", "missing required column(s) close"),
        ("date,close\n2020-01-02,1.0\n2020-13-45,2.0\n", "unparsable date '2020-13-45'"),
        ("date,close\n2020-01-02,abc\n", "unparsable number 'abc'"),
    ],
)
def test_files_provider_refuses_bad_files_naming_the_file(tmp_path, content, message):
    (tmp_path / "AAA.csv").write_text(content)
    with pytest.raises(ProviderError) as raised:
        FilesProvider(tmp_path).fetch_bars(["AAA"], date(2020, 1, 1), date(2020, 12, 31))
    assert "AAA.csv" in str(raised.value) and message in str(raised.value)


def test_files_provider_keeps_missing_closes_as_nulls_for_the_quality_suite(tmp_path):
    (tmp_path / "AAA.csv").write_text("date,close\n2020-01-02,1.0\n2020-01-03,NaN\n2020-01-06,\n")
    bars = FilesProvider(tmp_path).fetch_bars(["AAA"], date(2020, 1, 1), date(2020, 1, 31))
    assert bars["close"].to_list() == [1.0, None, None]


def test_files_provider_without_a_file_for_the_ticker_says_so(tmp_path):
    with pytest.raises(ProviderError, match="no file for ticker 'AAA'"):
        FilesProvider(tmp_path).fetch_bars(["AAA"], date(2020, 1, 1), date(2020, 1, 31))
