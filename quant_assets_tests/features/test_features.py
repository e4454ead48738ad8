"""Specification of ``build_features``: every feature family hand-checked, and its as-of rules.

The tiny series below is small enough to check with a pencil; expected values are written as
plain arithmetic on the listed prices, never with the rolling helpers under test.
"""

from __future__ import annotations

import math
import statistics
from datetime import date, timedelta

import numpy as np
import polars as pl
import pytest

from quant_assets.features.build import (
    build_features,
    feature_columns,
    lookback_periods,
    lookback_sessions,
)
from quant_assets.settings import FeatureSettings

# Short windows so a 10-row series exercises every family (the validator insists on 20/50/200
# moving averages, 20/60 realised vols and a 60-day relative return; those stay null here).
SMALL = FeatureSettings(
    ma_windows=[2, 3, 20, 50, 200],
    return_windows=[1, 5],
    momentum_lookback=5,
    momentum_skip=2,
    realized_vol_windows=[3, 20, 60],
    return_std_window=3,
    atr_window=3,
    volume_z_window=4,
    money_flow_window=3,
    obv_window=4,
    relative_return_windows=[3, 60],
    beta_window=5,
)
START = date(2021, 1, 4)
PRICE_COLUMNS = ("open", "high", "low", "close", "volume")


def make_bars(
    closes, *, ticker="AAA", highs=None, lows=None, volumes=None, opens=None, start=START
):
    n = len(closes)
    none = [None] * n
    return pl.DataFrame(
        {
            "date": [start + timedelta(days=i) for i in range(n)],
            "ticker": [ticker] * n,
            "open": none if opens is None else list(opens),
            "high": none if highs is None else list(highs),
            "low": none if lows is None else list(lows),
            "close": list(closes),
            "volume": none if volumes is None else list(volumes),
        },
        schema_overrides={c: pl.Float64 for c in PRICE_COLUMNS},
    )


def make_benchmark(closes, *, start=START):
    return pl.DataFrame(
        {"date": [start + timedelta(days=i) for i in range(len(closes))], "close": list(closes)},
        schema_overrides={"close": pl.Float64},
    )


def random_bars(n, *, seed, ticker="AAA", start=START):
    """A random walk with consistent OHLCV (high >= open, close >= low)."""
    rng = np.random.default_rng(seed)
    close = 50 * np.exp(np.cumsum(rng.normal(0.0, 0.02, n)))
    open_ = close * np.exp(rng.normal(0.0, 0.01, n))
    high = np.maximum(open_, close) * (1 + rng.uniform(0.0, 0.02, n))
    low = np.minimum(open_, close) * (1 - rng.uniform(0.0, 0.02, n))
    volume = rng.integers(10_000, 1_000_000, n).astype(float)
    return make_bars(
        close, ticker=ticker, highs=high, lows=low, volumes=volume, opens=open_, start=start
    )


def random_benchmark(n, *, seed, start=START):
    rng = np.random.default_rng(seed)
    return make_benchmark(1000 * np.exp(np.cumsum(rng.normal(0.0, 0.01, n))), start=start)


# The pencil-and-paper series: row index t = 0 .. 9.
C = [10.0, 11.0, 10.5, 12.0, 12.5, 11.5, 13.0, 13.5, 12.8, 14.0]
H = [10.4, 11.6, 11.2, 12.3, 12.9, 12.4, 13.2, 13.9, 13.6, 14.3]
L = [9.7, 10.2, 10.3, 10.9, 12.0, 11.2, 11.8, 13.0, 12.5, 13.1]
V = [100.0, 150.0, 120.0, 200.0, 180.0, 160.0, 220.0, 210.0, 190.0, 250.0]
B = [100.0, 101.0, 100.5, 102.0, 103.0, 102.5, 104.0, 105.0, 104.5, 106.0]


@pytest.fixture(scope="module")
def tiny():
    bars = make_bars(C, highs=H, lows=L, volumes=V, opens=C)
    return build_features(bars, make_benchmark(B), SMALL)


def column(frame: pl.DataFrame, name: str) -> list:
    return frame[name].to_list()


def first_non_null(values: list) -> int:
    return next(i for i, v in enumerate(values) if v is not None)


# --- output shape ---------------------------------------------------------------------------


