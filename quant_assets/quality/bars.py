"""Data quality of bars: the GX suites, per-partition completeness and the quality score.

Rules (each a GX expectation, reported by ticker and date):
- keys: ``date`` and ``ticker`` non-null, ``(ticker, date)`` unique, tickers match the pattern;
- prices: ``close`` non-null, every present price > 0, ``low <= open, close <= high``;
- ``volume >= 0`` where present;
- completeness (per partition = ticker × date window): no missing exchange sessions between
  the ticker's first and last bar of the window, no bar on a day that is not a session;
  quality score >= the configured minimum;
- spikes (a warning, not blocking): ``|close / previous close - 1|`` above the threshold.

Quality score per partition (seed 003 §4.2)::

    score = 1 - (0.3 * missing_dates_pct + 0.2 * duplicate_pct
                 + 0.2 * zero_negative_flag + 0.3 * extreme_spike_flag)
"""

from __future__ import annotations

from datetime import date
from typing import Any

import numpy as np
import polars as pl

from quant_assets.calendar import trading_sessions_array
from quant_assets.quality.gx import ValidationReport, validate
from quant_assets.tickers import TICKER_PATTERN

GRAIN_TRUNCATE = {"month": "1mo", "year": "1y"}


def window_start(grain: str) -> pl.Expr:
    """The first day of the partition window (month or year) each row's date falls in."""
    return pl.col("date").dt.truncate(GRAIN_TRUNCATE[grain]).alias("window")


def with_return_flags(bars: pl.DataFrame, spike_threshold: float) -> pl.DataFrame:
    """Add ``abs_return`` (|close-to-close return| within the ticker) and ``is_return_spike``."""
    return (
        bars.sort(["ticker", "date"])
        .with_columns(
            (pl.col("close") / pl.col("close").shift(1).over("ticker") - 1)
            .abs()
            .alias("abs_return")
        )
        .with_columns(
            (pl.col("abs_return") > spike_threshold).fill_null(False).alias("is_return_spike")
        )
    )


def partition_summary(
    bars: pl.DataFrame, calendar: str, grain: str, spike_threshold: float
) -> pl.DataFrame:
    """One row per (ticker, window): completeness, duplicates, flags and the quality score.

    ``bars`` needs ``abs_return`` (see :func:`with_return_flags`). Expected sessions are the
    calendar's sessions between the ticker's first and last bar in the window.
    """
    if bars.is_empty():
        return pl.DataFrame(
            schema={
                "ticker": pl.Utf8,
                "window": pl.Date,
                "rows": pl.UInt32,
                "expected_sessions": pl.Int64,
                "missing_sessions": pl.Int64,
                "first_missing_date": pl.Date,
                "non_session_dates": pl.Int64,
                "first_non_session_date": pl.Date,
                "missing_dates_pct": pl.Float64,
                "duplicate_pct": pl.Float64,
                "zero_negative_flag": pl.Int32,
                "extreme_spike_flag": pl.Int32,
                "quality_score": pl.Float64,
            }
        )
    price_cols = [c for c in ("open", "high", "low", "close") if c in bars.columns]
    grouped = (
        bars.with_columns(window_start(grain))
        .group_by("ticker", "window")
        .agg(
            pl.len().alias("rows"),
            pl.col("date").n_unique().alias("unique_dates"),
            pl.col("date").min().alias("first_date"),
            pl.col("date").max().alias("last_date"),
            pl.col("date").unique().sort().alias("dates"),
            pl.any_horizontal([(pl.col(c) <= 0).fill_null(False) for c in price_cols])
            .any()
            .cast(pl.Int32)
            .alias("zero_negative_flag"),
            (pl.col("abs_return") > spike_threshold)
            .fill_null(False)
            .any()
            .cast(pl.Int32)
            .alias("extreme_spike_flag"),
        )
        .sort("ticker", "window")
    )
    # All sessions of the span once; each partition's expected count is a searchsorted range.
    first_day: date = grouped["first_date"].min()  # type: ignore[assignment]
    last_day: date = grouped["last_date"].max()  # type: ignore[assignment]
    sessions = trading_sessions_array(calendar, first_day, last_day)
    first = grouped["first_date"].to_numpy().astype("datetime64[D]")
    last = grouped["last_date"].to_numpy().astype("datetime64[D]")
    expected = np.searchsorted(sessions, last, side="right") - np.searchsorted(sessions, first)
    present = _sessions_present(grouped, sessions)
    missing = expected - present
    first_missing: list[date | None] = []
    for n_missing, lo, hi, dates in zip(missing, first, last, grouped["dates"], strict=True):
        if n_missing <= 0:
            first_missing.append(None)
            continue
        span = sessions[(sessions >= lo) & (sessions <= hi)]
        gaps = np.setdiff1d(span, np.array(dates, dtype="datetime64[D]"))
        first_missing.append(gaps[0].astype(date) if len(gaps) else None)
    non_session = grouped["unique_dates"].to_numpy() - present
    first_non_session: list[date | None] = []
    for n_extra, dates in zip(non_session, grouped["dates"], strict=True):
        if n_extra <= 0:
            first_non_session.append(None)
            continue
        extra = np.setdiff1d(np.array(dates, dtype="datetime64[D]"), sessions)
        first_non_session.append(extra[0].astype(date) if len(extra) else None)
    summary = grouped.with_columns(
        pl.Series("expected_sessions", expected, dtype=pl.Int64),
        pl.Series("missing_sessions", missing, dtype=pl.Int64),
        pl.Series("first_missing_date", first_missing, dtype=pl.Date),
        pl.Series("non_session_dates", non_session, dtype=pl.Int64),
        pl.Series("first_non_session_date", first_non_session, dtype=pl.Date),
    ).with_columns(
        (pl.col("missing_sessions") / pl.col("expected_sessions").clip(lower_bound=1)).alias(
            "missing_dates_pct"
        ),
        (1 - pl.col("unique_dates") / pl.col("rows")).alias("duplicate_pct"),
    )
    return summary.with_columns(
        (
            1
            - (
                0.3 * pl.col("missing_dates_pct")
                + 0.2 * pl.col("duplicate_pct")
                + 0.2 * pl.col("zero_negative_flag")
                + 0.3 * pl.col("extreme_spike_flag")
            )
        ).alias("quality_score")
    ).select(
        "ticker",
        "window",
        "rows",
        "expected_sessions",
        "missing_sessions",
        "first_missing_date",
        "non_session_dates",
        "first_non_session_date",
        "missing_dates_pct",
        "duplicate_pct",
        "zero_negative_flag",
        "extreme_spike_flag",
        "quality_score",
    )


