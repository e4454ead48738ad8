"""Statistics that count every trial: CSCV PBO, effective trials, degradation, vol-matching.

No installed library implements the CSCV PBO (skfolio has no PBO; pypbo and mlfinlab are not
installed), so the vectorised PBO is checked against a hand-computed S = 4 example and
against a direct loop over the combinations written from the paper.
"""

from __future__ import annotations

import hashlib
import itertools
import math
import time

import numpy as np
import pytest
from scipy import stats

from quant_assets.backtest.overfitting import (
    effective_trials,
    in_out_of_sample_degradation,
    probability_of_backtest_overfitting,
    selection_reality_check,
    trial_hash,
    volatility_matched,
)
from quant_assets.backtest.statistics import reality_check

# Four blocks of one row each, three trials (metric "mean"; IS/OOS means over 2 blocks):
#   A = [4, 3, 0, 0]  good early      B = [1, 1, 1, 1]  steady      C = [0, 0, 2, 3]  good late
# IS blocks  IS means (A, B, C)  selected  OOS means (A, B, C)  OOS rank of selected  λ
#   {0,1}      3.5, 1, 0           A         0, 1, 2.5            1                     ln(1/3)
#   {0,2}      2,   1, 1           A         1.5, 1, 1.5          2.5 (tied with C)     ln(5/3)
#   {0,3}      2,   1, 1.5         A         1.5, 1, 1            3                     ln 3
#   {1,2}      1.5, 1, 1           A         2, 1, 1.5            3                     ln 3
#   {1,3}      1.5, 1, 1.5         A (first of the tie A, C)      2, 1, 1   3           ln 3
#   {2,3}      0,   1, 2.5         C         3.5, 1, 0            1                     ln(1/3)
# ω̄ = rank / (N + 1) = rank / 4; PBO = 2 of 6 logits <= 0 = 1/3.
HAND_MATRIX = np.array(
    [
        [4.0, 1.0, 0.0],
        [3.0, 1.0, 0.0],
        [0.0, 1.0, 2.0],
        [0.0, 1.0, 3.0],
    ]
)
HAND_LOGITS = [math.log(1 / 3), math.log(5 / 3), math.log(3), math.log(3), math.log(3)]
HAND_LOGITS.append(math.log(1 / 3))