def test_output_has_one_row_per_bar_with_every_feature_column_in_order(tiny):
    names = list(feature_columns(SMALL))
    assert tiny.columns == ["date", "ticker", *names, "warmed_up", "benchmark_complete"]
    assert tiny.height == len(C)
    assert all(tiny.schema[name] == pl.Float64 for name in names)
    assert tiny.schema["warmed_up"] == pl.Boolean
    assert tiny.schema["benchmark_complete"] == pl.Boolean


def test_undefined_values_are_null_never_nan(tiny):
    names = list(feature_columns(SMALL))
    assert tiny.select(pl.col(names).is_nan().any()).row(0) == (False,) * len(names)


def test_feature_columns_follow_the_configured_windows():
    names = list(feature_columns(SMALL))
    assert names[:10] == [
        "ma_2",
        "ma_3",
        "ma_20",
        "ma_50",
        "ma_200",
        "dist_ma_2",
        "dist_ma_3",
        "dist_ma_20",
        "dist_ma_50",
        "dist_ma_200",
    ]
    for name in (
        "ret_1d",
        "ret_5d",
        "momentum",
        "realized_vol_3d",
        "realized_vol_60d",
        "ret_std_3d",
        "bollinger_z_20d",
        "atr_3d",
        "atr_pct_3d",
        "range_pct",
        "volume_z_4d",
        "money_flow_index_3d",
        "obv_flow_4d",
        "rel_return_3d",
        "rel_return_60d",
        "beta_5d",
    ):
        assert name in names


# --- trend ----------------------------------------------------------------------------------


def test_moving_average_matches_hand_computed_mean(tiny):
    ma_2, ma_3 = column(tiny, "ma_2"), column(tiny, "ma_3")
    assert ma_2[0] is None
    assert ma_2[1] == pytest.approx((10.0 + 11.0) / 2)
    assert ma_3[:2] == [None, None]
    assert ma_3[2] == pytest.approx((10.0 + 11.0 + 10.5) / 3)
    assert ma_3[9] == pytest.approx((13.5 + 12.8 + 14.0) / 3)
    assert column(tiny, "ma_20") == [None] * 10  # window longer than the history


def test_distance_to_moving_average_is_close_over_average_minus_one(tiny):
    assert column(tiny, "dist_ma_2")[9] == pytest.approx(14.0 / ((12.8 + 14.0) / 2) - 1)
    assert column(tiny, "dist_ma_3")[9] == pytest.approx(14.0 / ((13.5 + 12.8 + 14.0) / 3) - 1)
    assert column(tiny, "dist_ma_3")[1] is None


def test_n_day_return_matches_hand_computed_ratio(tiny):
    ret_1d, ret_5d = column(tiny, "ret_1d"), column(tiny, "ret_5d")
    assert ret_1d[0] is None
    assert ret_1d[1] == pytest.approx(11.0 / 10.0 - 1)
    assert ret_1d[9] == pytest.approx(14.0 / 12.8 - 1)
    assert first_non_null(ret_5d) == 5
    assert ret_5d[5] == pytest.approx(11.5 / 10.0 - 1)
    assert ret_5d[9] == pytest.approx(14.0 / 12.5 - 1)


def test_momentum_skips_the_most_recent_sessions(tiny):
    momentum = column(tiny, "momentum")  # 5-2: close[t-2] / close[t-5] - 1
    assert first_non_null(momentum) == 5
    assert momentum[5] == pytest.approx(12.0 / 10.0 - 1)
    assert momentum[9] == pytest.approx(13.5 / 12.5 - 1)


# --- volatility -----------------------------------------------------------------------------


def test_realised_vol_is_annualised_root_mean_square_log_return(tiny):
    vol = column(tiny, "realized_vol_3d")
    # needs three daily log returns, the first of which exists at row 1
    assert first_non_null(vol) == 3
    expected_3 = math.sqrt(
        252 * (math.log(11 / 10) ** 2 + math.log(10.5 / 11) ** 2 + math.log(12 / 10.5) ** 2) / 3
    )
    expected_9 = math.sqrt(
        252 * (math.log(13.5 / 13) ** 2 + math.log(12.8 / 13.5) ** 2 + math.log(14 / 12.8) ** 2) / 3
    )
    assert vol[3] == pytest.approx(expected_3)
    assert vol[9] == pytest.approx(expected_9)


def test_return_std_is_sample_std_of_daily_simple_returns(tiny):
    std = column(tiny, "ret_std_3d")
    assert first_non_null(std) == 3
    expected = statistics.stdev([13.5 / 13 - 1, 12.8 / 13.5 - 1, 14 / 12.8 - 1])
    assert std[9] == pytest.approx(expected)


