"""Every feature on small series with hand-checked answers, and its as-of behaviour."""

from __future__ import annotations

import math
from datetime import date, timedelta

import numpy as np
import polars as pl
import pytest

from quant_assets.features.build import build_features, feature_columns, lookback_periods
from quant_assets.features.rolling import rolling_cov, rolling_mean, rolling_std, rolling_sum
from quant_assets.settings import FeatureSettings

SMALL = FeatureSettings(
    ma_windows=[3, 20, 50, 200],
    return_windows=[1, 2],
    momentum_lookback=4,
    momentum_skip=1,
    realized_vol_windows=[3, 20, 60],
    return_std_window=3,
    atr_window=3,
    volume_z_window=3,
    money_flow_window=3,
    obv_window=3,
    relative_return_windows=[2, 60],
    beta_window=4,
)


def frame(closes, *, ticker="AAA", highs=None, lows=None, volumes=None, opens=None):
    n = len(closes)
    days = [date(2021, 1, 1) + timedelta(days=i) for i in range(n)]
    return pl.DataFrame(
        {
            "date": days,
            "ticker": [ticker] * n,
            "open": opens if opens is not None else [None] * n,
            "high": highs if highs is not None else [None] * n,
            "low": lows if lows is not None else [None] * n,
            "close": closes,
            "volume": volumes if volumes is not None else [None] * n,
        },
        schema_overrides={c: pl.Float64 for c in ("open", "high", "low", "close", "volume")},
    )


def benchmark(closes):
    return frame(closes, ticker="IDX").select("date", "close")


CLOSES = [10.0, 11.0, 12.0, 11.0, 13.0, 14.0]
HIGHS = [10.5, 11.5, 12.5, 12.0, 13.5, 14.5]
LOWS = [9.5, 10.0, 11.0, 10.5, 11.5, 13.0]
VOLUMES = [100.0, 200.0, 150.0, 300.0, 250.0, 100.0]
BENCH = [100.0, 101.0, 103.0, 102.0, 104.0, 105.0]


@pytest.fixture
def computed():
    bars = frame(CLOSES, highs=HIGHS, lows=LOWS, volumes=VOLUMES, opens=CLOSES)
    return build_features(bars, benchmark(BENCH), SMALL)


def col(frame_, name):
    return frame_[name].to_list()


def test_moving_average_and_distance_match_hand_computed_values(computed):
    assert col(computed, "ma_3")[:2] == [None, None]
    assert col(computed, "ma_3")[2] == pytest.approx((10 + 11 + 12) / 3)
    assert col(computed, "ma_3")[5] == pytest.approx((11 + 13 + 14) / 3)
    assert col(computed, "dist_ma_3")[5] == pytest.approx(14 / ((11 + 13 + 14) / 3) - 1)
    assert col(computed, "ma_200") == [None] * 6


def test_returns_and_momentum_match_hand_computed_values(computed):
    assert col(computed, "ret_1d")[1] == pytest.approx(11 / 10 - 1)
    assert col(computed, "ret_2d")[4] == pytest.approx(13 / 12 - 1)
    # momentum 4-1: close[t-1] / close[t-4] - 1
    assert col(computed, "momentum")[5] == pytest.approx(13 / 11 - 1)
    assert col(computed, "momentum")[3] is None


def test_realised_vol_is_annualised_root_mean_square_log_return(computed):
    logs = np.log(np.array(CLOSES[1:]) / np.array(CLOSES[:-1]))
    expected = math.sqrt(252 * np.mean(logs[-3:] ** 2))
    assert col(computed, "realized_vol_3d")[5] == pytest.approx(expected)


def test_return_std_is_sample_std_of_daily_returns(computed):
    rets = np.array(CLOSES[1:]) / np.array(CLOSES[:-1]) - 1
    assert col(computed, "ret_std_3d")[5] == pytest.approx(np.std(rets[-3:], ddof=1))


