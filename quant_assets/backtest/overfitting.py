"""Statistics that count every trial: PBO, the effective number of trials, degradation.

- **PBO** (Bailey, Borwein, López de Prado & Zhu, 2015, "The Probability of Backtest
  Overfitting"), estimated by combinatorially symmetric cross-validation (CSCV): how often
  the configuration that is best in-sample ranks at or below the median out-of-sample.
- **Effective number of trials**: correlated configurations are not independent trials;
  clustering them gives the N (and the across-cluster Sharpe variance) that the Deflated
  Sharpe Ratio of :mod:`quant_assets.backtest.statistics` should be fed.
- **In-sample / out-of-sample degradation**: how much of the in-sample metric survives.
- **Volatility-matched benchmark**: a strategy run at 5 % volatility cannot beat a 1× index
  on raw mean return, so the reality check is run against both the raw benchmark and the
  benchmark scaled to the strategy's volatility.
- **Trial identity**: a stable content hash of a strategy configuration, the key of the
  trial ledger.

Returns are simple per-period returns (fractions); every Sharpe ratio here is per period
(not annualised), mean over the sample standard deviation (ddof=1), as in
:mod:`quant_assets.backtest.statistics`. Matrices of trials are ``(n_obs, n_trials)``: one
row per period, one column per configuration.

No library is used for the CSCV PBO: none of the packages in this environment implements it
(skfolio has combinatorial *purged* CV but no PBO; ``pypbo`` and mlfinlab are not
installed, and ``pypbo`` loops over the combinations in Python). It is written here,
vectorised over combinations and trials, and checked in the tests against a direct loop
over the combinations and against a hand-computed example.
"""

from __future__ import annotations

import hashlib
import itertools
import json
import math
import numbers
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Literal

import numpy as np
from scipy.cluster import hierarchy
from scipy.spatial.distance import squareform

from quant_assets.backtest.statistics import RealityCheck, reality_check

PboMetric = Literal["sharpe", "mean"]
PBO_METRICS: tuple[str, ...] = ("sharpe", "mean")
TRIAL_HASH_LENGTH = 16
# Combinations evaluated per step: bounds the (chunk, n_partitions / 2, n_trials) gather at
# ~32 MB for 1,000 trials and S = 16.
_COMBINATIONS_PER_CHUNK = 512
_ZERO_VARIANCE_RELATIVE_STD = 1e-12


@dataclass(frozen=True)
class Degradation:
    """How much of the in-sample metric survives out of sample, over paired samples.

    ``mean_in_sample`` / ``mean_out_of_sample``: means of the paired metrics; ``ratio`` =
    mean OOS / mean IS (NaN when the mean IS is 0). ``slope``, ``intercept``, ``r_squared``:
    the least-squares fit ``oos = intercept + slope * is`` (NaN when the IS values are all
    equal; ``r_squared`` NaN also when the OOS values are all equal). A slope near 0 or
    negative means in-sample rank carries no (or inverse) information about the future.
    ``oos_loss_probability``: share of pairs with an OOS metric below 0. ``n_pairs``: how
    many pairs.
    """

    mean_in_sample: float
    mean_out_of_sample: float
    ratio: float
    slope: float
    intercept: float
    r_squared: float
    oos_loss_probability: float
    n_pairs: int


@dataclass(frozen=True, eq=False)
class Pbo:
    """The Probability of Backtest Overfitting of a set of trials, by CSCV.

    ``pbo``: share of combinations whose logit is <= 0, in [0, 1]. Per combination, in the
    order of ``itertools.combinations(range(n_partitions), n_partitions // 2)`` (the
    in-sample blocks), shape ``(n_combinations,)``: ``logits`` (λ = ln(ω̄ / (1 − ω̄)), ω̄ the
    selected trial's out-of-sample rank / (n_trials + 1); for the histogram),
    ``selected_trial`` (column index of the in-sample best), ``in_sample_metric`` and
    ``out_of_sample_metric`` (that trial's metric in and out of sample, per period).
    ``degradation``: :func:`in_out_of_sample_degradation` of those two arrays (slope,
    intercept and R² of OOS on IS, probability of OOS loss). ``n_observations_used`` rows
    entered the blocks, the first ``n_dropped_rows`` did not.
    """

    pbo: float
    logits: np.ndarray
    selected_trial: np.ndarray
    in_sample_metric: np.ndarray
    out_of_sample_metric: np.ndarray
    degradation: Degradation
    metric: str
    n_partitions: int
    n_combinations: int
    n_trials: int
    block_length: int
    n_observations_used: int
    n_dropped_rows: int


