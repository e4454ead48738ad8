"""The feature library: trend, volatility, volume and relative-strength features per (ticker, date).

``build_features(bars, benchmark, settings)`` takes bars sorted or not, computes every feature
with polars expressions grouped by ticker (shifts, ratios) and window-exact rolling statistics
(:mod:`quant_assets.features.rolling`), and returns one row per input bar. Every feature at row
t uses only rows at or before t of the same ticker (and the benchmark's close on those dates):
no look-ahead by construction, checked by tests that perturb the future.

Features that need a column the provider does not have (open/high/low/volume for close-only
data) are null for that ticker; nothing is fabricated.
"""

from __future__ import annotations

import math

import numpy as np
import polars as pl

from quant_assets.features import rolling
from quant_assets.settings import FeatureSettings

INPUT_COLUMNS: tuple[str, ...] = ("date", "ticker", "open", "high", "low", "close", "volume")
# Features that need more than the close (null for close-only tickers).
NEEDS_HIGH_LOW = ("atr", "range_pct", "money_flow_index")
NEEDS_VOLUME = ("volume_z", "money_flow_index", "obv_flow")
# Relative size below which a difference of prices is floating-point residue, not a move.
FLAT_TOLERANCE = 1e-12


def feature_columns(settings: FeatureSettings) -> dict[str, str]:
    """Name → description of every feature column, in output order, for ``settings``."""
    s = settings
    cols: dict[str, str] = {}
    for w in s.ma_windows:
        cols[f"ma_{w}"] = f"simple moving average of close over {w} sessions"
    for w in s.ma_windows:
        cols[f"dist_ma_{w}"] = f"close / ma_{w} - 1"
    for w in s.return_windows:
        cols[f"ret_{w}d"] = f"simple return over {w} sessions: close[t] / close[t-{w}] - 1"
    cols["momentum"] = (
        f"{s.momentum_lookback}-{s.momentum_skip} momentum: "
        f"close[t-{s.momentum_skip}] / close[t-{s.momentum_lookback}] - 1"
    )
    for w in s.realized_vol_windows:
        cols[f"realized_vol_{w}d"] = (
            f"annualised realised volatility: sqrt({s.trading_days_per_year} * "
            f"mean(log return^2)) over {w} sessions"
        )
    cols[f"ret_std_{s.return_std_window}d"] = (
        f"sample std (ddof=1) of daily simple returns over {s.return_std_window} sessions"
    )
    cols["bollinger_z_20d"] = "(close - ma_20) / sample std of close over 20 sessions"
    cols[f"atr_{s.atr_window}d"] = (
        f"average true range over {s.atr_window} sessions (simple mean; needs high/low)"
    )
    cols[f"atr_pct_{s.atr_window}d"] = f"atr_{s.atr_window}d / close"
    cols["range_pct"] = "(high - low) / close (needs high/low)"
    cols[f"volume_z_{s.volume_z_window}d"] = (
        f"(volume - mean) / std of volume over {s.volume_z_window} sessions (needs volume)"
    )
    cols[f"money_flow_index_{s.money_flow_window}d"] = (
        f"money flow index in [0, 100] over {s.money_flow_window} sessions (needs high/low/volume)"
    )
    cols[f"obv_flow_{s.obv_window}d"] = (
        f"on-balance volume flow: sum(sign(return) * volume) / sum(volume) over "
        f"{s.obv_window} sessions, in [-1, 1] (needs volume)"
    )
    for w in s.relative_return_windows:
        cols[f"rel_return_{w}d"] = f"ret_{w}d of the ticker minus ret_{w}d of the benchmark"
    cols[f"beta_{s.beta_window}d"] = (
        f"rolling beta of daily returns to the benchmark over {s.beta_window} sessions"
    )
    return cols


