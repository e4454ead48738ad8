"""Specification of the benchmark HMM: known regimes found, stable labels, no look-ahead.

The data is the synthetic provider's benchmark (seed 5, 1990-2000), whose true regime path
is known. Its crash episodes of 1998 (11 and 15 sessions) fall after every cut-off used here.
Thresholds are set below the measured values (noted next to each) to leave room for
floating-point differences between platforms, not for changes in behaviour.
"""

from __future__ import annotations

import itertools
import json
import math
from datetime import date

import numpy as np
import polars as pl
import pytest
from polars.testing import assert_frame_equal

from quant_assets.providers.synthetic import SyntheticProvider
from quant_assets.regimes import (
    PROB_COLUMNS,
    REGIME_LABELS,
    RegimeFit,
    filtered_probabilities,
    fit_regime_model,
    hmm_regimes,
    label_states,
    regime_input_lookback_sessions,
    regime_inputs,
    smoothed_probabilities,
)
from quant_assets.settings import RegimeSettings

SEED = 5
ORIGIN = date(1990, 1, 2)
END = date(2000, 12, 31)
BENCHMARK = "SP500"
# Two restarts instead of five keep the suite fast; on this data both pick the same model.
SETTINGS = RegimeSettings(restarts=2)
CUTOFFS = (date(1996, 1, 1), date(1997, 1, 1), date(1998, 1, 1))
FIRST_CUTOFF = CUTOFFS[0]
CRASH = REGIME_LABELS.index("crash")


@pytest.fixture(scope="module")
def provider() -> SyntheticProvider:
    return SyntheticProvider(seed=SEED, origin=ORIGIN, benchmark=BENCHMARK, end=END)


@pytest.fixture(scope="module")
def benchmark(provider: SyntheticProvider) -> pl.DataFrame:
    return provider.fetch_bars([BENCHMARK], ORIGIN, END).select("date", "close")


@pytest.fixture(scope="module")
def truth(provider: SyntheticProvider) -> pl.DataFrame:
    return provider.regimes(ORIGIN, END)


@pytest.fixture(scope="module")
def inputs(benchmark: pl.DataFrame) -> pl.DataFrame:
    return regime_inputs(benchmark, SETTINGS.realized_vol_window)


@pytest.fixture(scope="module")
def fits(inputs: pl.DataFrame) -> dict[date, RegimeFit]:
    return {cutoff: fit_regime_model(inputs, cutoff, SETTINGS) for cutoff in CUTOFFS}


@pytest.fixture(scope="module")
def first_fit(fits: dict[date, RegimeFit]) -> RegimeFit:
    return fits[FIRST_CUTOFF]


def regimes_after(fit: RegimeFit, inputs: pl.DataFrame, start: date) -> pl.DataFrame:
    return hmm_regimes(fit, inputs, start, END, SETTINGS.filter_burn_in_sessions)


def crash_episodes(truth: pl.DataFrame, after: date, min_sessions: int) -> list[tuple[date, date]]:
    """(first, last) date of each true crash run of at least ``min_sessions`` after ``after``."""
    runs = (
        truth.filter(pl.col("date") >= after)
        .with_columns(run=(pl.col("regime") != pl.col("regime").shift(1)).fill_null(True).cum_sum())
        .filter(pl.col("regime") == "crash")
        .group_by("run")
        .agg(first=pl.col("date").min(), last=pl.col("date").max(), sessions=pl.len())
        .filter(pl.col("sessions") >= min_sessions)
        .sort("first")
    )
    return list(zip(runs["first"], runs["last"], strict=True))


# --- inputs ---------------------------------------------------------------------------------


def test_regime_inputs_are_log_returns_and_annualised_realised_vol_sorted_by_date() -> None:
    closes = [100.0, 101.0, 99.0, 102.0, 103.0, 101.5, 104.0]
    days = [date(2020, 1, d) for d in range(1, 8)]
    shuffled = pl.DataFrame({"date": days[::-1], "close": closes[::-1]})

    out = regime_inputs(shuffled, vol_window=3)

    assert out.columns == ["date", "log_return", "realized_vol"]
    assert out["date"].to_list() == days[3:]  # 3 log returns need 4 closes
    prices = np.array(closes)
    returns = np.log(prices[1:] / prices[:-1])
    expected_vol = [np.std(returns[i - 3 : i], ddof=1) * math.sqrt(252) for i in range(3, 7)]
    np.testing.assert_allclose(out["log_return"].to_numpy(), returns[2:], rtol=1e-15)
    np.testing.assert_allclose(out["realized_vol"].to_numpy(), expected_vol, rtol=1e-12)


