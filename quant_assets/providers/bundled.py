"""The bundled provider: real daily data that ships inside installed packages (offline).

- The 20 S&P 500 stocks of ``skfolio.datasets.load_sp500_dataset()``: split/dividend-adjusted
  daily **closes**, 1990-01-02 to 2022-12-28. The source has no open/high/low/volume, so those
  columns are null here: never fabricated.
- ``SP500``: the S&P 500 index closes of ``skfolio.datasets.load_sp500_index()`` over the same
  sessions (close-only).
- ``GSPC`` and ``IXIC``: S&P 500 and NASDAQ Composite index OHLCV from ``arch.data`` (1999-2018),
  with open/high/low scaled by adjusted/raw close.
"""

from __future__ import annotations

import importlib.util
from collections.abc import Sequence
from datetime import date
from functools import lru_cache
from pathlib import Path

import polars as pl

from quant_assets.errors import ProviderError
from quant_assets.providers.base import conform_bars, empty_bars
from quant_assets.tickers import validate_ticker

SKFOLIO_STOCKS: tuple[str, ...] = (
    "AAPL", "AMD", "BAC", "BBY", "CVX", "GE", "HD", "JNJ", "JPM", "KO",
    "LLY", "MRK", "MSFT", "PEP", "PFE", "PG", "RRC", "UNH", "WMT", "XOM",
)  # fmt: skip
INDEX_SYMBOLS: tuple[str, ...] = ("SP500", "GSPC", "IXIC")
BUNDLED_SYMBOLS: tuple[str, ...] = SKFOLIO_STOCKS + INDEX_SYMBOLS


def package_data_file(package: str, *parts: str) -> Path:
    # Locate a data file inside an installed package without importing it: importing skfolio
    # pulls in scikit-learn (~7 s) and arch its statistics stack; reading the files takes ms.
    spec = importlib.util.find_spec(package)
    if spec is None or spec.origin is None:
        raise ProviderError(f"bundled provider needs the {package!r} package installed")
    path = Path(spec.origin).parent.joinpath(*parts)
    if not path.is_file():
        raise ProviderError(f"bundled provider: data file missing: {path}")
    return path


@lru_cache(maxsize=1)
def _skfolio_closes() -> pl.DataFrame:
    frames = []
    for name in ("sp500_dataset.csv.gz", "sp500_index.csv.gz"):
        wide = pl.read_csv(
            package_data_file("skfolio", "datasets", "data", name), try_parse_dates=True
        )
        frames.append(
            wide.rename({"Date": "date"})
            .with_columns(pl.col("date").cast(pl.Date))
            .unpivot(index="date", variable_name="ticker", value_name="close")
        )
    return conform_bars(pl.concat(frames).drop_nulls("close"))


@lru_cache(maxsize=2)
def _arch_ohlcv(symbol: str) -> pl.DataFrame:
    # The gzipped CSVs behind arch.data.sp500/nasdaq.load(), read directly (importing arch
    # costs seconds). Prices are scaled by Adj Close / Close so the bar is adjusted like close.
    folder, name = ("sp500", "sp500.csv.gz") if symbol == "GSPC" else ("nasdaq", "nasdaq.csv.gz")
    raw = pl.read_csv(package_data_file("arch", "data", folder, name))
    adjust = pl.col("Adj Close") / pl.col("Close")
    frame = raw.select(
        pl.col("Date").str.to_date("%m/%d/%Y").alias("date"),
        pl.lit(symbol).alias("ticker"),
        (pl.col("Open") * adjust).alias("open"),
        (pl.col("High") * adjust).alias("high"),
        (pl.col("Low") * adjust).alias("low"),
        pl.col("Adj Close").alias("close"),
        pl.col("Volume").cast(pl.Float64).alias("volume"),
    )
    return conform_bars(frame)


class BundledProvider:
    """Real bars shipped inside skfolio and arch; see the module docstring for coverage."""

    name = "bundled"

    def fetch_bars(self, tickers: Sequence[str], start: date, end: date) -> pl.DataFrame:
        """Return bars for ``tickers`` in ``[start, end]``; unknown symbols raise ProviderError."""
        tickers = list(dict.fromkeys(tickers))  # a symbol asked for twice comes back once
        for ticker in tickers:
            validate_ticker(ticker)
            if ticker not in BUNDLED_SYMBOLS:
                raise ProviderError(
                    f"bundled provider has no ticker {ticker!r}; "
                    f"available: {', '.join(BUNDLED_SYMBOLS)}"
                )
        parts = []
        closes = [t for t in tickers if t not in ("GSPC", "IXIC")]
        if closes:
            parts.append(_skfolio_closes().filter(pl.col("ticker").is_in(closes)))
        parts.extend(_arch_ohlcv(t) for t in tickers if t in ("GSPC", "IXIC"))
        if not parts:
            return empty_bars()
        frame = pl.concat(parts)
        return frame.filter(pl.col("date").is_between(start, end)).sort(["ticker", "date"])