def build_features(
    bars: pl.DataFrame, benchmark: pl.DataFrame, settings: FeatureSettings
) -> pl.DataFrame:
    """Compute every feature for every row of ``bars``.

    Args:
        bars: columns :data:`INPUT_COLUMNS` (extra columns ignored), any order, one row per
            (ticker, session), including the look-back rows the caller wants used.
        benchmark: columns ``date`` and ``close`` of the benchmark index.
        settings: the feature windows.

    Returns:
        ``date``, ``ticker``, the columns of :func:`feature_columns` (Float64, null where the
        window is not full or an input is missing), ``warmed_up`` (Boolean: every window of
        the row is full, i.e. the ticker has at least ``settings.max_window`` rows up to it)
        and ``benchmark_complete`` (Boolean: the benchmark close is present on every session
        of the longest relative-strength window).
        Sorted by (ticker, date).
    """
    s = settings
    frame = (
        bars.select(INPUT_COLUMNS)
        .sort(["ticker", "date"])
        .join(
            benchmark.select("date", pl.col("close").alias("benchmark_close")),
            on="date",
            how="left",
            maintain_order="left",  # rows stay sorted by (ticker, date): windows rely on it
        )
        .with_columns(pl.int_range(pl.len()).over("ticker").alias("_position"))
    )
    by_ticker = "ticker"
    prev_close = pl.col("close").shift(1).over(by_ticker)
    frame = frame.with_columns(
        (pl.col("close") / prev_close - 1).alias("_ret"),
        (pl.col("close") / prev_close).log().alias("_log_ret"),
        (pl.col("benchmark_close") / pl.col("benchmark_close").shift(1).over(by_ticker) - 1).alias(
            "_benchmark_ret"
        ),
        pl.max_horizontal(
            pl.col("high") - pl.col("low"),
            (pl.col("high") - prev_close).abs(),
            (pl.col("low") - prev_close).abs(),
        ).alias("_true_range"),
        ((pl.col("high") + pl.col("low") + pl.col("close")) / 3).alias("_typical_price"),
    ).with_columns(
        (pl.col("_typical_price") * pl.col("volume")).alias("_raw_money_flow"),
        pl.col("_typical_price").diff().over(by_ticker).alias("_typical_change"),
    )
    position = frame["_position"].to_numpy()

    def arr(name: str) -> np.ndarray:
        return frame[name].cast(pl.Float64).fill_null(np.nan).to_numpy()

    close = arr("close")
    ret = arr("_ret")
    log_ret = arr("_log_ret")
    volume = arr("volume")
    out: dict[str, np.ndarray] = {}

    # Trend
    for w in s.ma_windows:
        out[f"ma_{w}"] = rolling.rolling_mean(close, position, w)
    for w in s.ma_windows:
        out[f"dist_ma_{w}"] = close / out[f"ma_{w}"] - 1
    close_shifts: dict[int, np.ndarray] = {0: close}
    benchmark_close_shifts: dict[int, np.ndarray] = {0: arr("benchmark_close")}

    def shift(cache: dict[int, np.ndarray], column: str, lag: int) -> np.ndarray:
        # column[t - lag] within the same ticker (NaN before its first row)
        if lag not in cache:
            lagged = frame.select(pl.col(column).shift(lag).over(by_ticker))[column]
            cache[lag] = lagged.cast(pl.Float64).fill_null(np.nan).to_numpy()
        return cache[lag]

    for w in s.return_windows:
        out[f"ret_{w}d"] = close / shift(close_shifts, "close", w) - 1
    out["momentum"] = (
        shift(close_shifts, "close", s.momentum_skip)
        / shift(close_shifts, "close", s.momentum_lookback)
        - 1
    )

    # Volatility
    for w in s.realized_vol_windows:
        mean_square = rolling.rolling_mean(log_ret**2, position, w)
        out[f"realized_vol_{w}d"] = np.sqrt(s.trading_days_per_year * mean_square)
    out[f"ret_std_{s.return_std_window}d"] = rolling.rolling_std(ret, position, s.return_std_window)
    close_std_20 = rolling.rolling_std(close, position, 20)
    with np.errstate(divide="ignore", invalid="ignore"):
        # A flat window has close == mean: its z-score is 0, not a ratio of rounding residues
        # (the mean of 20 equal prices can miss the price by an ulp, leaving std ~1e-15).
        flat = close_std_20 <= FLAT_TOLERANCE * np.abs(out["ma_20"])
        out["bollinger_z_20d"] = np.where(flat, 0.0, (close - out["ma_20"]) / close_std_20)
    atr = rolling.rolling_mean(arr("_true_range"), position, s.atr_window)
    out[f"atr_{s.atr_window}d"] = atr
    out[f"atr_pct_{s.atr_window}d"] = atr / close
    out["range_pct"] = (arr("high") - arr("low")) / close

    # Volume
    vw = s.volume_z_window
    with np.errstate(divide="ignore", invalid="ignore"):
        out[f"volume_z_{vw}d"] = (volume - rolling.rolling_mean(volume, position, vw)) / (
            rolling.rolling_std(volume, position, vw)
        )
    typical_change = arr("_typical_change")
    raw_flow = arr("_raw_money_flow")
    mw = s.money_flow_window
    positive_flow = rolling.rolling_sum(
        np.where(typical_change > 0, raw_flow, np.where(np.isnan(typical_change), np.nan, 0.0)),
        position,
        mw,
    )
    negative_flow = rolling.rolling_sum(
        np.where(typical_change < 0, raw_flow, np.where(np.isnan(typical_change), np.nan, 0.0)),
        position,
        mw,
    )
    with np.errstate(divide="ignore", invalid="ignore"):
        out[f"money_flow_index_{mw}d"] = 100 * positive_flow / (positive_flow + negative_flow)
        ow = s.obv_window
        out[f"obv_flow_{ow}d"] = rolling.rolling_sum(
            np.sign(ret) * volume, position, ow
        ) / rolling.rolling_sum(np.where(np.isnan(ret), np.nan, volume), position, ow)

    # Relative strength
    benchmark_close = benchmark_close_shifts[0]
    for w in s.relative_return_windows:
        benchmark_ret_w = benchmark_close / shift(benchmark_close_shifts, "benchmark_close", w) - 1
        out[f"rel_return_{w}d"] = (close / shift(close_shifts, "close", w) - 1) - benchmark_ret_w
    benchmark_ret = arr("_benchmark_ret")
    bw = s.beta_window
    with np.errstate(divide="ignore", invalid="ignore"):
        out[f"beta_{bw}d"] = rolling.rolling_cov(ret, benchmark_ret, position, bw) / (
            rolling.rolling_std(benchmark_ret, position, bw) ** 2
        )

    names = list(feature_columns(s))
    missing = set(names) ^ set(out)
    if missing:  # a programming error: the column list and the computations disagree
        raise RuntimeError(f"feature columns and computations disagree on {sorted(missing)}")
    result = frame.select("date", "ticker", "_position").with_columns(
        [pl.Series(name, out[name], dtype=pl.Float64).fill_nan(None) for name in names]
    )
    # The benchmark is complete for a row when its close is present on every session of the
    # longest relative window (a benchmark series can start later than a ticker's history).
    relative_window = 1 + max(*s.relative_return_windows, s.beta_window)
    benchmark_missing = np.isnan(benchmark_close).astype(np.float64)
    benchmark_complete = rolling.rolling_sum(benchmark_missing, position, relative_window) == 0
    return result.with_columns(
        (pl.col("_position") >= s.max_window - 1).alias("warmed_up"),
        pl.Series("benchmark_complete", benchmark_complete, dtype=pl.Boolean),
    ).drop("_position")


def lookback_sessions(settings: FeatureSettings) -> int:
    """How many sessions before a row the features of that row can read."""
    return settings.max_window - 1


def lookback_periods(settings: FeatureSettings, grain: str) -> int:
    """How many whole partition windows of ``grain`` cover the feature look-back.

    Conservative: counts the fewest sessions a window can hold on NYSE-like calendars
    (15 in a month — September 2001 had 15 — and 240 in a year), so the mapping always
    reaches far enough back; extra rows change nothing (features are window-exact).
    """
    min_sessions = {"month": 15, "year": 240}[grain]
    return math.ceil(lookback_sessions(settings) / min_sessions)
