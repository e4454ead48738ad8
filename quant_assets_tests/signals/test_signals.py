"""Specification of the four rule-based signals: formulas, bounds, directions and warm-up."""

from __future__ import annotations

import itertools
import math
from datetime import date, timedelta

import numpy as np
import polars as pl
import pytest

from quant_assets.features.build import build_features
from quant_assets.settings import FeatureSettings, SignalSettings
from quant_assets.signals import SIGNAL_COLUMNS, build_signals

FEATURES = FeatureSettings()
SIGNALS = SignalSettings()
NAMES = list(SIGNAL_COLUMNS)
START = date(2015, 1, 2)


def dates(n: int) -> list[date]:
    return [START + timedelta(days=i) for i in range(n)]


def close_only_bars(closes, ticker: str = "AAA") -> pl.DataFrame:
    n = len(closes)
    return pl.DataFrame(
        {
            "date": dates(n),
            "ticker": [ticker] * n,
            "open": [None] * n,
            "high": [None] * n,
            "low": [None] * n,
            "close": [float(c) for c in closes],
            "volume": [None] * n,
        },
        schema_overrides={c: pl.Float64 for c in ("open", "high", "low", "close", "volume")},
    )


def benchmark(closes) -> pl.DataFrame:
    return pl.DataFrame({"date": dates(len(closes)), "close": [float(c) for c in closes]})


def signals_for(bars: pl.DataFrame, bench: pl.DataFrame, signals=SIGNALS) -> pl.DataFrame:
    return build_signals(build_features(bars, bench, FEATURES), signals, FEATURES)


def walk(log_returns, start: float = 100.0) -> np.ndarray:
    return start * np.exp(np.concatenate([[0.0], np.cumsum(log_returns)]))


def quiet_benchmark(n: int, seed: int = 99) -> pl.DataFrame:
    rng = np.random.default_rng(seed)
    return benchmark(walk(rng.normal(0.0, 0.005, n - 1), start=1000.0))


def feature_row(**values) -> dict:
    row = {
        "date": START,
        "ticker": "AAA",
        "momentum": 0.0,
        "realized_vol_60d": 0.2,
        "realized_vol_20d": 0.2,
        "dist_ma_50": 0.0,
        "ma_50": 100.0,
        "ma_200": 100.0,
        "bollinger_z_20d": 0.0,
        "rel_return_60d": 0.0,
        "warmed_up": True,
        "benchmark_complete": True,
    }
    row.update(values)
    return row


def signals_of_rows(rows: list[dict], signals=SIGNALS) -> pl.DataFrame:
    schema = {
        "date": pl.Date,
        "ticker": pl.String,
        **{
            name: pl.Float64
            for name in (
                "momentum",
                "realized_vol_60d",
                "realized_vol_20d",
                "dist_ma_50",
                "ma_50",
                "ma_200",
                "bollinger_z_20d",
                "rel_return_60d",
            )
        },
        "warmed_up": pl.Boolean,
        "benchmark_complete": pl.Boolean,
    }
    return build_signals(pl.DataFrame(rows, schema=schema), signals, FEATURES)


# --- formulas -------------------------------------------------------------------------------


def test_each_signal_matches_its_documented_formula_on_a_hand_made_row():
    row = feature_row(
        momentum=0.2,
        realized_vol_60d=0.25,
        realized_vol_20d=0.2,
        dist_ma_50=0.03,
        ma_50=105.0,
        ma_200=100.0,
        bollinger_z_20d=1.5,
        rel_return_60d=0.05,
    )
    out = signals_of_rows([row]).row(0, named=True)
    assert out["trend_alpha"] == pytest.approx(0.5 * math.tanh(0.2 / 0.25) + 0.25 + 0.25)
    assert out["mean_rev_alpha"] == pytest.approx(-math.tanh(1.5 / 2.0))
    assert out["vol_alpha"] == pytest.approx(math.tanh(math.log(0.25 / 0.2)))
    assert out["rel_strength_alpha"] == pytest.approx(
        math.tanh(0.05 / (0.25 * math.sqrt(60 / 252)))
    )


