"""Tail measures of a proposed book: hybrid VaR/CVaR and the generalised Pareto tail."""

from __future__ import annotations

import numpy as np
import pytest
from scipy import stats

from quant_assets.risk import fit_gpd_tail, portfolio_tail_risk


def test_historical_var_and_cvar_are_the_empirical_quantile_and_the_mean_beyond_it():
    returns = np.array([[-0.05], [-0.03], [-0.01], [0.0], [0.01], [0.02]] * 10)
    risk = portfolio_tail_risk(returns, np.array([1.0]), confidence=0.9, historical_weight=1.0)
    losses = -returns[:, 0]
    var = np.quantile(losses, 0.9)
    assert risk.var_historical == pytest.approx(var)
    assert risk.cvar_historical == pytest.approx(losses[losses >= var].mean())
    assert risk.var_hybrid == pytest.approx(risk.var_historical)


def test_parametric_var_is_z_sigma_and_the_hybrid_weights_both():
    rng = np.random.default_rng(1)
    returns = rng.normal(0, 0.01, size=(252, 3))
    weights = np.array([0.5, 0.3, 0.2])
    risk = portfolio_tail_risk(returns, weights, confidence=0.95, historical_weight=0.6)
    sigma = np.sqrt(weights @ np.cov(returns, rowvar=False) @ weights)
    assert risk.var_parametric == pytest.approx(1.6448536 * sigma, rel=1e-6)
    assert risk.cvar_parametric == pytest.approx(sigma * stats.norm.pdf(1.6448536) / 0.05, 1e-6)
    assert risk.var_hybrid == pytest.approx(0.6 * risk.var_historical + 0.4 * risk.var_parametric)


def test_every_measure_scales_with_the_book():
    rng = np.random.default_rng(2)
    returns = rng.standard_t(4, size=(252, 4)) * 0.01
    weights = np.array([0.1, 0.2, -0.1, 0.3])
    one = portfolio_tail_risk(returns, weights, 0.95, 0.6)
    two = portfolio_tail_risk(returns, 2 * weights, 0.95, 0.6)
    assert two.var_hybrid == pytest.approx(2 * one.var_hybrid)
    assert two.cvar_hybrid == pytest.approx(2 * one.cvar_hybrid)


def test_nan_returns_are_refused():
    with pytest.raises(ValueError, match="finite"):
        portfolio_tail_risk(np.array([[np.nan], [0.01]]), np.array([1.0]), 0.95, 0.6)


def test_gpd_tail_recovers_a_known_shape_and_its_shortfall_exceeds_the_threshold():
    sample = stats.genpareto.rvs(0.25, scale=1.0, size=20_000, random_state=7)
    tail = fit_gpd_tail(sample, confidence=0.99, threshold_quantile=0.9, min_exceedances=20)
    assert tail is not None
    # Exceedances of a GPD over a threshold are GPD with the same shape.
    assert tail.shape == pytest.approx(0.25, abs=0.05)
    assert tail.expected_shortfall > tail.threshold
    standardised = sample / sample.std(ddof=1)
    assert tail.expected_shortfall == pytest.approx(
        standardised[standardised >= np.quantile(standardised, 0.99)].mean(), rel=0.1
    )


def test_gpd_tail_needs_enough_exceedances_and_a_spread():
    assert fit_gpd_tail(np.arange(50.0), 0.95, 0.9, min_exceedances=20) is None
    assert fit_gpd_tail(np.zeros(500), 0.95, 0.9, min_exceedances=20) is None