def test_regime_inputs_do_not_depend_on_how_much_earlier_history_is_passed(
    benchmark: pl.DataFrame,
) -> None:
    full = regime_inputs(benchmark, 20)
    late = regime_inputs(benchmark.slice(1000), 20)

    assert_frame_equal(full.filter(pl.col("date") >= late["date"][0]), late, check_exact=True)


@pytest.mark.parametrize(
    ("closes", "message"),
    [
        ([100.0, 0.0, 101.0], "2020-01-02"),
        ([100.0, -1.0, 101.0], "2020-01-02"),
        ([100.0, 101.0, None], "2020-01-03"),
    ],
)
def test_regime_inputs_refuse_non_positive_or_null_closes_naming_the_date(
    closes: list[float | None], message: str
) -> None:
    frame = pl.DataFrame(
        {"date": [date(2020, 1, d) for d in (1, 2, 3)], "close": closes},
        schema={"date": pl.Date, "close": pl.Float64},
    )
    with pytest.raises(ValueError, match=message):
        regime_inputs(frame, 2)


def test_regime_inputs_refuse_duplicate_dates_naming_the_date() -> None:
    frame = pl.DataFrame(
        {"date": [date(2020, 1, 1), date(2020, 1, 2), date(2020, 1, 2)], "close": [1.0, 2, 3]}
    )
    with pytest.raises(ValueError, match=r"duplicate.*2020-01-02"):
        regime_inputs(frame, 2)


# --- labels ---------------------------------------------------------------------------------


def test_states_are_named_by_volatility_calmest_bull_then_choppy_bear_crash() -> None:
    daily_vol = np.array([0.03, 0.007, 0.015, 0.011])  # crash, bull, bear, choppy
    means = np.column_stack([[-0.01, 0.001, -0.0005, 0.0002], daily_vol * math.sqrt(252)])
    variances = np.column_stack([daily_vol**2, np.full(4, 1e-3)])

    assert label_states(means, variances) == ["crash", "bull", "bear", "choppy"]
    # The same states in another hidden order keep their names: no label switching.
    order = [2, 0, 3, 1]
    assert label_states(means[order], variances[order]) == ["bear", "crash", "choppy", "bull"]


def test_label_states_refuses_other_than_four_states() -> None:
    with pytest.raises(ValueError, match="shape"):
        label_states(np.zeros((3, 2)), np.ones((3, 2)))


# --- the fit against the known regimes -----------------------------------------------------


def test_simulated_crashes_are_labelled_crash_by_the_filtered_argmax_most_days(
    first_fit: RegimeFit, inputs: pl.DataFrame, truth: pl.DataFrame
) -> None:
    regimes = regimes_after(first_fit, inputs, FIRST_CUTOFF)
    episodes = crash_episodes(truth, FIRST_CUTOFF, min_sessions=10)

    assert len(episodes) == 2
    for first, last in episodes:
        labels = regimes.filter(pl.col("date").is_between(first, last))["hmm_label"]
        assert (labels == "crash").mean() >= 0.8, (first, last)  # measured 0.91 and 1.0


def test_filtered_labels_agree_with_the_true_regimes_well_above_chance(
    first_fit: RegimeFit, inputs: pl.DataFrame, truth: pl.DataFrame
) -> None:
    scored = regimes_after(first_fit, inputs, FIRST_CUTOFF).join(truth, on="date")
    agreement = (scored["hmm_label"] == scored["regime"]).mean()
    # Chance: the agreement of two independent labellings with these label frequencies.
    true_share = scored["regime"].value_counts(normalize=True)
    hmm_share = scored["hmm_label"].value_counts(normalize=True).rename({"hmm_label": "regime"})
    chance = true_share.join(hmm_share, on="regime").select(
        (pl.col("proportion") * pl.col("proportion_right")).sum()
    )
    assert agreement >= 1.3 * chance.item()  # measured 0.38 vs 0.24