def test_atr_is_the_simple_mean_of_true_range(tiny):
    # true range = max(high - low, |high - prev close|, |low - prev close|)
    tr_5 = max(12.4 - 11.2, abs(12.4 - 12.5), abs(11.2 - 12.5))  # 1.3: gap below prev close
    tr_6 = max(13.2 - 11.8, abs(13.2 - 11.5), abs(11.8 - 11.5))  # 1.7: gap above prev close
    tr_7 = max(13.9 - 13.0, abs(13.9 - 13.0), abs(13.0 - 13.0))  # 0.9
    tr_8 = max(13.6 - 12.5, abs(13.6 - 13.5), abs(12.5 - 13.5))  # 1.1: the plain range
    tr_9 = max(14.3 - 13.1, abs(14.3 - 12.8), abs(13.1 - 12.8))  # 1.5
    assert (tr_5, tr_6, tr_7, tr_8, tr_9) == pytest.approx((1.3, 1.7, 0.9, 1.1, 1.5))
    atr = column(tiny, "atr_3d")
    assert atr[7] == pytest.approx((tr_5 + tr_6 + tr_7) / 3)
    assert atr[9] == pytest.approx((tr_7 + tr_8 + tr_9) / 3)
    assert column(tiny, "atr_pct_3d")[9] == pytest.approx((tr_7 + tr_8 + tr_9) / 3 / 14.0)
    assert atr[:2] == [None, None]


def test_range_pct_is_the_days_range_over_close(tiny):
    range_pct = column(tiny, "range_pct")
    assert range_pct[0] == pytest.approx((10.4 - 9.7) / 10.0)  # needs no previous bar
    assert range_pct[9] == pytest.approx((14.3 - 13.1) / 14.0)


def test_bollinger_z_is_distance_from_the_20_day_mean_in_sample_stds():
    closes = [100.0 + (i % 5) - 0.5 * (i % 3) for i in range(21)] + [112.0]
    out = build_features(make_bars(closes), make_benchmark(closes), SMALL)
    z = column(out, "bollinger_z_20d")
    assert first_non_null(z) == 19
    for t in (19, 20, 21):
        window = closes[t - 19 : t + 1]
        expected = (closes[t] - statistics.mean(window)) / statistics.stdev(window)
        assert z[t] == pytest.approx(expected)
    assert z[21] > 2.0  # the spike is far above the band


def test_bollinger_z_is_zero_for_a_flat_window():
    out = build_features(make_bars([100.0] * 25), make_benchmark([100.0] * 25), SMALL)
    assert column(out, "bollinger_z_20d")[19:] == [0.0] * 6


@pytest.mark.parametrize("price", [10.1, 0.1, 33.33])
def test_bollinger_z_is_zero_for_a_flat_window_at_any_price_level(price):
    # the mean of 20 copies of these prices misses the price by an ulp: still a flat window
    out = build_features(make_bars([price] * 25), make_benchmark([100.0] * 25), SMALL)
    assert column(out, "bollinger_z_20d")[19:] == [0.0] * 6


@pytest.mark.parametrize("move", [1e-6, -0.5, 3.0])
def test_bollinger_z_of_one_move_in_an_otherwise_flat_window_is_19_over_sqrt_20(move):
    # 19 closes a and a last close a + d: mean a + d/20, close - mean = 19d/20,
    # sample std = |d| / sqrt(20), so z = sign(d) * 19 / sqrt(20) whatever the size of d
    closes = [100.0] * 19 + [100.0 + move]
    out = build_features(make_bars(closes), make_benchmark([100.0] * 20), SMALL)
    expected = math.copysign(19 / math.sqrt(20), move)
    assert column(out, "bollinger_z_20d")[19] == pytest.approx(expected, rel=1e-6)


# --- volume ---------------------------------------------------------------------------------


def test_volume_z_score_uses_the_sample_std_of_the_window(tiny):
    volume_z = column(tiny, "volume_z_4d")
    assert first_non_null(volume_z) == 3
    window = [220.0, 210.0, 190.0, 250.0]  # rows 6..9
    expected = (250.0 - statistics.mean(window)) / statistics.stdev(window)
    assert volume_z[9] == pytest.approx(expected)


