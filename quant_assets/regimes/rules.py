"""Rule-based market regimes of the benchmark, and the merge with the HMM into stored rows.

The rules are the transparent fallback wherever the HMM has no fit (too little history, no
converged restart). For each session D, from rows at or before D only:

- ``ma_fast`` / ``ma_slow``: simple moving averages of the close over ``ma_fast`` / ``ma_slow``
  sessions;
- ``realized_vol_annualized``: sample std (ddof=1) of the last ``vol_window`` daily log returns
  × sqrt(252);
- ``drawdown_252d``: ``1 - close / max(close over the last 252 sessions)``, in [0, 1);
- ``vix``: the VIX close of the same date, if given (no carrying forward of older values).

The label, first match wins:

1. ``crash``: vol ≥ ``crash_vol_annualized``, or VIX ≥ ``vix_crash``, or (drawdown ≥
   ``crash_drawdown`` and vol ≥ ``high_vol_annualized``);
2. ``bear``: close < ma_slow and ma_fast < ma_slow;
3. ``bull``: close > ma_slow and ma_fast > ma_slow and vol < ``high_vol_annualized`` and
   (VIX < ``vix_high`` where a VIX value exists);
4. ``choppy``: everything else.

Each statistic is null until its window is full, and a clause with a null input does not fire;
so rows with short history are ``choppy`` unless the statistics already available (the short
volatility window, VIX) say ``crash``. Every statistic is window-exact
(:mod:`quant_assets.features.rolling`, or a max), so a row with at least
:func:`rule_lookback_sessions` earlier rows has the same value whatever history is passed.
"""

from __future__ import annotations

from datetime import date

import numpy as np
import polars as pl

from quant_assets.features.rolling import rolling_mean
from quant_assets.names import REGIME_NAMES, REGIME_PROB_COLUMNS
from quant_assets.regimes.hmm import (
    log_returns,
    realized_vol_annualized,
    sorted_benchmark,
)
from quant_assets.settings import RuleRegimeSettings

DRAWDOWN_WINDOW_SESSIONS = 252
RULE_COLUMNS: tuple[str, ...] = (
    "date",
    "rule_label",
    "close",
    "ma_fast",
    "ma_slow",
    "realized_vol_annualized",
    "drawdown_252d",
    "vix",
)
REGIME_COLUMNS: tuple[str, ...] = (
    "date",
    "regime_label",
    *REGIME_PROB_COLUMNS,
    "rule_label",
    "regime_source",
)


def rule_lookback_sessions(settings: RuleRegimeSettings) -> int:
    """Earlier sessions a row needs for every rule statistic to be defined.

    The longest of: ``ma_slow - 1`` (the moving averages include the row itself),
    ``vol_window`` (that many log returns need one more close) and 251 (the 252-session high).
    """
    return max(settings.ma_slow - 1, settings.vol_window, DRAWDOWN_WINDOW_SESSIONS - 1)


def bundled_vix() -> pl.DataFrame:
    """The daily VIX close bundled with ``arch`` (2014-2019): ``date`` (pl.Date), ``vix``
    (Float64, index points), sorted, rows without a value dropped.

    Reads the gzipped CSV behind ``arch.data.vix.load()`` directly: importing ``arch`` costs
    ~2 s, reading the file a few ms."""
    from quant_assets.providers.bundled import package_data_file

    raw = pl.read_csv(package_data_file("arch", "data", "vix", "vix.csv.gz"))
    return (
        raw.select(
            pl.col("Date").str.to_date("%m/%d/%Y").alias("date"),
            pl.col("vix").cast(pl.Float64, strict=False),
        )
        .filter(pl.col("vix").is_not_null() & pl.col("vix").is_not_nan())
        .sort("date")
    )


def _checked_vix(vix: pl.DataFrame) -> pl.DataFrame:
    missing = {"date", "vix"} - set(vix.columns)
    if missing:
        raise ValueError(f"vix lacks column(s) {sorted(missing)}")
    if vix.schema["date"] != pl.Date:
        raise ValueError(f"vix date must be pl.Date, got {vix.schema['date']}")
    duplicated = vix.filter(pl.col("date").is_duplicated())
    if duplicated.height:
        raise ValueError(f"vix has duplicate rows for date {duplicated['date'][0]}")
    # NaN is "no quote that day", exactly like a missing row.
    return vix.select("date", pl.col("vix").cast(pl.Float64).fill_nan(None))


def _rule_statistics(frame: pl.DataFrame, settings: RuleRegimeSettings) -> pl.DataFrame:
    close = frame["close"].to_numpy().astype(np.float64)
    position = np.arange(close.shape[0])
    high = frame["close"].rolling_max(DRAWDOWN_WINDOW_SESSIONS)  # a max is exact: no residue
    return frame.with_columns(
        pl.Series("ma_fast", rolling_mean(close, position, settings.ma_fast)),
        pl.Series("ma_slow", rolling_mean(close, position, settings.ma_slow)),
        pl.Series(
            "realized_vol_annualized",
            realized_vol_annualized(log_returns(frame["close"]), settings.vol_window),
        ),
        (1.0 - pl.col("close") / high).alias("drawdown_252d"),
    ).with_columns(
        pl.col(name).fill_nan(None) for name in ("ma_fast", "ma_slow", "realized_vol_annualized")
    )