@dataclass(frozen=True, eq=False)
class EffectiveTrials:
    """Correlated trials grouped into clusters; ``n_clusters`` is the effective N.

    ``labels``: ``(n_trials,)`` cluster of each trial, 0 .. n_clusters − 1 numbered by first
    appearance (trial 0 is in cluster 0). ``cluster_sizes``: ``(n_clusters,)`` trials per
    cluster. ``cluster_returns``: ``(n_obs, n_clusters)`` equal-weighted mean return of each
    cluster's trials, per period. ``cluster_sharpe``: ``(n_clusters,)`` per-period Sharpe
    ratio (ddof=1) of each cluster's returns (0 for a flat cluster).
    ``cluster_sharpe_variance``: their variance (ddof=1), 0 with one cluster — pass it with
    ``n_trials=n_clusters`` to :func:`~quant_assets.backtest.statistics.deflated_sharpe_ratio`.
    ``min_correlation``: the clustering threshold used.
    """

    n_trials: int
    n_clusters: int
    labels: np.ndarray
    cluster_sizes: np.ndarray
    cluster_returns: np.ndarray
    cluster_sharpe: np.ndarray
    cluster_sharpe_variance: float
    min_correlation: float


@dataclass(frozen=True)
class SelectionRealityCheck:
    """The reality check against the raw benchmark and against the volatility-matched one.

    ``raw``: strategies against the benchmark as it is. ``volatility_matched``: each strategy
    against the benchmark scaled to that strategy's own volatility (σ_strategy / σ_benchmark,
    listed in ``volatility_scales`` in the order of ``raw.names``). Both p-values must be
    reported: a low-volatility strategy can lose to a 1× index on raw mean return and still
    beat it at equal risk, and a levered one can do the opposite.
    """

    raw: RealityCheck
    volatility_matched: RealityCheck
    volatility_scales: tuple[float, ...]

    @property
    def raw_pvalue(self) -> float:
        """Hansen's consistent SPA p-value against the raw benchmark."""
        return self.raw.spa_pvalue_consistent

    @property
    def volatility_matched_pvalue(self) -> float:
        """Hansen's consistent SPA p-value against the volatility-matched benchmark."""
        return self.volatility_matched.spa_pvalue_consistent

    def summary(self) -> str:
        """One sentence with both p-values, for a report."""
        return (
            f"SPA p-value against the raw benchmark: {self.raw_pvalue:.3f}; "
            f"against the benchmark scaled to each strategy's volatility: "
            f"{self.volatility_matched_pvalue:.3f}"
        )


def _trial_matrix(returns: np.ndarray, name: str = "returns") -> np.ndarray:
    """``returns`` as a finite ``(n_obs, n_trials)`` float array with at least 2 trials."""
    matrix = np.asarray(returns, dtype=np.float64)
    if matrix.ndim != 2:
        raise ValueError(f"{name} must be two-dimensional (n_obs, n_trials), got {matrix.shape}")
    if matrix.shape[1] < 2:
        raise ValueError(f"{name} needs at least 2 trials (columns), got {matrix.shape[1]}")
    finite = np.isfinite(matrix)
    if not finite.all():
        row, column = np.argwhere(~finite)[0]
        raise ValueError(
            f"{name} contains NaN or infinite values (first at row {row}, trial {column})"
        )
    return matrix