def _sessions_present(grouped: pl.DataFrame, sessions: np.ndarray) -> np.ndarray:
    """Per group, how many of its unique dates are exchange sessions (vectorised)."""
    exploded = grouped.select(pl.int_range(pl.len()).alias("group"), "dates").explode("dates")
    dates = exploded["dates"].to_numpy().astype("datetime64[D]")
    is_session = np.isin(dates, sessions)
    counts = np.bincount(exploded["group"].to_numpy()[is_session], minlength=grouped.height)
    return counts.astype(np.int64)


def bar_row_expectations() -> list[object]:
    """The row-level rules every provider's bars must satisfy."""
    import great_expectations.expectations as gxe  # lazy: importing GX costs ~7 s

    ordered: dict[str, Any] = dict(or_equal=True, ignore_row_if="either_value_is_missing")
    return [
        gxe.ExpectColumnValuesToNotBeNull(column="ticker"),
        gxe.ExpectColumnValuesToNotBeNull(column="date"),
        gxe.ExpectColumnValuesToMatchRegex(column="ticker", regex=TICKER_PATTERN.pattern),
        gxe.ExpectCompoundColumnsToBeUnique(column_list=["ticker", "date"]),
        gxe.ExpectColumnValuesToNotBeNull(column="close"),
        *[
            gxe.ExpectColumnValuesToBeBetween(column=c, min_value=0, strict_min=True)
            for c in ("open", "high", "low", "close")
        ],
        gxe.ExpectColumnPairValuesAToBeGreaterThanB(column_A="open", column_B="low", **ordered),
        gxe.ExpectColumnPairValuesAToBeGreaterThanB(column_A="close", column_B="low", **ordered),
        gxe.ExpectColumnPairValuesAToBeGreaterThanB(column_A="high", column_B="open", **ordered),
        gxe.ExpectColumnPairValuesAToBeGreaterThanB(column_A="high", column_B="close", **ordered),
        gxe.ExpectColumnValuesToBeBetween(column="volume", min_value=0),
    ]


def partition_expectations(min_quality_score: float) -> list[object]:
    """Per-partition rules: complete sessions and a quality score above the minimum."""
    import great_expectations.expectations as gxe  # lazy: importing GX costs ~7 s

    return [
        gxe.ExpectColumnValuesToBeBetween(column="missing_sessions", max_value=0),
        gxe.ExpectColumnValuesToBeBetween(column="non_session_dates", max_value=0),
        gxe.ExpectColumnValuesToBeBetween(column="quality_score", min_value=min_quality_score),
    ]


def validate_bars(bars: pl.DataFrame) -> ValidationReport:
    """Run the row-level bar suite (blocking rules)."""
    return validate(bars, "bars_rows", bar_row_expectations())


def validate_partitions(summary: pl.DataFrame, min_quality_score: float) -> ValidationReport:
    """Run the per-partition suite on :func:`partition_summary` output."""
    # The example date of a failing partition: its first missing session, else its first
    # bar on a day that is not a session.
    return validate(
        summary.with_columns(
            pl.coalesce("first_missing_date", "first_non_session_date").alias("date")
        ),
        "bars_partitions",
        partition_expectations(min_quality_score),
        index_columns=("ticker", "window", "date"),
    )


def validate_spikes(bars: pl.DataFrame, spike_threshold: float) -> ValidationReport:
    """The (non-blocking) spike rule: ``abs_return <= threshold``."""
    import great_expectations.expectations as gxe  # lazy: importing GX costs ~7 s

    return validate(
        bars.select("ticker", "date", "abs_return"),
        "bars_spikes",
        [gxe.ExpectColumnValuesToBeBetween(column="abs_return", max_value=spike_threshold)],
    )
