"""The numba sizing engine sizes every trial as ``size_positions`` does (kelly allocator, fresh
book), and its GPD fit is scipy's.

The market is small and seeded: 8 tickers × 650 sessions of fat-tailed returns with a crash
(sessions 330-380) followed by a calm spell, 2 % missing closes, a ticker listing at session
150, 5 % missing alphas, and regimes cycling through bull, choppy, bear and crash. Each
parameter case below is built so that the paths it is named after are taken, and the test
asserts that they were (from the reference rows' reason codes and breaker states) before
comparing: target weights, paper returns, risk scales and turnovers to 1e-9 (absolute) and the
breaker states exactly.

Why 1e-9 holds with room to spare: the engine repeats NumPy's arithmetic operation for
operation (pairwise sums, the BLAS calls NumPy makes, scipy's Nelder-Mead), so on this machine
the results are bit-identical. The one function it cannot repeat is NumPy's SVML ``log`` (on
AVX-512 machines) of the scale inside the GPD likelihood; the engine uses libm's, which rounds
about 1 argument in 1,000 to the neighbouring double. That moves a likelihood by ~1e-15 and
changes the fit only if Nelder-Mead then compares two values closer than that, which is why
the GPD comparison below allows 1e-6 (the brief's tolerance; a changed branch would move the
fit by up to the optimiser's own 1e-4 tolerance, far more) rather than asserting equal bits.
"""

from __future__ import annotations

import json
from datetime import date, timedelta
from functools import cache
from pathlib import Path

import numpy as np
import polars as pl
import pytest
from scipy import stats

from quant_assets.names import REGIME_NAMES
from quant_assets.risk import PositionState, fit_gpd_tail, portfolio_tail_risk, size_positions
from quant_assets.risk.measures import _normal_quantile
from quant_assets.risk.positions import BREAKER_STATES
from quant_assets.risk.sizing_kernel import (
    TRIAL_PARAMETERS,
    SizedTrials,
    SizingInputs,
    fit_gpd_tail_numba,
    pairwise_sum_nb,
    portfolio_tail_risk_nb,
    quantile_nb,
    sample_std_nb,
    size_trials,
    sizing_inputs,
    trial_parameters,
)
from quant_assets.settings import StrategySettings, load_settings

CONFIGS = Path(__file__).resolve().parents[2] / "configs"
N_TICKERS, N_SESSIONS, START_SESSION = 8, 650, 120
TOLERANCE = 1e-9