def test_refits_a_year_apart_keep_the_meaning_of_each_label(
    fits: dict[date, RegimeFit], inputs: pl.DataFrame
) -> None:
    common_start = max(CUTOFFS)
    labels = {
        cutoff: regimes_after(fit, inputs, common_start)["hmm_label"].to_numpy()
        for cutoff, fit in fits.items()
    }
    for earlier, later in itertools.combinations(CUTOFFS, 2):
        assert (labels[earlier] == labels[later]).mean() >= 0.9  # measured 0.97

    for fit in fits.values():
        assert fit.status == "fitted"
        state_labels = fit.params["state_labels"]
        vol = fit.params["state_volatility_annualized"]
        calm_first = [state_labels[k] for k in np.argsort(vol)]
        assert calm_first == ["bull", "choppy", "bear", "crash"]


# --- filtered, not smoothed -----------------------------------------------------------------


def test_filtered_rows_are_probabilities_in_label_order(
    first_fit: RegimeFit, inputs: pl.DataFrame
) -> None:
    probabilities = filtered_probabilities(first_fit, inputs)

    assert probabilities.shape == (inputs.height, len(REGIME_LABELS))
    assert (probabilities >= 0).all()
    np.testing.assert_allclose(probabilities.sum(axis=1), 1.0, rtol=0, atol=1e-12)


@pytest.fixture(scope="module")
def after_cutoff(inputs: pl.DataFrame) -> pl.DataFrame:
    return inputs.filter(pl.col("date") >= FIRST_CUTOFF)


@pytest.fixture(scope="module")
def crash_eve(first_fit: RegimeFit, after_cutoff: pl.DataFrame) -> int:
    """Row of ``after_cutoff`` on the eve of a filtered crash spell where smoothing, which also
    reads the next day, differs most from filtering."""
    filtered = filtered_probabilities(first_fit, after_cutoff)
    smoothed = smoothed_probabilities(first_fit, after_cutoff)
    in_crash = filtered.argmax(axis=1) == CRASH
    eves = np.flatnonzero(~in_crash[:-1] & in_crash[1:])
    assert eves.size
    return int(eves[np.argmax(smoothed[eves, CRASH] - filtered[eves, CRASH])])


def test_smoothed_probabilities_see_a_crash_coming_the_day_before_filtered_ones_do(
    first_fit: RegimeFit, after_cutoff: pl.DataFrame, crash_eve: int
) -> None:
    filtered = filtered_probabilities(first_fit, after_cutoff)
    smoothed = smoothed_probabilities(first_fit, after_cutoff)

    assert smoothed[crash_eve, CRASH] > 0.5  # measured 0.95: it already knows tomorrow
    assert filtered[crash_eve, CRASH] < 0.2  # measured 0.12: it cannot


def test_filtered_rows_ignore_every_later_row_while_smoothed_ones_do_not(
    first_fit: RegimeFit, after_cutoff: pl.DataFrame, crash_eve: int
) -> None:
    # Every row after the eve D replaced by the calmest possible market.
    later = pl.int_range(pl.len()) > crash_eve
    calm_future = after_cutoff.with_columns(
        pl.when(later).then(0.0).otherwise("log_return").alias("log_return"),
        pl.when(later).then(0.05).otherwise("realized_vol").alias("realized_vol"),
    )
    up_to_d = slice(0, crash_eve + 1)

    assert np.array_equal(
        filtered_probabilities(first_fit, after_cutoff)[up_to_d],
        filtered_probabilities(first_fit, calm_future)[up_to_d],
    )
    smoothed = smoothed_probabilities(first_fit, after_cutoff)[up_to_d]
    smoothed_calm = smoothed_probabilities(first_fit, calm_future)[up_to_d]
    assert smoothed[-1, CRASH] - smoothed_calm[-1, CRASH] > 0.5  # measured 0.95


def test_one_month_equals_the_same_month_of_a_whole_window_run_bit_for_bit(
    first_fit: RegimeFit, benchmark: pl.DataFrame
) -> None:
    window_end = date(1997, 1, 1)
    month_start, month_end = date(1996, 9, 1), date(1996, 10, 1)
    burn_in = SETTINGS.filter_burn_in_sessions
    whole = hmm_regimes(first_fit, regime_inputs(benchmark, 20), FIRST_CUTOFF, window_end, burn_in)
    # The month's run loads only the documented look-back before the cut-off.
    lookback = regime_input_lookback_sessions(SETTINGS)
    before = benchmark.filter(pl.col("date") < FIRST_CUTOFF).tail(lookback)
    through_month = benchmark.filter(pl.col("date").is_between(FIRST_CUTOFF, month_end))
    month_inputs = regime_inputs(pl.concat([before, through_month]), 20)

    month = hmm_regimes(first_fit, month_inputs, month_start, month_end, burn_in)

    assert month.height == 20  # the sessions of September 1996
    assert month.columns == ["date", *PROB_COLUMNS, "hmm_label"]
    expected = whole.filter(pl.col("date").is_between(month_start, month_end, closed="left"))
    assert_frame_equal(month, expected, check_exact=True)


