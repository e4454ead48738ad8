"""The bar quality suites (GX) and the seed-003 quality score."""

from __future__ import annotations

from datetime import UTC, date, datetime

import polars as pl
import pytest

from quant_assets.errors import BadBarsError
from quant_assets.ingest import ingest_bars
from quant_assets.providers.base import conform_bars
from quant_assets.quality.bars import (
    partition_summary,
    validate_bars,
    validate_partitions,
    with_return_flags,
)
from quant_assets.settings import QualitySettings

DAYS = [date(2020, 3, d) for d in (2, 3, 4, 5, 6, 9, 10, 11, 12, 13)]


def bars(**changes) -> pl.DataFrame:
    frame = pl.DataFrame(
        {
            "date": DAYS,
            "ticker": "AAA",
            "open": 10.0,
            "high": 11.0,
            "low": 9.0,
            "close": [10.0 + i * 0.1 for i in range(10)],
            "volume": 1000.0,
        }
    )
    return conform_bars(frame.with_columns(**changes) if changes else frame)


def set_at(frame: pl.DataFrame, day: date, column: str, value) -> pl.DataFrame:
    return frame.with_columns(
        pl.when(pl.col("date") == day).then(pl.lit(value)).otherwise(pl.col(column)).alias(column)
    )


def test_clean_bars_pass():
    assert validate_bars(bars()).success


@pytest.mark.parametrize(
    ("column", "value", "rule"),
    [
        ("close", -5.0, "expect_column_values_to_be_between"),
        ("close", None, "expect_column_values_to_not_be_null"),
        ("high", 9.5, "expect_column_pair_values_a_to_be_greater_than_b"),
        ("volume", -1.0, "expect_column_values_to_be_between"),
    ],
)
def test_a_broken_row_fails_naming_rule_ticker_and_date(column, value, rule):
    report = validate_bars(set_at(bars(), date(2020, 3, 5), column, value))
    assert not report.success
    failure = next(f for f in report.failures if f.rule == rule)
    assert failure.examples[0]["ticker"] == "AAA"
    with pytest.raises(BadBarsError) as raised:
        report.raise_for_failures(source="files")
    assert "AAA" in str(raised.value) and "2020-03-05" in str(raised.value)
    assert rule in str(raised.value)


def test_duplicate_dates_fail_uniqueness():
    frame = pl.concat([bars(), bars().filter(pl.col("date") == date(2020, 3, 9))])
    report = validate_bars(frame)
    assert "expect_compound_columns_to_be_unique" in [f.rule for f in report.failures]


def test_missing_and_non_session_dates_are_counted_per_partition():
    frame = bars().filter(pl.col("date") != date(2020, 3, 10))
    saturday = (
        bars()
        .filter(pl.col("date") == date(2020, 3, 13))
        .with_columns(pl.lit(date(2020, 3, 14)).alias("date"))
    )
    summary = partition_summary(
        with_return_flags(pl.concat([frame, saturday]), 0.4), "XNYS", "month", 0.4
    )
    row = summary.row(0, named=True)
    assert row["missing_sessions"] == 1 and row["first_missing_date"] == date(2020, 3, 10)
    assert row["non_session_dates"] == 1
    assert not validate_partitions(summary, 0.6).success


def test_quality_score_follows_the_seed_formula():
    spiky = set_at(bars(), date(2020, 3, 12), "close", 30.0)
    spiky = set_at(spiky, date(2020, 3, 12), "high", 31.0)
    frame = with_return_flags(spiky.filter(pl.col("date") != date(2020, 3, 4)), 0.4)
    row = partition_summary(frame, "XNYS", "month", 0.4).row(0, named=True)
    missing_pct = 1 / 10
    assert row["extreme_spike_flag"] == 1
    assert row["quality_score"] == pytest.approx(1 - (0.3 * missing_pct + 0.3 * 1))
    assert frame.filter(pl.col("is_return_spike"))["date"].to_list() == [
        date(2020, 3, 12),
        date(2020, 3, 13),
    ]


def test_ingest_keeps_the_range_stamps_rows_and_hashes_them():
    quality = QualitySettings()
    stamp = datetime(2024, 1, 1, tzinfo=UTC)
    kwargs = dict(
        provider="files",
        start=date(2020, 3, 3),
        end=date(2020, 3, 12),
        calendar="XNYS",
        grain="month",
        quality=quality,
        ingested_at=stamp,
    )
    first = ingest_bars(bars(), **kwargs)
    assert first.blocking_success
    assert first.frame["date"].min() == date(2020, 3, 3)
    assert first.frame["date"].max() == date(2020, 3, 11)
    assert first.frame["provider"].unique().to_list() == ["files"]
    again = ingest_bars(bars(), **kwargs)
    assert again.frame["raw_hash"].equals(first.frame["raw_hash"])
    changed = ingest_bars(set_at(bars(), date(2020, 3, 5), "close", 10.25), **kwargs)
    differs = (changed.frame["raw_hash"] != first.frame["raw_hash"]).to_list()
    assert differs == [d == date(2020, 3, 5) for d in first.frame["date"]]
    assert not ingest_bars(
        set_at(bars(), date(2020, 3, 5), "close", -1.0), **kwargs
    ).blocking_success