def _market(seed: int = 5) -> tuple[pl.DataFrame, pl.DataFrame, pl.DataFrame, list[str], list]:
    rng = np.random.default_rng(seed)
    days = [date(2020, 1, 1) + timedelta(days=i) for i in range(N_SESSIONS * 7 // 5 + 10)]
    days = [d for d in days if d.weekday() < 5][:N_SESSIONS]
    tickers = [f"T{i}" for i in range(N_TICKERS)]
    returns = rng.standard_t(4, size=(N_SESSIONS, N_TICKERS)) * 0.01 + 0.0004
    returns[330:380] = rng.normal(-0.012, 0.03, size=(50, N_TICKERS))  # the crash
    returns[380:470] = rng.normal(0.0005, 0.003, size=(90, N_TICKERS))  # the calm after it
    close = 100 * np.exp(np.cumsum(returns, axis=0))
    close[rng.random(close.shape) < 0.02] = np.nan
    close[:150, 0] = np.nan  # T0 lists at session 150
    grid = {"date": [d for d in days for _ in tickers], "ticker": tickers * N_SESSIONS}
    closes = pl.DataFrame({**grid, "close": close.ravel()}).filter(pl.col("close").is_not_nan())
    scores = rng.uniform(-0.6, 1.0, size=(N_SESSIONS, N_TICKERS))
    scores[rng.random(scores.shape) < 0.05] = np.nan
    alpha = (
        pl.DataFrame({**grid, "alpha_score": scores.ravel(), "confidence": 1.0})
        .filter(pl.col("alpha_score").is_not_nan())
        .with_columns(pl.col("confidence").cast(pl.Float64))
    )
    cycle = ("bull", "choppy", "bull", "bear", "bull", "crash")
    labels = [cycle[(i // 25) % len(cycle)] for i in range(N_SESSIONS)]
    regimes = pl.DataFrame({"date": days, "regime_label": labels})
    return closes, alpha, regimes, tickers, days


CLOSES, ALPHA, REGIMES, TICKERS, DAYS = _market()
START = DAYS[START_SESSION]
# A second alpha: the first one flipped and shrunk, for trials that vary the alpha.
ALPHA_FLIPPED = ALPHA.with_columns(-0.5 * pl.col("alpha_score"))


def strategy(sizing: dict | None = None, risk: dict | None = None) -> StrategySettings:
    return StrategySettings.model_validate(
        {
            "name": "trial",
            "alpha": {"weights": {r: {"trend_alpha": 1.0} for r in REGIME_NAMES}},
            "sizing": sizing or {},
            "risk": risk or {},
        }
    )


AGGRESSIVE = {
    "max_weight": 0.5,
    "max_gross_leverage": 2.0,
    "target_volatility": 0.6,
    "kelly_fraction": 1.0,
    "information_coefficient": 0.3,
}
# name -> (settings, reason-code prefixes and breaker states its reference must show).
CASES: dict[str, tuple[StrategySettings, set[str], set[str]]] = {
    "guard_freeze_recovery": (
        strategy(
            AGGRESSIVE,
            {
                "drawdown": {"guard_start": 0.04, "max_drawdown": 0.08, "kill_switch": None},
                "circuit_breakers": {
                    "freeze_vol_multiple": 0.1,
                    "cooldown_sessions": 5,
                    "recovery_vol_multiple": 0.2,
                    "sessions_per_stage": 3,
                },
                "var": {"limit": 0.08, "cvar_limit": 0.1},
            },
        ),
        {
            "DRAWDOWN_GUARD",
            "BREAKER_FREEZE",
            "BREAKER_FROZEN",
            "RECOVERY_STAGE_1",
            "RECOVERY_STAGE_4",
            "RECOVERY_COMPLETE",
            "GROSS_CAP",
            "NAME_CAP",
            "VOL_TARGET",
            "TURNOVER_LIMIT",
            "TURNOVER_WAIVED",
            "REGIME_CRASH",
            "NO_ALPHA",
            "NO_VOLATILITY_HISTORY",
        },
        {"normal", "frozen", "recovery"},
    ),
    "kill_switch": (
        strategy(
            AGGRESSIVE,
            {
                "drawdown": {"guard_start": 0.05, "max_drawdown": 0.1, "kill_switch": 0.15},
                "circuit_breakers": {"freeze_vol_multiple": 50},
                "var": {"limit": 0.1, "cvar_limit": 0.15},
            },
        ),
        {"KILL_SWITCH", "DRAWDOWN_GUARD"},
        {"normal", "killed"},
    ),
    "long_short_var_evt_defensive": (
        strategy(
            {**AGGRESSIVE, "max_turnover": 0.3, "long_only": False},
            {
                "var": {"limit": 0.012, "cvar_limit": 0.015, "historical_weight": 0.2},
                "evt": {"refit_every_sessions": 5},
                "drawdown": {"kill_switch": None},
            },
        ),
        {"VAR", "CVAR_EVT", "CVAR_HYBRID", "EVT_UNAVAILABLE", "BREAKER_DEFENSIVE"},
        {"normal", "defensive"},
    ),
    "no_turnover_limit_no_evt": (
        strategy(
            {"max_turnover": None, "volatility_window": 20, "risk_free_rate": 0.0},
            {"evt": {"enabled": False}, "var": {"window_sessions": 60, "confidence": 0.99}},
        ),
        {"KELLY", "VOL_TARGET", "NAME_CAP"},
        {"normal"},
    ),
}


@cache
def inputs(flipped: bool = False) -> SizingInputs:
    return sizing_inputs(
        ALPHA_FLIPPED if flipped else ALPHA, CLOSES, REGIMES, start=START, tickers=TICKERS
    )


@cache
def reference(name: str, flipped: bool = False) -> pl.DataFrame:
    """``size_positions`` rows of a case (or a shipped strategy) from a fresh book."""
    settings = shipped()[name] if name in shipped() else CASES[name][0]
    alpha = ALPHA_FLIPPED if flipped else ALPHA
    return size_positions(
        alpha, CLOSES, REGIMES, settings, start=START, state=PositionState(), tickers=TICKERS
    ).rows


@cache
def shipped() -> dict[str, StrategySettings]:
    return load_settings(CONFIGS).strategies


def assert_sized_alike(sized: SizedTrials, trial: int, rows: pl.DataFrame) -> None:
    n_dates = sized.target_weight.shape[1]
    per_date = rows.group_by("date", maintain_order=True).first()
    np.testing.assert_allclose(
        sized.target_weight[trial],
        rows["target_weight"].to_numpy().reshape(n_dates, N_TICKERS),
        rtol=0,
        atol=TOLERANCE,
    )
    for column in ("paper_return", "risk_scale", "turnover"):
        np.testing.assert_allclose(
            getattr(sized, column)[trial],
            per_date[column].to_numpy(),
            rtol=0,
            atol=TOLERANCE,
            err_msg=column,
        )
    states = [BREAKER_STATES[code] for code in sized.breaker_state[trial]]
    assert states == per_date["breaker_state"].to_list()


def reason_prefixes(rows: pl.DataFrame) -> set[str]:
    return {
        code.split(":")[0] for codes in rows["reason_codes"].unique() for code in json.loads(codes)
    }


def run(params: np.ndarray, **kwargs) -> SizedTrials:  # type: ignore[no-untyped-def]
    data = inputs()
    return size_trials(
        data.returns,
        data.decision_index,
        data.regime_code,
        kwargs.pop("alpha_scores", data.alpha_scores),
        params,
        **kwargs,
    )


def test_the_market_is_column_major_as_size_positions_builds_it():
    # The engine follows NumPy's memory order; size_positions gets its arrays from polars.
    assert inputs().returns.flags.f_contiguous and not inputs().returns.flags.c_contiguous


@pytest.mark.parametrize("name", ["hybrid_alpha", "mean_reversion_only", "trend_only"])
def test_the_shipped_strategies_are_sized_as_size_positions_sizes_them(name):
    assert name in shipped()
    sized = run(trial_parameters(shipped()[name]), parallel=False)
    assert_sized_alike(sized, 0, reference(name))


@pytest.mark.parametrize("name", list(CASES))
def test_every_overlay_and_breaker_path_is_sized_as_size_positions_sizes_it(name):
    settings, codes, states = CASES[name]
    rows = reference(name)
    assert codes <= reason_prefixes(rows), f"{name} does not take {codes - reason_prefixes(rows)}"
    assert states <= set(rows["breaker_state"]), name
    assert_sized_alike(run(trial_parameters(settings), parallel=False), 0, rows)


def test_the_evt_tail_is_refitted_and_used():
    rows = reference("long_short_var_evt_defensive")
    assert rows["evt_es_95"].is_not_null().any()
    assert rows["evt_shape"].drop_nulls().n_unique() > 10  # refitted every 5 sessions


def test_many_trials_in_one_parallel_call_equal_their_own_references():
    names = [*shipped(), *CASES]
    settings = [shipped()[n] if n in shipped() else CASES[n][0] for n in names]
    params = np.vstack([trial_parameters(s) for s in settings] * 2)
    alphas = np.stack([inputs().alpha_scores, inputs(flipped=True).alpha_scores])
    alpha_index = np.repeat([0, 1], len(names))
    out = SizedTrials.allocate(len(params) + 3, len(inputs().dates), N_TICKERS)  # room to spare
    sized = run(params, alpha_scores=alphas, alpha_index=alpha_index, out=out, parallel=True)
    assert sized.target_weight.shape[0] == len(params)
    for trial, name in enumerate(names * 2):
        assert_sized_alike(sized, trial, reference(name, flipped=trial >= len(names)))
    serial = run(params, alpha_scores=alphas, alpha_index=alpha_index, parallel=False)
    assert np.array_equal(serial.target_weight, sized.target_weight)


def test_the_buffers_are_reused_batch_after_batch():
    params = np.vstack([trial_parameters(CASES[n][0]) for n in CASES])
    out = SizedTrials.allocate(2, len(inputs().dates), N_TICKERS)
    first = run(params[:2], out=out, parallel=False)
    assert np.shares_memory(first.target_weight, out.target_weight)
    second = run(params[2:], out=out, parallel=False)
    assert np.shares_memory(second.target_weight, out.target_weight)
    assert_sized_alike(second, 1, reference(list(CASES)[3]))


def _samples() -> dict[str, np.ndarray]:
    rng = np.random.default_rng(11)
    return {
        "student_t3": rng.standard_t(3, 252),
        "normal": rng.normal(0, 0.01, 500),
        "exponential": rng.exponential(1.0, 300) - 0.5,
        "uniform_bounded_tail": rng.uniform(-1, 1, 400),
        "pareto_heavy": stats.genpareto.rvs(0.6, size=1000, random_state=3),
        "cauchy": rng.standard_cauchy(300),
        "skewed_book": -(rng.standard_t(4, (252, 6)) * 0.01) @ np.full(6, 0.15),
        "too_few_exceedances": rng.normal(size=60),
        "constant": np.full(100, 0.01),
        "one_loss": np.array([0.02]),
    }


@pytest.mark.parametrize("name", list(_samples()))
@pytest.mark.parametrize(("confidence", "threshold_quantile"), [(0.95, 0.9), (0.99, 0.95)])
def test_the_gpd_fit_equals_scipys(name, confidence, threshold_quantile):
    losses = _samples()[name]
    expected = fit_gpd_tail(losses, confidence, threshold_quantile, 10)
    got = fit_gpd_tail_numba(losses, confidence, threshold_quantile, 10)
    assert (got is None) == (expected is None)
    if expected is None or got is None:
        assert name in {"too_few_exceedances", "constant", "one_loss", "cauchy"}
        return
    assert got.shape == pytest.approx(expected.shape, abs=1e-6)
    assert got.expected_shortfall == pytest.approx(expected.expected_shortfall, abs=1e-6)
    assert got.scale == pytest.approx(expected.scale, abs=1e-6)
    assert got.threshold == expected.threshold  # no optimiser involved: exact
    assert got.tail_fraction == expected.tail_fraction


def test_the_gpd_fit_refuses_none_in_the_same_cases_as_scipy():
    samples = _samples()
    assert fit_gpd_tail_numba(samples["constant"], 0.95, 0.9, 10) is None
    assert fit_gpd_tail_numba(samples["too_few_exceedances"], 0.95, 0.9, 10) is None
    with pytest.raises(ValueError, match="finite"):
        fit_gpd_tail_numba(np.array([0.1, np.nan]), 0.95, 0.9, 10)


def test_sums_stds_quantiles_and_tail_risk_are_numpys_to_the_bit():
    rng = np.random.default_rng(2)
    for count in [1, 2, 7, 8, 9, 20, 127, 128, 129, 252, 300, 1000, 2520]:
        values = rng.standard_t(3, count) * 0.01
        assert pairwise_sum_nb(values, 0, count) == np.sum(values)
        if count > 1:
            assert sample_std_nb(values, count) == np.std(values, ddof=1)
        for q in (0.5, 0.9, 0.95, 0.99):
            assert quantile_nb(values, count, q, np.empty(count)) == np.quantile(values, q)
    window = rng.standard_t(4, (252, 6)) * 0.01
    weights = rng.normal(0, 0.1, 6)
    expected = portfolio_tail_risk(window, weights, 0.95, 0.6)
    z, density = _normal_quantile(0.95)
    got = portfolio_tail_risk_nb(window @ weights, 252, 0.95, 0.6, z, density, np.empty(504))
    assert got == (expected.var_hybrid, expected.cvar_hybrid, expected.volatility_daily)


def test_an_optimiser_allocator_is_refused_naming_the_key():
    with pytest.raises(ValueError, match=r"sizing\.allocator"):
        trial_parameters(strategy({"allocator": "risk_parity"}))


def test_the_parameter_row_names_its_columns():
    row = trial_parameters(strategy({"max_turnover": None}, {"drawdown": {"kill_switch": None}}))
    assert row.shape == (len(TRIAL_PARAMETERS),)
    values = dict(zip(TRIAL_PARAMETERS, row, strict=True))
    assert np.isnan(values["max_turnover"]) and np.isnan(values["drawdown_kill_switch"])
    assert values["regime_multiplier_crash"] == 0.0 and values["long_only"] == 1.0
    assert values["breaker_recovery_stage_5"] == 1.0
    assert np.isnan(values["breaker_recovery_stage_6"])


def test_bad_inputs_are_refused_naming_the_argument():
    data = inputs()
    row = trial_parameters(shipped()["trend_only"])
    with pytest.raises(ValueError, match="params"):
        run(row[:-1])
    bad_window = row.copy()
    bad_window[TRIAL_PARAMETERS.index("volatility_window")] = 1.5
    with pytest.raises(ValueError, match="volatility_window"):
        run(bad_window)
    with pytest.raises(ValueError, match="regime_code"):
        size_trials(data.returns, data.decision_index, data.regime_code + 4, data.alpha_scores, row)
    with pytest.raises(ValueError, match="decision_index"):
        size_trials(
            data.returns, data.decision_index[::-1], data.regime_code, data.alpha_scores, row
        )
    with pytest.raises(ValueError, match="alpha_scores"):
        size_trials(
            data.returns, data.decision_index, data.regime_code, data.alpha_scores[:, :3], row
        )
    with pytest.raises(ValueError, match="alpha_index"):
        run(np.vstack([row, row, row]), alpha_scores=np.stack([data.alpha_scores] * 2))
