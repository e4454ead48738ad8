"""Specification of ingest: a provider's raw bars become stored, flagged, stamped, hashed bars.

``ingest_bars`` keeps rows in ``[start, end)``; rows before ``start`` only serve the first
return. Each stored row carries the provider, the ingestion time and a sha256 of its raw
values; partition quality scores and the three suite reports come back alongside. The row and
partition suites block; the spike suite warns.
"""

from __future__ import annotations

import hashlib
from datetime import UTC, date, datetime, timedelta, timezone

import polars as pl
import pytest

from quant_assets import schemas
from quant_assets.ingest import IngestedBars, ingest_bars, range_hash, row_hashes
from quant_assets.providers.base import BAR_COLUMNS, BAR_SCHEMA
from quant_assets.settings import QualitySettings

# XNYS sessions: the last three of February 2020 and all 22 of March 2020.
FEB_TAIL = [date(2020, 2, 26), date(2020, 2, 27), date(2020, 2, 28)]
MARCH = [date(2020, 3, d) for d in range(1, 32) if date(2020, 3, d).weekday() < 5]
START, END = date(2020, 3, 1), date(2020, 4, 1)
STAMP = datetime(2024, 1, 2, 3, 4, 5, tzinfo=UTC)


def raw_bars(ticker: str = "AAA", days: list[date] | None = None) -> pl.DataFrame:
    """Clean raw provider bars: close rises 0.1 a day from 100, low <= open, close <= high."""
    days = FEB_TAIL + MARCH if days is None else days
    close = [100.0 + 0.1 * i for i in range(len(days))]
    return pl.DataFrame(
        {
            "date": days,
            "ticker": [ticker] * len(days),
            "open": [c - 0.05 for c in close],
            "high": [c + 0.5 for c in close],
            "low": [c - 0.5 for c in close],
            "close": close,
            "volume": [1000.0] * len(days),
        },
        schema=BAR_SCHEMA,
    )


def set_at(frame: pl.DataFrame, day: date, **values: float) -> pl.DataFrame:
    return frame.with_columns(
        pl.when(pl.col("date") == day).then(pl.lit(value)).otherwise(pl.col(column)).alias(column)
        for column, value in values.items()
    )


def ingest(
    raw: pl.DataFrame,
    *,
    start: date = START,
    end: date = END,
    quality: QualitySettings | None = None,
    ingested_at: datetime = STAMP,
    provider: str = "files",
) -> IngestedBars:
    return ingest_bars(
        raw,
        provider=provider,
        start=start,
        end=end,
        calendar="XNYS",
        grain="month",
        quality=quality or QualitySettings(),
        ingested_at=ingested_at,
    )


@pytest.fixture(scope="module")
def clean() -> IngestedBars:
    return ingest(raw_bars())


# --- what is kept and how it is shaped --------------------------------------------------------


def test_only_rows_in_start_inclusive_end_exclusive_are_kept() -> None:
    result = ingest(raw_bars(), start=date(2020, 3, 3), end=date(2020, 3, 12))
    assert result.frame["date"].to_list() == [d for d in MARCH if d.day in (3, 4, 5, 6, 9, 10, 11)]
    assert result.blocking_success


def test_a_whole_month_is_kept_without_the_earlier_rows(clean: IngestedBars) -> None:
    assert clean.frame["date"].to_list() == MARCH
    assert clean.frame["date"].min() == date(2020, 3, 2)


def test_the_stored_frame_has_the_declared_bars_schema(clean: IngestedBars) -> None:
    assert clean.frame.columns == [c.name for c in schemas.BARS]
    assert dict(clean.frame.schema) == {c.name: c.dtype for c in schemas.BARS}
    assert clean.frame.columns[: len(BAR_COLUMNS)] == list(BAR_COLUMNS)


def test_prices_pass_through_unchanged(clean: IngestedBars) -> None:
    expected = raw_bars().filter(pl.col("date") >= START)
    assert clean.frame.select(BAR_COLUMNS).equals(expected)


