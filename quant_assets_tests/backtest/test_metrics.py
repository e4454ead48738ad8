"""Performance metrics: hand-computed values on tiny series, agreement with empyrical."""

from __future__ import annotations

import math

import empyrical
import numpy as np
import polars as pl
import pytest

from quant_assets.backtest.metrics import (
    bucket_labels,
    drawdown_series,
    performance_metrics,
    pnl_by_group,
    rolling_sharpe,
    signal_buckets,
)

# Four days: +10 %, -5 %, +2 %, flat.
TINY = np.array([0.10, -0.05, 0.02, 0.0])
# mean = 0.07 / 4 = 0.0175; deviations 0.0825, -0.0675, 0.0025, -0.0175;
# sum of squares = 0.00680625 + 0.00455625 + 0.00000625 + 0.00030625 = 0.011675.
TINY_STD = math.sqrt(0.011675 / 3)


def test_total_return_compounds_the_daily_returns():
    metrics = performance_metrics(TINY)
    assert metrics["total_return"] == pytest.approx(1.10 * 0.95 * 1.02 * 1.00 - 1)  # 0.0659


def test_annualized_return_is_the_cagr_over_252_days_a_year():
    metrics = performance_metrics(TINY)
    assert metrics["annualized_return"] == pytest.approx(1.0659 ** (252 / 4) - 1)


def test_annualized_volatility_is_the_sample_std_times_sqrt_252():
    metrics = performance_metrics(TINY)
    assert metrics["annualized_volatility"] == pytest.approx(TINY_STD * math.sqrt(252))


def test_sharpe_equals_hand_computed_value_on_tiny_series():
    metrics = performance_metrics(TINY)
    assert metrics["sharpe"] == pytest.approx(0.0175 / TINY_STD * math.sqrt(252))


def test_sharpe_subtracts_the_daily_share_of_the_annual_risk_free_rate():
    metrics = performance_metrics(TINY, risk_free_annual=0.0252)  # 0.0001 a day
    assert metrics["sharpe"] == pytest.approx((0.0175 - 0.0001) / TINY_STD * math.sqrt(252))


def test_sortino_is_annual_mean_over_annual_downside_deviation_over_all_days():
    # Downside deviation: sqrt((0 + 0.05² + 0 + 0) / 4) = 0.025 (all four days in the mean).
    metrics = performance_metrics(TINY)
    assert metrics["sortino"] == pytest.approx(0.0175 * 252 / (0.025 * math.sqrt(252)))


def test_max_drawdown_is_the_worst_fall_from_the_running_peak_of_wealth():
    # Wealth 1.10, 1.045, 1.0659, 1.0659: worst is 1.045 / 1.10 - 1 = -5 %.
    metrics = performance_metrics(TINY)
    assert metrics["max_drawdown"] == pytest.approx(-0.05)
    assert metrics["calmar"] == pytest.approx((1.0659 ** (252 / 4) - 1) / 0.05)


def test_drawdown_series_counts_a_first_day_loss_from_the_starting_wealth():
    np.testing.assert_allclose(drawdown_series(np.array([-0.10, 0.05])), [-0.10, -0.055])
    np.testing.assert_allclose(
        drawdown_series(TINY), [0.0, -0.05, 1.0659 / 1.1 - 1, 1.0659 / 1.1 - 1]
    )


def test_win_rate_counts_positive_days_among_days_that_moved():
    # Three non-zero days, two of them positive; the flat day is ignored.
    assert performance_metrics(TINY)["win_rate"] == pytest.approx(2 / 3)
    assert math.isnan(performance_metrics(np.zeros(3))["win_rate"])


def test_turnover_and_gross_exposure_are_daily_averages():
    metrics = performance_metrics(
        TINY,
        turnover=np.array([0.5, 0.1, 0.2, 0.0]),
        gross_exposure=np.array([1.0, 1.0, 0.5, 0.5]),
    )
    assert metrics["average_daily_turnover"] == pytest.approx(0.8 / 4)
    assert metrics["average_gross_exposure"] == pytest.approx(3.0 / 4)
    assert math.isnan(performance_metrics(TINY)["average_daily_turnover"])


