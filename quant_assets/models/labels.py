"""Next-state targets: did a ticker go down, stay flat or go up over the next h sessions?

The label of origin session t for horizon h compares the forward log return
``log(close[t+h] / close[t])`` with a volatility-scaled threshold
``threshold_vol_multiple × daily_vol[t] × sqrt(h)``, where ``daily_vol[t]`` is the standard
deviation of the last ``vol_window`` daily log returns up to t (known at t).

Labels are the future, so a row is **stored at its realisation date** t+h, not at its origin:
a row dated X depends on closes up to X only (as-of correct, like every other table), and a
model trained before a cut-off c uses exactly the outcomes known before c. Features never read
this table.
"""

from __future__ import annotations

import math

import numpy as np
import polars as pl

from quant_assets.features.rolling import rolling_std
from quant_assets.names import STATE_NAMES
from quant_assets.settings import LabelSettings

STATES = STATE_NAMES  # alias of names.STATE_NAMES (class codes 0, 1, 2)


def label_lookback_sessions(settings: LabelSettings) -> int:
    """Sessions of bars to load before the first realisation date wanted, so that its labels
    equal a full-history computation: the origin lies up to ``max(horizons)`` sessions back
    and its ``vol_window`` daily returns need ``vol_window`` closes before it; one spare
    session on top. An int (sessions), e.g. 5 + 20 + 1 = 26 for the defaults."""
    return max(settings.horizons) + settings.vol_window + 1


def _checked(bars: pl.DataFrame) -> pl.DataFrame:
    missing = {"ticker", "date", "close"} - set(bars.columns)
    if missing:
        raise ValueError(f"bars lack column(s) {sorted(missing)}")
    frame = bars.select("ticker", "date", pl.col("close").cast(pl.Float64)).sort("ticker", "date")
    bad = frame.filter(
        pl.col("close").is_null() | pl.col("close").is_nan() | (pl.col("close") <= 0)
    )
    if bad.height:
        row = bad.row(0, named=True)
        raise ValueError(
            f"labels need positive closes: {row['ticker']} on {row['date']} has {row['close']}"
        )
    duplicated = frame.filter(pl.struct("ticker", "date").is_duplicated())
    if duplicated.height:
        row = duplicated.row(0, named=True)
        raise ValueError(f"duplicate bar for {row['ticker']} on {row['date']}")
    return frame


def next_state_labels(bars: pl.DataFrame, settings: LabelSettings) -> pl.DataFrame:
    """One row per (ticker, realisation date, horizon) for every configured horizon.

    ``bars``: ticker, date, close, one row per (ticker, session), any order. Horizons count the
    ticker's own rows (sessions): origin row t, realised at row t+h. Returns ticker, date (the
    realisation session t+h), horizon (Int16), origin_date (t), forward_log_return
    (``log(close[t+h] / close[t])``, natural log), daily_vol (sample std, ddof=1, of the
    ``vol_window`` daily log returns ending at t: per session, not annualised), threshold
    (``threshold_vol_multiple × daily_vol × sqrt(h)``, log-return units) and label (Int8: 0 down
    if the return is below −threshold, 2 up if above +threshold, else 1 flat), sorted by
    ticker, date, horizon. Origins without a full volatility window are omitted.

    A row dated X depends only on closes at or before X, and is bit-identical whatever history
    is passed before the :func:`label_lookback_sessions` sessions preceding X.

    Raises ValueError naming the ticker and date for a null, NaN or non-positive close or a
    duplicate (ticker, date), and for missing columns.
    """
    frame = _checked(bars)
    frame = frame.with_columns(pl.int_range(pl.len()).over("ticker").alias("_position"))
    log_close = np.log(frame["close"].to_numpy())
    position = frame["_position"].to_numpy()
    log_return = np.full(len(log_close), np.nan)
    log_return[1:] = log_close[1:] - log_close[:-1]
    log_return[position == 0] = np.nan
    # std of the vol_window returns ending at t: rows 1..t of the ticker (window-exact).
    daily_vol = rolling_std(log_return, position - 1, settings.vol_window)
    frame = frame.with_columns(
        pl.Series("_log_close", log_close), pl.Series("daily_vol", daily_vol).fill_nan(None)
    )
    parts = []
    for horizon in settings.horizons:
        # Shift the origin's values forward onto the realisation row t+h (same ticker).
        origin = frame.with_columns(
            pl.col("date").shift(horizon).over("ticker").alias("origin_date"),
            (pl.col("_log_close") - pl.col("_log_close").shift(horizon).over("ticker")).alias(
                "forward_log_return"
            ),
            pl.col("daily_vol").shift(horizon).over("ticker").alias("origin_daily_vol"),
        ).filter(pl.col("origin_date").is_not_null() & pl.col("origin_daily_vol").is_not_null())
        threshold = pl.col("origin_daily_vol") * (
            settings.threshold_vol_multiple * math.sqrt(horizon)
        )
        parts.append(
            origin.select(
                "ticker",
                "date",
                pl.lit(horizon, dtype=pl.Int16).alias("horizon"),
                "origin_date",
                "forward_log_return",
                pl.col("origin_daily_vol").alias("daily_vol"),
                threshold.alias("threshold"),
                pl.when(pl.col("forward_log_return") > threshold)
                .then(2)
                .when(pl.col("forward_log_return") < -threshold)
                .then(0)
                .otherwise(1)
                .cast(pl.Int8)
                .alias("label"),
            )
        )
    return pl.concat(parts).sort("ticker", "date", "horizon")