def test_rows_are_sorted_by_ticker_then_date() -> None:
    raw = pl.concat([raw_bars("BBB"), raw_bars("AAA")]).reverse()
    result = ingest(raw)
    assert result.frame.equals(result.frame.sort("ticker", "date"))
    assert result.frame["ticker"].to_list() == ["AAA"] * 22 + ["BBB"] * 22


def test_extra_raw_columns_are_dropped() -> None:
    raw = raw_bars().with_columns(pl.lit("x").alias("note"))
    assert "note" not in ingest(raw, start=MARCH[0], end=MARCH[3]).frame.columns


# --- stamps -------------------------------------------------------------------------------------


def test_every_row_is_stamped_with_provider_and_ingestion_time(clean: IngestedBars) -> None:
    assert clean.frame["provider"].unique().to_list() == ["files"]
    assert clean.frame["ingested_at"].unique().to_list() == [STAMP]
    assert clean.frame["ingested_at"].dtype == pl.Datetime("us", "UTC")


def test_an_ingestion_time_in_another_zone_is_stored_in_utc() -> None:
    paris = timezone(timedelta(hours=2))
    result = ingest(raw_bars(), ingested_at=datetime(2024, 1, 2, 5, 4, 5, tzinfo=paris))
    assert result.frame["ingested_at"].unique().to_list() == [STAMP]


def test_the_partition_quality_score_is_returned_per_ticker_and_month() -> None:
    result = ingest(pl.concat([raw_bars("AAA"), raw_bars("BBB")]))
    assert result.partitions.select("ticker", "window", "rows", "quality_score").rows() == [
        ("AAA", date(2020, 3, 1), 22, 1.0),
        ("BBB", date(2020, 3, 1), 22, 1.0),
    ]


# --- returns use the earlier row ----------------------------------------------------------------


def test_the_first_return_uses_the_row_before_start() -> None:
    # Feb 28 closes at 100.2; Mar 2 jumps to 150 (+50 %). Only Feb 28 can reveal the spike.
    raw = set_at(raw_bars(), date(2020, 3, 2), close=150.0, high=150.5)
    raw = set_at(raw, date(2020, 3, 3), close=150.1, high=150.6)
    with_history = ingest(raw, end=date(2020, 3, 4))
    assert with_history.frame["is_return_spike"].to_list() == [True, False]
    assert with_history.partitions["extreme_spike_flag"].to_list() == [1]
    assert with_history.partitions["quality_score"].to_list() == [pytest.approx(0.7)]
    spikes = with_history.spike_report.failures
    assert [(e["ticker"], e["date"].date()) for e in spikes[0].examples] == [
        ("AAA", date(2020, 3, 2))
    ]
    # Without the earlier row there is no first return, so no spike.
    without = ingest(raw.filter(pl.col("date") >= START), end=date(2020, 3, 4))
    assert without.frame["is_return_spike"].to_list() == [False, False]
    assert without.spike_report.success


def test_a_spike_warns_but_does_not_block() -> None:
    raw = set_at(raw_bars(), date(2020, 3, 20), close=160.0, high=161.0)
    result = ingest(raw)
    assert result.blocking_success
    assert not result.spike_report.success
    flagged = result.frame.filter(pl.col("is_return_spike"))["date"].to_list()
    # The jump (+57 %) is a spike; the fall back (-36 %) is within the 40 % threshold.
    assert flagged == [date(2020, 3, 20)]


def test_bad_rows_before_start_do_not_block_the_range() -> None:
    # A duplicate on Feb 27 is outside [start, end): not validated, not stored.
    raw = pl.concat([raw_bars(), raw_bars(days=[date(2020, 2, 27)])])
    result = ingest(raw)
    assert result.blocking_success
    assert result.frame["date"].min() == date(2020, 3, 2)


# --- raw hashes ---------------------------------------------------------------------------------


def test_the_raw_hash_is_the_sha256_of_the_raw_row_text() -> None:
    raw = pl.DataFrame(
        {
            "date": [date(2020, 3, 2)],
            "ticker": ["AAA"],
            "open": [None],
            "high": [None],
            "low": [None],
            "close": [100.5],
            "volume": [None],
        },
        schema=BAR_SCHEMA,
    )
    text = "2020-03-02,AAA,,,,100.5,"  # nulls as empty fields, in BAR_COLUMNS order
    assert row_hashes(raw).to_list() == [hashlib.sha256(text.encode()).hexdigest()]