def test_benchmark_metrics_of_a_levered_benchmark_plus_a_constant_edge():
    benchmark = np.array([0.01, -0.01, 0.02, 0.0])
    strategy = 2 * benchmark + 0.001
    metrics = performance_metrics(strategy, benchmark_returns=benchmark)
    # Benchmark: mean 0.005, deviations ±0.005, ±0.015, sum of squares 0.0005.
    benchmark_std = math.sqrt(0.0005 / 3)
    assert metrics["beta"] == pytest.approx(2.0)
    assert metrics["alpha_annualized"] == pytest.approx(1.001**252 - 1)
    # Active return = benchmark + 0.001: mean 0.006, same std as the benchmark.
    assert metrics["information_ratio"] == pytest.approx(0.006 / benchmark_std * math.sqrt(252))
    assert metrics["tracking_error_annualized"] == pytest.approx(benchmark_std * math.sqrt(252))
    assert metrics["benchmark_total_return"] == pytest.approx(1.01 * 0.99 * 1.02 - 1)
    assert metrics["benchmark_sharpe"] == pytest.approx(0.005 / benchmark_std * math.sqrt(252))


def test_without_a_benchmark_no_benchmark_keys_are_reported():
    assert "beta" not in performance_metrics(TINY)


def test_without_losses_sortino_and_calmar_are_nan_not_infinite():
    metrics = performance_metrics(np.array([0.01, 0.02, 0.0]))
    assert math.isnan(metrics["sortino"])  # empyrical: inf
    assert math.isnan(metrics["calmar"])  # empyrical: nan as well
    assert metrics["max_drawdown"] == 0.0


def test_a_wiped_out_account_has_an_annualized_return_of_minus_one():
    assert performance_metrics(np.array([0.1, -1.2, 0.0]))["annualized_return"] == -1.0


@pytest.mark.parametrize("risk_free_annual", [0.0, 0.02])
def test_metrics_agree_with_empyrical_on_a_seeded_1000_day_series(risk_free_annual):
    rng = np.random.default_rng(20240601)
    benchmark = rng.normal(0.0003, 0.01, 1000)
    returns = 0.6 * benchmark + rng.standard_t(5, 1000) * 0.006 + 0.0002
    daily_rf = risk_free_annual / 252
    metrics = performance_metrics(
        returns, benchmark_returns=benchmark, risk_free_annual=risk_free_annual
    )
    alpha, beta = empyrical.alpha_beta(returns, benchmark, risk_free=daily_rf)
    expected = {
        "sharpe": empyrical.sharpe_ratio(returns, risk_free=daily_rf),
        "sortino": empyrical.sortino_ratio(returns, required_return=daily_rf),
        "max_drawdown": empyrical.max_drawdown(returns),
        "annualized_return": empyrical.annual_return(returns),
        "annualized_volatility": empyrical.annual_volatility(returns),
        "calmar": empyrical.calmar_ratio(returns),
        "total_return": empyrical.cum_returns_final(returns),
        "benchmark_total_return": empyrical.cum_returns_final(benchmark),
        "benchmark_sharpe": empyrical.sharpe_ratio(benchmark, risk_free=daily_rf),
        "alpha_annualized": alpha,
        "beta": beta,
    }
    for name, value in expected.items():
        assert metrics[name] == pytest.approx(float(value), rel=1e-10), name


def test_rolling_sharpe_is_nan_until_the_window_is_full_then_the_window_sharpe():
    returns = np.array([0.01, 0.02, -0.01, 0.0, 0.03])
    rolled = rolling_sharpe(returns, window=3)
    assert np.isnan(rolled[:2]).all()
    for end in range(2, 5):
        window = returns[end - 2 : end + 1]
        assert rolled[end] == pytest.approx(window.mean() / window.std(ddof=1) * math.sqrt(252))
    np.testing.assert_allclose(rolled[2:], empyrical.roll_sharpe_ratio(returns, 3), rtol=1e-12)


def test_rolling_sharpe_of_a_series_shorter_than_the_window_is_all_nan():
    assert np.isnan(rolling_sharpe(np.array([0.01, 0.02]), window=126)).all()


