"""Specification of bar data quality: the GX suites, per-partition completeness and the score.

Row rules (blocking): keys non-null and unique, tickers well-formed, close non-null, prices
> 0, low <= open, close <= high, volume >= 0. Partition rules (blocking): no missing XNYS
session between a ticker's first and last bar of the window, no bar on a non-session, and
a quality score of at least the minimum, where (seed 003 §4.2)::

    score = 1 - (0.3 * missing_dates_pct + 0.2 * duplicate_pct
                 + 0.2 * zero_negative_flag + 0.3 * extreme_spike_flag)

Spikes (|close-to-close return| above a threshold) are a warning, not blocking. Every failure
names the rule and example rows by ticker and date.
"""

from __future__ import annotations

from datetime import date
from typing import Any

import polars as pl
import pytest

from quant_assets.errors import BadBarsError
from quant_assets.providers.base import BAR_SCHEMA
from quant_assets.quality.bars import (
    partition_summary,
    validate_bars,
    validate_partitions,
    validate_spikes,
    with_return_flags,
)
from quant_assets.quality.gx import ValidationReport

# March 2020: 22 XNYS sessions, every weekday (no exchange holiday that month).
MARCH = [date(2020, 3, d) for d in range(1, 32) if date(2020, 3, d).weekday() < 5]
BROKEN_DAY = date(2020, 3, 5)
SPIKE = 0.40

NOT_NULL = "expect_column_values_to_not_be_null"
BETWEEN = "expect_column_values_to_be_between"
PAIR = "expect_column_pair_values_a_to_be_greater_than_b"
UNIQUE = "expect_compound_columns_to_be_unique"
REGEX = "expect_column_values_to_match_regex"


def bars(
    ticker: str = "AAA", days: list[date] | None = None, start_close: float = 100.0
) -> pl.DataFrame:
    """Clean OHLCV bars: close rises by 0.1 a day, low <= open, close <= high."""
    days = MARCH if days is None else days
    close = [start_close + 0.1 * i for i in range(len(days))]
    return pl.DataFrame(
        {
            "date": days,
            "ticker": [ticker] * len(days),
            "open": [c - 0.05 for c in close],
            "high": [c + 0.5 for c in close],
            "low": [c - 0.5 for c in close],
            "close": close,
            "volume": [1000.0 + i for i in range(len(days))],
        },
        schema=BAR_SCHEMA,
    )


def set_at(frame: pl.DataFrame, day: date, **values: float | None) -> pl.DataFrame:
    """``frame`` with the given columns replaced on ``day``."""
    return frame.with_columns(
        pl.when(pl.col("date") == day)
        .then(pl.lit(value, dtype=frame.schema[column]))
        .otherwise(pl.col(column))
        .alias(column)
        for column, value in values.items()
    )


def day_of(value: Any) -> date | None:
    """GX hands back dates as pandas Timestamps."""
    return value.date() if hasattr(value, "date") else value


def failure(report: ValidationReport, rule: str, column: str):
    matches = [f for f in report.failures if f.rule == rule and f.column == column]
    assert matches, f"no failure {rule} on {column}; got:\n{report.summary()}"
    return matches[0]


def summarise(frame: pl.DataFrame, grain: str = "month") -> pl.DataFrame:
    return partition_summary(with_return_flags(frame, SPIKE), "XNYS", grain, SPIKE)


def only_row(summary: pl.DataFrame) -> dict[str, Any]:
    assert summary.height == 1
    return summary.row(0, named=True)


# --- row rules ---------------------------------------------------------------------------------


def test_clean_bars_pass_every_rule() -> None:
    report = validate_bars(bars())
    assert report.success
    assert report.suite == "bars_rows"
    assert report.row_count == 22
    assert len(report.outcomes) == 14
    assert report.failures == []
    assert report.summary() == ""
    report.raise_for_failures(source="files")  # does not raise
    assert report.as_metadata()["failed_expectations"] == 0
    assert report.as_metadata()["failures"] == "none"


def test_close_only_bars_pass() -> None:
    # Like the bundled stocks: open/high/low/volume all null are absent, not wrong.
    frame = bars().with_columns(
        pl.lit(None, dtype=pl.Float64).alias(c) for c in ("open", "high", "low", "volume")
    )
    assert validate_bars(frame).success


def test_several_clean_tickers_pass() -> None:
    assert validate_bars(pl.concat([bars("AAA"), bars("BRK.B"), bars("RDS-A")])).success


