"""Stitching regimes: each date from the HMM of its cut-off window, the rules elsewhere.

The data is the synthetic provider's benchmark (seed 5, 1990-1999). Models: a fitted HMM at
1996-01-01 and a fallback record at 1997-01-01. ``_former_asset_code`` is the body of the
``regimes`` asset before the logic moved into :mod:`quant_assets.regimes.stitch`, kept here as
the reference the new functions must match bit for bit.
"""

from __future__ import annotations

from datetime import date, timedelta

import polars as pl
import pytest
from polars.testing import assert_frame_equal

from quant_assets.models.cutoffs import days_for_sessions
from quant_assets.providers.synthetic import SyntheticProvider
from quant_assets.regimes import (
    RegimeFit,
    combine_regimes,
    fit_regime_model,
    hmm_regimes,
    regime_inputs,
    regime_read_start,
    rule_lookback_sessions,
    rule_regimes,
    stitch_regimes,
)
from quant_assets.regimes.stitch import RULES_BEFORE_FIRST_CUTOFF
from quant_assets.settings import RegimeSettings

ORIGIN, END = date(1990, 1, 2), date(1999, 12, 31)
BENCHMARK = "SP500"
SETTINGS = RegimeSettings.model_validate({"restarts": 2, "rules": {"vix_source": "none"}})
FITTED, FALLBACK = date(1996, 1, 1), date(1997, 1, 1)
FALLBACK_REASON = "no restart converged"


@pytest.fixture(scope="module")
def closes() -> pl.DataFrame:
    """Every benchmark close; a run reads the slice [read start, run end)."""
    provider = SyntheticProvider(seed=5, origin=ORIGIN, benchmark=BENCHMARK, end=END)
    return provider.fetch_bars([BENCHMARK], ORIGIN, END).select("date", "close")


@pytest.fixture(scope="module")
def model_rows(closes: pl.DataFrame) -> pl.DataFrame:
    """regime_model rows as stored (newest first, to show the order does not matter)."""
    fit = fit_regime_model(regime_inputs(closes, SETTINGS.realized_vol_window), FITTED, SETTINGS)
    assert fit.status == "fitted"
    fallback = RegimeFit(
        cutoff=FALLBACK,
        status="fallback",
        reason=FALLBACK_REASON,
        n_obs=0,
        train_start=None,
        train_end=None,
        log_likelihood=None,
        converged_restarts=0,
    )
    return pl.DataFrame(
        [
            {"cutoff": f.cutoff, "status": f.status, "reason": f.reason, "fit_json": f.to_json()}
            for f in (fallback, fit)
        ],
        schema={"cutoff": pl.Date, "status": pl.Utf8, "reason": pl.Utf8, "fit_json": pl.Utf8},
    )


def _read(closes: pl.DataFrame, start: date, end: date) -> pl.DataFrame:
    """What ``warehouse.read("benchmark_bars", start=, end=)`` returns."""
    return closes.filter((pl.col("date") >= start) & (pl.col("date") < end))