def test_pnl_by_group_sums_averages_counts_and_shares_positive_days_per_group():
    pnl = pl.DataFrame(
        {
            "regime_label": ["bull", "bear", "bull", "bear", "bull"],
            "pnl": [10.0, -4.0, -2.0, 1.0, 3.0],
        }
    )
    table = pnl_by_group(pnl, "regime_label", "pnl")
    assert table.to_dicts() == [
        {"regime_label": "bear", "total": -3.0, "mean": -1.5, "count": 2, "share_positive": 0.5},
        {
            "regime_label": "bull",
            "total": 11.0,
            "mean": pytest.approx(11 / 3),
            "count": 3,
            "share_positive": pytest.approx(2 / 3),
        },
    ]


def test_pnl_by_group_refuses_missing_columns_and_nulls():
    with pytest.raises(ValueError, match="value_column 'x'"):
        pnl_by_group(pl.DataFrame({"g": ["a"], "v": [1.0]}), "g", "x")
    pnl = pl.DataFrame({"g": ["a", None], "v": [1.0, 2.0]})
    with pytest.raises(ValueError, match="group_column 'g' has null"):
        pnl_by_group(pnl, "g", "v")
    with pytest.raises(ValueError, match="NaN"):
        pnl_by_group(pl.DataFrame({"g": ["a"], "v": [float("nan")]}), "g", "v")


def test_signal_buckets_split_pooled_scores_into_equal_quantile_groups_in_order():
    scores = pl.Series([5.0, 1.0, 9.0, 3.0, 7.0, 2.0, 10.0, 4.0, 8.0, 6.0])
    buckets = signal_buckets(scores, n_buckets=5)
    assert buckets.name == "signal_bucket"
    # Ranks 1-2 → Q1, 3-4 → Q2, ..., 9-10 → Q5, in the input order.
    assert buckets.to_list() == [
        "Q3",
        "Q1 (lowest)",
        "Q5 (highest)",
        "Q2",
        "Q4",
        "Q1 (lowest)",
        "Q5 (highest)",
        "Q2",
        "Q4",
        "Q3",
    ]


def test_equal_scores_share_a_bucket():
    buckets = signal_buckets(pl.Series([1.0, 2.0, 2.0, 2.0, 3.0, 4.0]), n_buckets=3)
    assert len(set(buckets.to_list()[1:4])) == 1


def test_bucket_labels_sort_in_quantile_order_even_past_nine_buckets():
    scores = pl.Series(np.arange(20, dtype=float))
    table = pnl_by_group(
        pl.DataFrame({"bucket": signal_buckets(scores, 10), "pnl": scores}), "bucket", "pnl"
    )
    assert table["bucket"].cast(pl.Utf8).to_list() == bucket_labels(10)
    assert bucket_labels(10)[-1] == "Q10 (highest)"


def test_signal_buckets_refuse_bad_input():
    with pytest.raises(ValueError, match="n_buckets"):
        signal_buckets(pl.Series([1.0, 2.0]), n_buckets=1)
    with pytest.raises(ValueError, match="empty"):
        signal_buckets(pl.Series([], dtype=pl.Float64))
    with pytest.raises(ValueError, match="null"):
        signal_buckets(pl.Series([1.0, None]))
    with pytest.raises(ValueError, match="NaN"):
        signal_buckets(pl.Series([1.0, float("nan")]))


def test_performance_metrics_refuses_bad_input():
    with pytest.raises(ValueError, match="daily_returns needs at least 2"):
        performance_metrics(np.array([0.01]))
    with pytest.raises(ValueError, match="daily_returns contains NaN"):
        performance_metrics(np.array([0.01, np.nan]))
    with pytest.raises(ValueError, match="benchmark_returns has 3 values"):
        performance_metrics(TINY, benchmark_returns=np.zeros(3))
    with pytest.raises(ValueError, match="turnover has 2 values"):
        performance_metrics(TINY, turnover=np.zeros(2))
    with pytest.raises(ValueError, match="gross_exposure contains NaN"):
        performance_metrics(TINY, gross_exposure=np.array([1.0, np.nan, 1.0, 1.0]))
    with pytest.raises(ValueError, match="periods_per_year"):
        performance_metrics(TINY, periods_per_year=0)
