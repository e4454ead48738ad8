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


def row_hashes(raw: pl.DataFrame) -> pl.Series:
    """sha256 of each raw provider row (date, ticker, OHLCV as text), in row order.

    Per row, not per partition: a partition-wide hash of the current month would make a row
    at date D depend on bars after D.
    """
    text = raw.select(
        pl.concat_str(
            [pl.col(c).cast(pl.Utf8).fill_null("") for c in BAR_COLUMNS], separator=","
        ).alias("row")
    )["row"]
    return pl.Series(
        "raw_hash", [hashlib.sha256(row.encode()).hexdigest() for row in text], dtype=pl.Utf8
    )


def range_hash(frame: pl.DataFrame) -> str:
    """One sha256 over the sorted row hashes of a stored range (for run metadata)."""
    digest = hashlib.sha256()
    for value in frame.sort("ticker", "date")["raw_hash"]:
        digest.update(value.encode())
    return digest.hexdigest()


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
    they are used for flags only and not returned. Every stored column of a row depends only
    on that row and earlier ones; partition-wide results (quality scores) are returned in
    ``partitions`` for metadata, not stored per row.
    """
    flagged = bar_quality.with_return_flags(raw.select(BAR_COLUMNS), quality.return_spike_threshold)
    in_range = flagged.filter((pl.col("date") >= start) & (pl.col("date") < end))
    row_report = bar_quality.validate_bars(in_range)
    partitions = bar_quality.partition_summary(
        in_range, calendar, grain, quality.return_spike_threshold
    )
    partition_report = bar_quality.validate_partitions(partitions, quality.min_quality_score)
    spike_report = bar_quality.validate_spikes(in_range, quality.return_spike_threshold)
    stored = (
        in_range.with_columns(row_hashes(in_range))
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