def test_money_flow_index_matches_hand_computed_positive_and_negative_flow(tiny):
    typical = {t: (H[t] + L[t] + C[t]) / 3 for t in range(6, 10)}
    # rows 7..9: typical price up, down, up
    assert typical[7] > typical[6] and typical[8] < typical[7] and typical[9] > typical[8]
    positive = typical[7] * 210.0 + typical[9] * 250.0
    negative = typical[8] * 190.0
    mfi = column(tiny, "money_flow_index_3d")
    assert mfi[9] == pytest.approx(100 * positive / (positive + negative))
    assert first_non_null(mfi) == 3  # the first typical-price change is at row 1
    assert all(0 <= v <= 100 for v in mfi if v is not None)


def test_obv_flow_is_signed_volume_over_total_volume(tiny):
    obv = column(tiny, "obv_flow_4d")
    # rows 6..9: returns up, up, down, up
    assert obv[9] == pytest.approx((220.0 + 210.0 - 190.0 + 250.0) / (220 + 210 + 190 + 250))
    # rows 1..4: up, down, up, up
    assert obv[4] == pytest.approx((150.0 - 120.0 + 200.0 + 180.0) / (150 + 120 + 200 + 180))
    assert first_non_null(obv) == 4


# --- relative strength ----------------------------------------------------------------------


def test_relative_return_is_ticker_return_minus_benchmark_return(tiny):
    rel = column(tiny, "rel_return_3d")
    assert first_non_null(rel) == 3
    assert rel[3] == pytest.approx((12.0 / 10.0 - 1) - (102.0 / 100.0 - 1))
    assert rel[9] == pytest.approx((14.0 / 13.0 - 1) - (106.0 / 104.0 - 1))
    assert column(tiny, "rel_return_60d") == [None] * 10


def test_beta_is_the_regression_slope_of_returns_on_benchmark_returns(tiny):
    r = np.array([C[t] / C[t - 1] - 1 for t in range(5, 10)])
    b = np.array([B[t] / B[t - 1] - 1 for t in range(5, 10)])
    slope = np.polyfit(b, r, 1)[0]
    assert np.cov(r, b)[0, 1] / np.var(b, ddof=1) == pytest.approx(slope)
    beta = column(tiny, "beta_5d")
    assert first_non_null(beta) == 5
    assert beta[9] == pytest.approx(slope)


def test_a_ticker_that_is_the_benchmark_has_beta_one_and_zero_relative_return():
    bars = random_bars(80, seed=4)
    out = build_features(bars, bars.select("date", "close"), SMALL)
    assert column(out, "beta_5d")[79] == pytest.approx(1.0)
    assert column(out, "rel_return_60d")[79] == 0.0


# --- close-only data ------------------------------------------------------------------------

NEEDS_MORE_THAN_CLOSE = (
    "atr_3d",
    "atr_pct_3d",
    "range_pct",
    "volume_z_4d",
    "money_flow_index_3d",
    "obv_flow_4d",
)


def test_close_only_bars_give_null_range_and_volume_features_but_finite_trend_and_vol():
    n = 230
    closes = random_bars(n, seed=8)["close"]
    out = build_features(make_bars(closes), random_benchmark(n, seed=9), SMALL)
    for name in NEEDS_MORE_THAN_CLOSE:
        assert out[name].null_count() == n, name
    last = out.row(n - 1, named=True)
    for name in feature_columns(SMALL):
        if name not in NEEDS_MORE_THAN_CLOSE:
            assert last[name] is not None and math.isfinite(last[name]), name


def test_a_close_only_ticker_does_not_affect_a_full_ticker_in_the_same_frame():
    n = 60
    full = random_bars(n, seed=10, ticker="FULL")
    close_only = make_bars(random_bars(n, seed=11)["close"], ticker="CLOSE")
    bench = random_benchmark(n, seed=12)
    together = build_features(pl.concat([close_only, full]), bench, SMALL)
    alone = build_features(full, bench, SMALL)
    assert together.filter(pl.col("ticker") == "FULL").equals(alone)
    mixed = together.filter(pl.col("ticker") == "CLOSE")
    assert mixed["atr_3d"].null_count() == n
    assert mixed["ma_3"].null_count() == 2


# --- warm-up and benchmark completeness -----------------------------------------------------


