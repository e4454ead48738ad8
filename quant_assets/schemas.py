"""Column schemas of the stored tables, declared once: used by assets (Dagster column schema
metadata, shown in the UI), by the ingest step (column order and types) and by tests."""

from __future__ import annotations

from dataclasses import dataclass

import polars as pl

from quant_assets.features.build import feature_columns
from quant_assets.settings import FeatureSettings
from quant_assets.signals.rules import SIGNAL_COLUMNS


@dataclass(frozen=True)
class Column:
    name: str
    dtype: pl.DataType
    description: str


KEY_COLUMNS = (
    Column("date", pl.Date(), "trading session the row closes on (exchange calendar)"),
    Column("ticker", pl.Utf8(), "instrument symbol"),
)

BARS = (
    *KEY_COLUMNS,
    Column("open", pl.Float64(), "adjusted open; null when the provider has none"),
    Column("high", pl.Float64(), "adjusted high; null when the provider has none"),
    Column("low", pl.Float64(), "adjusted low; null when the provider has none"),
    Column("close", pl.Float64(), "split/dividend-adjusted close"),
    Column("volume", pl.Float64(), "shares traded; null when the provider has none"),
    Column("is_return_spike", pl.Boolean(), "|close-to-close return| above the spike threshold"),
    Column("provider", pl.Utf8(), "provider that delivered the bar"),
    Column("ingested_at", pl.Datetime("us", "UTC"), "when the partition was ingested (UTC)"),
    Column("raw_hash", pl.Utf8(), "sha256 of the raw provider row (date, ticker, OHLCV)"),
)


def features_schema(settings: FeatureSettings) -> tuple[Column, ...]:
    """The stored features table for ``settings``."""
    return (
        *KEY_COLUMNS,
        *(Column(n, pl.Float64(), d) for n, d in feature_columns(settings).items()),
        Column("warmed_up", pl.Boolean(), "every feature window of the row is full"),
        Column(
            "benchmark_complete",
            pl.Boolean(),
            "the benchmark has a close on every session of the relative-strength windows",
        ),
    )


SIGNALS = (
    *KEY_COLUMNS,
    *(Column(n, pl.Float64(), d + " (in [-1, 1])") for n, d in SIGNAL_COLUMNS.items()),
    Column("warmed_up", pl.Boolean(), "the features behind the row are past their warm-up"),
)


def conform(frame: pl.DataFrame, columns: tuple[Column, ...]) -> pl.DataFrame:
    """Select ``columns`` in order with their declared dtypes (strict: a bad cast raises)."""
    missing = [c.name for c in columns if c.name not in frame.columns]
    if missing:
        raise ValueError(f"frame lacks declared column(s): {', '.join(missing)}")
    return frame.select(pl.col(c.name).cast(c.dtype, strict=True) for c in columns)
