"""The four rule-based alpha signals, each a polars expression continuous in [-1, 1].

Every signal reads only the same row's features (which themselves look only backwards), so
a signal at date D depends on bars at or before D. A signal is null where an input is null
(before the feature warm-up). Each is a bounded squashing (``tanh`` or a sign average) of an
interpretable, dimensionless quantity; the scales live in ``configs/signals.yaml``.
"""

from __future__ import annotations

import math

import polars as pl

from quant_assets.features.build import FLAT_TOLERANCE
from quant_assets.settings import FeatureSettings, SignalSettings

SIGNAL_COLUMNS: dict[str, str] = {
    "trend_alpha": "trend following: risk-adjusted 12-1 momentum and moving-average alignment",
    "mean_rev_alpha": "mean reversion: minus the squashed 20-day Bollinger z-score",
    "vol_alpha": "volatility regime: positive when short-term vol is below long-term vol",
    "rel_strength_alpha": "relative strength: risk-adjusted 60-day return over the benchmark",
}


def _sign(relative: pl.Expr) -> pl.Expr:
    """Sign of a relative difference, 0 within floating-point residue of zero."""
    return pl.when(relative.abs() <= FLAT_TOLERANCE).then(0.0).otherwise(relative.sign())


def trend_alpha(signals: SignalSettings) -> pl.Expr:
    """Trend following, in [-1, 1].

    ``0.5 * tanh(momentum / (realized_vol_60d * scale))`` — the 12-1 momentum in units of
    annual volatility — ``+ 0.25 * sign(dist_ma_50) + 0.25 * sign(ma_50 / ma_200 - 1)``:
    half from risk-adjusted momentum, half from price above its 50-day average and the
    50-day above the 200-day (a golden-cross stack scores +0.5, a death-cross stack -0.5).
    """
    momentum_term = (
        (pl.col("momentum") / (pl.col("realized_vol_60d") * signals.trend_momentum_scale))
        .fill_nan(0.0)  # 0/0: a flat price has neither momentum nor volatility
        .tanh()
    )
    stack = 0.25 * _sign(pl.col("dist_ma_50")) + 0.25 * _sign(
        pl.col("ma_50") / pl.col("ma_200") - 1
    )
    return (0.5 * momentum_term + stack).clip(-1.0, 1.0).alias("trend_alpha")


def mean_rev_alpha(signals: SignalSettings) -> pl.Expr:
    """Mean reversion, in [-1, 1]: ``-tanh(bollinger_z_20d / scale)``.

    Two standard deviations above the 20-day mean (default scale 2) gives -tanh(1) ≈ -0.76:
    short the stretch, buy the dip.
    """
    return (-(pl.col("bollinger_z_20d") / signals.mean_reversion_z_scale).tanh()).alias(
        "mean_rev_alpha"
    )


def vol_alpha(signals: SignalSettings) -> pl.Expr:
    """Volatility regime, in [-1, 1]: ``tanh(ln(realized_vol_60d / realized_vol_20d) / scale)``.

    Positive when recent (20-day) volatility is below the 60-day level — calming markets,
    where risk-taking has paid — negative when volatility is expanding.
    """
    # 0/0 (no movement over both windows) is no change of regime: ratio 1, log 0.
    ratio = (pl.col("realized_vol_60d") / pl.col("realized_vol_20d")).fill_nan(1.0).log()
    return (ratio / signals.vol_ratio_scale).tanh().clip(-1.0, 1.0).alias("vol_alpha")


def rel_strength_alpha(signals: SignalSettings, features: FeatureSettings) -> pl.Expr:
    """Relative strength, in [-1, 1]: ``tanh(rel_return_60d / (vol_60d * sqrt(60/252)) / scale)``.

    The 60-day return over the benchmark, in units of the ticker's own 60-day volatility
    scaled to the same horizon: outperforming by one horizon-sigma gives tanh(1) ≈ 0.76.
    """
    horizon_vol = pl.col("realized_vol_60d") * math.sqrt(60 / features.trading_days_per_year)
    return (
        (pl.col("rel_return_60d") / (horizon_vol * signals.rel_strength_scale))
        .fill_nan(0.0)
        .tanh()
        .alias("rel_strength_alpha")
    )


def build_signals(
    features: pl.DataFrame, signals: SignalSettings, feature_settings: FeatureSettings
) -> pl.DataFrame:
    """Compute the four signals for every row of ``features``.

    Returns ``date``, ``ticker``, the :data:`SIGNAL_COLUMNS` (Float64 in [-1, 1], null
    where an input is null or undefined) and ``warmed_up``: the features are warmed up and
    the benchmark complete, so every signal is defined.
    """
    return features.select(
        "date",
        "ticker",
        trend_alpha(signals),
        mean_rev_alpha(signals),
        vol_alpha(signals),
        rel_strength_alpha(signals, feature_settings),
        (pl.col("warmed_up") & pl.col("benchmark_complete")).alias("warmed_up"),
    ).with_columns(pl.col(name).fill_nan(None) for name in SIGNAL_COLUMNS)