def test_signal_scales_divide_the_quantity_inside_the_squashing():
    row = feature_row(
        momentum=-0.3,
        realized_vol_60d=0.2,
        realized_vol_20d=0.4,
        dist_ma_50=-0.01,
        ma_50=95.0,
        ma_200=100.0,
        bollinger_z_20d=-2.5,
        rel_return_60d=-0.04,
    )
    scales = SignalSettings(
        trend_momentum_scale=2.0,
        mean_reversion_z_scale=1.0,
        vol_ratio_scale=0.5,
        rel_strength_scale=3.0,
    )
    out = signals_of_rows([row], scales).row(0, named=True)
    assert out["trend_alpha"] == pytest.approx(0.5 * math.tanh(-0.3 / (0.2 * 2.0)) - 0.5)
    assert out["mean_rev_alpha"] == pytest.approx(-math.tanh(-2.5 / 1.0))
    assert out["vol_alpha"] == pytest.approx(math.tanh(math.log(0.2 / 0.4) / 0.5))
    assert out["rel_strength_alpha"] == pytest.approx(
        math.tanh(-0.04 / (0.2 * math.sqrt(60 / 252)) / 3.0)
    )


def test_trend_stack_ignores_rounding_residue_but_counts_a_small_real_gap():
    residue = feature_row(dist_ma_50=2.220446049250313e-16, ma_50=33.33, ma_200=33.33 - 7e-15)
    small_gap = feature_row(dist_ma_50=1e-6, ma_50=100.0001, ma_200=100.0)
    out = signals_of_rows([residue, small_gap])["trend_alpha"].to_list()
    assert out == pytest.approx([0.0, 0.5])


def test_trend_moving_average_stack_contributes_a_quarter_each():
    golden = feature_row(dist_ma_50=0.02, ma_50=110.0, ma_200=100.0)
    death = feature_row(dist_ma_50=-0.02, ma_50=90.0, ma_200=100.0)
    mixed = feature_row(dist_ma_50=0.02, ma_50=90.0, ma_200=100.0)
    out = signals_of_rows([golden, death, mixed])["trend_alpha"].to_list()
    assert out == pytest.approx([0.5, -0.5, 0.0])  # momentum 0 contributes nothing


def test_output_columns_and_warm_up_flag():
    rows = [
        feature_row(),
        feature_row(warmed_up=False),
        feature_row(benchmark_complete=False),
    ]
    out = signals_of_rows(rows)
    assert out.columns == ["date", "ticker", *NAMES, "warmed_up"]
    assert all(out.schema[name] == pl.Float64 for name in NAMES)
    assert out["warmed_up"].to_list() == [True, False, False]


# --- bounds ---------------------------------------------------------------------------------


def test_every_signal_stays_within_minus_one_and_one_on_a_long_random_walk_with_extreme_moves():
    rng = np.random.default_rng(20240611)
    n = 2000
    steps = 0.02 * rng.standard_t(df=3, size=n - 1)  # fat tails
    steps[400] = math.log(4.0)  # +300 % in a day
    steps[700] = math.log(0.1)  # -90 % in a day
    steps[1000:1080] = 0.0  # the price stops moving for 80 sessions …
    steps[1080] = math.log(1.5)  # … then jumps 50 %
    steps[1300:1330] = 1e-9  # nearly no volatility
    steps[1500:1520] = 0.15 * rng.choice([-1.0, 1.0], size=20)  # violent whipsaw
    wild = close_only_bars(walk(steps), "WILD")
    jumpy = close_only_bars(walk(0.1 * rng.standard_normal(n - 1)), "JUMPY")
    bench_steps = 0.01 * rng.standard_t(df=3, size=n - 1)
    bench_steps[900] = math.log(0.5)
    out = signals_for(pl.concat([wild, jumpy]), benchmark(walk(bench_steps, 1000.0)))
    for name in NAMES:
        values = out[name].drop_nulls().to_numpy()
        assert values.size > 2 * (n - 300), name
        assert np.isfinite(values).all(), name
        assert values.min() >= -1.0 and values.max() <= 1.0, name
    warm = out.filter(pl.col("warmed_up"))
    assert warm.select(pl.col(NAMES).null_count()).sum_horizontal().item() == 0
    # the extremes are actually reached: the +300 % day is stretched far above its mean
    jump = out.filter((pl.col("ticker") == "WILD") & (pl.col("date") == dates(n)[401]))
    assert jump["mean_rev_alpha"].item() < -0.9


