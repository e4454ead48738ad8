"""Allocators: mean-variance and risk parity under the caps of seed 003 §8.2, fallbacks."""

from __future__ import annotations

import cvxpy as cp
import numpy as np
import pytest

from quant_assets.risk import allocators
from quant_assets.risk.allocators import ALLOCATORS, AllocationResult, allocate

TOL = 1e-6
RC_RTOL = 1e-3  # CLARABEL's default tolerances give equal contributions to ~3e-4


def window(n_assets: int = 6, n_obs: int = 252, seed: int = 0) -> np.ndarray:
    """Daily returns with distinct volatilities and a common factor."""
    rng = np.random.default_rng(seed)
    vols = np.linspace(0.008, 0.02, n_assets)
    market = rng.normal(0, 0.006, size=(n_obs, 1))
    return market + rng.normal(0.0002, 1.0, size=(n_obs, n_assets)) * vols


def run(method: str, returns: np.ndarray, mu: np.ndarray, **overrides) -> AllocationResult:
    n = returns.shape[-1]
    kwargs: dict = {
        "previous_weights": np.zeros(n),
        "long_only": True,
        "max_weight": 0.3,
        "max_gross_leverage": 1.0,
        "max_gross_long": None,
        "max_gross_short": None,
        "max_turnover": None,
        "risk_aversion": 1.0,
    }
    kwargs.update(overrides)
    previous = kwargs.pop("previous_weights")
    return allocate(method, returns, mu, previous, **kwargs)


def risk_contributions(returns: np.ndarray, weights: np.ndarray) -> np.ndarray:
    return weights * (np.cov(returns, rowvar=False) @ weights)


def assert_caps(result: AllocationResult, previous: np.ndarray, **caps) -> None:
    w = result.weights
    lower = 0.0 if caps.get("long_only", True) else -caps["max_weight"]
    assert w.min() >= lower - TOL
    assert w.max() <= caps["max_weight"] + TOL
    assert np.abs(w).sum() <= caps["max_gross_leverage"] + TOL
    if caps.get("max_gross_long") is not None:
        assert np.maximum(w, 0).sum() <= caps["max_gross_long"] + TOL
    if caps.get("max_gross_short") is not None:
        assert -np.minimum(w, 0).sum() <= caps["max_gross_short"] + TOL
    if caps.get("max_turnover") is not None:
        assert np.abs(w - previous).sum() <= caps["max_turnover"] + TOL


def test_allocator_names_match_the_settings_choices():
    assert ALLOCATORS == ("kelly", "mean_variance", "risk_parity")


def test_mean_variance_long_only_respects_every_cap_and_the_turnover_limit():
    returns = window()
    mu = np.array([6e-4, 5e-4, 4e-4, 3e-4, -1e-4, 2e-4])
    previous = np.array([0.0, 0.0, 0.1, 0.2, 0.3, 0.0])
    caps = {"max_weight": 0.3, "max_gross_leverage": 0.9, "max_turnover": 0.5}
    result = run("mean_variance", returns, mu, previous_weights=previous, **caps)
    assert result.status == "optimal"
    assert result.weights.shape == (6,)
    assert_caps(result, previous, **caps)
    # The limits bind: this much expected return wants more than 0.5 of turnover.
    assert np.abs(result.weights - previous).sum() == pytest.approx(0.5, abs=1e-5)


def test_mean_variance_long_short_respects_gross_long_short_name_and_turnover():
    returns = window(8, seed=1)
    mu = np.array([8e-4, 6e-4, 4e-4, 2e-4, -2e-4, -4e-4, -6e-4, -8e-4])
    previous = np.array([0.1, 0.1, 0.0, 0.0, 0.0, 0.0, -0.1, -0.1])
    caps = {
        "long_only": False,
        "max_weight": 0.2,
        "max_gross_leverage": 0.9,
        "max_gross_long": 0.6,
        "max_gross_short": 0.4,
        "max_turnover": 0.7,
    }
    result = run("mean_variance", returns, mu, previous_weights=previous, **caps)
    assert result.status == "optimal"
    assert_caps(result, previous, **caps)
    w = result.weights
    assert w[:2].min() > 0 and w[-2:].max() < 0  # the strongest views on their own side
    assert np.abs(w).sum() == pytest.approx(0.9, abs=1e-5)  # gross binds (0.6 + 0.4 > 0.9)