@pytest.mark.parametrize(
    ("changes", "rule", "column"),
    [
        ({"close": -5.0, "low": -6.0, "open": -5.5, "high": -4.0}, BETWEEN, "close"),
        ({"open": -1.0, "low": -2.0}, BETWEEN, "open"),
        ({"low": 0.0}, BETWEEN, "low"),  # zero is not a price
        ({"close": None}, NOT_NULL, "close"),
        ({"close": float("nan")}, NOT_NULL, "close"),
        ({"high": 100.25}, PAIR, "high>close"),  # high below close (close is 100.3)
        ({"high": 100.0}, PAIR, "high>open"),
        ({"low": 100.35}, PAIR, "close>low"),  # low above close
        ({"open": 99.0}, PAIR, "open>low"),  # open below low
        ({"volume": -1.0}, BETWEEN, "volume"),
    ],
    ids=[
        "negative close",
        "negative open",
        "zero low",
        "null close",
        "NaN close",
        "high below close",
        "high below open",
        "low above close",
        "open below low",
        "negative volume",
    ],
)
def test_a_broken_row_fails_naming_the_rule_ticker_and_date(
    changes: dict[str, float | None], rule: str, column: str
) -> None:
    frame = set_at(bars(), BROKEN_DAY, **changes)
    report = validate_bars(frame)
    assert not report.success
    broken = failure(report, rule, column)
    assert broken.unexpected_count == 1
    assert broken.examples[0]["ticker"] == "AAA"
    assert day_of(broken.examples[0]["date"]) == BROKEN_DAY
    # The summary line says which rule, on which column, where.
    summary = report.summary()
    assert f"{rule} on {column}: 1 row(s) failed" in summary
    assert "ticker=AAA, date=2020-03-05" in summary
    # And the error raised from it names ticker, date and rule.
    with pytest.raises(BadBarsError) as excinfo:
        report.raise_for_failures(source="files")
    error = excinfo.value
    assert (error.ticker, error.date, error.source) == ("AAA", "2020-03-05", "files")
    message = str(error)
    assert "ticker=AAA" in message and "date=2020-03-05" in message and "source=files" in message
    assert rule in message and column in message


def test_only_the_broken_rules_fail() -> None:
    report = validate_bars(set_at(bars(), BROKEN_DAY, volume=-1.0))
    assert [(f.rule, f.column) for f in report.failures] == [(BETWEEN, "volume")]
    assert report.as_metadata()["failed_expectations"] == 1


def test_the_broken_ticker_is_named_not_its_neighbours() -> None:
    frame = pl.concat([bars("AAA"), set_at(bars("BBB"), date(2020, 3, 20), close=-1.0)])
    report = validate_bars(frame)
    broken = failure(report, BETWEEN, "close")
    assert [(e["ticker"], day_of(e["date"])) for e in broken.examples] == [
        ("BBB", date(2020, 3, 20))
    ]
    with pytest.raises(BadBarsError, match=r"ticker=BBB, date=2020-03-20"):
        report.raise_for_failures()


def test_a_duplicate_ticker_date_fails_uniqueness() -> None:
    frame = pl.concat([bars(), bars().filter(pl.col("date") == date(2020, 3, 9))])
    report = validate_bars(frame)
    duplicate = failure(report, UNIQUE, "ticker,date")
    assert duplicate.unexpected_count == 2  # both copies
    assert {(e["ticker"], day_of(e["date"])) for e in duplicate.examples} == {
        ("AAA", date(2020, 3, 9))
    }
    assert "ticker=AAA, date=2020-03-09" in report.summary()
    with pytest.raises(BadBarsError, match="2020-03-09") as excinfo:
        report.raise_for_failures()
    assert UNIQUE in str(excinfo.value) and "AAA" in str(excinfo.value)


def test_the_same_date_for_two_tickers_is_not_a_duplicate() -> None:
    assert validate_bars(pl.concat([bars("AAA"), bars("BBB")])).success


def test_a_malformed_ticker_in_the_bars_fails() -> None:
    report = validate_bars(pl.concat([bars("AAA"), bars("aaa", days=[BROKEN_DAY])]))
    bad = failure(report, REGEX, "ticker")
    assert bad.examples[0]["ticker"] == "aaa"


def test_a_null_date_fails() -> None:
    frame = bars().with_columns(
        pl.when(pl.col("date") == BROKEN_DAY).then(None).otherwise(pl.col("date")).alias("date")
    )
    assert failure(validate_bars(frame), NOT_NULL, "date").unexpected_count == 1


