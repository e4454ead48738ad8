"""The provider interface: fetch bars for tickers and a date range, return a clean frame.

Every provider returns the same frame, :data:`BAR_COLUMNS`, so the rest of the pipeline
never knows where bars came from:

- ``date`` (``pl.Date``): the trading session the bar closes on (bars are stamped at the close);
- ``ticker`` (``pl.Utf8``): a symbol matching :data:`quant_assets.tickers.TICKER_PATTERN`;
- ``open``, ``high``, ``low``, ``close`` (``pl.Float64``): split/dividend-adjusted prices;
  a column the source does not have is all-null, never fabricated;
- ``volume`` (``pl.Float64``): shares traded, null where the source has none.

Rows are sorted by ``(ticker, date)`` and lie within ``[start, end]``. Providers parse and
type their source (and refuse unreadable input with :class:`ProviderError` naming the file);
value rules (positive prices, unique dates, OHLC consistency) are checked downstream by the
``bars`` quality suite, so every provider is held to the same rules in one place.
"""

from __future__ import annotations

from collections.abc import Sequence
from datetime import date
from typing import Protocol, runtime_checkable

import polars as pl

PRICE_COLUMNS: tuple[str, ...] = ("open", "high", "low", "close")
OPTIONAL_COLUMNS: tuple[str, ...] = ("open", "high", "low", "volume")
BAR_COLUMNS: tuple[str, ...] = ("date", "ticker", "open", "high", "low", "close", "volume")
BAR_SCHEMA: dict[str, pl.DataType] = {
    "date": pl.Date(),
    "ticker": pl.Utf8(),
    "open": pl.Float64(),
    "high": pl.Float64(),
    "low": pl.Float64(),
    "close": pl.Float64(),
    "volume": pl.Float64(),
}


@runtime_checkable
class BarProvider(Protocol):
    """Anything that can deliver daily bars for a set of tickers and a date range."""

    name: str

    def fetch_bars(self, tickers: Sequence[str], start: date, end: date) -> pl.DataFrame:
        """Return bars for ``tickers`` in ``[start, end]`` as a frame of :data:`BAR_COLUMNS`.

        Tickers with no data in the range contribute no rows. Unknown tickers raise
        :class:`quant_assets.errors.ProviderError`.
        """
        ...


def empty_bars() -> pl.DataFrame:
    """An empty frame with the bar schema."""
    return pl.DataFrame(schema=BAR_SCHEMA)


def conform_bars(frame: pl.DataFrame) -> pl.DataFrame:
    """Give ``frame`` exactly the bar columns and dtypes, adding missing optional columns as null.

    ``date``, ``ticker`` and ``close`` must be present (the caller reports which file lacks them).
    """
    columns = []
    for name, dtype in BAR_SCHEMA.items():
        if name in frame.columns:
            columns.append(pl.col(name).cast(dtype, strict=True))
        else:
            columns.append(pl.lit(None, dtype=dtype).alias(name))
    return frame.select(columns).sort(["ticker", "date"])


def available_columns(frame: pl.DataFrame) -> dict[str, list[str]]:
    """Per ticker, the optional columns (open/high/low/volume) that hold any value."""
    if frame.is_empty():
        return {}
    counts = frame.group_by("ticker").agg(
        [pl.col(c).is_not_null().any().alias(c) for c in OPTIONAL_COLUMNS]
    )
    return {
        row["ticker"]: [c for c in OPTIONAL_COLUMNS if row[c]]
        for row in counts.iter_rows(named=True)
    }