def test_raw_hashes_are_stable_for_identical_input(clean: IngestedBars) -> None:
    later = datetime(2025, 6, 1, tzinfo=UTC)
    again = ingest(raw_bars(), ingested_at=later, provider="other")
    assert again.frame["raw_hash"].equals(clean.frame["raw_hash"])
    assert clean.frame["raw_hash"].str.contains(r"^[0-9a-f]{64}$").all()
    assert clean.frame["raw_hash"].n_unique() == clean.frame.height
    assert range_hash(again.frame) == range_hash(clean.frame)


def test_changing_one_price_changes_only_that_rows_hash(clean: IngestedBars) -> None:
    changed = ingest(set_at(raw_bars(), date(2020, 3, 5), close=100.35))
    differs = (changed.frame["raw_hash"] != clean.frame["raw_hash"]).to_list()
    assert differs == [d == date(2020, 3, 5) for d in clean.frame["date"]]
    assert range_hash(changed.frame) != range_hash(clean.frame)


@pytest.mark.parametrize("column", ["open", "high", "low", "volume"])
def test_every_raw_value_is_part_of_the_hash(column: str) -> None:
    raw = raw_bars(days=MARCH[:2])
    original = row_hashes(raw)
    bumped = row_hashes(raw.with_columns(pl.col(column) + 0.01))
    assert (original != bumped).all()


def test_a_rows_hash_does_not_depend_on_later_rows(clean: IngestedBars) -> None:
    half = ingest(raw_bars(), end=date(2020, 3, 16))
    assert (
        half.frame["raw_hash"].to_list() == clean.frame["raw_hash"].to_list()[: half.frame.height]
    )


def test_range_hash_does_not_depend_on_row_order(clean: IngestedBars) -> None:
    assert range_hash(clean.frame.reverse()) == range_hash(clean.frame)


# --- blocking reports ---------------------------------------------------------------------------


def test_clean_bars_succeed(clean: IngestedBars) -> None:
    assert clean.blocking_success
    assert clean.row_report.success
    assert clean.partition_report.success
    assert clean.spike_report.success
    assert clean.row_report.row_count == 22


def test_a_negative_close_blocks() -> None:
    raw = set_at(raw_bars(), date(2020, 3, 5), close=-1.0, low=-2.0, open=-1.5)
    result = ingest(raw)
    assert not result.blocking_success
    assert not result.row_report.success
    assert "ticker=AAA, date=2020-03-05" in result.row_report.summary()
    # The bars are still returned, so the caller can show what was refused.
    assert result.frame.height == 22


def test_a_missing_session_blocks() -> None:
    result = ingest(raw_bars().filter(pl.col("date") != date(2020, 3, 10)))
    assert result.row_report.success
    assert not result.partition_report.success
    assert not result.blocking_success
    assert result.partitions["first_missing_date"].to_list() == [date(2020, 3, 10)]


def test_a_score_below_the_configured_minimum_blocks() -> None:
    raw = set_at(raw_bars(), date(2020, 3, 20), close=160.0, high=161.0)  # score 0.7
    strict = QualitySettings(min_quality_score=0.8)
    result = ingest(raw, quality=strict)
    assert not result.blocking_success
    assert "quality_score" in result.partition_report.summary()


def test_the_configured_spike_threshold_is_used() -> None:
    raw = set_at(raw_bars(), date(2020, 3, 20), close=130.0, high=131.0)  # +28 %, then -22 %
    assert ingest(raw).frame["is_return_spike"].sum() == 0
    tight = ingest(raw, quality=QualitySettings(return_spike_threshold=0.25))
    assert tight.frame.filter(pl.col("is_return_spike"))["date"].to_list() == [date(2020, 3, 20)]
    tighter = ingest(raw, quality=QualitySettings(return_spike_threshold=0.2))
    assert tighter.frame.filter(pl.col("is_return_spike"))["date"].to_list() == [
        date(2020, 3, 20),
        date(2020, 3, 23),
    ]