def test_signals_stay_bounded_even_for_degenerate_feature_values():
    grid = {
        "momentum": [-0.99, 0.0, 50.0],
        "realized_vol_60d": [0.0, 1e-12, 5.0],
        "realized_vol_20d": [0.0, 1e-12, 5.0],
        "dist_ma_50": [-0.9, 0.0, 3.0],
        "ma_200": [50.0, 100.0, 1e9],
        "bollinger_z_20d": [-1e9, 0.0, 4.36],
        "rel_return_60d": [-0.99, 0.0, 30.0],
    }
    rows = [
        feature_row(**dict(zip(grid, combo, strict=True)))
        for combo in itertools.product(*grid.values())
    ]
    out = signals_of_rows(rows)
    for name in NAMES:
        values = out[name].to_numpy()
        assert out[name].null_count() == 0, name
        assert np.isfinite(values).all(), name
        assert values.min() >= -1.0 and values.max() <= 1.0, name


# --- directions -----------------------------------------------------------------------------


@pytest.mark.parametrize(("drift", "sign"), [(0.002, 1.0), (-0.002, -1.0)])
def test_a_steady_trend_gives_trend_alpha_of_the_same_sign(drift, sign):
    rng = np.random.default_rng(1)
    n = 400
    bars = close_only_bars(walk(drift + rng.normal(0.0, 0.004, n - 1)))
    out = signals_for(bars, quiet_benchmark(n)).filter(pl.col("warmed_up"))
    assert out.height == n - 252
    assert (out["trend_alpha"] * sign > 0.5).all()  # stack ±0.5 plus momentum of that sign


@pytest.mark.parametrize(("last_close", "sign"), [(110.0, -1.0), (90.0, 1.0)])
def test_a_price_far_from_its_20_day_mean_gives_mean_rev_alpha_of_the_opposite_sign(
    last_close, sign
):
    rng = np.random.default_rng(2)
    n = 300
    closes = [*(100.0 + rng.normal(0.0, 0.5, n - 1)), last_close]
    out = signals_for(close_only_bars(closes), quiet_benchmark(n))
    assert out["mean_rev_alpha"][-1] * sign > 0.5


def test_a_price_at_its_20_day_mean_gives_no_mean_reversion():
    closes = [102.0, 98.0, 101.0, 99.0, 100.0] * 4  # the last close is the 20-day mean
    out = signals_for(close_only_bars(closes), quiet_benchmark(20))
    assert out["mean_rev_alpha"][-1] == pytest.approx(0.0, abs=1e-12)


@pytest.mark.parametrize(("calm_then_wild", "sign"), [((0.003, 0.03), -1.0), ((0.03, 0.003), 1.0)])
def test_short_term_vol_rising_above_long_term_vol_gives_negative_vol_alpha(calm_then_wild, sign):
    before, recent = calm_then_wild
    rng = np.random.default_rng(3)
    n = 300
    steps = np.concatenate(
        [rng.normal(0.0, before, n - 21), rng.normal(0.0, recent, 20)]
    )  # the last 20 daily returns have the `recent` volatility
    out = signals_for(close_only_bars(walk(steps)), quiet_benchmark(n))
    assert out["vol_alpha"][-1] * sign > 0.3


@pytest.mark.parametrize(("excess", "sign"), [(0.005, 1.0), (-0.005, -1.0)])
def test_outperforming_the_benchmark_gives_positive_rel_strength_alpha(excess, sign):
    rng = np.random.default_rng(4)
    n = 300
    bench_steps = rng.normal(0.0, 0.005, n - 1)
    ticker_steps = bench_steps + excess + rng.normal(0.0, 0.005, n - 1)
    out = signals_for(close_only_bars(walk(ticker_steps)), benchmark(walk(bench_steps, 1000.0)))
    later = out["rel_strength_alpha"][100:]
    assert later.null_count() == 0
    assert (later * sign > 0).all()


