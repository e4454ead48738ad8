"""Ingest: turn a provider's raw bars for a date range into stored, scored, hashed bars.

Pure: no Dagster. The bars asset calls :func:`ingest_bars` and decides what to do with the
reports (the row and partition suites block the write; the spike suite is a warning).
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass
from datetime import date, datetime

import polars as pl

from quant_assets import schemas
from quant_assets.providers.base import BAR_COLUMNS
from quant_assets.quality import bars as bar_quality
from quant_assets.quality.gx import ValidationReport
from quant_assets.settings import QualitySettings


@dataclass(frozen=True)
class IngestedBars:
    """Stored bars (:data:`quant_assets.schemas.BARS`) and the reports that judged them."""

    frame: pl.DataFrame
    partitions: pl.DataFrame  # one row per (ticker, window): completeness and quality score
    row_report: ValidationReport
    partition_report: ValidationReport
    spike_report: ValidationReport

    @property
    def blocking_success(self) -> bool:
        return self.row_report.success and self.partition_report.success


def raw_hashes(raw: pl.DataFrame, grain: str) -> pl.DataFrame:
    """sha256 of each (ticker, window)'s raw rows, serialised as sorted CSV."""
    rows = []
    windowed = raw.select(BAR_COLUMNS).with_columns(bar_quality.window_start(grain))
    for (ticker, window), group in windowed.group_by("ticker", "window", maintain_order=True):
        payload = group.drop("window").sort("date").write_csv().encode()
        rows.append((ticker, window, hashlib.sha256(payload).hexdigest()))
    return pl.DataFrame(
        rows, schema={"ticker": pl.Utf8, "window": pl.Date, "raw_hash": pl.Utf8}, orient="row"
    )


def ingest_bars(
    raw: pl.DataFrame,
    *,
    provider: str,
    start: date,
    end: date,
    calendar: str,
    grain: str,
    quality: QualitySettings,
    ingested_at: datetime,
) -> IngestedBars:
    """Validate, flag, score and stamp ``raw`` bars, keeping rows in ``[start, end)``.

    ``raw`` may include rows before ``start`` (so the first row's return can be computed);
    they are used for flags only and not returned.
    """
    flagged = bar_quality.with_return_flags(raw.select(BAR_COLUMNS), quality.return_spike_threshold)
    in_range = flagged.filter((pl.col("date") >= start) & (pl.col("date") < end))
    row_report = bar_quality.validate_bars(in_range)
    partitions = bar_quality.partition_summary(
        in_range, calendar, grain, quality.return_spike_threshold
    )
    partition_report = bar_quality.validate_partitions(partitions, quality.min_quality_score)
    spike_report = bar_quality.validate_spikes(in_range, quality.return_spike_threshold)
    hashes = raw_hashes(raw.filter((pl.col("date") >= start) & (pl.col("date") < end)), grain)
    stored = (
        in_range.with_columns(bar_quality.window_start(grain))
        .join(partitions.select("ticker", "window", "quality_score"), on=["ticker", "window"])
        .join(hashes, on=["ticker", "window"], how="left")
        .with_columns(
            pl.lit(provider).alias("provider"),
            pl.lit(ingested_at).cast(pl.Datetime("us", "UTC")).alias("ingested_at"),
        )
        .sort("ticker", "date")
    )
    return IngestedBars(
        frame=schemas.conform(stored, schemas.BARS),
        partitions=partitions,
        row_report=row_report,
        partition_report=partition_report,
        spike_report=spike_report,
    )
