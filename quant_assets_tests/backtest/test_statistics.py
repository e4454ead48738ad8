"""Overfitting statistics: PSR, Deflated Sharpe (Bailey & López de Prado 2014), SPA / StepM."""

from __future__ import annotations

import math

import numpy as np
import pytest
from scipy import stats

from quant_assets.backtest.statistics import (
    DeflatedSharpe,
    deflated_sharpe_from_moments,
    deflated_sharpe_ratio,
    expected_max_sharpe,
    probabilistic_sharpe_from_moments,
    probabilistic_sharpe_ratio,
    reality_check,
)

EULER_GAMMA = 0.5772156649015329


def test_deflated_sharpe_reproduces_the_papers_numerical_example():
    # Bailey & López de Prado (2014): annualised SR 2.5 over 5 years of daily data
    # (T = 1250, 250 days a year), skewness -3, kurtosis 10, N = 100 trials whose annualised
    # Sharpe ratios have variance 1/2. Per period: SR = 2.5 / sqrt(250), V = 0.5 / 250.
    per_period_sharpe = 2.5 / math.sqrt(250)
    per_period_variance = 0.5 / 250
    assert expected_max_sharpe(100, per_period_variance) == pytest.approx(0.1132, abs=5e-5)
    dsr = deflated_sharpe_from_moments(
        per_period_sharpe,
        n_observations=1250,
        skewness=-3.0,
        kurtosis=10.0,
        n_trials=100,
        trial_sharpe_variance=per_period_variance,
    )
    assert dsr == pytest.approx(0.9004, abs=5e-5)


def test_expected_max_sharpe_is_the_euler_mascheroni_mix_of_normal_quantiles():
    # sqrt(4) * ((1 - γ) Φ⁻¹(1 - 1/10) + γ Φ⁻¹(1 - 1/(10 e)))
    expected = 2.0 * (
        (1 - EULER_GAMMA) * stats.norm.ppf(0.9)
        + EULER_GAMMA * stats.norm.ppf(1 - 1 / (10 * math.e))
    )
    assert expected_max_sharpe(10, 4.0) == pytest.approx(expected)
    assert expected_max_sharpe(1, 4.0) == 0.0  # one trial: nothing was selected
    assert expected_max_sharpe(50, 0.0) == 0.0  # identical trials


def test_psr_of_normal_returns_is_phi_of_the_sharpe_t_statistic():
    # Skew 0, kurtosis 3: z = SR sqrt(T - 1) / sqrt(1 + SR² / 2) = 0.1 * 10 / sqrt(1.005).
    psr = probabilistic_sharpe_from_moments(0.1, 101, skewness=0.0, kurtosis=3.0)
    assert psr == pytest.approx(stats.norm.cdf(1.0 / math.sqrt(1.005)))
    assert probabilistic_sharpe_from_moments(0.1, 101, 0.0, 3.0, benchmark_sharpe=0.1) == 0.5


def test_psr_penalises_negative_skew_and_fat_tails():
    normal = probabilistic_sharpe_from_moments(0.1, 252, 0.0, 3.0)
    assert probabilistic_sharpe_from_moments(0.1, 252, -2.0, 3.0) < normal
    assert probabilistic_sharpe_from_moments(0.1, 252, 0.0, 12.0) < normal


def test_psr_increases_with_the_sharpe_ratio():
    sharpes = np.linspace(-0.2, 0.2, 21)
    values = [probabilistic_sharpe_from_moments(s, 500, -0.5, 5.0) for s in sharpes]
    assert np.all(np.diff(values) > 0)
    rng = np.random.default_rng(5)
    noise = rng.normal(0.0, 0.01, 500)
    from_returns = [probabilistic_sharpe_ratio(noise + drift) for drift in (0.0, 0.0005, 0.001)]
    assert from_returns == sorted(from_returns)


def test_psr_of_returns_uses_the_sample_sharpe_skew_and_pearson_kurtosis():
    returns = np.array([0.01, -0.02, 0.015, 0.003, -0.004, 0.02, -0.01, 0.007])
    sharpe = returns.mean() / returns.std(ddof=1)
    expected = probabilistic_sharpe_from_moments(
        sharpe,
        8,
        skewness=stats.skew(returns),
        kurtosis=stats.kurtosis(returns, fisher=False),
        benchmark_sharpe=0.05,
    )
    assert probabilistic_sharpe_ratio(returns, benchmark_sharpe=0.05) == pytest.approx(expected)


def test_deflated_sharpe_with_one_trial_equals_the_psr_against_zero():
    rng = np.random.default_rng(11)
    returns = rng.standard_t(4, 750) * 0.01 + 0.0008
    deflated = deflated_sharpe_ratio(returns, n_trials=1, trial_sharpe_variance=0.3)
    assert deflated.expected_max_sharpe == 0.0
    assert deflated.deflated_sharpe == pytest.approx(probabilistic_sharpe_ratio(returns))