def test_examples_are_capped_but_every_row_is_counted() -> None:
    report = validate_bars(bars().with_columns(pl.lit(-1.0).alias("volume")))
    broken = failure(report, BETWEEN, "volume")
    assert broken.unexpected_count == 22
    assert len(broken.examples) == 5


def test_bad_bars_error_message_format() -> None:
    error = BadBarsError("rule_x(close)", ticker="AAA", date=BROKEN_DAY, source="s", detail="d")
    assert str(error) == "rule 'rule_x(close)' failed (source=s, ticker=AAA, date=2020-03-05): d"
    assert str(BadBarsError("rule_y")) == "rule 'rule_y' failed"


# --- return flags and spikes -------------------------------------------------------------------


def test_return_flags_are_close_to_close_within_each_ticker() -> None:
    frame = pl.concat(
        [
            bars("BBB", days=MARCH[:3], start_close=10.0),
            bars("AAA", days=MARCH[:3], start_close=100.0),
        ]
    )
    flagged = with_return_flags(frame, SPIKE)
    assert flagged["ticker"].to_list() == ["AAA"] * 3 + ["BBB"] * 3  # sorted by ticker, date
    returns = flagged["abs_return"].to_list()
    # The first bar of each ticker has no return: never against another ticker's close.
    assert returns[0] is None and returns[3] is None
    assert returns[1] == pytest.approx(0.1 / 100.0)
    assert returns[4] == pytest.approx(0.1 / 10.0)
    assert not flagged["is_return_spike"].any()


@pytest.mark.parametrize(
    ("next_close", "threshold", "spike"),
    [
        (150.0, 0.49, True),  # +50 %
        (150.0, 0.50, False),  # exactly at the threshold: not above it
        (50.0, 0.49, True),  # -50 % is a spike too
        (110.0, 0.40, False),
    ],
)
def test_a_spike_is_an_absolute_return_above_the_threshold(
    next_close: float, threshold: float, spike: bool
) -> None:
    frame = bars(days=MARCH[:2]).with_columns(pl.Series("close", [100.0, next_close]))
    flagged = with_return_flags(frame, threshold)
    assert flagged["abs_return"][1] == pytest.approx(abs(next_close / 100.0 - 1))
    assert flagged["is_return_spike"].to_list() == [False, spike]


def test_validate_spikes_names_the_ticker_and_date_of_the_jump() -> None:
    frame = set_at(bars(), date(2020, 3, 12), close=200.0, high=201.0)
    flagged = with_return_flags(frame, SPIKE)
    # Up 96 % on the 12th, down about 50 % on the 13th: both flagged.
    assert flagged.filter(pl.col("is_return_spike"))["date"].to_list() == [
        date(2020, 3, 12),
        date(2020, 3, 13),
    ]
    report = validate_spikes(flagged, SPIKE)
    assert report.suite == "bars_spikes"
    spikes = failure(report, BETWEEN, "abs_return")
    assert spikes.unexpected_count == 2
    assert [(e["ticker"], day_of(e["date"])) for e in spikes.examples] == [
        ("AAA", date(2020, 3, 12)),
        ("AAA", date(2020, 3, 13)),
    ]


def test_calm_bars_have_no_spikes() -> None:
    assert validate_spikes(with_return_flags(bars(), SPIKE), SPIKE).success


# --- partition completeness and the quality score ----------------------------------------------


def test_a_complete_month_scores_one() -> None:
    row = only_row(summarise(bars()))
    assert row["ticker"] == "AAA"
    assert row["window"] == date(2020, 3, 1)
    assert (row["rows"], row["expected_sessions"], row["missing_sessions"]) == (22, 22, 0)
    assert row["first_missing_date"] is None
    assert row["non_session_dates"] == 0
    assert row["missing_dates_pct"] == 0.0
    assert row["duplicate_pct"] == 0.0
    assert (row["zero_negative_flag"], row["extreme_spike_flag"]) == (0, 0)
    assert row["quality_score"] == 1.0


def test_a_missing_session_is_counted_and_the_first_one_named() -> None:
    frame = bars().filter(~pl.col("date").is_in([date(2020, 3, 10), date(2020, 3, 18)]))
    row = only_row(summarise(frame))
    assert (row["rows"], row["expected_sessions"], row["missing_sessions"]) == (20, 22, 2)
    assert row["first_missing_date"] == date(2020, 3, 10)
    assert row["missing_dates_pct"] == pytest.approx(2 / 22)
    assert row["quality_score"] == pytest.approx(1 - 0.3 * 2 / 22)