def _rule_label(settings: RuleRegimeSettings) -> pl.Expr:
    close, fast, slow = pl.col("close"), pl.col("ma_fast"), pl.col("ma_slow")
    vol, drawdown, vix = (
        pl.col("realized_vol_annualized"),
        pl.col("drawdown_252d"),
        pl.col("vix"),
    )
    # fill_null(False): a clause whose input is not yet defined does not fire.
    crash = (
        (vol >= settings.crash_vol_annualized).fill_null(False)
        | (vix >= settings.vix_crash).fill_null(False)
        | ((drawdown >= settings.crash_drawdown) & (vol >= settings.high_vol_annualized)).fill_null(
            False
        )
    )
    bear = ((close < slow) & (fast < slow)).fill_null(False)
    calm_vix = (vix < settings.vix_high).fill_null(True)  # no VIX that day: clause skipped
    bull = ((close > slow) & (fast > slow) & (vol < settings.high_vol_annualized)).fill_null(
        False
    ) & calm_vix
    return (
        pl.when(crash)
        .then(pl.lit("crash"))
        .when(bear)
        .then(pl.lit("bear"))
        .when(bull)
        .then(pl.lit("bull"))
        .otherwise(pl.lit("choppy"))
        .alias("rule_label")
    )


def rule_regimes(
    benchmark: pl.DataFrame, settings: RuleRegimeSettings, vix: pl.DataFrame | None = None
) -> pl.DataFrame:
    """The rule-based regime of every benchmark session (see the module docstring).

    ``benchmark``: ``date`` (pl.Date), ``close``, one row per session, any order; ``vix``:
    optional ``date``, ``vix`` (index points), joined on the same date only. Returns one row
    per benchmark session sorted by date: ``date``, ``rule_label`` (one of
    :data:`REGIME_NAMES`), and the inputs that decided it: ``close``, ``ma_fast``, ``ma_slow``
    (price units), ``realized_vol_annualized``, ``drawdown_252d`` (fractions), ``vix`` — null
    where not yet defined or not quoted. Row D uses rows at or before D only. Refuses (ValueError)
    what :func:`~quant_assets.regimes.hmm.sorted_benchmark` refuses, and duplicate VIX dates.
    """
    frame = _rule_statistics(sorted_benchmark(benchmark), settings)
    if vix is None:
        frame = frame.with_columns(pl.lit(None, dtype=pl.Float64).alias("vix"))
    else:
        frame = frame.join(_checked_vix(vix), on="date", how="left")
    return frame.with_columns(_rule_label(settings)).select(RULE_COLUMNS)


def combine_regimes(
    hmm: pl.DataFrame | None, rules: pl.DataFrame, start: date, end: date
) -> pl.DataFrame:
    """The stored ``regimes`` rows for the rule dates in ``[start, end)``.

    ``hmm``: rows of :func:`~quant_assets.regimes.hmm.hmm_regimes` (or None: no fit);
    ``rules``: rows of :func:`rule_regimes` (needs ``date``, ``rule_label``). Returns, sorted by
    date: ``date``, ``regime_label``, ``regime_prob_bull/bear/choppy/crash`` (Float64, each row
    sums to 1), ``rule_label`` and ``regime_source``: ``"hmm"`` where an HMM row exists for
    the date (its probabilities and ``hmm_label``), else ``"rules"`` with ``regime_label`` =
    ``rule_label`` and one-hot probabilities on it. Refuses (ValueError) HMM dates in the
    range without a rule row, and duplicate dates in either frame.
    """
    in_range = (pl.col("date") >= start) & (pl.col("date") < end)
    rule_rows = rules.select("date", "rule_label").filter(in_range).sort("date")
    if rule_rows["date"].is_duplicated().any():
        raise ValueError("rules have duplicate dates")
    if hmm is None:
        hmm_rows = pl.DataFrame(
            schema={
                "date": pl.Date,
                **{c: pl.Float64 for c in REGIME_PROB_COLUMNS},
                "hmm_label": pl.Utf8,
            }
        )
    else:
        hmm_rows = hmm.select("date", *REGIME_PROB_COLUMNS, "hmm_label").filter(in_range)
    if hmm_rows["date"].is_duplicated().any():
        raise ValueError("hmm regimes have duplicate dates")
    orphans = hmm_rows.join(rule_rows, on="date", how="anti")
    if orphans.height:
        raise ValueError(f"hmm regime on {orphans['date'][0]} has no rule regime row")
    merged = rule_rows.join(hmm_rows, on="date", how="left")
    from_hmm = pl.col("hmm_label").is_not_null()
    return merged.select(
        "date",
        pl.when(from_hmm)
        .then(pl.col("hmm_label"))
        .otherwise(pl.col("rule_label"))
        .alias("regime_label"),
        *(
            pl.when(from_hmm)
            .then(pl.col(column))
            .otherwise((pl.col("rule_label") == label).cast(pl.Float64))
            .alias(column)
            for label, column in zip(REGIME_NAMES, REGIME_PROB_COLUMNS, strict=True)
        ),
        "rule_label",
        pl.when(from_hmm).then(pl.lit("hmm")).otherwise(pl.lit("rules")).alias("regime_source"),
    )