def _pbo_by_direct_loop(returns: np.ndarray, n_partitions: int, metric: str) -> np.ndarray:
    """The paper's procedure, one combination at a time: rows (λ, IS, OOS, selected)."""
    n_obs, n_trials = returns.shape
    kept = returns[n_obs % n_partitions :]
    blocks = np.split(kept, n_partitions)

    def evaluate(rows: np.ndarray) -> np.ndarray:
        if metric == "mean":
            return rows.mean(axis=0)
        return rows.mean(axis=0) / rows.std(axis=0, ddof=1)

    results = []
    for in_sample_blocks in itertools.combinations(range(n_partitions), n_partitions // 2):
        in_sample = evaluate(np.concatenate([blocks[i] for i in in_sample_blocks]))
        out_of_sample = evaluate(
            np.concatenate([blocks[i] for i in range(n_partitions) if i not in in_sample_blocks])
        )
        best = int(np.argmax(in_sample))
        relative_rank = stats.rankdata(out_of_sample)[best] / (n_trials + 1)
        logit = math.log(relative_rank / (1 - relative_rank))
        results.append((logit, in_sample[best], out_of_sample[best], best))
    return np.array(results)


def test_pbo_on_a_hand_built_four_block_matrix_is_one_third():
    result = probability_of_backtest_overfitting(HAND_MATRIX, n_partitions=4, metric="mean")
    assert result.pbo == pytest.approx(1 / 3)
    np.testing.assert_allclose(result.logits, HAND_LOGITS)
    np.testing.assert_array_equal(result.selected_trial, [0, 0, 0, 0, 0, 2])
    np.testing.assert_allclose(result.in_sample_metric, [3.5, 2, 2, 1.5, 1.5, 2.5])
    np.testing.assert_allclose(result.out_of_sample_metric, [0, 1.5, 1.5, 2, 2, 0])
    assert (result.n_partitions, result.n_combinations, result.n_trials) == (4, 6, 3)
    assert (result.block_length, result.n_dropped_rows) == (1, 0)


def test_pbo_drops_the_remainder_rows_at_the_start():
    outlier_first = np.vstack([[0.0, 0.0, 100.0], HAND_MATRIX])
    result = probability_of_backtest_overfitting(outlier_first, n_partitions=4, metric="mean")
    assert (result.n_dropped_rows, result.n_observations_used) == (1, 4)
    assert result.pbo == pytest.approx(1 / 3)
    np.testing.assert_allclose(result.logits, HAND_LOGITS)


@pytest.mark.parametrize("metric", ["sharpe", "mean"])
@pytest.mark.parametrize("n_partitions", [2, 4, 8])
def test_vectorised_pbo_equals_a_direct_loop_over_the_combinations(n_partitions, metric):
    returns = np.random.default_rng(1).normal(0.0003, 0.01, (503, 37))
    expected = _pbo_by_direct_loop(returns, n_partitions, metric)
    result = probability_of_backtest_overfitting(returns, n_partitions, metric)
    np.testing.assert_allclose(result.logits, expected[:, 0], rtol=1e-12)
    np.testing.assert_allclose(result.in_sample_metric, expected[:, 1], rtol=1e-10)
    np.testing.assert_allclose(result.out_of_sample_metric, expected[:, 2], rtol=1e-10)
    np.testing.assert_array_equal(result.selected_trial, expected[:, 3].astype(int))
    assert result.pbo == pytest.approx(np.mean(expected[:, 0] <= 0))


def test_there_is_one_logit_per_combination_of_half_the_blocks():
    returns = np.random.default_rng(2).normal(0.0, 0.01, (1000, 20))
    for n_partitions in (2, 6, 10, 16):
        result = probability_of_backtest_overfitting(returns, n_partitions)
        assert result.n_combinations == math.comb(n_partitions, n_partitions // 2)
        assert result.logits.shape == (result.n_combinations,)
    assert probability_of_backtest_overfitting(returns).n_combinations == 12_870


def test_pure_noise_trials_overfit_about_half_the_time():
    returns = np.random.default_rng(3).normal(0.0, 0.01, (2000, 200))
    assert 0.35 <= probability_of_backtest_overfitting(returns).pbo <= 1.0
    # Across noise draws the PBO is centred on one half (any one draw varies a lot: the
    # combinations share their data).
    draws = [
        probability_of_backtest_overfitting(
            np.random.default_rng(seed).normal(0.0, 0.01, (1000, 100)), n_partitions=8
        ).pbo
        for seed in range(10)
    ]
    assert 0.4 <= np.mean(draws) <= 0.6


def test_one_trial_with_a_true_drift_among_noise_is_not_overfit():
    returns = np.random.default_rng(11).normal(0.0, 0.01, (4000, 100))
    returns[:, 37] += 0.001  # 0.1 % a day: per-period Sharpe 0.1
    result = probability_of_backtest_overfitting(returns)
    assert result.pbo < 0.1
    assert np.mean(result.selected_trial == 37) > 0.9
    assert result.degradation.oos_loss_probability < 0.1
    assert result.degradation.mean_out_of_sample > 0.05


def test_identical_trials_tie_and_share_the_average_rank():
    column = np.random.default_rng(4).normal(0.0, 0.01, 400)
    result = probability_of_backtest_overfitting(np.column_stack([column] * 3), n_partitions=4)
    # The first of the tied trials is selected; all three tie out of sample: rank 2 of 3.
    np.testing.assert_array_equal(result.selected_trial, 0)
    np.testing.assert_allclose(result.logits, 0.0, atol=1e-15)
    assert result.pbo == 1.0


def test_a_flat_trial_has_a_sharpe_of_zero_where_it_did_not_trade():
    returns = np.random.default_rng(5).normal(-0.01, 0.01, (400, 4))  # losing trials
    returns[:200, 3] = 0.0  # trial 3 does not trade in the first half
    result = probability_of_backtest_overfitting(returns, n_partitions=2)
    # Combination 0 takes block 0 in sample: flat beats losing, with a Sharpe of exactly 0.
    assert result.selected_trial[0] == 3
    assert result.in_sample_metric[0] == 0.0
    assert np.isfinite(result.logits).all()


def test_a_constant_return_half_counts_as_zero_variance_not_as_an_infinite_sharpe():
    returns = np.random.default_rng(5).normal(0.0, 0.01, (400, 4))
    returns[:200, 3] = 0.0001  # a cash-like first half: its std is only rounding noise
    result = probability_of_backtest_overfitting(returns, n_partitions=2)
    assert result.selected_trial[0] != 3 or result.in_sample_metric[0] == 0.0
    assert np.abs(result.in_sample_metric).max() < 1.0


def test_pbo_of_a_thousand_trials_over_seven_thousand_days_takes_seconds():
    returns = np.random.default_rng(13).normal(0.0, 0.01, (7000, 1000))
    started = time.perf_counter()
    result = probability_of_backtest_overfitting(returns, n_partitions=16)
    elapsed_seconds = time.perf_counter() - started
    assert result.n_combinations == 12_870
    assert (result.block_length, result.n_dropped_rows) == (437, 8)
    assert elapsed_seconds < 20.0  # ~1 s on one core; generous for a shared machine


def test_pbo_reports_the_degradation_of_the_selected_trials_metric():
    returns = np.random.default_rng(6).normal(0.0, 0.01, (800, 30))
    result = probability_of_backtest_overfitting(returns, n_partitions=8)
    expected = in_out_of_sample_degradation(result.in_sample_metric, result.out_of_sample_metric)
    assert result.degradation == expected
    assert result.degradation.n_pairs == result.n_combinations


def test_pbo_refuses_bad_input():
    returns = np.random.default_rng(7).normal(0.0, 0.01, (100, 5))
    with pytest.raises(ValueError, match="two-dimensional"):
        probability_of_backtest_overfitting(returns[:, 0])
    with pytest.raises(ValueError, match="at least 2 trials"):
        probability_of_backtest_overfitting(returns[:, :1])
    broken = returns.copy()
    broken[10, 2] = np.nan
    with pytest.raises(ValueError, match="NaN or infinite values \\(first at row 10, trial 2\\)"):
        probability_of_backtest_overfitting(broken)
    with pytest.raises(ValueError, match="even and at least 2"):
        probability_of_backtest_overfitting(returns, n_partitions=5)
    with pytest.raises(ValueError, match="even and at least 2"):
        probability_of_backtest_overfitting(returns, n_partitions=0)
    with pytest.raises(ValueError, match="must be an integer"):
        probability_of_backtest_overfitting(returns, n_partitions=4.0)  # type: ignore[arg-type]
    with pytest.raises(ValueError, match="fewer than n_partitions = 16"):
        probability_of_backtest_overfitting(returns[:10])
    with pytest.raises(ValueError, match="Sharpe metric needs at least 2"):
        probability_of_backtest_overfitting(returns[:3], n_partitions=2)
    with pytest.raises(ValueError, match="metric must be one of"):
        probability_of_backtest_overfitting(returns, 4, metric="sortino")  # type: ignore[arg-type]


def test_degradation_fits_oos_on_is_and_counts_oos_losses():
    in_sample = np.array([1.0, 2.0, 3.0, 4.0])
    out_of_sample = np.array([0.5, -0.5, 0.0, -1.0])  # least squares: 0.75 - 0.4 x
    result = in_out_of_sample_degradation(in_sample, out_of_sample)
    fit = stats.linregress(in_sample, out_of_sample)
    assert result.mean_in_sample == 2.5
    assert result.mean_out_of_sample == -0.25
    assert result.ratio == pytest.approx(-0.1)
    assert result.slope == pytest.approx(fit.slope) == pytest.approx(-0.4)
    assert result.intercept == pytest.approx(fit.intercept) == pytest.approx(0.75)
    assert result.r_squared == pytest.approx(fit.rvalue**2) == pytest.approx(0.64)
    assert result.oos_loss_probability == 0.5
    assert result.n_pairs == 4


def test_degradation_without_spread_in_sample_has_no_slope():
    result = in_out_of_sample_degradation(np.zeros(3), np.array([1.0, -1.0, 2.0]))
    assert math.isnan(result.slope) and math.isnan(result.r_squared)
    assert math.isnan(result.ratio)  # mean IS of 0


def test_degradation_refuses_bad_input():
    with pytest.raises(ValueError, match="is_metric has 3 values, oos_metric has 2"):
        in_out_of_sample_degradation(np.ones(3), np.ones(2))
    with pytest.raises(ValueError, match="oos_metric contains NaN"):
        in_out_of_sample_degradation(np.ones(2), np.array([1.0, np.nan]))
    with pytest.raises(ValueError, match="at least 2 values"):
        in_out_of_sample_degradation(np.ones(1), np.ones(1))


def test_noisy_copies_of_three_independent_series_make_three_clusters():
    rng = np.random.default_rng(5)
    series = rng.normal(0.0, 0.01, (1000, 3))
    trials = np.repeat(series, 10, axis=1) + rng.normal(0.0, 0.0005, (1000, 30))
    result = effective_trials(trials)
    assert (result.n_trials, result.n_clusters) == (30, 3)
    np.testing.assert_array_equal(result.labels, np.repeat([0, 1, 2], 10))
    np.testing.assert_array_equal(result.cluster_sizes, [10, 10, 10])
    np.testing.assert_allclose(result.cluster_returns[:, 1], trials[:, 10:20].mean(axis=1))
    cluster_sharpe = result.cluster_returns.mean(axis=0) / result.cluster_returns.std(
        axis=0, ddof=1
    )
    np.testing.assert_allclose(result.cluster_sharpe, cluster_sharpe)
    assert result.cluster_sharpe_variance == pytest.approx(np.var(cluster_sharpe, ddof=1))


def test_identical_trials_collapse_to_one_cluster():
    series = np.random.default_rng(6).normal(0.0, 0.01, 500)
    result = effective_trials(np.column_stack([series] * 25))
    assert result.n_clusters == 1
    np.testing.assert_array_equal(result.labels, 0)
    assert result.cluster_sharpe_variance == 0.0
    np.testing.assert_allclose(result.cluster_returns[:, 0], series)


def test_independent_trials_stay_separate_trials():
    result = effective_trials(np.random.default_rng(7).normal(0.0, 0.01, (1000, 50)))
    assert result.n_clusters == 50


def test_the_correlation_threshold_decides_what_counts_as_the_same_bet():
    rng = np.random.default_rng(8)
    common = rng.normal(0.0, 0.01, 2000)
    # Two trials correlated about 0.64 (common factor with weight 0.8, own noise 0.6).
    trials = np.column_stack([0.8 * common + 0.6 * rng.normal(0.0, 0.01, 2000) for _ in range(2)])
    assert effective_trials(trials, min_correlation=0.5).n_clusters == 1
    assert effective_trials(trials, min_correlation=0.8).n_clusters == 2
    # A trial and its mirror image are opposite bets, far apart.
    assert effective_trials(np.column_stack([common, -common])).n_clusters == 2


def test_effective_trials_refuses_bad_input():
    returns = np.random.default_rng(9).normal(0.0, 0.01, (100, 4))
    flat = returns.copy()
    flat[:, 2] = 0.001
    with pytest.raises(ValueError, match="trials \\[2\\] have zero variance"):
        effective_trials(flat)
    with pytest.raises(ValueError, match="at least 2 trials"):
        effective_trials(returns[:, :1])
    with pytest.raises(ValueError, match="min_correlation must be in"):
        effective_trials(returns, min_correlation=1.0)
    with pytest.raises(ValueError, match="at least 3 rows"):
        effective_trials(returns[:2])
    with pytest.raises(ValueError, match="NaN"):
        effective_trials(np.where(returns > 0.02, np.inf, returns))


def test_volatility_matched_benchmark_has_the_strategys_volatility():
    rng = np.random.default_rng(10)
    benchmark = rng.normal(0.0005, 0.012, 750)
    strategy = rng.normal(0.0002, 0.003, 750)
    matched = volatility_matched(benchmark, strategy)
    assert np.std(matched, ddof=1) == pytest.approx(np.std(strategy, ddof=1))
    np.testing.assert_allclose(matched / benchmark, np.std(strategy, ddof=1) / 0.012, rtol=0.1)
    assert np.corrcoef(matched, benchmark)[0, 1] == pytest.approx(1.0)


def test_volatility_matched_refuses_bad_input():
    with pytest.raises(ValueError, match="zero volatility"):
        volatility_matched(np.full(10, 0.001), np.linspace(-0.01, 0.01, 10))
    with pytest.raises(ValueError, match="benchmark_returns has 10 values, strategy_returns"):
        volatility_matched(np.linspace(-0.01, 0.01, 10), np.ones(9))
    with pytest.raises(ValueError, match="strategy_returns contains NaN"):
        volatility_matched(np.linspace(-0.01, 0.01, 3), np.array([0.0, np.nan, 1.0]))


def _index_and_low_volatility_strategy() -> tuple[np.ndarray, np.ndarray]:
    """An index at 0.05 %/day mean, 1.2 % vol, and a strategy at 0.03 %/day, ~0.28 % vol."""
    rng = np.random.default_rng(12)
    index_noise = rng.normal(0.0, 0.012, 2500)
    index = index_noise - index_noise.mean() + 0.0005
    own_noise = rng.normal(0.0, 0.0015, 2500)
    strategy = 0.2 * index_noise + own_noise - own_noise.mean() + 0.0003
    return index, strategy


def test_a_low_volatility_strategy_loses_on_raw_return_but_wins_at_equal_risk():
    index, strategy = _index_and_low_volatility_strategy()
    result = selection_reality_check(index, strategy, ["low_vol"], reps=500)
    assert result.raw_pvalue > 0.5  # lower mean return than the 1× index
    assert result.raw.superior == ()
    assert result.volatility_matched_pvalue < 0.01  # better than the index at its volatility
    assert result.volatility_matched.superior == ("low_vol",)
    assert result.volatility_scales[0] == pytest.approx(
        np.std(strategy, ddof=1) / np.std(index, ddof=1)
    )
    summary = result.summary()
    assert f"{result.raw_pvalue:.3f}" in summary
    assert f"{result.volatility_matched_pvalue:.3f}" in summary


def test_the_matched_check_of_one_strategy_is_the_reality_check_against_the_scaled_index():
    index, strategy = _index_and_low_volatility_strategy()
    result = selection_reality_check(index, strategy[:, None], ["low_vol"], reps=300, seed=3)
    direct = reality_check(
        volatility_matched(index, strategy), strategy[:, None], ["low_vol"], reps=300, seed=3
    )
    assert result.volatility_matched.spa_pvalue_consistent == pytest.approx(
        direct.spa_pvalue_consistent
    )
    assert result.volatility_matched.spa_pvalue_upper == pytest.approx(direct.spa_pvalue_upper)
    assert result.volatility_matched.superior == direct.superior
    assert result.raw == reality_check(index, strategy[:, None], ["low_vol"], reps=300, seed=3)


def test_every_trial_is_matched_to_its_own_volatility():
    index, strategy = _index_and_low_volatility_strategy()
    levered = 3.0 * strategy
    result = selection_reality_check(
        index, np.column_stack([strategy, levered]), ["low_vol", "levered"], reps=300
    )
    low, high = result.volatility_scales
    assert high == pytest.approx(3.0 * low)
    assert result.raw.names == result.volatility_matched.names == ("low_vol", "levered")
    # Leverage raises the mean above the index's, so the levered trial wins on raw return too.
    assert "levered" in result.raw.superior
    assert set(result.volatility_matched.superior) == {"low_vol", "levered"}


def test_selection_reality_check_refuses_mismatched_names():
    index, strategy = _index_and_low_volatility_strategy()
    with pytest.raises(ValueError, match="names has 2 entries"):
        selection_reality_check(index, strategy, ["a", "b"], reps=10)


def test_trial_hash_is_the_sha256_of_the_canonical_json():
    config = {
        "signal": "momentum",
        "universe": ["SPY", "QQQ"],
        "threshold": 0.1,
        "lookback_days": 20.0,
        "risk": {"target_vol_annualized": 0.05, "max_leverage": 2},
    }
    canonical = (
        '{"lookback_days":20,"risk":{"max_leverage":2,"target_vol_annualized":0.05},'
        '"signal":"momentum","threshold":0.1,"universe":["SPY","QQQ"]}'
    )
    expected = hashlib.sha256(canonical.encode()).hexdigest()[:16]
    assert trial_hash(config) == expected == "f870b3f2b2c00010"  # ledger keys must not move


def test_trial_hash_ignores_key_order_and_number_spelling():
    first = {"lookback_days": 20, "risk": {"max_leverage": 1.0, "stop": 0.10}}
    second = {"risk": {"stop": float("0.1"), "max_leverage": 1}, "lookback_days": 20.0}
    assert trial_hash(first) == trial_hash(second)
    assert trial_hash({"weights": (1, 2)}) == trial_hash({"weights": [1.0, 2.0]})
    assert trial_hash({"n": np.int64(3), "x": np.float64(0.5)}) == trial_hash({"n": 3, "x": 0.5})
    digest = trial_hash(first)
    assert len(digest) == 16 and all(c in "0123456789abcdef" for c in digest)


def test_trial_hash_tells_different_configurations_apart():
    assert trial_hash({"weights": [1, 2]}) != trial_hash({"weights": [2, 1]})  # order kept
    assert trial_hash({"flag": True}) != trial_hash({"flag": 1})
    assert trial_hash({"x": 0.1}) != trial_hash({"x": 0.10000001})
    assert trial_hash({"x": "1"}) != trial_hash({"x": 1})
    assert trial_hash({"x": None}) != trial_hash({})


def test_trial_hash_refuses_what_has_no_canonical_form():
    with pytest.raises(ValueError, match=r"config\.risk\.stop is not finite"):
        trial_hash({"risk": {"stop": float("nan")}})
    with pytest.raises(ValueError, match="config key 1 at config is not a string"):
        trial_hash({1: "a"})  # type: ignore[dict-item]
    with pytest.raises(ValueError, match=r"config\.tickers has type set"):
        trial_hash({"tickers": {"SPY", "QQQ"}})
    with pytest.raises(ValueError, match="config must be a mapping"):
        trial_hash([("a", 1)])  # type: ignore[arg-type]