def test_expected_sessions_span_the_first_to_the_last_bar_of_the_window() -> None:
    # A ticker listed mid-month is not missing the sessions before its first bar.
    row = only_row(summarise(bars(days=MARCH[5:10])))
    assert (row["expected_sessions"], row["missing_sessions"]) == (5, 0)
    assert row["quality_score"] == 1.0


def test_a_saturday_bar_is_flagged_as_a_non_session() -> None:
    saturday = bars(days=[date(2020, 3, 7)], start_close=100.25)
    row = only_row(summarise(pl.concat([bars(), saturday])))
    assert row["rows"] == 23
    assert row["non_session_dates"] == 1
    assert row["missing_sessions"] == 0
    assert row["expected_sessions"] == 22


def test_the_calendar_is_the_exchange_not_weekdays() -> None:
    # Good Friday 2020-04-10 is a weekday without a session.
    april_weekdays = [date(2020, 4, d) for d in range(1, 31) if date(2020, 4, d).weekday() < 5]
    assert date(2020, 4, 10) in april_weekdays
    with_holiday = only_row(summarise(bars(days=april_weekdays)))
    assert with_holiday["expected_sessions"] == 21
    assert with_holiday["non_session_dates"] == 1
    assert with_holiday["missing_sessions"] == 0
    sessions_only = [d for d in april_weekdays if d != date(2020, 4, 10)]
    without = only_row(summarise(bars(days=sessions_only)))
    assert (without["missing_sessions"], without["non_session_dates"]) == (0, 0)
    assert without["quality_score"] == 1.0


def test_duplicates_count_in_the_duplicate_share() -> None:
    frame = pl.concat([bars(), bars().filter(pl.col("date") == date(2020, 3, 16))])
    row = only_row(summarise(frame))
    assert row["rows"] == 23
    assert row["missing_sessions"] == 0
    assert row["duplicate_pct"] == pytest.approx(1 / 23)
    assert row["quality_score"] == pytest.approx(1 - 0.2 / 23)


def test_a_zero_or_negative_price_sets_the_flag() -> None:
    row = only_row(summarise(set_at(bars(), BROKEN_DAY, low=0.0)))
    assert row["zero_negative_flag"] == 1
    assert row["extreme_spike_flag"] == 0  # the close did not move
    assert row["quality_score"] == pytest.approx(0.8)


def test_the_seed_003_score_with_a_spike_a_gap_and_a_duplicate() -> None:
    frame = bars().filter(pl.col("date") != date(2020, 3, 10))  # 21 of 22 sessions
    frame = pl.concat([frame, frame.filter(pl.col("date") == date(2020, 3, 16))])  # 22 rows
    frame = set_at(frame, date(2020, 3, 20), close=160.0, high=161.0)  # +58 % jump
    row = only_row(summarise(frame))
    assert (row["rows"], row["expected_sessions"], row["missing_sessions"]) == (22, 22, 1)
    assert row["missing_dates_pct"] == pytest.approx(1 / 22)
    assert row["duplicate_pct"] == pytest.approx(1 / 22)
    assert (row["zero_negative_flag"], row["extreme_spike_flag"]) == (0, 1)
    # 1 - (0.3 * 1/22 + 0.2 * 1/22 + 0.2 * 0 + 0.3 * 1) = 0.7 - 0.5/22 = 0.67727...
    assert row["quality_score"] == pytest.approx(0.7 - 0.5 / 22, abs=1e-12)
    assert row["quality_score"] == pytest.approx(0.677272727272727, abs=1e-12)


def test_the_seed_003_score_with_every_component() -> None:
    frame = bars().filter(pl.col("date") != date(2020, 3, 10))
    frame = pl.concat([frame, frame.filter(pl.col("date") == date(2020, 3, 16))])
    frame = set_at(frame, date(2020, 3, 20), close=160.0, high=161.0)
    frame = set_at(frame, date(2020, 3, 25), low=0.0)
    row = only_row(summarise(frame))
    assert (row["zero_negative_flag"], row["extreme_spike_flag"]) == (1, 1)
    # 1 - (0.3/22 + 0.2/22 + 0.2 + 0.3) = 0.5 - 0.5/22 = 0.47727...
    assert row["quality_score"] == pytest.approx(0.5 - 0.5 / 22, abs=1e-12)


def test_the_score_of_a_ten_day_window() -> None:
    # Sessions 2..13 March with the 4th missing (1 of 10) and a jump on the 12th.
    days = MARCH[:10]
    frame = set_at(bars(days=days), date(2020, 3, 12), close=30.0, low=29.0)
    frame = frame.filter(pl.col("date") != date(2020, 3, 4))
    row = only_row(summarise(frame))
    assert row["extreme_spike_flag"] == 1
    assert row["quality_score"] == pytest.approx(1 - (0.3 * 1 / 10 + 0.3 * 1))


