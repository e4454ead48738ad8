"""Overfitting statistics: the Probabilistic and Deflated Sharpe Ratios, and the SPA test.

- **PSR** (Bailey & López de Prado, 2012): the probability that the true Sharpe ratio exceeds
  a benchmark, given the sample Sharpe, the sample size and the skewness and kurtosis of the
  returns.
- **DSR** (Bailey & López de Prado, 2014, "The Deflated Sharpe Ratio: Correcting for
  Selection Bias, Backtest Overfitting and Non-Normality"): the PSR against the Sharpe ratio
  the best of ``n_trials`` unskilled strategies is expected to reach,
  ``SR0 = sqrt(V) ((1 - γ) Φ⁻¹(1 - 1/N) + γ Φ⁻¹(1 - 1/(N e)))``, γ the Euler–Mascheroni
  constant and V the variance of the trials' Sharpe ratios.
- **SPA / reality check** (White 2000, Hansen 2005) and the stepwise **StepM** (Romano &
  Wolf 2005) through :mod:`arch.bootstrap`: does any strategy beat the benchmark once the
  search over all strategies is accounted for, and which ones do.

All Sharpe ratios here are **per period** (not annualised): an annual Sharpe ``S`` over
daily data is ``S / sqrt(periods_per_year)`` per period, and an annual variance of Sharpe
ratios ``V`` is ``V / periods_per_year``. Sample Sharpe ratios use the sample standard
deviation (ddof=1); skewness and kurtosis are the (biased) sample moments of
``scipy.stats.skew`` and ``scipy.stats.kurtosis(fisher=False)`` (Pearson, normal = 3).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
from arch.bootstrap import SPA, StepM
from scipy import stats

EULER_MASCHERONI = float(np.euler_gamma)


@dataclass(frozen=True)
class DeflatedSharpe:
    """The Deflated Sharpe Ratio of one return series and the moments it used.

    ``deflated_sharpe`` is a probability in [0, 1]; ``sharpe`` and ``expected_max_sharpe``
    (SR0) are per period; ``kurtosis`` is Pearson's (normal = 3).
    """

    deflated_sharpe: float
    sharpe: float
    expected_max_sharpe: float
    n_trials: int
    skewness: float
    kurtosis: float
    n_observations: int


@dataclass(frozen=True)
class RealityCheck:
    """Hansen's SPA p-values of the best strategy against the benchmark, and StepM's verdict.

    ``spa_pvalue_consistent`` is Hansen's SPA p-value, ``spa_pvalue_lower`` its liberal
    bound, ``spa_pvalue_upper`` its conservative bound (= White's reality check p-value).
    ``superior`` names the strategies StepM finds better than the benchmark with the
    familywise error rate controlled at ``alpha`` (in the order they were given).
    """

    spa_pvalue_consistent: float
    spa_pvalue_lower: float
    spa_pvalue_upper: float
    superior: tuple[str, ...]
    names: tuple[str, ...]
    alpha: float
    reps: int
    block_size: int


def _finite_returns(returns: np.ndarray, name: str) -> np.ndarray:
    array = np.asarray(returns, dtype=np.float64)
    if array.ndim != 1:
        raise ValueError(f"{name} must be one-dimensional, got shape {array.shape}")
    if array.size < 3:
        raise ValueError(f"{name} needs at least 3 observations, got {array.size}")
    if not np.all(np.isfinite(array)):
        raise ValueError(f"{name} contains NaN or infinite values")
    if np.all(array == array[0]):
        raise ValueError(f"{name} has zero variance: its Sharpe ratio is undefined")
    return array


def _sample_moments(returns: np.ndarray) -> tuple[float, float, float]:
    """Per-period Sharpe (ddof=1), skewness and Pearson kurtosis of ``returns``."""
    sharpe = float(np.mean(returns) / np.std(returns, ddof=1))
    skewness = float(stats.skew(returns))
    kurtosis = float(stats.kurtosis(returns, fisher=False))
    return sharpe, skewness, kurtosis


def probabilistic_sharpe_from_moments(
    sharpe: float,
    n_observations: int,
    skewness: float,
    kurtosis: float,
    benchmark_sharpe: float = 0.0,
) -> float:
    """PSR: ``Φ((SR − SR*) √(T − 1) / sqrt(1 − γ3 SR + (γ4 − 1)/4 SR²))``.

    ``sharpe`` and ``benchmark_sharpe`` (SR*) are per period, ``kurtosis`` is Pearson's
    (normal = 3). Returns a probability in [0, 1]. Refuses ``n_observations < 2``,
    non-finite inputs, and moments for which the variance term is not positive (impossible
    for moments of a real sample, where γ4 ≥ 1 + γ3²).
    """
    inputs = {
        "sharpe": sharpe,
        "skewness": skewness,
        "kurtosis": kurtosis,
        "benchmark_sharpe": benchmark_sharpe,
    }
    for name, value in inputs.items():
        if not np.isfinite(value):
            raise ValueError(f"{name} must be finite, got {value}")
    if n_observations < 2:
        raise ValueError(f"n_observations must be at least 2, got {n_observations}")
    variance_term = 1.0 - skewness * sharpe + (kurtosis - 1.0) / 4.0 * sharpe**2
    if variance_term <= 0:
        raise ValueError(
            f"skewness {skewness} and kurtosis {kurtosis} give a non-positive Sharpe "
            f"variance term ({variance_term}); kurtosis must be at least 1 + skewness²"
        )
    z = (sharpe - benchmark_sharpe) * np.sqrt(n_observations - 1.0) / np.sqrt(variance_term)
    return float(stats.norm.cdf(z))


def probabilistic_sharpe_ratio(returns: np.ndarray, benchmark_sharpe: float = 0.0) -> float:
    """PSR of a per-period return series against ``benchmark_sharpe`` (per period).

    The probability in [0, 1] that the true Sharpe ratio exceeds ``benchmark_sharpe``,
    from the sample Sharpe (ddof=1), skewness and Pearson kurtosis of ``returns``. Refuses
    fewer than 3 returns, NaN/inf and returns with zero variance.
    """
    array = _finite_returns(returns, "returns")
    sharpe, skewness, kurtosis = _sample_moments(array)
    return probabilistic_sharpe_from_moments(
        sharpe, array.size, skewness, kurtosis, benchmark_sharpe
    )


def expected_max_sharpe(n_trials: int, trial_sharpe_variance: float) -> float:
    """SR0: the expected maximum Sharpe ratio of ``n_trials`` unskilled strategies.

    ``sqrt(V) ((1 − γ) Φ⁻¹(1 − 1/N) + γ Φ⁻¹(1 − 1/(N e)))``, in the units of
    ``sqrt(trial_sharpe_variance)`` (per period if V is a variance of per-period Sharpe
    ratios). One trial involves no selection: SR0 = 0. Refuses ``n_trials < 1`` and a
    negative or non-finite variance.
    """
    if n_trials < 1:
        raise ValueError(f"n_trials must be at least 1, got {n_trials}")
    if not np.isfinite(trial_sharpe_variance) or trial_sharpe_variance < 0:
        raise ValueError(
            f"trial_sharpe_variance must be finite and >= 0, got {trial_sharpe_variance}"
        )
    if n_trials == 1:
        return 0.0
    gamma = EULER_MASCHERONI
    quantiles = (1.0 - gamma) * stats.norm.ppf(1.0 - 1.0 / n_trials) + gamma * stats.norm.ppf(
        1.0 - 1.0 / (n_trials * np.e)
    )
    return float(np.sqrt(trial_sharpe_variance) * quantiles)


def deflated_sharpe_from_moments(
    sharpe: float,
    n_observations: int,
    skewness: float,
    kurtosis: float,
    n_trials: int,
    trial_sharpe_variance: float,
) -> float:
    """DSR from the moments directly: the PSR of ``sharpe`` against :func:`expected_max_sharpe`.

    ``sharpe`` per period, ``trial_sharpe_variance`` the variance of the trials' per-period
    Sharpe ratios, ``kurtosis`` Pearson's. Returns a probability in [0, 1]. Refuses what
    :func:`probabilistic_sharpe_from_moments` and :func:`expected_max_sharpe` refuse.
    """
    threshold = expected_max_sharpe(n_trials, trial_sharpe_variance)
    return probabilistic_sharpe_from_moments(
        sharpe, n_observations, skewness, kurtosis, benchmark_sharpe=threshold
    )


def deflated_sharpe_ratio(
    returns: np.ndarray, *, n_trials: int, trial_sharpe_variance: float
) -> DeflatedSharpe:
    """The Deflated Sharpe Ratio of the selected strategy's per-period ``returns``.

    ``n_trials``: how many strategies (configurations) were tried, this one included.
    ``trial_sharpe_variance``: the variance of the per-period (not annualised) Sharpe ratios
    across those trials. With one trial, the DSR is the PSR against 0. Refuses fewer than 3
    returns, NaN/inf, zero-variance returns, ``n_trials < 1`` and a negative variance.
    """
    array = _finite_returns(returns, "returns")
    sharpe, skewness, kurtosis = _sample_moments(array)
    threshold = expected_max_sharpe(n_trials, trial_sharpe_variance)
    return DeflatedSharpe(
        deflated_sharpe=probabilistic_sharpe_from_moments(
            sharpe, array.size, skewness, kurtosis, benchmark_sharpe=threshold
        ),
        sharpe=sharpe,
        expected_max_sharpe=threshold,
        n_trials=n_trials,
        skewness=skewness,
        kurtosis=kurtosis,
        n_observations=int(array.size),
    )


def reality_check(
    benchmark_returns: np.ndarray,
    strategy_returns: np.ndarray,
    names: Sequence[str],
    *,
    reps: int = 1000,
    block_size: int = 10,
    seed: int = 17,
    alpha: float = 0.10,
) -> RealityCheck:
    """Hansen's SPA test and Romano–Wolf's StepM of strategies against a benchmark.

    ``benchmark_returns``: (n_obs,) per-period returns; ``strategy_returns``: (n_obs,
    n_strategies) per-period returns on the same dates, one column per entry of ``names``.
    Losses are the negated returns, so "better" means a higher mean return. The stationary
    bootstrap (mean block length ``block_size``, ``reps`` replications) is seeded with
    ``numpy.random.default_rng(seed)``: the same inputs and seed give the same result.
    The null of the SPA test is that no strategy beats the benchmark; StepM at size
    ``alpha`` names the strategies that do, with the familywise error rate controlled.

    arch 8's SPA ranks strategies by their mean loss differential; the (asymptotic,
    block-based) variances only decide which strategies the consistent p-value recentres.

    Refuses mismatched shapes, NaN/inf, duplicate or missing names, fewer than 2 * block_size
    observations, ``reps < 1``, ``block_size < 1`` and ``alpha`` outside (0, 1).
    """
    benchmark = np.asarray(benchmark_returns, dtype=np.float64)
    strategies = np.asarray(strategy_returns, dtype=np.float64)
    labels = tuple(names)
    if benchmark.ndim != 1:
        raise ValueError(f"benchmark_returns must be one-dimensional, got {benchmark.shape}")
    if strategies.ndim != 2:
        raise ValueError(
            "strategy_returns must be two-dimensional (n_obs, n_strategies), "
            f"got {strategies.shape}"
        )
    if strategies.shape[0] != benchmark.size:
        raise ValueError(
            f"strategy_returns has {strategies.shape[0]} rows, "
            f"benchmark_returns has {benchmark.size}"
        )
    if strategies.shape[1] == 0:
        raise ValueError("strategy_returns has no strategy columns")
    if len(labels) != strategies.shape[1]:
        raise ValueError(
            f"names has {len(labels)} entries, strategy_returns has {strategies.shape[1]} columns"
        )
    if len(set(labels)) != len(labels):
        raise ValueError(f"names has duplicates: {labels}")
    if not np.all(np.isfinite(benchmark)):
        raise ValueError("benchmark_returns contains NaN or infinite values")
    if not np.all(np.isfinite(strategies)):
        raise ValueError("strategy_returns contains NaN or infinite values")
    if reps < 1:
        raise ValueError(f"reps must be at least 1, got {reps}")
    if block_size < 1:
        raise ValueError(f"block_size must be at least 1, got {block_size}")
    if benchmark.size < 2 * block_size:
        raise ValueError(
            f"benchmark_returns has {benchmark.size} observations; "
            f"need at least 2 * block_size = {2 * block_size}"
        )
    if not 0.0 < alpha < 1.0:
        raise ValueError(f"alpha must be in (0, 1), got {alpha}")

    benchmark_losses = -benchmark
    strategy_losses = -strategies
    spa = SPA(
        benchmark_losses,
        strategy_losses,
        block_size=block_size,
        reps=reps,
        bootstrap="stationary",
        seed=np.random.default_rng(seed),
    )
    spa.compute()
    pvalues = spa.pvalues
    stepm = StepM(
        benchmark_losses,
        strategy_losses,
        size=alpha,
        block_size=block_size,
        reps=reps,
        bootstrap="stationary",
        seed=np.random.default_rng(seed),
    )
    stepm.compute()
    superior_columns = set(stepm.superior_models)  # column indices (ndarray input)
    return RealityCheck(
        spa_pvalue_consistent=float(pvalues["consistent"]),
        spa_pvalue_lower=float(pvalues["lower"]),
        spa_pvalue_upper=float(pvalues["upper"]),
        superior=tuple(label for i, label in enumerate(labels) if i in superior_columns),
        names=labels,
        alpha=alpha,
        reps=reps,
        block_size=block_size,
    )
