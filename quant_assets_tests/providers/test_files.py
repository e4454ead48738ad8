"""Specification of the files provider: ``<folder>/<TICKER>.csv|parquet`` parsed into bars.

``date`` (YYYY-MM-DD) and ``close`` are required; ``open``, ``high``, ``low``, ``volume`` are
optional (null when absent). Unreadable files, a missing required column, unparsable dates
or numbers are refused with a ProviderError naming the file, the column/value and the row.
Missing values (empty cells, NaN spellings) are nulls: the quality suite judges them later.
"""

from __future__ import annotations

from datetime import date, datetime
from pathlib import Path

import polars as pl
import pytest

from quant_assets.errors import InvalidTickerError, ProviderError
from quant_assets.providers.base import BAR_COLUMNS, BAR_SCHEMA, BarProvider
from quant_assets.providers.files import FilesProvider, read_bar_file

WIDE = (date(2000, 1, 1), date(2030, 12, 31))
DAYS = [date(2020, 3, 2), date(2020, 3, 3), date(2020, 3, 4)]


def ohlcv(ticker: str | None = None) -> pl.DataFrame:
    """Three full bars; with ``ticker`` as the provider returns them, else as a file holds them."""
    frame = pl.DataFrame(
        {
            "date": DAYS,
            "open": [10.0, 10.5, 11.25],
            "high": [10.75, 11.5, 11.75],
            "low": [9.5, 10.25, 10.5],
            "close": [10.5, 11.25, 10.75],
            "volume": [1000.0, 2500.0, 1750.0],
        }
    )
    if ticker is None:
        return frame
    return frame.with_columns(pl.lit(ticker).alias("ticker")).select(BAR_COLUMNS)


def fetch(folder: Path, *tickers: str, start: date = WIDE[0], end: date = WIDE[1]) -> pl.DataFrame:
    return FilesProvider(folder).fetch_bars(list(tickers), start, end)


def refusal(folder: Path, ticker: str) -> str:
    with pytest.raises(ProviderError) as excinfo:
        fetch(folder, ticker)
    return str(excinfo.value)


def test_is_a_bar_provider(tmp_path: Path) -> None:
    provider = FilesProvider(tmp_path)
    assert isinstance(provider, BarProvider)
    assert provider.name == "files"
    assert FilesProvider(str(tmp_path)).folder == tmp_path


# --- round trips -------------------------------------------------------------------------------


def test_csv_round_trip(tmp_path: Path) -> None:
    ohlcv().write_csv(tmp_path / "AAA.csv")
    bars = fetch(tmp_path, "AAA")
    assert dict(bars.schema) == BAR_SCHEMA
    assert bars.equals(ohlcv("AAA"))


def test_parquet_round_trip(tmp_path: Path) -> None:
    ohlcv().write_parquet(tmp_path / "AAA.parquet")
    bars = fetch(tmp_path, "AAA")
    assert dict(bars.schema) == BAR_SCHEMA
    assert bars.equals(ohlcv("AAA"))


def test_csv_and_parquet_give_the_same_bars(tmp_path: Path) -> None:
    ohlcv().write_csv(tmp_path / "AAA.csv")
    ohlcv().write_parquet(tmp_path / "BBB.parquet")
    bars = fetch(tmp_path, "BBB", "AAA")
    assert (
        bars.filter(pl.col("ticker") == "AAA")
        .drop("ticker")
        .equals(bars.filter(pl.col("ticker") == "BBB").drop("ticker"))
    )


def test_parquet_is_preferred_when_both_exist(tmp_path: Path) -> None:
    ohlcv().write_parquet(tmp_path / "AAA.parquet")
    ohlcv().with_columns(pl.col("close") * 2).write_csv(tmp_path / "AAA.csv")
    assert FilesProvider(tmp_path).path_for("AAA") == tmp_path / "AAA.parquet"
    assert fetch(tmp_path, "AAA")["close"].to_list() == [10.5, 11.25, 10.75]


def test_parquet_with_typed_columns(tmp_path: Path) -> None:
    # Datetime dates and integer prices/volumes are accepted and typed like the rest.
    pl.DataFrame(
        {
            "date": [datetime(2020, 3, 2), datetime(2020, 3, 3)],
            "close": [10, 11],
            "volume": [100, 200],
        }
    ).write_parquet(tmp_path / "AAA.parquet")
    bars = fetch(tmp_path, "AAA")
    assert dict(bars.schema) == BAR_SCHEMA
    assert bars["date"].to_list() == DAYS[:2]
    assert bars["close"].to_list() == [10.0, 11.0]
    assert bars["volume"].to_list() == [100.0, 200.0]


def test_parquet_with_text_columns_is_parsed_like_csv(tmp_path: Path) -> None:
    pl.DataFrame({"date": ["2020-03-02", "2020-03-03"], "close": ["10.5", ""]}).write_parquet(
        tmp_path / "AAA.parquet"
    )
    bars = fetch(tmp_path, "AAA")
    assert bars["date"].to_list() == DAYS[:2]
    assert bars["close"].to_list() == [10.5, None]


