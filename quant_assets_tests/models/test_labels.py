"""Next-state labels: hand-checked thresholds, stored at the realisation date, as-of."""

from __future__ import annotations

import math
from datetime import date, timedelta

import numpy as np
import polars as pl
import pytest

from quant_assets.models.labels import label_lookback_sessions, next_state_labels
from quant_assets.settings import LabelSettings


def bars(closes: list[float], ticker: str = "AAA", start: date = date(2020, 1, 1)):
    return pl.DataFrame(
        {
            "ticker": [ticker] * len(closes),
            "date": [start + timedelta(days=i) for i in range(len(closes))],
            "close": closes,
        }
    )


def random_bars(n: int, seed: int, tickers=("AAA", "BBB")) -> pl.DataFrame:
    rng = np.random.default_rng(seed)
    parts = [bars(list(100 * np.exp(np.cumsum(rng.normal(0, 0.01, n)))), ticker=t) for t in tickers]
    return pl.concat(parts)


def test_labels_compare_the_forward_return_with_a_vol_scaled_threshold():
    settings = LabelSettings(horizons=[1, 2], threshold_vol_multiple=0.5, vol_window=2)
    closes = [100.0, 101.0, 100.0, 102.0, 102.0, 99.0]
    out = next_state_labels(bars(closes), settings)
    log = np.log(closes)
    returns = np.diff(log)
    # Origin t=2: vol of the returns into t=1 and t=2 (sample std), threshold 0.5*vol*sqrt(h).
    vol_2 = float(np.std(returns[0:2], ddof=1))
    row = out.filter((pl.col("origin_date") == date(2020, 1, 3)) & (pl.col("horizon") == 1))
    assert row["daily_vol"][0] == pytest.approx(vol_2)
    assert row["threshold"][0] == pytest.approx(0.5 * vol_2)
    assert row["forward_log_return"][0] == pytest.approx(log[3] - log[2])
    assert row["label"][0] == 2  # +2 % against a ~0.7 % threshold: up
    two = out.filter((pl.col("origin_date") == date(2020, 1, 4)) & (pl.col("horizon") == 2))
    vol_3 = float(np.std(returns[1:3], ddof=1))
    assert two["threshold"][0] == pytest.approx(0.5 * vol_3 * math.sqrt(2))
    assert two["label"][0] == 0  # 102 -> 99: down
    flat = out.filter((pl.col("origin_date") == date(2020, 1, 4)) & (pl.col("horizon") == 1))
    assert flat["label"][0] == 1  # 102 -> 102: flat
    # The same +2 % move from origin Jan 3 is "up" after one session but "flat" after four:
    # the threshold widens by sqrt(4) = 2.
    scaled = next_state_labels(
        bars([100.0, 102.0, 100.0, 102.0, 101.0, 101.0, 102.0]),
        LabelSettings(horizons=[1, 4], threshold_vol_multiple=0.5, vol_window=2),
    ).filter(pl.col("origin_date") == date(2020, 1, 3))
    assert scaled["horizon"].to_list() == [1, 4]
    assert scaled["forward_log_return"][0] == scaled["forward_log_return"][1]
    assert scaled["threshold"][1] == pytest.approx(2 * scaled["threshold"][0])
    assert scaled["label"].to_list() == [2, 1]
    assert scaled["date"].to_list() == [date(2020, 1, 4), date(2020, 1, 7)]
    # Origins need vol_window returns: the first origin is the ticker's third row.
    first_origins = out.group_by("horizon").agg(pl.col("origin_date").min())["origin_date"]
    assert set(first_origins) == {date(2020, 1, 3)}
    assert out.schema == pl.Schema(
        {
            "ticker": pl.String,
            "date": pl.Date,
            "horizon": pl.Int16,
            "origin_date": pl.Date,
            "forward_log_return": pl.Float64,
            "daily_vol": pl.Float64,
            "threshold": pl.Float64,
            "label": pl.Int8,
        }
    )
    assert out.equals(out.sort("ticker", "date", "horizon"))


def test_a_label_is_stored_at_the_date_its_outcome_is_known_not_at_its_origin():
    frame = random_bars(60, 1)
    out = next_state_labels(frame, LabelSettings(horizons=[1, 3, 5]))
    assert next_state_labels(frame.reverse(), LabelSettings(horizons=[1, 3, 5])).equals(out)
    for horizon in (1, 3, 5):
        part = out.filter(pl.col("horizon") == horizon)
        assert (part["date"] > part["origin_date"]).all()
        gap = part.select((pl.col("date") - pl.col("origin_date")).dt.total_days()).to_series()
        assert (gap == horizon).all()  # consecutive daily rows in this fixture


def test_labels_at_or_before_d_ignore_every_close_after_d():
    frame = random_bars(120, 2)
    cut = date(2020, 3, 15)
    settings = LabelSettings()
    before = next_state_labels(frame, settings).filter(pl.col("date") <= cut)
    changed = frame.with_columns(
        pl.when(pl.col("date") > cut).then(pl.col("close") * 1.7).otherwise(pl.col("close"))
    )
    after = next_state_labels(changed, settings).filter(pl.col("date") <= cut)
    assert before.height > 0 and after.equals(before)


def test_labels_do_not_depend_on_history_beyond_the_look_back():
    frame = random_bars(200, 3)
    settings = LabelSettings()
    full = next_state_labels(frame, settings)
    first_kept = sorted(set(frame["date"]))[120]
    trimmed_start = sorted(set(frame["date"]))[120 - label_lookback_sessions(settings)]
    trimmed = next_state_labels(frame.filter(pl.col("date") >= trimmed_start), settings)
    keep = pl.col("date") >= first_kept
    assert trimmed.filter(keep).equals(full.filter(keep))  # bit-identical floats too
    # The look-back is not generous by accident: much shorter and the first rows go missing.
    short_start = sorted(set(frame["date"]))[120 - settings.vol_window]
    short = next_state_labels(frame.filter(pl.col("date") >= short_start), settings)
    assert short.filter(keep).height < full.filter(keep).height


@pytest.mark.parametrize(
    ("closes", "problem"),
    [
        ([100.0, -1.0, 101.0], "positive closes: AAA on 2020-01-02"),
        ([100.0, 0.0], "AAA on 2020-01-02"),
        ([100.0, None], "AAA on 2020-01-02"),
        ([100.0, 101.0, float("nan")], "AAA on 2020-01-03"),
    ],
)
def test_bad_closes_are_refused_naming_ticker_and_date(closes, problem):
    with pytest.raises(ValueError, match=problem):
        next_state_labels(bars(closes), LabelSettings())


def test_duplicate_bars_are_refused():
    frame = pl.concat([bars([100.0, 101.0]), bars([100.0])])
    with pytest.raises(ValueError, match="duplicate bar for AAA on 2020-01-01"):
        next_state_labels(frame, LabelSettings())