def test_deflated_sharpe_reports_its_moments_and_falls_with_more_trials():
    rng = np.random.default_rng(12)
    returns = rng.normal(0.001, 0.01, 1000)
    few = deflated_sharpe_ratio(returns, n_trials=2, trial_sharpe_variance=0.002)
    many = deflated_sharpe_ratio(returns, n_trials=200, trial_sharpe_variance=0.002)
    assert isinstance(few, DeflatedSharpe)
    assert few.sharpe == pytest.approx(returns.mean() / returns.std(ddof=1))
    assert few.skewness == pytest.approx(stats.skew(returns))
    assert few.kurtosis == pytest.approx(stats.kurtosis(returns, fisher=False))
    assert few.n_observations == 1000
    assert many.n_trials == 200
    assert many.expected_max_sharpe > few.expected_max_sharpe
    assert 0.0 <= many.deflated_sharpe < few.deflated_sharpe <= 1.0


def test_deflated_sharpe_refuses_bad_input():
    good = np.array([0.01, -0.02, 0.03, 0.0])
    with pytest.raises(ValueError, match="n_trials"):
        deflated_sharpe_ratio(good, n_trials=0, trial_sharpe_variance=0.1)
    with pytest.raises(ValueError, match="trial_sharpe_variance"):
        deflated_sharpe_ratio(good, n_trials=5, trial_sharpe_variance=-0.1)
    with pytest.raises(ValueError, match="returns contains NaN"):
        deflated_sharpe_ratio(np.array([0.01, np.nan, 0.0]), n_trials=5, trial_sharpe_variance=0.1)
    with pytest.raises(ValueError, match="zero variance"):
        probabilistic_sharpe_ratio(np.full(10, 0.001))
    with pytest.raises(ValueError, match="kurtosis"):
        probabilistic_sharpe_from_moments(0.5, 100, skewness=5.0, kurtosis=3.0)


def _benchmark_and_strategies(seed: int = 3, n: int = 500):
    """A benchmark, one strategy with a clear edge over it, and three with none."""
    rng = np.random.default_rng(seed)
    benchmark = rng.normal(0.0003, 0.01, n)

    def no_edge() -> np.ndarray:
        noise = rng.normal(0.0, 0.005, n)
        return benchmark + noise - noise.mean()  # exactly the benchmark's mean return

    edge = benchmark + 0.002 + rng.normal(0.0, 0.003, n)
    return benchmark, edge, np.column_stack([no_edge(), no_edge(), no_edge()])


def test_a_strategy_with_a_large_edge_has_a_small_p_value_and_is_superior():
    benchmark, edge, noise = _benchmark_and_strategies()
    result = reality_check(
        benchmark, np.column_stack([edge, noise]), ["edge", "n1", "n2", "n3"], reps=500
    )
    assert result.spa_pvalue_consistent < 0.01
    assert result.spa_pvalue_upper < 0.01
    assert result.superior == ("edge",)
    assert (result.reps, result.block_size) == (500, 10)


def test_strategies_without_an_edge_have_large_p_values_and_none_is_superior():
    benchmark, _, noise = _benchmark_and_strategies()
    worse = benchmark - 0.003  # clearly worse: only the conservative bound keeps it
    strategies = np.column_stack([noise, worse])
    result = reality_check(benchmark, strategies, ["n1", "n2", "n3", "worse"], reps=500)
    assert result.spa_pvalue_consistent > 0.3
    assert result.superior == ()
    assert result.spa_pvalue_lower <= result.spa_pvalue_consistent <= result.spa_pvalue_upper


def test_reality_check_works_with_a_single_strategy():
    benchmark, edge, noise = _benchmark_and_strategies()
    assert reality_check(benchmark, edge[:, None], ["edge"], reps=300).superior == ("edge",)
    alone = reality_check(benchmark, noise[:, :1], ["n1"], reps=300)
    assert alone.spa_pvalue_consistent > 0.3
    assert alone.superior == ()


def test_reality_check_is_deterministic_for_a_seed():
    benchmark, edge, noise = _benchmark_and_strategies()
    strategies = np.column_stack([edge * 0.2 + benchmark * 0.8, noise])
    names = ["weak", "n1", "n2", "n3"]
    first = reality_check(benchmark, strategies, names, reps=300, seed=7)
    again = reality_check(benchmark, strategies, names, reps=300, seed=7)
    assert first == again


def test_reality_check_refuses_bad_input():
    benchmark, edge, _ = _benchmark_and_strategies()
    with pytest.raises(ValueError, match="strategy_returns has 499 rows"):
        reality_check(benchmark, edge[:-1, None], ["edge"])
    with pytest.raises(ValueError, match="strategy_returns must be two-dimensional"):
        reality_check(benchmark, edge, ["edge"])
    with pytest.raises(ValueError, match="names has 2 entries"):
        reality_check(benchmark, edge[:, None], ["edge", "other"])
    with pytest.raises(ValueError, match="names has duplicates"):
        reality_check(benchmark, np.column_stack([edge, edge]), ["a", "a"])
    broken = edge.copy()
    broken[10] = np.nan
    with pytest.raises(ValueError, match="strategy_returns contains NaN"):
        reality_check(benchmark, broken[:, None], ["edge"])
    with pytest.raises(ValueError, match="benchmark_returns contains NaN"):
        reality_check(np.where(np.arange(500) == 3, np.nan, benchmark), edge[:, None], ["e"])
    with pytest.raises(ValueError, match="alpha"):
        reality_check(benchmark, edge[:, None], ["edge"], alpha=1.5)
    with pytest.raises(ValueError, match="2 \\* block_size"):
        reality_check(benchmark[:15], edge[:15, None], ["edge"], block_size=10)