def _former_asset_code(
    regime_model: pl.DataFrame,
    all_closes: pl.DataFrame,
    rect_start: date,
    rect_end: date,
    settings: RegimeSettings,
    vix: pl.DataFrame | None,
) -> tuple[pl.DataFrame, list[str]]:
    """The ``regimes`` asset body at 51ddda9, from the read to the frame before conform."""
    regime_lookback_sessions = max(
        settings.filter_burn_in_sessions + settings.realized_vol_window + 1, 0
    )
    rules_cfg = settings.rules
    model_rows = (
        regime_model.filter(pl.col("cutoff") < rect_end).sort("cutoff")
        if not regime_model.is_empty()
        else regime_model
    )
    read_from = rect_start - days_for_sessions(rule_lookback_sessions(rules_cfg))
    if not model_rows.is_empty():
        earliest_cutoff = model_rows["cutoff"].min()
        assert isinstance(earliest_cutoff, date)
        read_from = min(read_from, earliest_cutoff - days_for_sessions(regime_lookback_sessions))
    closes = _read(all_closes, read_from, rect_end).filter(pl.col("close").is_not_null())
    rules = rule_regimes(closes, rules_cfg, vix)
    inputs = regime_inputs(closes, settings.realized_vol_window)
    hmm_parts, reasons = [], []
    cutoffs = model_rows["cutoff"].to_list() if not model_rows.is_empty() else []
    for index, row in enumerate(model_rows.iter_rows(named=True)):
        window_end = cutoffs[index + 1] if index + 1 < len(cutoffs) else rect_end
        start, end = max(rect_start, row["cutoff"]), min(rect_end, window_end)
        if start >= end:
            continue
        if row["status"] != "fitted":
            reasons.append(f"{row['cutoff']}: {row['reason']}")
            continue
        fit = RegimeFit.from_json(row["fit_json"])
        part = hmm_regimes(fit, inputs, start, end, settings.filter_burn_in_sessions)
        hmm_parts.append(part.with_columns(pl.lit(row["cutoff"]).alias("model_cutoff")))
    hmm = pl.concat(hmm_parts) if hmm_parts else None
    combined = combine_regimes(
        hmm.drop("model_cutoff") if hmm is not None else None, rules, rect_start, rect_end
    )
    if hmm is not None:
        combined = combined.join(hmm.select("date", "model_cutoff"), on="date", how="left")
    else:
        combined = combined.with_columns(pl.lit(None, dtype=pl.Date).alias("model_cutoff"))
    if not cutoffs or cutoffs[0] > rect_start:
        reasons.insert(0, "dates before the first HMM cut-off use the rule-based label")
    return combined.sort("date"), reasons


def _stitch(
    model_rows: pl.DataFrame,
    closes: pl.DataFrame,
    start: date,
    end: date,
    vix: pl.DataFrame | None = None,
):
    read_from = regime_read_start(model_rows, start, end, SETTINGS)
    return stitch_regimes(model_rows, _read(closes, read_from, end), start, end, SETTINGS, vix)


def _stress_vix(closes: pl.DataFrame) -> pl.DataFrame:
    """A VIX that spikes past the crash level for two weeks of 1996 (rules label it crash)."""
    return closes.select(
        "date",
        pl.when(pl.col("date").is_between(date(1996, 6, 3), date(1996, 6, 14)))
        .then(60.0)
        .otherwise(15.0)
        .alias("vix"),
    )


RUNS = {
    "before the first cut-off to the end": (date(1995, 1, 1), date(1998, 1, 1)),
    "inside the fitted window": (date(1996, 3, 1), date(1996, 9, 1)),
    "inside the fallback window": (date(1997, 2, 1), date(1997, 4, 1)),
    "across both windows": (date(1996, 11, 1), date(1997, 3, 1)),
    "before any cut-off": (date(1994, 1, 1), date(1995, 1, 1)),
}


@pytest.mark.parametrize("run", RUNS.values(), ids=RUNS.keys())
@pytest.mark.parametrize("with_vix", [False, True], ids=["no vix", "vix"])
def test_the_stitched_frame_equals_the_former_asset_code(model_rows, closes, run, with_vix):
    start, end = run
    vix = _stress_vix(closes) if with_vix else None
    expected, expected_reasons = _former_asset_code(model_rows, closes, start, end, SETTINGS, vix)
    stitched = _stitch(model_rows, closes, start, end, vix)
    assert_frame_equal(stitched.frame, expected, check_exact=True)
    assert stitched.reasons == expected_reasons


