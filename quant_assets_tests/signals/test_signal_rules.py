"""The four signals: bounded in [-1, 1], pointing the documented way."""

from __future__ import annotations

import math
from datetime import date, timedelta

import numpy as np
import polars as pl
import pytest

from quant_assets.features.build import build_features
from quant_assets.settings import FeatureSettings, SignalSettings
from quant_assets.signals.rules import SIGNAL_COLUMNS, build_signals

FEATURES = FeatureSettings()


def signals_for(closes, bench_closes):
    n = len(closes)
    days = [date(2000, 1, 3) + timedelta(days=i) for i in range(n)]
    bars = pl.DataFrame({"date": days, "ticker": "AAA", "close": closes}).with_columns(
        [pl.lit(None, dtype=pl.Float64).alias(c) for c in ("open", "high", "low", "volume")]
    )
    bench = pl.DataFrame({"date": days, "close": bench_closes})
    features = build_features(bars, bench, FEATURES)
    return features, build_signals(features, SignalSettings(), FEATURES)


def walk(seed, n=800, vol=0.02, drift=0.0):
    rng = np.random.default_rng(seed)
    return list(100 * np.exp(np.cumsum(rng.normal(drift, vol, n))))


def test_every_signal_stays_within_the_unit_interval_even_on_extreme_moves():
    closes = walk(1, vol=0.08)
    closes[500] *= 5  # a violent jump
    _, out = signals_for(closes, walk(2))
    for name in SIGNAL_COLUMNS:
        values = out[name].drop_nulls()
        assert values.len() > 0
        assert values.min() >= -1 and values.max() <= 1, name


def test_signals_are_null_before_the_warm_up_and_defined_after():
    _, out = signals_for(walk(3), walk(4))
    first = out.row(10, named=True)
    assert first["trend_alpha"] is None and first["warmed_up"] is False
    warmed = out.filter(pl.col("warmed_up"))
    for name in SIGNAL_COLUMNS:
        assert warmed[name].null_count() == 0, name


def test_a_steady_uptrend_has_positive_trend_alpha():
    closes = list(100 * np.exp(np.linspace(0, 1, 600)) * (1 + 0.001 * np.sin(np.arange(600))))
    _, out = signals_for(closes, walk(5, n=600))
    assert out["trend_alpha"][-1] > 0.5


def test_a_price_far_above_its_20_day_mean_has_negative_mean_reversion_alpha():
    closes = walk(6, n=600, vol=0.005)
    closes[-1] = closes[-2] * 1.15
    _, out = signals_for(closes, walk(7, n=600))
    assert out["mean_rev_alpha"][-1] < -0.5


def test_expanding_short_term_volatility_has_negative_vol_alpha():
    calm = walk(8, n=560, vol=0.005)
    rng = np.random.default_rng(9)
    stormy = list(calm[-1] * np.exp(np.cumsum(rng.normal(0, 0.05, 20))))
    _, out = signals_for(calm + stormy, walk(10, n=580))
    assert out["vol_alpha"][-1] < -0.3


def test_outperforming_the_benchmark_has_positive_relative_strength():
    bench = walk(11, n=600, vol=0.01)
    ticker = [b * math.exp(0.004 * i) for i, b in enumerate(bench)]
    _, out = signals_for(ticker, bench)
    assert out["rel_strength_alpha"][-1] > 0.5


def test_a_flat_price_gives_finite_signals_not_nan():
    _, out = signals_for([50.0] * 400, walk(12, n=400))
    last = out.row(-1, named=True)
    assert last["warmed_up"] is True
    for name in SIGNAL_COLUMNS:
        assert last[name] is not None and math.isfinite(last[name]), name
    assert last["trend_alpha"] == pytest.approx(0.0)