def test_hmm_regimes_cover_only_dates_from_the_cut_off_with_the_argmax_label(
    first_fit: RegimeFit, inputs: pl.DataFrame
) -> None:
    regimes = hmm_regimes(first_fit, inputs, date(1995, 1, 1), date(1996, 3, 1), 126)

    assert regimes["date"].min() >= FIRST_CUTOFF
    assert regimes["date"].max() < date(1996, 3, 1)
    probabilities = regimes.select(PROB_COLUMNS).to_numpy()
    expected = [REGIME_LABELS[k] for k in probabilities.argmax(axis=1)]
    assert regimes["hmm_label"].to_list() == expected


# --- fit records ----------------------------------------------------------------------------


def test_the_fit_trains_only_on_sessions_before_the_cut_off(
    first_fit: RegimeFit, inputs: pl.DataFrame
) -> None:
    before = inputs.filter(pl.col("date") < FIRST_CUTOFF)

    assert first_fit.n_obs == before.height
    assert first_fit.train_start == before["date"][0]
    assert first_fit.train_end == before["date"][-1] < FIRST_CUTOFF
    assert 1 <= first_fit.converged_restarts <= SETTINGS.restarts
    assert first_fit.log_likelihood is not None and math.isfinite(first_fit.log_likelihood)


def test_two_fits_of_the_same_inputs_and_settings_are_identical(inputs: pl.DataFrame) -> None:
    settings = RegimeSettings(restarts=2, train_window_sessions=750)
    first = fit_regime_model(inputs, date(1999, 1, 1), settings)
    second = fit_regime_model(inputs, date(1999, 1, 1), settings)

    assert first.status == "fitted"
    assert first.n_obs == 750
    assert first.to_json() == second.to_json()


def test_a_diagonal_covariance_fit_stores_full_form_covariances(inputs: pl.DataFrame) -> None:
    settings = RegimeSettings(restarts=1, covariance_type="diag", train_window_sessions=750)
    fit = fit_regime_model(inputs, date(1999, 1, 1), settings)

    covars = np.array(fit.params["covars"])
    assert covars.shape == (4, 2, 2)
    assert (covars[:, 0, 1] == 0).all() and (covars[:, 1, 0] == 0).all()
    assert filtered_probabilities(fit, inputs.tail(50)).shape == (50, 4)


def test_fit_params_round_trip_through_json_with_identical_probabilities(
    first_fit: RegimeFit, inputs: pl.DataFrame
) -> None:
    text = first_fit.to_json()
    restored = RegimeFit.from_json(text)

    assert restored == first_fit
    assert sorted(json.loads(text)["params"]["state_labels"]) == sorted(REGIME_LABELS)
    assert np.array_equal(
        filtered_probabilities(restored, inputs), filtered_probabilities(first_fit, inputs)
    )


def test_too_little_history_falls_back_with_the_reason(inputs: pl.DataFrame) -> None:
    cutoff = date(1991, 6, 1)
    available = inputs.filter(pl.col("date") < cutoff).height

    fit = fit_regime_model(inputs, cutoff, SETTINGS)

    assert fit.status == "fallback"
    assert fit.reason == f"too little history: {available} sessions < 500"
    assert fit.params == {} and fit.log_likelihood is None
    assert RegimeFit.from_json(fit.to_json()) == fit
    assert hmm_regimes(fit, inputs, cutoff, END, 126).is_empty()
    with pytest.raises(ValueError, match="fallback"):
        filtered_probabilities(fit, inputs)


def test_no_converged_restart_falls_back_with_the_reason(inputs: pl.DataFrame) -> None:
    # Ten EM iterations cannot improve the likelihood by less than 1e-12 per step.
    settings = RegimeSettings(restarts=2, n_iter=10, tol=1e-12, train_window_sessions=750)

    fit = fit_regime_model(inputs, date(1999, 1, 1), settings)

    assert fit.status == "fallback"
    assert fit.reason is not None and fit.reason.startswith("no restart converged")
    assert "restart 1 did not converge in 10 iterations" in fit.reason
    assert fit.converged_restarts == 0