def test_mean_variance_tilts_toward_the_higher_expected_return_at_equal_risk():
    rng = np.random.default_rng(3)
    a = rng.normal(0, 0.01, 252)
    returns = np.column_stack([a, rng.permutation(a)])  # identical variance
    mu = np.array([2e-4, 1e-4])
    result = run("mean_variance", returns, mu, max_weight=1.0, risk_aversion=5.0)
    w = result.weights
    assert result.status == "optimal"
    assert w[0] > w[1] + 0.01
    swapped = run("mean_variance", returns, mu[::-1].copy(), max_weight=1.0, risk_aversion=5.0)
    assert swapped.weights[1] > swapped.weights[0] + 0.01


def test_mean_variance_uses_the_given_expected_returns_not_the_sample_mean():
    rng = np.random.default_rng(4)
    returns = rng.normal(0, 0.01, size=(252, 2))
    returns[:, 0] += 0.01  # sample mean strongly favours name 0
    result = run("mean_variance", returns, np.array([-1e-4, 3e-4]), max_weight=1.0)
    assert result.weights[0] == pytest.approx(0.0, abs=TOL)
    assert result.weights[1] > 0.1


def test_higher_risk_aversion_lowers_ex_ante_variance():
    returns = window(5, seed=5)
    mu = np.array([5e-4, 4e-4, 3e-4, 2e-4, 1e-4])
    cov = np.cov(returns, rowvar=False)
    variances = []
    for risk_aversion in (1.0, 20.0, 200.0):
        w = run("mean_variance", returns, mu, max_weight=1.0, risk_aversion=risk_aversion).weights
        variances.append(float(w @ cov @ w))
    assert variances[0] > variances[1] > variances[2]


def test_risk_parity_equalises_risk_over_the_positive_names():
    returns = window(6, seed=6)
    mu = np.array([3e-4, 1e-4, -2e-4, 5e-4, 0.0, 2e-4])
    result = run("risk_parity", returns, mu, max_weight=1.0, max_gross_leverage=0.8)
    w = result.weights
    assert result.status == "optimal"
    positive = mu > 0
    assert np.all(w[~positive] == 0)
    assert np.all(w[positive] > 0)
    assert w.sum() == pytest.approx(0.8, abs=1e-9)
    contributions = risk_contributions(returns, w)[positive]
    np.testing.assert_allclose(contributions, contributions.mean(), rtol=RC_RTOL)
    # Lower volatility -> larger weight (columns are ordered by volatility).
    assert w[0] > w[1] > w[3] > w[5]


def test_risk_parity_long_short_signs_by_expected_return_and_respects_side_caps():
    returns = window(6, seed=7)
    mu = np.array([3e-4, -1e-4, 2e-4, -5e-4, 1e-4, -2e-4])
    caps = {
        "long_only": False,
        "max_weight": 1.0,
        "max_gross_leverage": 1.0,
        "max_gross_long": 0.6,
        "max_gross_short": 0.3,
    }
    result = run("risk_parity", returns, mu, **caps)
    w = result.weights
    assert np.array_equal(np.sign(w), np.sign(mu))
    assert_caps(result, np.zeros(6), **caps)
    contributions = risk_contributions(returns, w)
    np.testing.assert_allclose(contributions, contributions.mean(), rtol=RC_RTOL)


def test_risk_parity_name_cap_holds_and_the_excess_stays_invested():
    returns = window(6, seed=8)
    mu = np.full(6, 1e-4)
    result = run("risk_parity", returns, mu, max_weight=0.2, max_gross_leverage=1.0)
    w = result.weights
    assert w.max() <= 0.2 + 1e-12
    assert w.sum() == pytest.approx(1.0, abs=1e-9)  # 6 x 0.2 >= 1: the gross is kept
    uncapped = run("risk_parity", returns, mu, max_weight=1.0).weights
    assert uncapped.max() > 0.2  # so the cap did bind


def test_risk_parity_turnover_moves_only_part_of_the_way():
    returns = window(4, seed=9)
    mu = np.full(4, 1e-4)
    previous = np.array([0.25, 0.25, 0.25, 0.25])
    target = run("risk_parity", returns, mu, max_weight=1.0).weights
    result = run(
        "risk_parity", returns, mu, max_weight=1.0, previous_weights=previous, max_turnover=0.05
    )
    assert result.status == "optimal"
    assert "turnover" in (result.reason or "")
    assert np.abs(result.weights - previous).sum() == pytest.approx(0.05, abs=1e-9)
    step = (result.weights - previous) / (target - previous)
    np.testing.assert_allclose(step, step[0], rtol=1e-9)