def test_rows_are_sorted_by_ticker_then_date(tmp_path: Path) -> None:
    ohlcv().reverse().write_csv(tmp_path / "ZZ.csv")  # rows out of order in the file
    ohlcv().write_csv(tmp_path / "AA.csv")
    bars = fetch(tmp_path, "ZZ", "AA")
    assert bars.equals(bars.sort(["ticker", "date"]))
    assert bars["ticker"].to_list() == ["AA"] * 3 + ["ZZ"] * 3


def test_date_filtering_is_inclusive_at_both_ends(tmp_path: Path) -> None:
    ohlcv().write_csv(tmp_path / "AAA.csv")
    assert fetch(tmp_path, "AAA", start=DAYS[1], end=DAYS[2])["date"].to_list() == DAYS[1:]
    assert fetch(tmp_path, "AAA", start=DAYS[1], end=DAYS[1])["date"].to_list() == [DAYS[1]]
    assert fetch(tmp_path, "AAA", start=date(2021, 1, 1), end=date(2021, 2, 1)).is_empty()


def test_no_tickers_gives_an_empty_frame_with_the_schema(tmp_path: Path) -> None:
    bars = fetch(tmp_path)
    assert bars.is_empty()
    assert dict(bars.schema) == BAR_SCHEMA


def test_a_header_only_file_gives_no_rows(tmp_path: Path) -> None:
    (tmp_path / "AAA.csv").write_text("date,close\n")
    bars = fetch(tmp_path, "AAA")
    assert bars.is_empty()
    assert dict(bars.schema) == BAR_SCHEMA


def test_header_case_and_whitespace_do_not_matter(tmp_path: Path) -> None:
    (tmp_path / "AAA.csv").write_text(" Date ,CLOSE, Volume\n 2020-03-02 , 10.5 , 100 \n")
    bars = fetch(tmp_path, "AAA")
    assert bars["date"].to_list() == [DAYS[0]]
    assert bars["close"].to_list() == [10.5]
    assert bars["volume"].to_list() == [100.0]


def test_extra_columns_are_ignored(tmp_path: Path) -> None:
    ohlcv().with_columns(pl.lit("x").alias("note")).write_csv(tmp_path / "AAA.csv")
    assert fetch(tmp_path, "AAA").equals(ohlcv("AAA"))


# --- optional columns and missing values -------------------------------------------------------


@pytest.mark.parametrize("suffix", ["csv", "parquet"])
def test_missing_optional_columns_are_null_not_fabricated(tmp_path: Path, suffix: str) -> None:
    frame = ohlcv().select("date", "close", "volume")
    getattr(frame, f"write_{suffix}")(tmp_path / f"AAA.{suffix}")
    bars = fetch(tmp_path, "AAA")
    assert dict(bars.schema) == BAR_SCHEMA
    for column in ("open", "high", "low"):
        assert bars[column].null_count() == 3, column
    assert bars["close"].to_list() == [10.5, 11.25, 10.75]
    assert bars["volume"].to_list() == [1000.0, 2500.0, 1750.0]


def test_a_close_only_file(tmp_path: Path) -> None:
    (tmp_path / "AAA.csv").write_text("date,close\n2020-03-02,10.5\n")
    bars = fetch(tmp_path, "AAA")
    assert bars.row(0) == (DAYS[0], "AAA", None, None, None, 10.5, None)


def test_empty_cells_and_nan_spellings_become_null(tmp_path: Path) -> None:
    (tmp_path / "AAA.csv").write_text(
        "date,open,close,volume\n2020-03-02,1.0,,\n2020-03-03,NaN,NA,nan\n2020-03-04,null,2.5,  \n"
    )
    bars = fetch(tmp_path, "AAA")
    assert bars["open"].to_list() == [1.0, None, None]
    assert bars["close"].to_list() == [None, None, 2.5]
    assert bars["volume"].to_list() == [None, None, None]
    # Nulls, not NaN: nothing downstream has to tell the two apart.
    assert not bars["close"].is_nan().any()


def test_nan_in_a_parquet_file_becomes_null_too(tmp_path: Path) -> None:
    pl.DataFrame({"date": DAYS[:2], "close": [float("nan"), 1.0]}).write_parquet(
        tmp_path / "AAA.parquet"
    )
    assert fetch(tmp_path, "AAA")["close"].to_list() == [None, 1.0]


# --- refusals ----------------------------------------------------------------------------------


@pytest.mark.parametrize("suffix", ["csv", "parquet"])
def test_a_missing_close_column_names_the_file_and_close(tmp_path: Path, suffix: str) -> None:
    frame = ohlcv().drop("close")
    getattr(frame, f"write_{suffix}")(tmp_path / f"AAA.{suffix}")
    message = refusal(tmp_path, "AAA")
    assert f"AAA.{suffix}" in message
    assert "missing required column(s) close" in message


def test_a_missing_date_column_names_the_file_and_date(tmp_path: Path) -> None:
    (tmp_path / "AAA.csv").write_text("day,close\n2020-03-02,1.0\n")
    message = refusal(tmp_path, "AAA")
    assert "AAA.csv" in message
    assert "missing required column(s) date" in message
    assert "day" in message  # the columns found are listed