def test_atr_is_the_simple_mean_of_true_range(computed):
    true_range = [
        max(h - lo, abs(h - pc), abs(lo - pc))
        for h, lo, pc in zip(HIGHS[1:], LOWS[1:], CLOSES[:-1], strict=True)
    ]
    assert col(computed, "atr_3d")[5] == pytest.approx(np.mean(true_range[-3:]))
    assert col(computed, "atr_pct_3d")[5] == pytest.approx(np.mean(true_range[-3:]) / 14)
    assert col(computed, "range_pct")[0] == pytest.approx((10.5 - 9.5) / 10)


def test_volume_zscore_money_flow_and_obv_flow(computed):
    v = np.array(VOLUMES)
    assert col(computed, "volume_z_3d")[5] == pytest.approx(
        (v[5] - v[3:6].mean()) / v[3:6].std(ddof=1)
    )
    typical = (np.array(HIGHS) + np.array(LOWS) + np.array(CLOSES)) / 3
    flow = typical * v
    up = sum(flow[i] for i in (3, 4, 5) if typical[i] > typical[i - 1])
    down = sum(flow[i] for i in (3, 4, 5) if typical[i] < typical[i - 1])
    assert col(computed, "money_flow_index_3d")[5] == pytest.approx(100 * up / (up + down))
    signs = np.sign(np.diff(CLOSES))
    assert col(computed, "obv_flow_3d")[5] == pytest.approx(
        (signs[-3:] * v[3:6]).sum() / v[3:6].sum()
    )


def test_relative_return_and_beta_against_the_benchmark(computed):
    expected = (14 / 11 - 1) - (105 / 102 - 1)  # 2-session returns
    assert col(computed, "rel_return_2d")[5] == pytest.approx(expected)
    r = np.array(CLOSES[1:]) / np.array(CLOSES[:-1]) - 1
    b = np.array(BENCH[1:]) / np.array(BENCH[:-1]) - 1
    slope = np.polyfit(b[-4:], r[-4:], 1)[0]
    assert col(computed, "beta_4d")[5] == pytest.approx(slope)


def test_bollinger_z_is_zero_for_a_flat_window():
    flat = build_features(frame([5.0] * 25), benchmark([1.0] * 25), SMALL)
    assert flat["bollinger_z_20d"][24] == 0.0


def test_close_only_bars_give_null_range_and_volume_features_but_finite_trend():
    closes = list(100 + np.cumsum(np.random.default_rng(1).normal(0, 1, 30)))
    out = build_features(frame(closes), benchmark([100.0 + i for i in range(30)]), SMALL)
    last = out.row(29, named=True)
    for name in (
        "atr_3d",
        "atr_pct_3d",
        "range_pct",
        "volume_z_3d",
        "money_flow_index_3d",
        "obv_flow_3d",
    ):
        assert last[name] is None, name
    for name in ("ma_3", "ret_1d", "realized_vol_3d", "momentum", "rel_return_2d", "beta_4d"):
        assert last[name] is not None and math.isfinite(last[name]), name


def test_warm_up_flag_turns_on_exactly_when_every_window_is_full():
    settings = FeatureSettings()
    n = settings.max_window + 5
    closes = list(np.linspace(10, 20, n))
    out = build_features(frame(closes), benchmark(list(np.linspace(100, 120, n))), settings)
    flags = out["warmed_up"].to_list()
    assert flags.index(True) == settings.max_window - 1
    assert all(flags[settings.max_window - 1 :])


def test_benchmark_gap_inside_the_relative_window_marks_rows_incomplete():
    closes = [float(x) for x in range(10, 130)]
    bench = benchmark([float(x) for x in range(100, 220)]).filter(
        pl.col("date") != date(2021, 1, 1) + timedelta(days=50)
    )
    out = build_features(frame(closes), bench, SMALL)
    assert out["benchmark_complete"][69] is False  # gap 19 rows back, window 61
    assert out["beta_4d"][51] is None  # daily benchmark returns around the gap are missing
    assert out["benchmark_complete"][50 + 61] is True