def _series(values: np.ndarray, name: str, *, min_length: int = 2) -> np.ndarray:
    array = np.asarray(values, dtype=np.float64)
    if array.ndim != 1:
        raise ValueError(f"{name} must be one-dimensional, got shape {array.shape}")
    if array.size < min_length:
        raise ValueError(f"{name} needs at least {min_length} values, got {array.size}")
    if not np.all(np.isfinite(array)):
        raise ValueError(f"{name} contains NaN or infinite values")
    return array


def _cscv_block_statistics(
    matrix: np.ndarray, n_partitions: int
) -> tuple[np.ndarray, np.ndarray, np.ndarray, int, int]:
    """Per-block means, squared means and within-block sums of squared deviations.

    The first ``n_obs % n_partitions`` rows are dropped so the blocks are equal and the most
    recent data is kept. Returns ``(block_mean, block_mean_squared, block_m2, block_length,
    n_dropped_rows)``, the arrays of shape ``(n_partitions, n_trials)``.
    """
    n_obs, n_trials = matrix.shape
    block_length = n_obs // n_partitions
    n_dropped_rows = n_obs - block_length * n_partitions
    blocks = matrix[n_dropped_rows:].reshape(n_partitions, block_length, n_trials)
    block_mean = blocks.mean(axis=1)
    # Deviations from each block's own mean, not raw squares: a half's variance is then
    # assembled by the parallel-variance formula without the cancellation of
    # sum(x²) − n mean², and a flat (all-zero) half has a variance of exactly 0.
    block_m2 = np.square(blocks - block_mean[:, None, :]).sum(axis=1)
    return block_mean, np.square(block_mean), block_m2, block_length, n_dropped_rows


def _half_metric(
    blocks: np.ndarray,
    block_mean: np.ndarray,
    block_mean_squared: np.ndarray,
    block_m2: np.ndarray,
    block_length: int,
    metric: str,
) -> np.ndarray:
    """The metric of every trial over each set of blocks, shape ``(n_sets, n_trials)``.

    ``blocks``: ``(n_sets, n_partitions // 2)`` block indices. Sums run over gathered rows
    (not a BLAS product) so identical trials get bit-identical metrics and tie exactly.
    """
    n_blocks = blocks.shape[1]
    mean = block_mean[blocks].sum(axis=1) / n_blocks
    if metric == "mean":
        return mean
    # Parallel variance (Chan et al.): M2 = Σ M2_b + L Σ (m_b − m)², Σ (m_b − m)² =
    # Σ m_b² − k m²; the block means are already centred sums, so cancellation is small.
    between = np.maximum(block_mean_squared[blocks].sum(axis=1) - n_blocks * np.square(mean), 0.0)
    m2 = block_m2[blocks].sum(axis=1) + block_length * between
    std = np.sqrt(m2 / (n_blocks * block_length - 1))
    # A constant half's std is rounding noise (~1e-16 of its mean), not 0: below 1e-12 of
    # the mean it counts as zero variance, and zero variance counts as Sharpe 0.
    risky = std > _ZERO_VARIANCE_RELATIVE_STD * np.abs(mean)
    sharpe = np.zeros_like(mean)
    np.divide(mean, std, out=sharpe, where=risky & (std > 0))
    return sharpe


def _relative_rank(out_of_sample: np.ndarray, selected: np.ndarray) -> np.ndarray:
    """Average (1-based) rank of the selected trial's OOS metric in its row, over N + 1."""
    rows = np.arange(out_of_sample.shape[0])
    selected_value = out_of_sample[rows, selected][:, None]
    n_below = (out_of_sample < selected_value).sum(axis=1)
    n_equal = (out_of_sample == selected_value).sum(axis=1)  # the selected trial included
    average_rank = n_below + (n_equal + 1) / 2.0
    return average_rank / (out_of_sample.shape[1] + 1)


