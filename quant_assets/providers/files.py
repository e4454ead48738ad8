"""The files provider: a folder of per-ticker CSV or Parquet files a user drops in.

Each file is ``<TICKER>.csv`` or ``<TICKER>.parquet`` with a ``date`` column (ISO
``YYYY-MM-DD``) and ``close``; ``open``, ``high``, ``low`` and ``volume`` are optional.
Unreadable files, a missing required column and unparsable dates or numbers are refused
with a :class:`ProviderError` naming the file, the column and the first offending row.
"""

from __future__ import annotations

from collections.abc import Sequence
from datetime import date
from pathlib import Path

import polars as pl

from quant_assets.errors import ProviderError
from quant_assets.providers.base import BAR_SCHEMA, OPTIONAL_COLUMNS, conform_bars, empty_bars
from quant_assets.tickers import validate_ticker

REQUIRED_COLUMNS: tuple[str, ...] = ("date", "close")


class FilesProvider:
    """Bars read from ``<folder>/<TICKER>.csv|parquet``."""

    name = "files"

    def __init__(self, folder: Path | str) -> None:
        self.folder = Path(folder)

    def path_for(self, ticker: str) -> Path:
        """The file holding ``ticker``'s bars (Parquet preferred); ProviderError if none."""
        validate_ticker(ticker)
        for suffix in (".parquet", ".csv"):
            candidate = self.folder / f"{ticker}{suffix}"
            if candidate.is_file():
                return candidate
        raise ProviderError(
            f"files provider: no file for ticker {ticker!r} in {self.folder} "
            f"(expected {ticker}.csv or {ticker}.parquet)"
        )

    def fetch_bars(self, tickers: Sequence[str], start: date, end: date) -> pl.DataFrame:
        """Read, parse and type each ticker's file; return rows in ``[start, end]``."""
        frames = [read_bar_file(self.path_for(t), t) for t in dict.fromkeys(tickers)]
        if not frames:
            return empty_bars()
        return (
            pl.concat(frames).filter(pl.col("date").is_between(start, end)).sort(["ticker", "date"])
        )


def read_bar_file(path: Path, ticker: str) -> pl.DataFrame:
    """Parse one bar file into the bar schema; refuse it with a message naming file and row."""
    try:
        if path.suffix == ".parquet":
            raw = pl.read_parquet(path)
        else:
            raw = pl.read_csv(path, infer_schema=False)  # all Utf8: we parse and report ourselves
    except Exception as exc:  # polars raises several error types for unreadable files
        raise ProviderError(f"{path}: unreadable bar file ({exc})") from exc
    raw = raw.rename({c: c.strip().lower() for c in raw.columns})
    missing = [c for c in REQUIRED_COLUMNS if c not in raw.columns]
    if missing:
        raise ProviderError(
            f"{path}: missing required column(s) {', '.join(missing)} for ticker {ticker} "
            f"(columns found: {', '.join(raw.columns) or 'none'})"
        )
    parsed = raw.select(
        _parse_date(raw, path),
        *[_parse_number(raw, c, path) for c in ("close", *OPTIONAL_COLUMNS) if c in raw.columns],
    ).with_columns(pl.lit(ticker).alias("ticker"))
    return conform_bars(parsed)


def _parse_date(raw: pl.DataFrame, path: Path) -> pl.Series:
    column = raw["date"]
    if column.dtype == pl.Date:
        return column
    if column.dtype == pl.Datetime:
        return column.dt.date()
    text = column.cast(pl.Utf8).str.strip_chars()
    parsed = text.str.to_date("%Y-%m-%d", strict=False)
    bad = (parsed.is_null()).arg_true()
    if len(bad):
        row = int(bad[0])
        raise ProviderError(
            f"{path}: unparsable date {text[row]!r} in column 'date' at data row {row + 1} "
            "(expected YYYY-MM-DD)"
        )
    return parsed.alias("date")


def _parse_number(raw: pl.DataFrame, name: str, path: Path) -> pl.Series:
    column = raw[name]
    if column.dtype.is_numeric():  # Parquet: a stored NaN is a missing value, as in a CSV
        return column.cast(pl.Float64).fill_nan(None)
    text = column.cast(pl.Utf8).str.strip_chars()
    # Empty cells and the usual NaN spellings are missing values, not parse errors: the
    # quality suite then reports them as nulls with the ticker and date.
    text = pl.Series(name, text).replace(["", "NA", "NaN", "nan", "null"], None)
    parsed = text.cast(pl.Float64, strict=False)
    bad = (parsed.is_null() & text.is_not_null()).arg_true()
    if len(bad):
        row = int(bad[0])
        raise ProviderError(
            f"{path}: unparsable number {text[row]!r} in column {name!r} at data row {row + 1}"
        )
    return parsed.alias(name).cast(BAR_SCHEMA[name])