@pytest.mark.parametrize(
    "bad_date", ["2020/03/03", "03/03/2020", "2020-13-45", "2020-02-30", "yesterday"]
)
def test_an_unparsable_date_names_the_file_the_value_and_the_row(
    tmp_path: Path, bad_date: str
) -> None:
    (tmp_path / "AAA.csv").write_text(f"date,close\n2020-03-02,1.0\n{bad_date},2.0\n")
    message = refusal(tmp_path, "AAA")
    assert "AAA.csv" in message
    assert f"unparsable date {bad_date!r}" in message
    assert "data row 2" in message


def test_an_empty_date_cell_is_refused_naming_the_row(tmp_path: Path) -> None:
    (tmp_path / "AAA.csv").write_text("date,close\n2020-03-02,1.0\n,2.0\n")
    message = refusal(tmp_path, "AAA")
    assert "AAA.csv" in message
    assert "unparsable date" in message
    assert "data row 2" in message


def test_an_unparsable_date_in_parquet_names_the_row(tmp_path: Path) -> None:
    pl.DataFrame(
        {"date": ["2020-03-02", "2020-03-03", "bad"], "close": [1.0, 2.0, 3.0]}
    ).write_parquet(tmp_path / "AAA.parquet")
    message = refusal(tmp_path, "AAA")
    assert "AAA.parquet" in message
    assert "unparsable date 'bad'" in message
    assert "data row 3" in message


@pytest.mark.parametrize(
    ("column", "text"),
    [("close", "abc"), ("close", "1,234.5"), ("close", "$10"), ("open", "n/a"), ("volume", "1k")],
)
def test_non_numeric_price_text_is_refused(tmp_path: Path, column: str, text: str) -> None:
    frame = ohlcv().with_columns(pl.col(column).cast(pl.Utf8))
    frame = frame.with_columns(
        pl.when(pl.col("date") == DAYS[2])
        .then(pl.lit(text))
        .otherwise(pl.col(column))
        .alias(column)
    )
    frame.write_csv(tmp_path / "AAA.csv")
    message = refusal(tmp_path, "AAA")
    assert "AAA.csv" in message
    assert f"unparsable number {text!r}" in message
    assert repr(column) in message
    assert "data row 3" in message


def test_the_first_bad_row_is_the_one_reported(tmp_path: Path) -> None:
    (tmp_path / "AAA.csv").write_text("date,close\n2020-03-02,x\n2020-03-03,y\n")
    message = refusal(tmp_path, "AAA")
    assert "'x'" in message and "data row 1" in message
    assert "'y'" not in message


def test_an_empty_file_is_unreadable(tmp_path: Path) -> None:
    (tmp_path / "AAA.csv").write_text("")
    message = refusal(tmp_path, "AAA")
    assert "AAA.csv" in message and "unreadable" in message


def test_a_corrupt_parquet_file_is_unreadable(tmp_path: Path) -> None:
    (tmp_path / "AAA.parquet").write_bytes(b"this is not parquet")
    message = refusal(tmp_path, "AAA")
    assert "AAA.parquet" in message and "unreadable" in message


def test_no_file_for_a_ticker(tmp_path: Path) -> None:
    ohlcv().write_csv(tmp_path / "AAA.csv")
    with pytest.raises(ProviderError) as excinfo:
        fetch(tmp_path, "AAA", "BBB")
    message = str(excinfo.value)
    assert "no file for ticker 'BBB'" in message
    assert "BBB.csv" in message and "BBB.parquet" in message
    assert str(tmp_path) in message


def test_a_file_with_another_extension_is_not_read(tmp_path: Path) -> None:
    ohlcv().write_csv(tmp_path / "AAA.txt")
    with pytest.raises(ProviderError, match="no file for ticker 'AAA'"):
        fetch(tmp_path, "AAA")


def test_a_malformed_ticker_never_reaches_the_file_system(tmp_path: Path) -> None:
    (tmp_path / "secret.csv").write_text("date,close\n2020-03-02,1.0\n")
    inner = tmp_path / "drop"
    inner.mkdir()
    for ticker in ("../secret", "secret", "AAA/../../x"):
        with pytest.raises(InvalidTickerError):
            fetch(inner, ticker)


def test_values_are_parsed_before_the_date_filter(tmp_path: Path) -> None:
    # A broken row outside the requested range still refuses the file: the file is bad.
    (tmp_path / "AAA.csv").write_text("date,close\n2010-01-04,oops\n2020-03-02,1.0\n")
    with pytest.raises(ProviderError, match="oops"):
        fetch(tmp_path, "AAA", start=date(2020, 1, 1), end=date(2020, 12, 31))


def test_read_bar_file_stamps_the_given_ticker(tmp_path: Path) -> None:
    path = tmp_path / "whatever.csv"
    ohlcv().write_csv(path)
    assert read_bar_file(path, "AAA").equals(ohlcv("AAA"))


def test_a_ticker_requested_twice_is_delivered_once(tmp_path: Path) -> None:
    ohlcv().write_csv(tmp_path / "AAA.csv")
    assert fetch(tmp_path, "AAA", "AAA").equals(ohlcv("AAA"))