def test_warmed_up_becomes_true_exactly_at_row_max_window_minus_one():
    settings = FeatureSettings()
    n = settings.max_window + 10
    out = build_features(random_bars(n, seed=1), random_benchmark(n, seed=2), settings)
    expected = [t >= settings.max_window - 1 for t in range(n)]
    assert column(out, "warmed_up") == expected
    # every feature is defined from the first warmed-up row on …
    warm = out.filter(pl.col("warmed_up")).select(list(feature_columns(settings)))
    assert warm.null_count().sum_horizontal().item() == 0
    # … and the longest one (252-day momentum, needing 253 closes) is not defined a row earlier
    assert column(out, "momentum")[settings.max_window - 2] is None


def test_warmed_up_uses_the_longest_window_of_the_settings():
    n = 205
    out = build_features(random_bars(n, seed=3), random_benchmark(n, seed=4), SMALL)
    assert SMALL.max_window == 201  # 1 + the 200-day moving average
    assert column(out, "warmed_up").index(True) == 200
    assert all(column(out, "warmed_up")[200:])


def test_benchmark_complete_is_false_while_a_missing_benchmark_day_is_inside_the_window():
    n = 150
    bench = random_benchmark(n, seed=5)
    gap_day = START + timedelta(days=80)
    with_gap = bench.filter(pl.col("date") != gap_day)
    out = build_features(random_bars(n, seed=6), with_gap, SMALL)
    # window = 1 + longest relative window (60) = 61 rows: rows t-60 .. t
    expected = [(60 <= t < 80) or t >= 80 + 61 for t in range(n)]
    assert column(out, "benchmark_complete") == expected
    # only the relative features that read the missing close are null
    rel = column(out, "rel_return_3d")
    assert [t for t in range(3, n) if rel[t] is None] == [80, 83]
    beta = column(out, "beta_5d")
    assert [t for t in range(5, n) if beta[t] is None] == list(range(80, 86))
    complete = build_features(random_bars(n, seed=6), bench, SMALL)
    assert out["ma_3"].equals(complete["ma_3"])


def test_benchmark_complete_waits_for_a_benchmark_that_starts_later():
    n = 150
    late_bench = random_benchmark(n, seed=7).slice(30)
    out = build_features(random_bars(n, seed=8), late_bench, SMALL)
    assert column(out, "benchmark_complete") == [t >= 30 + 60 for t in range(n)]


# --- independence of tickers and input order ------------------------------------------------


def test_two_tickers_in_one_frame_give_the_same_values_as_each_alone():
    a = random_bars(240, seed=21, ticker="AAA")
    b = random_bars(215, seed=22, ticker="BBB", start=START + timedelta(days=17))
    bench = random_benchmark(300, seed=23)
    shuffled = pl.concat([a, b]).sample(fraction=1.0, shuffle=True, seed=0)
    both = build_features(shuffled, bench, SMALL)
    assert both.filter(pl.col("ticker") == "AAA").equals(build_features(a, bench, SMALL))
    assert both.filter(pl.col("ticker") == "BBB").equals(build_features(b, bench, SMALL))
    assert both.select(pl.col("ticker").is_sorted()).item()


def test_extra_input_columns_are_ignored():
    bars = random_bars(30, seed=24)
    bench = random_benchmark(30, seed=25)
    noisy = bars.with_columns(pl.lit("junk").alias("provider"), (pl.col("close") * 9).alias("x"))
    assert build_features(noisy, bench, SMALL).equals(build_features(bars, bench, SMALL))


# --- no look-ahead --------------------------------------------------------------------------


def two_ticker_history(n=260):
    a = random_bars(n, seed=31, ticker="AAA")
    b = random_bars(n - 20, seed=32, ticker="BBB", start=START + timedelta(days=20))
    return pl.concat([a, b]), random_benchmark(n, seed=33)


@pytest.mark.parametrize("cut_row", [0, 119, 200, 258])
def test_future_bars_do_not_change_past_features(cut_row):
    bars, bench = two_ticker_history()
    cut = START + timedelta(days=cut_row)
    base = build_features(bars, bench, SMALL).filter(pl.col("date") <= cut)
    assert base.height > 0

    rng = np.random.default_rng(cut_row)
    future = pl.col("date") > cut
    shock = pl.Series(rng.uniform(0.1, 10.0, bars.height))
    perturbed_bars = bars.with_columns(
        [
            pl.when(future).then(pl.col(c) * shock).otherwise(pl.col(c)).alias(c)
            for c in PRICE_COLUMNS
        ]
    )
    perturbed_bench = bench.with_columns(
        pl.when(future)
        .then(pl.col("close") * pl.Series(rng.uniform(0.1, 10.0, bench.height)))
        .otherwise(pl.col("close"))
    )
    variants = [
        (perturbed_bars, perturbed_bench),  # every future row changed
        (bars.filter(~future), bench.filter(~future)),  # every future row deleted
        (bars.filter(~future), bench),  # future benchmark present, future bars absent
    ]
    for variant_bars, variant_bench in variants:
        again = build_features(variant_bars, variant_bench, SMALL).filter(pl.col("date") <= cut)
        assert again.equals(base)