@pytest.mark.parametrize("method", ["mean_variance", "risk_parity"])
def test_infeasible_turnover_falls_back_to_the_previous_weights_clipped(method):
    returns = window(4, seed=10)
    mu = np.full(4, 2e-4)
    previous = np.array([0.9, 0.1, 0.0, 0.0])  # 0.6 above the name cap
    result = run(method, returns, mu, previous_weights=previous, max_weight=0.3, max_turnover=0.1)
    assert result.status == "fallback"
    assert result.reason
    np.testing.assert_array_equal(result.weights, [0.3, 0.1, 0.0, 0.0])


def test_fallback_clips_sides_and_gross_onto_their_caps():
    returns = window(4, seed=11)
    previous = np.array([0.5, 0.5, -0.5, -0.1])
    result = run(
        "mean_variance",
        returns,
        np.full(4, 1e-4),
        previous_weights=previous,
        long_only=False,
        max_weight=0.4,
        max_gross_leverage=0.9,
        max_gross_long=0.6,
        max_gross_short=0.4,
        max_turnover=0.01,
    )
    assert result.status == "fallback"
    w = result.weights
    assert w.max() <= 0.4 and np.maximum(w, 0).sum() <= 0.6 + 1e-12
    assert -np.minimum(w, 0).sum() <= 0.4 + 1e-12 and np.abs(w).sum() <= 0.9 + 1e-12


def test_a_solver_error_gives_a_fallback_naming_it(monkeypatch):
    def broken(self, X, y=None, **params):
        raise cp.error.SolverError("numerical trouble")

    monkeypatch.setattr(allocators.MeanRisk, "fit", broken)
    previous = np.array([0.2, 0.1, 0.0])
    result = run("mean_variance", window(3), np.full(3, 1e-4), previous_weights=previous)
    assert result.status == "fallback"
    assert "SolverError" in (result.reason or "") and "numerical trouble" in (result.reason or "")
    np.testing.assert_array_equal(result.weights, previous)


@pytest.mark.parametrize(
    ("change", "argument"),
    [
        ({"method": "markowitz"}, "method"),
        ({"method": "kelly"}, "method"),
        ({"returns": np.zeros(10)}, "window_returns"),
        ({"returns": np.full((10, 3), np.nan)}, "window_returns"),
        ({"returns": np.zeros((1, 3))}, "window_returns"),
        ({"mu": np.zeros(4)}, "expected_returns"),
        ({"mu": np.array([0.0, np.inf, 0.0])}, "expected_returns"),
        ({"previous_weights": np.zeros((3, 1))}, "previous_weights"),
        ({"previous_weights": np.array([0.0, np.nan, 0.0])}, "previous_weights"),
        ({"max_weight": 0.0}, "max_weight"),
        ({"max_gross_leverage": -1.0}, "max_gross_leverage"),
        ({"max_gross_short": -0.1}, "max_gross_short"),
        ({"risk_aversion": float("nan")}, "risk_aversion"),
    ],
)
def test_bad_arguments_raise_naming_the_argument(change, argument):
    change = dict(change)
    method = change.pop("method", "mean_variance")
    returns = change.pop("returns", window(3))
    mu = change.pop("mu", np.full(3, 1e-4))
    with pytest.raises(ValueError, match=argument):
        run(method, returns, mu, **change)


@pytest.mark.parametrize("method", ["mean_variance", "risk_parity"])
def test_same_input_gives_bit_identical_weights(method):
    returns = window(10, seed=12)
    mu = np.linspace(-3e-4, 5e-4, 10)
    caps = {
        "long_only": False,
        "max_weight": 0.15,
        "max_gross_long": 0.6,
        "max_gross_short": 0.4,
        "max_turnover": 0.5,
        "previous_weights": np.linspace(-0.05, 0.05, 10),
    }
    first = run(method, returns, mu, **caps)
    second = run(method, returns.copy(), mu.copy(), **caps)
    assert first.status == second.status == "optimal"
    assert first.weights.tobytes() == second.weights.tobytes()