def test_one_row_per_ticker_and_month() -> None:
    feb = [date(2020, 2, d) for d in (26, 27, 28)]
    frame = pl.concat([bars("BBB", days=feb + MARCH), bars("AAA", days=MARCH[:3])])
    summary = summarise(frame)
    assert summary.select("ticker", "window", "rows").rows() == [
        ("AAA", date(2020, 3, 1), 3),
        ("BBB", date(2020, 2, 1), 3),
        ("BBB", date(2020, 3, 1), 22),
    ]
    assert (summary["quality_score"] == 1.0).all()


def test_a_year_grain_makes_one_window_per_ticker_and_year() -> None:
    feb = [date(2020, 2, d) for d in (26, 27, 28)]
    summary = summarise(bars(days=feb + MARCH), grain="year")
    row = only_row(summary)
    assert row["window"] == date(2020, 1, 1)
    assert (row["rows"], row["expected_sessions"], row["missing_sessions"]) == (25, 25, 0)


def test_no_bars_give_an_empty_summary_with_its_columns() -> None:
    empty = with_return_flags(bars().clear(), SPIKE)
    summary = partition_summary(empty, "XNYS", "month", SPIKE)
    assert summary.is_empty()
    assert summary.columns == summarise(bars()).columns


# --- the partition suite -----------------------------------------------------------------------


def test_complete_partitions_pass() -> None:
    report = validate_partitions(summarise(pl.concat([bars("AAA"), bars("BBB")])), 0.6)
    assert report.success
    assert report.suite == "bars_partitions"
    assert report.row_count == 2


def test_a_missing_session_fails_naming_ticker_window_and_date() -> None:
    summary = summarise(bars().filter(pl.col("date") != date(2020, 3, 10)))
    report = validate_partitions(summary, 0.6)
    missing = failure(report, BETWEEN, "missing_sessions")
    example = missing.examples[0]
    assert example["ticker"] == "AAA"
    assert day_of(example["window"]) == date(2020, 3, 1)
    assert day_of(example["date"]) == date(2020, 3, 10)
    assert "ticker=AAA" in report.summary() and "date=2020-03-10" in report.summary()
    with pytest.raises(BadBarsError) as excinfo:
        report.raise_for_failures(source="files")
    assert "missing_sessions" in str(excinfo.value)
    assert "ticker=AAA" in str(excinfo.value) and "date=2020-03-10" in str(excinfo.value)


def test_a_non_session_date_fails_the_partition() -> None:
    saturday = bars(days=[date(2020, 3, 7)], start_close=100.25)
    report = validate_partitions(summarise(pl.concat([bars(), saturday])), 0.6)
    failed = failure(report, BETWEEN, "non_session_dates")
    assert failed.examples[0]["ticker"] == "AAA"


def test_a_non_session_failure_names_the_offending_date() -> None:
    saturday = bars(days=[date(2020, 3, 7)], start_close=100.25)
    report = validate_partitions(summarise(pl.concat([bars(), saturday])), 0.6)
    failed = failure(report, BETWEEN, "non_session_dates")
    assert day_of(failed.examples[0]["date"]) == date(2020, 3, 7)


@pytest.mark.parametrize(("minimum", "passes"), [(0.6, True), (0.7, True), (0.75, False)])
def test_the_score_is_held_to_the_minimum(minimum: float, passes: bool) -> None:
    spiky = set_at(bars(), date(2020, 3, 20), close=160.0, high=161.0)  # score exactly 0.7
    summary = summarise(spiky)
    assert only_row(summary)["quality_score"] == pytest.approx(0.7)
    report = validate_partitions(summary, minimum)
    assert report.success is passes
    if not passes:
        low = failure(report, BETWEEN, "quality_score")
        assert low.examples[0]["ticker"] == "AAA"
        with pytest.raises(BadBarsError, match="quality_score"):
            report.raise_for_failures()


def test_only_the_failing_partition_is_reported() -> None:
    gap = bars("BBB").filter(pl.col("date") != date(2020, 3, 10))
    report = validate_partitions(summarise(pl.concat([bars("AAA"), gap])), 0.6)
    missing = failure(report, BETWEEN, "missing_sessions")
    assert missing.unexpected_count == 1
    assert [e["ticker"] for e in missing.examples] == ["BBB"]