def probability_of_backtest_overfitting(
    returns: np.ndarray, n_partitions: int = 16, metric: PboMetric = "sharpe"
) -> Pbo:
    """PBO of the trials in ``returns`` by combinatorially symmetric cross-validation.

    ``returns``: ``(n_obs, n_trials)`` per-period returns, one column per configuration
    tried. The rows are cut into ``n_partitions`` (S) equal contiguous blocks; the first
    ``n_obs % S`` rows are dropped (reported as ``n_dropped_rows``) so the most recent data
    is kept. For each of the C(S, S/2) ways to take S/2 blocks as the in-sample half (12,870
    for S = 16), the trial with the best in-sample ``metric`` is selected, and its relative
    rank ω̄ among all trials on the complementary out-of-sample half gives the logit
    λ = ln(ω̄ / (1 − ω̄)). PBO is the share of λ <= 0: how often the in-sample winner lands
    at or below the out-of-sample median.

    ``metric``: ``"sharpe"`` (per-period mean over sample std, ddof=1; a half with zero
    variance, e.g. a trial that did not trade there, has Sharpe 0; a std below 1e-12 of
    the mean is rounding noise and counts as zero) or ``"mean"`` (mean
    return per period). Ties: in-sample, the first (lowest-index) of the tied best trials is
    selected; out-of-sample, tied trials share their average rank (as
    ``scipy.stats.rankdata``), ranks 1 (worst) to N (best), ω̄ = rank / (N + 1).

    Per-block means and sums of squared deviations are computed once; each half's metric is
    assembled from its S/2 blocks, and each half is evaluated once and used both as the
    in-sample half of one combination and as the out-of-sample half of its complement.

    Refuses a non-2-D matrix, NaN/inf, fewer than 2 trials, an odd or < 2 ``n_partitions``,
    fewer rows than partitions, a half of fewer than 2 rows for the Sharpe metric, and an
    unknown ``metric``.
    """
    matrix = _trial_matrix(returns)
    if metric not in PBO_METRICS:
        raise ValueError(f"metric must be one of {PBO_METRICS}, got {metric!r}")
    if isinstance(n_partitions, bool) or not isinstance(n_partitions, numbers.Integral):
        raise ValueError(f"n_partitions must be an integer, got {n_partitions!r}")
    n_partitions = int(n_partitions)
    if n_partitions < 2 or n_partitions % 2:
        raise ValueError(f"n_partitions must be even and at least 2, got {n_partitions}")
    n_obs, n_trials = matrix.shape
    if n_obs < n_partitions:
        raise ValueError(
            f"returns has {n_obs} rows, fewer than n_partitions = {n_partitions} blocks"
        )
    half = n_partitions // 2
    if metric == "sharpe" and half * (n_obs // n_partitions) < 2:
        raise ValueError(
            f"each half would hold {half * (n_obs // n_partitions)} row(s); the Sharpe "
            "metric needs at least 2 — use more rows or fewer partitions"
        )

    block_mean, block_mean_squared, block_m2, block_length, n_dropped_rows = _cscv_block_statistics(
        matrix, n_partitions
    )
    combinations = np.array(list(itertools.combinations(range(n_partitions), half)))
    n_combinations = combinations.shape[0]
    index_of = {tuple(blocks): i for i, blocks in enumerate(combinations.tolist())}
    all_blocks = set(range(n_partitions))
    # The combinations holding block 0 are the first half in lexicographic order; their
    # complements are the other half, so each pair (half, complement) is visited once.
    n_pairs = n_combinations // 2
    complement_index = np.array(
        [
            index_of[tuple(sorted(all_blocks - set(blocks)))]
            for blocks in combinations[:n_pairs].tolist()
        ]
    )

    logits = np.empty(n_combinations)
    selected_trial = np.empty(n_combinations, dtype=np.int64)
    in_sample_metric = np.empty(n_combinations)
    out_of_sample_metric = np.empty(n_combinations)
    half_inputs = (block_mean, block_mean_squared, block_m2, block_length, metric)
    for start in range(0, n_pairs, _COMBINATIONS_PER_CHUNK):
        first = np.arange(start, min(start + _COMBINATIONS_PER_CHUNK, n_pairs))
        second = complement_index[first]
        metric_first = _half_metric(combinations[first], *half_inputs)
        metric_second = _half_metric(combinations[second], *half_inputs)
        for in_sample_rows, in_sample, out_of_sample in (
            (first, metric_first, metric_second),
            (second, metric_second, metric_first),
        ):
            selected = np.argmax(in_sample, axis=1)
            rows = np.arange(selected.size)
            relative_rank = _relative_rank(out_of_sample, selected)
            logits[in_sample_rows] = np.log(relative_rank / (1.0 - relative_rank))
            selected_trial[in_sample_rows] = selected
            in_sample_metric[in_sample_rows] = in_sample[rows, selected]
            out_of_sample_metric[in_sample_rows] = out_of_sample[rows, selected]

    return Pbo(
        pbo=float(np.mean(logits <= 0.0)),
        logits=logits,
        selected_trial=selected_trial,
        in_sample_metric=in_sample_metric,
        out_of_sample_metric=out_of_sample_metric,
        degradation=in_out_of_sample_degradation(in_sample_metric, out_of_sample_metric),
        metric=metric,
        n_partitions=n_partitions,
        n_combinations=n_combinations,
        n_trials=n_trials,
        block_length=block_length,
        n_observations_used=n_obs - n_dropped_rows,
        n_dropped_rows=n_dropped_rows,
    )


def in_out_of_sample_degradation(is_metric: np.ndarray, oos_metric: np.ndarray) -> Degradation:
    """Degradation of paired in-sample / out-of-sample metrics (e.g. Sharpe ratios).

    ``is_metric``, ``oos_metric``: ``(n_pairs,)`` the same selection's metric in and out of
    sample (one pair per CSCV combination, per walk-forward fold, ...). Returns the means,
    their ratio, the least-squares line of OOS on IS with its R², and the share of OOS
    values below 0; see :class:`Degradation` for the NaN cases. Refuses non-1-D input,
    different lengths, fewer than 2 pairs and NaN/inf.
    """
    in_sample = _series(is_metric, "is_metric")
    out_of_sample = _series(oos_metric, "oos_metric")
    if in_sample.size != out_of_sample.size:
        raise ValueError(
            f"is_metric has {in_sample.size} values, oos_metric has {out_of_sample.size}"
        )
    mean_in_sample = float(np.mean(in_sample))
    mean_out_of_sample = float(np.mean(out_of_sample))
    in_deviation = in_sample - mean_in_sample
    out_deviation = out_of_sample - mean_out_of_sample
    sxx = float(in_deviation @ in_deviation)
    syy = float(out_deviation @ out_deviation)
    sxy = float(in_deviation @ out_deviation)
    slope = sxy / sxx if sxx > 0 else math.nan
    intercept = mean_out_of_sample - slope * mean_in_sample if sxx > 0 else math.nan
    r_squared = sxy * sxy / (sxx * syy) if sxx > 0 and syy > 0 else math.nan
    return Degradation(
        mean_in_sample=mean_in_sample,
        mean_out_of_sample=mean_out_of_sample,
        ratio=mean_out_of_sample / mean_in_sample if mean_in_sample != 0 else math.nan,
        slope=slope,
        intercept=intercept,
        r_squared=r_squared,
        oos_loss_probability=float(np.mean(out_of_sample < 0.0)),
        n_pairs=int(in_sample.size),
    )


def effective_trials(returns: np.ndarray, *, min_correlation: float = 0.5) -> EffectiveTrials:
    """Cluster correlated trials; the number of clusters is the effective number of trials.

    ``returns``: ``(n_obs, n_trials)`` per-period returns. Trials are clustered
    hierarchically (``scipy.cluster.hierarchy``, complete linkage) on the correlation
    distance ``sqrt((1 − ρ) / 2)`` and the tree is cut at the distance of ``min_correlation``
    (ρ* = 0.5 by default, d* = 0.5): with complete linkage, every two trials in one cluster
    are correlated at least ρ*, and trials less correlated than that are separate bets.
    A fixed threshold rather than the silhouette-optimal cut of López de Prado's ONC: the
    silhouette is undefined for 1 cluster and for N clusters, which are exactly the two
    limits the effective N must reach (identical trials → 1, independent trials → N), and
    it is noisy when the trials are nearly uncorrelated. Negatively correlated trials are far
    apart (ρ = −1 gives distance 1).

    Refuses a non-2-D matrix, NaN/inf, fewer than 2 trials or 3 rows, a trial with zero
    variance (its correlation is undefined) and ``min_correlation`` outside (−1, 1).
    """
    matrix = _trial_matrix(returns)
    n_obs, n_trials = matrix.shape
    if n_obs < 3:
        raise ValueError(f"returns needs at least 3 rows to estimate correlations, got {n_obs}")
    if not -1.0 < min_correlation < 1.0:
        raise ValueError(f"min_correlation must be in (-1, 1), got {min_correlation}")
    flat = np.flatnonzero(np.all(matrix == matrix[0], axis=0))
    if flat.size:
        raise ValueError(
            f"trials {flat.tolist()} have zero variance: their correlation is undefined"
        )

    correlation = np.clip(np.corrcoef(matrix, rowvar=False), -1.0, 1.0)
    distance = np.sqrt((1.0 - correlation) / 2.0)
    distance = (distance + distance.T) / 2.0
    np.fill_diagonal(distance, 0.0)
    tree = hierarchy.linkage(squareform(distance, checks=False), method="complete")
    cut_distance = math.sqrt((1.0 - min_correlation) / 2.0)
    raw_labels = hierarchy.fcluster(tree, t=cut_distance, criterion="distance")
    # Renumber by first appearance so the labels do not depend on scipy's numbering.
    _, first_positions, inverse = np.unique(raw_labels, return_index=True, return_inverse=True)
    order = np.argsort(np.argsort(first_positions))
    labels = order[inverse].astype(np.int64)
    n_clusters = int(labels.max()) + 1

    cluster_sizes = np.bincount(labels, minlength=n_clusters)
    membership = np.zeros((n_trials, n_clusters))
    membership[np.arange(n_trials), labels] = 1.0 / cluster_sizes[labels]
    cluster_returns = matrix @ membership
    cluster_std = cluster_returns.std(axis=0, ddof=1)
    cluster_sharpe = np.zeros(n_clusters)
    np.divide(cluster_returns.mean(axis=0), cluster_std, out=cluster_sharpe, where=cluster_std > 0)
    return EffectiveTrials(
        n_trials=n_trials,
        n_clusters=n_clusters,
        labels=labels,
        cluster_sizes=cluster_sizes,
        cluster_returns=cluster_returns,
        cluster_sharpe=cluster_sharpe,
        cluster_sharpe_variance=float(np.var(cluster_sharpe, ddof=1)) if n_clusters > 1 else 0.0,
        min_correlation=float(min_correlation),
    )


def volatility_matched(benchmark_returns: np.ndarray, strategy_returns: np.ndarray) -> np.ndarray:
    """The benchmark's returns scaled to the strategy's volatility, shape ``(n_obs,)``.

    ``benchmark_returns * σ_strategy / σ_benchmark``, both full-sample standard deviations
    (ddof=1) of per-period returns on the same dates: the benchmark held at the leverage
    that gives it the strategy's volatility, rebalanced every period, the unlevered or
    borrowed part at a 0 rate. Refuses non-1-D input, different lengths, fewer than 2
    returns, NaN/inf and a benchmark with zero volatility.
    """
    benchmark = _series(benchmark_returns, "benchmark_returns")
    strategy = _series(strategy_returns, "strategy_returns")
    if benchmark.size != strategy.size:
        raise ValueError(
            f"benchmark_returns has {benchmark.size} values, strategy_returns has {strategy.size}"
        )
    # Compared for equality, not std == 0: a constant series' std is rounding noise, not 0.
    if np.all(benchmark == benchmark[0]):
        raise ValueError("benchmark_returns has zero volatility: it cannot be scaled")
    return benchmark * (float(np.std(strategy, ddof=1)) / float(np.std(benchmark, ddof=1)))


def selection_reality_check(
    benchmark_returns: np.ndarray,
    strategy_returns: np.ndarray,
    names: Sequence[str],
    *,
    reps: int = 1000,
    block_size: int = 10,
    seed: int = 17,
    alpha: float = 0.10,
) -> SelectionRealityCheck:
    """:func:`~quant_assets.backtest.statistics.reality_check` against the raw benchmark
    and against the benchmark matched to each strategy's volatility.

    ``benchmark_returns``: ``(n_obs,)``; ``strategy_returns``: ``(n_obs,)`` for the selected
    strategy alone or ``(n_obs, n_strategies)`` for all trials, one column per entry of
    ``names``; per-period returns on the same dates. Each strategy k is compared with
    ``volatility_matched(benchmark, strategy_k)``. ``reality_check`` takes one benchmark,
    and SPA / StepM only see the differences ``strategy − benchmark``, so the matched test
    is run on the differences ``r_k − s_k b`` against a zero benchmark: the same test as k
    separate benchmarks. With one strategy it equals ``reality_check(volatility_matched(b,
    r), r[:, None], names)``. Both runs use the same ``seed``, ``reps``, ``block_size`` and
    ``alpha``. Refuses what ``reality_check`` and :func:`volatility_matched` refuse.
    """
    benchmark = np.asarray(benchmark_returns, dtype=np.float64)
    strategies = np.asarray(strategy_returns, dtype=np.float64)
    if strategies.ndim == 1:
        strategies = strategies[:, None]
    raw = reality_check(
        benchmark, strategies, names, reps=reps, block_size=block_size, seed=seed, alpha=alpha
    )  # validates the shapes
    matched_benchmarks = np.column_stack(
        [volatility_matched(benchmark, strategies[:, k]) for k in range(strategies.shape[1])]
    )
    scales = strategies.std(axis=0, ddof=1) / np.std(benchmark, ddof=1)
    matched = reality_check(
        np.zeros_like(benchmark),
        strategies - matched_benchmarks,
        names,
        reps=reps,
        block_size=block_size,
        seed=seed,
        alpha=alpha,
    )
    return SelectionRealityCheck(
        raw=raw, volatility_matched=matched, volatility_scales=tuple(scales.tolist())
    )


def _canonical(value: object, path: str) -> object:
    """``value`` in a JSON form where equal configurations are equal: see :func:`trial_hash`."""
    if value is None or isinstance(value, str):
        return value
    if isinstance(value, bool | np.bool_):
        return bool(value)
    if isinstance(value, numbers.Integral):
        return int(value)
    if isinstance(value, numbers.Real):
        number = float(value)
        if not math.isfinite(number):
            raise ValueError(f"config value at {path} is not finite: {number}")
        # 1.0 and 1 are the same setting; -0.0 is 0.
        return int(number) if number.is_integer() else number
    if isinstance(value, Mapping):
        canonical: dict[str, object] = {}
        for key, item in value.items():
            if not isinstance(key, str):
                raise ValueError(f"config key {key!r} at {path} is not a string")
            canonical[key] = _canonical(item, f"{path}.{key}")
        return canonical
    if isinstance(value, list | tuple):
        return [_canonical(item, f"{path}[{i}]") for i, item in enumerate(value)]
    raise ValueError(
        f"config value at {path} has type {type(value).__name__}; use str, number, bool, "
        "None, list or mapping"
    )


def trial_hash(config: Mapping[str, object]) -> str:
    """A stable 16-hex-character content hash of a strategy configuration: the trial's key.

    The first 16 hex characters of the SHA-256 of the configuration's canonical JSON: keys
    sorted at every level, no whitespace, integral floats written as integers (1.0 and 1
    hash the same, as do 0.1 and 0.10, which are the same float), other floats in Python's
    shortest round-trip form, lists and tuples kept in order (both as JSON arrays), booleans
    distinct from 1 and 0. Refuses non-string keys, NaN/inf and values that are not str,
    number, bool, None, list/tuple or mapping (a set has no order; convert it first).
    """
    if not isinstance(config, Mapping):
        raise ValueError(f"config must be a mapping, got {type(config).__name__}")
    canonical = _canonical(config, "config")
    text = json.dumps(canonical, sort_keys=True, separators=(",", ":"), ensure_ascii=False)
    return hashlib.sha256(text.encode("utf-8")).hexdigest()[:TRIAL_HASH_LENGTH]