def test_future_bars_do_not_change_past_features_with_default_settings():
    n = 400
    bars, bench = random_bars(n, seed=41), random_benchmark(n, seed=42)
    cut = START + timedelta(days=300)
    base = build_features(bars, bench, FeatureSettings()).filter(pl.col("date") <= cut)
    spiked = bars.with_columns(
        pl.when(pl.col("date") > cut).then(pl.col(c) * 1e6).otherwise(pl.col(c)).alias(c)
        for c in PRICE_COLUMNS
    )
    again = build_features(spiked, bench, FeatureSettings()).filter(pl.col("date") <= cut)
    assert again.equals(base)
    assert base.filter(pl.col("warmed_up")).height == 301 - 252


# --- longer history -------------------------------------------------------------------------


@pytest.mark.parametrize("offset", [1, 37, 300])
def test_a_longer_history_gives_bit_identical_values_once_warmed_up(offset):
    settings = FeatureSettings()
    n = 700
    bars, bench = random_bars(n, seed=51), random_benchmark(n, seed=52)
    full = build_features(bars, bench, settings)
    late = build_features(bars.slice(offset), bench.slice(offset), settings)
    late_warm = late.filter(pl.col("warmed_up"))
    assert late_warm.height == n - offset - (settings.max_window - 1)
    full_same_dates = full.filter(pl.col("date") >= late_warm["date"][0])
    assert full_same_dates.equals(late_warm)
    for name in feature_columns(settings):  # the arrays themselves, NaN/null positions included
        assert np.array_equal(
            full_same_dates[name].to_numpy(), late_warm[name].to_numpy(), equal_nan=True
        ), name


# --- look-back in partition windows ---------------------------------------------------------

LONG = FeatureSettings(momentum_lookback=1000, momentum_skip=21)


def test_lookback_periods_of_the_default_settings():
    settings = FeatureSettings()
    assert settings.max_window == 253  # 252-day momentum plus the prior close
    assert lookback_sessions(settings) == 252
    assert lookback_periods(settings, "month") == math.ceil(252 / 15) == 17
    assert lookback_periods(settings, "year") == math.ceil(252 / 240) == 2


@pytest.mark.parametrize(
    "settings", [FeatureSettings(), SMALL, LONG], ids=["default", "small", "long"]
)
def test_lookback_periods_cover_the_max_window_even_for_the_shortest_periods(settings):
    needed = settings.max_window - 1
    assert lookback_periods(settings, "month") * 15 >= needed  # September 2001: 15 sessions
    assert lookback_periods(settings, "year") * 240 >= needed  # fewest sessions in a year


@pytest.fixture(scope="module")
def xnys_sessions():
    xcals = pytest.importorskip("exchange_calendars")
    calendar = xcals.get_calendar("XNYS", start="1999-01-01", end="2003-12-31")
    return [ts.date() for ts in calendar.sessions]


@pytest.mark.parametrize("settings", [FeatureSettings(), SMALL], ids=["default", "small"])
def test_lookback_periods_reach_back_far_enough_on_the_real_nyse_calendar(settings, xnys_sessions):
    """Around September 2001 the look-back months still hold max_window - 1 sessions."""
    needed = lookback_sessions(settings)
    months = lookback_periods(settings, "month")
    years = lookback_periods(settings, "year")
    sessions = np.array(xnys_sessions, dtype="datetime64[D]")
    for year in (2001, 2002, 2003):
        for month in range(1, 13):
            first = np.datetime64(f"{year}-{month:02d}", "M")
            window_start = (first - months).astype("datetime64[D]")
            held = np.count_nonzero((sessions >= window_start) & (sessions < first.astype("M8[D]")))
            assert held >= needed, (year, month, held)
        year_start = np.datetime64(f"{year}-01-01")
        back = np.datetime64(f"{year - years}-01-01")
        held = np.count_nonzero((sessions >= back) & (sessions < year_start))
        assert held >= needed, (year, held)
