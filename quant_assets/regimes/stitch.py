"""One regime row per session from the walk-forward HMMs and the rules (the ``regimes`` rows).

Each date takes the filtered probabilities of the HMM whose cut-off window holds it
(:func:`quant_assets.models.cutoffs.cutoff_windows`); dates no fitted HMM covers (before the
first cut-off, or a cut-off whose fit fell back) take the rule-based label, one-hot.

Pure: no Dagster, no MLflow. The asset reads the benchmark closes from
:func:`regime_read_start`, calls :func:`stitch_regimes`, then conforms and validates.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import date

import polars as pl

from quant_assets.models.cutoffs import cutoff_windows, days_for_sessions
from quant_assets.regimes.hmm import RegimeFit, hmm_regimes, regime_inputs
from quant_assets.regimes.rules import combine_regimes, rule_lookback_sessions, rule_regimes
from quant_assets.settings import RegimeSettings

RULES_BEFORE_FIRST_CUTOFF = "dates before the first HMM cut-off use the rule-based label"


@dataclass(frozen=True)
class StitchedRegimes:
    """The stitched regime rows and why some dates use the rule label.

    ``frame``: one row per benchmark session in the run, sorted by date, with the columns of
    :func:`~quant_assets.regimes.rules.combine_regimes` plus ``model_cutoff`` (pl.Date: the
    cut-off of the HMM that labelled the row, null for a rule-labelled row); not yet conformed
    to :data:`quant_assets.schemas.REGIMES`. ``reasons``: one text per cut-off whose window
    meets the run but has no fitted HMM (``"<cut-off>: <reason of the fallback>"``), preceded
    by :data:`RULES_BEFORE_FIRST_CUTOFF` when the run starts before the first cut-off.
    """

    frame: pl.DataFrame
    reasons: list[str]


def _hmm_lookback_sessions(settings: RegimeSettings) -> int:
    # Closes before a cut-off for its filter's burn-in and the first volatility window.
    return max(settings.filter_burn_in_sessions + settings.realized_vol_window + 1, 0)


def _models_in_run(model_rows: pl.DataFrame, end: date) -> pl.DataFrame:
    """The models whose cut-off is before ``end``, sorted by cut-off."""
    if model_rows.is_empty():  # may carry no columns at all
        return model_rows
    return model_rows.filter(pl.col("cutoff") < end).sort("cutoff")


def regime_read_start(
    model_rows: pl.DataFrame, start: date, end: date, regimes_settings: RegimeSettings
) -> date:
    """The first date of benchmark closes :func:`stitch_regimes` needs for the run ``[start,
    end)``: early enough for every rule statistic on ``start`` and, when a model with a
    cut-off before ``end`` exists, for the HMM filter's burn-in before the earliest such
    cut-off (calendar days via :func:`~quant_assets.models.cutoffs.days_for_sessions`).

    ``model_rows``: ``regime_model`` rows (needs ``cutoff``, pl.Date), any order; may be empty.
    """
    models = _models_in_run(model_rows, end)
    read_from = start - days_for_sessions(rule_lookback_sessions(regimes_settings.rules))
    if not models.is_empty():
        earliest_cutoff = models["cutoff"].min()
        if not isinstance(earliest_cutoff, date):
            raise ValueError(f"regime_model cutoff must be a date, got {earliest_cutoff!r}")
        read_from = min(
            read_from,
            earliest_cutoff - days_for_sessions(_hmm_lookback_sessions(regimes_settings)),
        )
    return read_from


def stitch_regimes(
    model_rows: pl.DataFrame,
    closes: pl.DataFrame,
    start: date,
    end: date,
    regimes_settings: RegimeSettings,
    vix: pl.DataFrame | None,
) -> StitchedRegimes:
    """The regime of every benchmark session in ``[start, end)`` (see :class:`StitchedRegimes`).

    ``model_rows``: ``regime_model`` rows (``cutoff``, ``status``, ``reason``, ``fit_json``),
    any order, possibly empty; rows with a cut-off on or after ``end`` are ignored.
    ``closes``: the benchmark's ``date``, ``close`` from :func:`regime_read_start` up to ``end``
    (rows with a null close are dropped here). ``vix``: ``date``, ``vix`` for the rules, or None.

    Each cut-off's window ``[cutoff, next cut-off)`` (the last up to ``end``), clipped to the
    run, uses that fit's filtered probabilities; an empty clipped window is skipped before its
    status is looked at, so it adds no reason. Refuses (ValueError) what ``rule_regimes``,
    ``regime_inputs``, ``hmm_regimes`` and ``combine_regimes`` refuse: bad closes, malformed
    fits, duplicate dates.
    """
    models = _models_in_run(model_rows, end)
    closes = closes.filter(pl.col("close").is_not_null())
    rules = rule_regimes(closes, regimes_settings.rules, vix)
    inputs = regime_inputs(closes, regimes_settings.realized_vol_window)
    cutoffs = models["cutoff"].to_list() if not models.is_empty() else []
    # A repeated cut-off: the last row serves its window (the earlier copies' are empty).
    by_cutoff = {row["cutoff"]: row for row in models.iter_rows(named=True)}
    hmm_parts: list[pl.DataFrame] = []
    reasons: list[str] = []
    for window in cutoff_windows(cutoffs, start, end):
        row = by_cutoff[window.cutoff]
        if row["status"] != "fitted":
            reasons.append(f"{row['cutoff']}: {row['reason']}")
            continue
        fit = RegimeFit.from_json(row["fit_json"])
        part = hmm_regimes(
            fit, inputs, window.start, window.end, regimes_settings.filter_burn_in_sessions
        )
        hmm_parts.append(part.with_columns(pl.lit(row["cutoff"]).alias("model_cutoff")))
    hmm = pl.concat(hmm_parts) if hmm_parts else None
    combined = combine_regimes(
        hmm.drop("model_cutoff") if hmm is not None else None, rules, start, end
    )
    if hmm is not None:
        combined = combined.join(hmm.select("date", "model_cutoff"), on="date", how="left")
    else:
        combined = combined.with_columns(pl.lit(None, dtype=pl.Date).alias("model_cutoff"))
    if not cutoffs or cutoffs[0] > start:
        reasons.insert(0, RULES_BEFORE_FIRST_CUTOFF)
    return StitchedRegimes(frame=combined.sort("date"), reasons=reasons)