def test_each_date_uses_the_model_whose_window_holds_it(model_rows, closes):
    stitched = _stitch(model_rows, closes, date(1995, 1, 1), date(1998, 1, 1)).frame
    before = stitched.filter(pl.col("date") < FITTED)
    fitted = stitched.filter((pl.col("date") >= FITTED) & (pl.col("date") < FALLBACK))
    fallback = stitched.filter(pl.col("date") >= FALLBACK)
    assert before.height and fitted.height and fallback.height
    assert set(fitted["regime_source"]) == {"hmm"}
    assert set(fitted["model_cutoff"]) == {FITTED}
    for rule_labelled in (before, fallback):
        assert set(rule_labelled["regime_source"]) == {"rules"}
        assert rule_labelled["model_cutoff"].null_count() == rule_labelled.height
        assert (rule_labelled["regime_label"] == rule_labelled["rule_label"]).all()


def test_the_reasons_name_the_rules_before_the_first_cutoff_then_each_fallback(model_rows, closes):
    stitched = _stitch(model_rows, closes, date(1995, 1, 1), date(1998, 1, 1))
    assert stitched.reasons == [RULES_BEFORE_FIRST_CUTOFF, f"{FALLBACK}: {FALLBACK_REASON}"]


def test_a_fallback_whose_window_misses_the_run_adds_no_reason(model_rows, closes):
    stitched = _stitch(model_rows, closes, date(1996, 3, 1), date(1996, 9, 1))
    assert stitched.reasons == []
    assert set(stitched.frame["regime_source"]) == {"hmm"}


def test_without_models_every_date_uses_the_rules(model_rows, closes):
    no_models = model_rows.clear()
    stitched = _stitch(no_models, closes, date(1996, 3, 1), date(1996, 9, 1))
    assert stitched.reasons == [RULES_BEFORE_FIRST_CUTOFF]
    assert set(stitched.frame["regime_source"]) == {"rules"}
    assert stitched.frame.schema["model_cutoff"] == pl.Date
    # An empty regime_model may come with no columns at all.
    bare = _stitch(pl.DataFrame(), closes, date(1996, 3, 1), date(1996, 9, 1))
    assert_frame_equal(bare.frame, stitched.frame)


def test_models_from_the_runs_end_on_are_ignored(model_rows, closes):
    later = pl.DataFrame(
        [{"cutoff": date(1996, 9, 1), "status": "fallback", "reason": "later", "fit_json": "{}"}],
        schema=model_rows.schema,
    )
    start, end = date(1996, 3, 1), date(1996, 9, 1)
    assert regime_read_start(
        pl.concat([model_rows, later]), start, end, SETTINGS
    ) == regime_read_start(model_rows, start, end, SETTINGS)
    with_later = _stitch(pl.concat([model_rows, later]), closes, start, end)
    without = _stitch(model_rows, closes, start, end)
    assert_frame_equal(with_later.frame, without.frame, check_exact=True)
    assert with_later.reasons == without.reasons


def test_the_read_starts_early_enough_for_the_rules_and_the_filter_burn_in(model_rows):
    start, end = date(1997, 2, 1), date(1997, 4, 1)
    rules_days = days_for_sessions(rule_lookback_sessions(SETTINGS.rules))
    burn_in_days = days_for_sessions(
        SETTINGS.filter_burn_in_sessions + SETTINGS.realized_vol_window + 1
    )
    assert regime_read_start(model_rows.clear(), start, end, SETTINGS) == start - rules_days
    assert regime_read_start(model_rows, start, end, SETTINGS) == min(
        start - rules_days, FITTED - burn_in_days
    )
    assert FITTED - burn_in_days < start - rules_days - timedelta(days=1)


def test_null_closes_are_dropped_before_the_rules(model_rows, closes):
    start, end = date(1996, 3, 1), date(1996, 9, 1)
    read = _read(closes, regime_read_start(model_rows, start, end, SETTINGS), end)
    holes = pl.concat(
        [read, pl.DataFrame({"date": [date(1996, 6, 8)], "close": [None]}, schema=read.schema)]
    ).sort("date")
    with_holes = stitch_regimes(model_rows, holes, start, end, SETTINGS, None)
    clean = stitch_regimes(model_rows, read, start, end, SETTINGS, None)
    assert_frame_equal(with_holes.frame, clean.frame, check_exact=True)