# --- warm-up --------------------------------------------------------------------------------


def test_signals_are_null_until_their_feature_windows_are_full():
    rng = np.random.default_rng(5)
    n = 300
    out = signals_for(close_only_bars(walk(rng.normal(0.0, 0.01, n - 1))), quiet_benchmark(n))

    def first_defined(name: str) -> int:
        """The first row with a value; every later row has one too."""
        values = out[name].to_list()
        first = next(i for i, v in enumerate(values) if v is not None)
        assert None not in values[first:], name
        return first

    assert first_defined("mean_rev_alpha") == 19  # 20-session Bollinger band
    assert first_defined("vol_alpha") == 60  # 60 daily returns need 61 closes
    assert first_defined("rel_strength_alpha") == 60  # 60-session relative return
    assert first_defined("trend_alpha") == 252  # 252-session momentum
    assert out["warmed_up"].to_list() == [t >= FEATURES.max_window - 1 for t in range(n)]
    warm = out.filter(pl.col("warmed_up"))
    assert warm.select(pl.col(NAMES).null_count()).sum_horizontal().item() == 0


def test_signals_are_null_not_warmed_up_where_the_benchmark_is_missing():
    rng = np.random.default_rng(6)
    n = 320
    bench = quiet_benchmark(n).filter(pl.col("date") != dates(n)[280])
    out = signals_for(close_only_bars(walk(rng.normal(0.0, 0.01, n - 1))), bench)
    assert out["rel_strength_alpha"][280] is None  # the 60-day relative return reads that day
    assert out["rel_strength_alpha"][279] is not None
    assert not out["warmed_up"][280:].any()  # gap inside the 61-session benchmark window
    assert out["warmed_up"][252:280].all()


# --- flat prices ----------------------------------------------------------------------------


def test_a_flat_price_gives_finite_zero_signals_after_warm_up():
    n = 300
    out = signals_for(close_only_bars([100.0] * n), benchmark([1000.0] * n))
    warm = out.filter(pl.col("warmed_up"))
    assert warm.height == n - 252
    for name in NAMES:
        assert warm[name].null_count() == 0, name
        assert (warm[name] == 0.0).all(), name


def test_a_flat_price_against_a_moving_benchmark_gives_finite_signals():
    n = 300
    out = signals_for(close_only_bars([100.0] * n), quiet_benchmark(n))
    warm = out.filter(pl.col("warmed_up"))
    for name in NAMES:
        values = warm[name].to_numpy()
        assert warm[name].null_count() == 0 and np.isfinite(values).all(), name
        assert values.min() >= -1.0 and values.max() <= 1.0, name


def test_a_price_that_stops_moving_gives_finite_signals():
    rng = np.random.default_rng(7)
    n = 400
    steps = np.concatenate([rng.normal(0.001, 0.01, 299), np.zeros(n - 300)])
    out = signals_for(close_only_bars(walk(steps)), quiet_benchmark(n))
    last = out.row(-1, named=True)  # 100 sessions without a move: zero vol in both windows
    for name in NAMES:
        assert last[name] is not None and math.isfinite(last[name]), name
    assert last["vol_alpha"] == 0.0  # 0/0 vol ratio is no change of regime


def test_a_flat_price_gives_no_mean_reversion_at_any_price_level():
    n = 60
    out = signals_for(close_only_bars([10.1] * n), benchmark([1000.0] * n))
    assert out["mean_rev_alpha"][19:].to_list() == [0.0] * (n - 19)


def test_a_flat_price_gives_no_trend_at_any_price_level():
    n = 300
    out = signals_for(close_only_bars([33.33] * n), benchmark([1000.0] * n))
    warm = out.filter(pl.col("warmed_up"))
    assert (warm["trend_alpha"] == 0.0).all()