def test_two_tickers_in_one_frame_equal_each_computed_alone():
    rng = np.random.default_rng(5)
    a = frame(list(50 + np.cumsum(rng.normal(0, 1, 80))), ticker="AAA")
    b = frame(list(70 + np.cumsum(rng.normal(0, 1, 80))), ticker="BBB")
    bench = benchmark(list(100 + np.cumsum(rng.normal(0, 1, 80))))
    both = build_features(pl.concat([b, a]), bench, SMALL)
    alone = pl.concat([build_features(a, bench, SMALL), build_features(b, bench, SMALL)])
    assert both.equals(alone)


def test_future_bars_do_not_change_past_features():
    rng = np.random.default_rng(7)
    n = 400
    closes = 100 * np.exp(np.cumsum(rng.normal(0, 0.01, n)))
    bars = frame(
        list(closes),
        highs=list(closes * 1.01),
        lows=list(closes * 0.99),
        volumes=list(rng.uniform(1e5, 2e5, n)),
        opens=list(closes),
    )
    bench = benchmark(list(100 * np.exp(np.cumsum(rng.normal(0, 0.01, n)))))
    cut = bars["date"][300]
    base = build_features(bars, bench, FeatureSettings())
    shocked = bars.with_columns(
        pl.when(pl.col("date") > cut).then(pl.col(c) * 3).otherwise(pl.col(c)).alias(c)
        for c in ("open", "high", "low", "close")
    )
    for variant in (shocked, bars.filter(pl.col("date") <= cut)):
        again = build_features(variant, bench, FeatureSettings())
        assert again.filter(pl.col("date") <= cut).equals(base.filter(pl.col("date") <= cut))


def test_a_longer_history_gives_bit_identical_values_once_warmed_up():
    rng = np.random.default_rng(9)
    n = 900
    closes = list(100 * np.exp(np.cumsum(rng.normal(0, 0.02, n))))
    bars, bench = frame(closes), benchmark(list(np.linspace(100, 300, n)))
    full = build_features(bars, bench, FeatureSettings())
    late = build_features(bars.tail(400), bench, FeatureSettings())
    tail_full = full.tail(100).drop("warmed_up", "benchmark_complete")
    tail_late = late.tail(100).drop("warmed_up", "benchmark_complete")
    assert tail_full.equals(tail_late)


def test_lookback_periods_cover_the_longest_window():
    settings = FeatureSettings()
    assert lookback_periods(settings, "month") * 15 >= settings.max_window - 1
    assert lookback_periods(settings, "year") * 240 >= settings.max_window - 1
    assert set(feature_columns(settings)) >= {"ma_200", "realized_vol_20d", "beta_60d"}


class TestRolling:
    values = np.array([1.0, 2.0, 4.0, 8.0, 16.0, 3.0, 5.0])
    position = np.array([0, 1, 2, 3, 4, 0, 1])  # two tickers: 5 rows then 2 rows

    def test_window_statistics_match_a_naive_loop_and_reset_at_ticker_boundaries(self):
        mean = rolling_mean(self.values, self.position, 3)
        np.testing.assert_array_equal(np.isnan(mean), [1, 1, 0, 0, 0, 1, 1])
        assert mean[4] == pytest.approx((4 + 8 + 16) / 3)
        assert rolling_sum(self.values, self.position, 2)[6] == 8.0
        assert rolling_std(self.values, self.position, 3)[3] == pytest.approx(
            np.std([2.0, 4.0, 8.0], ddof=1)
        )
        cov = rolling_cov(self.values, self.values**2, self.position, 3)[4]
        assert cov == pytest.approx(np.cov([4.0, 8.0, 16.0], [16.0, 64.0, 256.0])[0, 1])

    def test_values_do_not_depend_on_where_the_series_starts(self):
        x = np.random.default_rng(0).lognormal(size=3000) * 100
        full = rolling_mean(x, np.arange(3000), 200)
        later = rolling_mean(x[1234:], np.arange(3000 - 1234), 200)
        np.testing.assert_array_equal(full[1234 + 199 :], later[199:])

    def test_bad_arguments_are_refused(self):
        with pytest.raises(ValueError):
            rolling_mean(self.values, self.position[:3], 2)
        with pytest.raises(ValueError):
            rolling_mean(self.values, self.position, 0)
