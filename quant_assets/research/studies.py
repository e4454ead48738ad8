"""Parameter studies: many variants ("trials") of a strategy, walk-forward selection, and the
statistics that count every trial.

A study (``configs/studies/<name>.yaml``, :class:`~quant_assets.settings.StudySettings`) takes a
base strategy and a space over any of its keys. :func:`study_trials` turns the space into
trials — every point of the grid, or points sampled by Optuna's quasi-Monte-Carlo (Sobol)
sampler. The sampler is deliberately *not* adaptive (no TPE): an adaptive sampler steers on
the objective over the whole history, so the later folds' test windows would choose which
trials exist. Every trial is a complete :class:`~quant_assets.settings.StrategySettings`,
validated like a strategy file and identified by the content hash of its configuration.

Each trial's daily book returns over the study's sessions (alpha → positions → book, computed
once from the study's first session, exactly as the strategy's own assets compute them) form
a (sessions × trials) matrix. :func:`select_walk_forward` then, fold by fold, picks the trial
with the best objective on the fold's train window only (among those meeting the constraints
there), and stitches the chosen trials' returns over the following test windows into one
out-of-sample curve. A trial's returns up to a date depend only on data up to that date, and a
fold's choice only on returns up to its train end: the stitched curve at date D depends on
nothing after D.

Objectives follow :func:`quant_assets.backtest.metrics.performance_metrics` (risk-free 0,
sample std with ddof=1, 252 sessions a year), computed for all trials at once.
"""

from __future__ import annotations

import copy
import itertools
import math
import warnings
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import polars as pl
from pydantic import ValidationError

from quant_assets.backtest.overfitting import trial_hash
from quant_assets.names import SESSIONS_PER_YEAR
from quant_assets.research.ledger import LedgerView
from quant_assets.settings import (
    ParameterRange,
    StrategySettings,
    StudySettings,
    strategy_document,
)

OBJECTIVES = ("sharpe", "sortino", "calmar", "cagr")


@dataclass(frozen=True)
class Trial:
    """One configuration of a study: its number, the values it sets, the whole strategy and
    the content hash of that strategy's configuration (the ledger's key)."""

    number: int
    params: dict[str, Any]
    strategy: StrategySettings
    config_hash: str


def set_dotted(document: dict[str, Any], key: str, value: Any) -> dict[str, Any]:
    """A deep copy of ``document`` with ``key`` (``sizing.max_weight``) set to ``value``."""
    out = copy.deepcopy(document)
    node = out
    parts = key.split(".")
    for part in parts[:-1]:
        node = node.setdefault(part, {})
    node[parts[-1]] = value
    return out


def _grid_values(values: list[Any] | ParameterRange) -> list[Any]:
    return values.grid() if isinstance(values, ParameterRange) else list(values)


def _grid(study: StudySettings) -> list[dict[str, Any]]:
    keys = list(study.space)
    axes = [_grid_values(study.space[k]) for k in keys]
    size = math.prod(len(a) for a in axes)
    if size > study.search.max_grid:
        raise ValueError(
            f"study {study.name}: the grid has {size} points, above search.max_grid "
            f"({study.search.max_grid}); use search.method: sample or narrow the space"
        )
    return [dict(zip(keys, point, strict=True)) for point in itertools.product(*axes)]


def _sampled(study: StudySettings) -> list[dict[str, Any]]:
    import optuna

    distributions: dict[str, optuna.distributions.BaseDistribution] = {}
    for key, values in study.space.items():
        if isinstance(values, ParameterRange):
            if values.integer:
                distributions[key] = optuna.distributions.IntDistribution(
                    int(values.low), int(values.high), log=values.log, step=int(values.step or 1)
                )
            else:
                distributions[key] = optuna.distributions.FloatDistribution(
                    values.low,
                    values.high,
                    log=values.log,
                    step=None if values.log else values.step,
                )
        else:
            distributions[key] = optuna.distributions.CategoricalDistribution(values)
    optuna.logging.set_verbosity(optuna.logging.WARNING)
    with warnings.catch_warnings():  # QMCSampler is marked experimental since optuna 3.0
        warnings.simplefilter("ignore", optuna.exceptions.ExperimentalWarning)
        sampler = optuna.samplers.QMCSampler(
            qmc_type="sobol", scramble=True, seed=study.search.seed
        )
    search = optuna.create_study(sampler=sampler)
    points = []
    for _ in range(study.search.trials):
        trial = search.ask(distributions)
        points.append({k: trial.params[k] for k in study.space})
        search.tell(trial, 0.0)  # non-adaptive: the value is not used
    return points


def study_trials(study: StudySettings, base: StrategySettings) -> list[Trial]:
    """The study's distinct trials, numbered from 0 in search order.

    Raises ValueError naming the study, the trial's values and the key for a combination the
    strategy settings refuse (e.g. a cap outside its range). Trials whose whole configuration
    equals an earlier one's (same hash) are dropped: they are one trial.
    """
    points = _grid(study) if study.search.method == "grid" else _sampled(study)
    document = strategy_document(base)
    trials: list[Trial] = []
    seen: set[str] = set()
    for params in points:
        config = document
        for key, value in params.items():
            config = set_dotted(config, key, value)
        try:
            strategy = StrategySettings.model_validate({**config, "name": base.name})
        except ValidationError as exc:
            error = exc.errors()[0]
            where = ".".join(str(p) for p in error["loc"])
            raise ValueError(
                f"study {study.name}: trial {params} is not a valid strategy: {where}: "
                f"{error['msg']}"
            ) from exc
        config_hash = strategy_hash(strategy)
        if config_hash in seen:
            continue
        seen.add(config_hash)
        trials.append(Trial(len(trials), params, strategy, config_hash))
    return trials


def strategy_hash(strategy: StrategySettings) -> str:
    """The ledger key of a strategy configuration: the content hash of what decides its
    returns (alpha, sizing, risk, backtest) — not its name, description or promotion gates."""
    document = strategy_document(strategy)
    return trial_hash({k: document[k] for k in ("alpha", "sizing", "risk", "backtest")})


def counted_with_strategies(
    ledger: LedgerView, strategies: Sequence[StrategySettings]
) -> LedgerView:
    """The ledger with every configured strategy counted, evaluated yet or not (Sharpe NaN
    when unknown): the graph evaluates each of them, so N does not depend on run order."""
    unknown = {strategy_hash(s): float("nan") for s in strategies}
    return LedgerView({**unknown, **ledger.sharpe_of})


@dataclass(frozen=True)
class Fold:
    """A walk-forward fold as session indices: train ``[train_start, train_end)``, test
    ``[test_start, test_end)`` with ``test_start == train_end``."""

    number: int
    train_start: int
    train_end: int
    test_start: int
    test_end: int


def walk_forward_folds(dates: Sequence[Any], study: StudySettings) -> list[Fold]:
    """The folds over ``dates`` (the study's sessions, ascending).

    The first train window starts at ``walk_forward.start`` (or the first session) and holds
    ``train_sessions``; tests follow back to back, ``test_sessions`` each (the last one may be
    shorter, but not shorter than a fifth of it). Anchored folds train from the first
    session, rolling ones on the last ``train_sessions``. Raises ValueError when the sessions
    do not hold one train window and one test window.
    """
    wf = study.walk_forward
    first = 0
    if wf.start is not None:
        first = next((i for i, d in enumerate(dates) if d >= wf.start), len(dates))
    n = len(dates)
    folds: list[Fold] = []
    test_start = first + wf.train_sessions
    minimum_test = max(1, wf.test_sessions // 5)
    while n - test_start >= minimum_test:
        test_end = min(n, test_start + wf.test_sessions)
        train_start = first if wf.scheme == "anchored" else test_start - wf.train_sessions
        folds.append(Fold(len(folds), train_start, test_start, test_start, test_end))
        test_start = test_end
    if not folds:
        raise ValueError(
            f"study {study.name}: {n - first} sessions do not hold a train window of "
            f"{wf.train_sessions} and a test window (walk_forward.train_sessions / "
            "test_sessions)"
        )
    return folds


def column_metrics(returns: np.ndarray) -> dict[str, np.ndarray]:
    """Per column of ``returns`` (sessions × trials): annualised ``sharpe``, ``sortino``,
    ``cagr``, ``max_drawdown`` (<= 0), ``calmar`` — the conventions of
    :func:`~quant_assets.backtest.metrics.performance_metrics` (risk-free 0). A column with
    zero variance has Sharpe NaN; fewer than 2 rows gives NaN everywhere."""
    matrix = np.asarray(returns, dtype=np.float64)
    n = matrix.shape[0]
    k = matrix.shape[1] if matrix.ndim == 2 else 0
    if n < 2:
        nan = np.full(k, np.nan)
        return {m: nan.copy() for m in ("sharpe", "sortino", "cagr", "calmar", "max_drawdown")}
    mean = matrix.mean(axis=0)
    std = matrix.std(axis=0, ddof=1)
    root = math.sqrt(SESSIONS_PER_YEAR)
    with np.errstate(divide="ignore", invalid="ignore"):
        sharpe = np.where(std > 0, mean / std, np.nan) * root
        downside = np.sqrt(np.mean(np.minimum(matrix, 0.0) ** 2, axis=0))
        sortino = np.where(downside > 0, mean * SESSIONS_PER_YEAR / (downside * root), np.nan)
        wealth = np.cumprod(1.0 + matrix, axis=0)
        ending = wealth[-1]
        cagr = np.where(ending > 0, ending ** (SESSIONS_PER_YEAR / n) - 1.0, -1.0)
        peak = np.maximum.accumulate(np.vstack([np.ones((1, k)), wealth]), axis=0)[1:]
        max_drawdown = (wealth / peak - 1.0).min(axis=0)
        calmar = np.where(np.abs(max_drawdown) > 0, cagr / np.abs(max_drawdown), np.nan)
    return {
        "sharpe": sharpe,
        "sortino": sortino,
        "cagr": cagr,
        "calmar": calmar,
        "max_drawdown": max_drawdown,
    }


@dataclass(frozen=True)
class TrialReturns:
    """What a study keeps of each trial: daily book returns and trade counts per session
    (sessions × trials), on the study's ``dates``."""

    dates: list[Any]
    returns: np.ndarray
    trades: np.ndarray
    turnover: np.ndarray


def trial_returns_frame(results: TrialReturns) -> pl.DataFrame:
    """Every trial's daily rows, long: date, trial, daily_return, trades, turnover."""
    n_dates, n_trials = results.returns.shape
    return pl.DataFrame(
        {
            "date": pl.Series(results.dates).gather(np.tile(np.arange(n_dates), n_trials)),
            "trial": np.repeat(np.arange(n_trials, dtype=np.int64), n_dates),
            "daily_return": results.returns.T.ravel(),
            "trades": results.trades.T.ravel().astype(np.int64),
            "turnover": results.turnover.T.ravel(),
        }
    )


@dataclass(frozen=True)
class WalkForward:
    """The walk-forward selection: one row per fold, and the stitched out-of-sample curve."""

    folds: pl.DataFrame
    curve: pl.DataFrame
    stitched_returns: np.ndarray
    chosen: np.ndarray  # trial number per fold (-1: no eligible trial)


def select_walk_forward(
    results: TrialReturns, folds: Sequence[Fold], study: StudySettings
) -> WalkForward:
    """Choose, per fold, the trial with the best ``study.objective`` on the train window among
    those meeting ``study.constraints`` there; stitch the chosen trials' test returns.

    Ties go to the lowest trial number. A fold where no trial is eligible holds cash (returns
    0) and says so in its ``note``.
    """
    returns, trades = results.returns, results.trades
    rows = []
    stitched_parts = []
    fold_of, trial_of = [], []
    chosen = np.full(len(folds), -1, dtype=np.int64)
    for fold in folds:
        train = returns[fold.train_start : fold.train_end]
        metrics = column_metrics(train)
        score = metrics[study.objective].copy()
        eligible = np.isfinite(score)
        eligible &= trades[fold.train_start : fold.train_end].sum(axis=0) >= (
            study.constraints.min_trades
        )
        if study.constraints.max_drawdown is not None:
            eligible &= metrics["max_drawdown"] >= -study.constraints.max_drawdown
        test = returns[fold.test_start : fold.test_end]
        note = ""
        if eligible.any():
            pick = int(np.argmax(np.where(eligible, score, -np.inf)))
            chosen[fold.number] = pick
            part = test[:, pick]
            test_metrics = column_metrics(test[:, [pick]])
            in_sample, out_of_sample = float(score[pick]), float(test_metrics[study.objective][0])
        else:
            pick = -1
            part = np.zeros(test.shape[0])
            in_sample = out_of_sample = float("nan")
            note = "no trial met the constraints on the train window: cash"
        stitched_parts.append(part)
        fold_of.extend([fold.number] * part.size)
        trial_of.extend([pick] * part.size)
        rows.append(
            {
                "fold": fold.number,
                "train_start": results.dates[fold.train_start],
                "train_end": results.dates[fold.train_end - 1],
                "test_start": results.dates[fold.test_start],
                "test_end": results.dates[fold.test_end - 1],
                "chosen_trial": pick,
                "eligible_trials": int(eligible.sum()),
                "in_sample_objective": in_sample,
                "out_of_sample_objective": out_of_sample,
                "note": note,
            }
        )
    stitched = np.concatenate(stitched_parts) if stitched_parts else np.zeros(0)
    first = folds[0].test_start if folds else 0
    curve = pl.DataFrame(
        {
            "date": results.dates[first : first + stitched.size],
            "fold": fold_of,
            "trial": trial_of,
            "daily_return": stitched,
            "equity": np.cumprod(1.0 + stitched),
        }
    )
    return WalkForward(pl.DataFrame(rows), curve, stitched, chosen)


TrialEvaluator = Callable[[Sequence[Trial]], TrialReturns]


@dataclass(frozen=True)
class StudyInputs:
    """The research tables a study reads, as the strategy's own assets read them.

    ``signals``, ``predictions`` (None when no trial weights the model) and ``regimes`` cover
    the study's sessions from ``start``; ``bars`` (date, ticker, open, close, volume) and
    ``benchmark`` (date, close) also the look-back sessions before it. ``tickers`` is the
    universe in partition order (it fixes the order of every sum).
    """

    signals: pl.DataFrame
    predictions: pl.DataFrame | None
    regimes: pl.DataFrame
    bars: pl.DataFrame
    benchmark: pl.DataFrame
    tickers: list[str]
    start: Any
    exits: dict = field(default_factory=dict)  # universe.yaml membership ends (ticker → date)

    @property
    def book_bars(self) -> pl.DataFrame:
        """``bars`` as the books read them: with the exit prints of names leaving."""
        from quant_assets.backtest.frames import with_exit_prints

        return with_exit_prints(self.bars, self.exits)


def evaluate_reference(inputs: StudyInputs, trials: Sequence[Trial]) -> TrialReturns:
    """Each trial through the strategy path itself — ``combine_signals`` → ``size_positions``
    → ``run_book`` from a fresh book at ``inputs.start`` — one after the other (~10 s each on
    the bundled data). The reference the vectorised evaluation is tested against."""
    from quant_assets.backtest.book import BookState, run_book
    from quant_assets.backtest.evaluation import daily_portfolio
    from quant_assets.meta import combine_signals
    from quant_assets.risk import PositionState, size_positions

    closes = inputs.bars.select("date", "ticker", "close").drop_nulls()
    columns: list[tuple[np.ndarray, np.ndarray, np.ndarray]] = []
    dates: list[Any] = []
    for trial in trials:
        strategy = trial.strategy
        alpha = combine_signals(inputs.signals, inputs.predictions, inputs.regimes, strategy.alpha)
        positions = size_positions(
            alpha,
            closes,
            inputs.regimes,
            strategy,
            start=inputs.start,
            state=PositionState(),
            tickers=inputs.tickers,
        )
        book = run_book(
            inputs.book_bars,
            positions.rows.select("date", "ticker", "target_weight"),
            strategy.backtest,
            start=inputs.start,
            state=BookState.initial(strategy.backtest.initial_capital),
            tickers=inputs.tickers,
        )
        daily = daily_portfolio(book.book)
        per_day = (
            daily.select("date")
            .join(book.trades.group_by("date").len(), on="date", how="left")
            .fill_null(0)
        )
        dates = daily["date"].to_list()
        columns.append(
            (
                daily["portfolio_return"].fill_null(0.0).to_numpy(),
                per_day["len"].to_numpy(),
                daily["turnover"].fill_null(0.0).to_numpy(),
            )
        )
    return TrialReturns(
        dates=dates,
        returns=np.column_stack([c[0] for c in columns]),
        trades=np.column_stack([c[1] for c in columns]),
        turnover=np.column_stack([c[2] for c in columns]),
    )


@dataclass(frozen=True)
class StudyStatistics:
    """The statistics of the selection that count every trial.

    ``n_trials`` is the ledger's count of distinct configurations ever evaluated, this study's
    included; ``n_effective`` replaces this study's trials by their clusters of correlated
    returns. The DSR of the stitched out-of-sample curve uses ``n_trials`` (the conservative
    count) and the variance of every ledger Sharpe; ``deflated_sharpe_effective`` is the same
    with ``n_effective``. SPA p-values: the stitched curve against the benchmark, and against
    the benchmark scaled to the curve's volatility.
    """

    n_trials: int
    n_study_trials: int
    n_effective: int
    trial_sharpe_variance: float
    deflated_sharpe: float
    deflated_sharpe_effective: float
    expected_max_sharpe_annualized: float
    pbo: float
    pbo_logits: np.ndarray
    in_sample_mean: float
    out_of_sample_mean: float
    degradation_slope: float
    oos_loss_probability: float
    spa_pvalue: float
    spa_pvalue_volatility_matched: float
    oos_sharpe: float
    benchmark_sharpe: float


def study_statistics(
    study: StudySettings,
    trials: Sequence[Trial],
    results: TrialReturns,
    walk: WalkForward,
    benchmark_returns: np.ndarray,
    ledger: LedgerView,
    *,
    reps: int = 1000,
    block_size: int = 10,
    seed: int = 17,
) -> StudyStatistics:
    """DSR (ledger N and effective N), PBO by CSCV over the trials' returns, the in-sample vs
    out-of-sample degradation of the folds, and SPA p-values of the stitched curve.

    ``benchmark_returns`` are on the stitched curve's dates. Raises ValueError when the
    stitched curve has fewer than 3 sessions or no variance (nothing to deflate).
    """
    from quant_assets.backtest.overfitting import (
        effective_trials,
        probability_of_backtest_overfitting,
        selection_reality_check,
    )
    from quant_assets.backtest.statistics import deflated_sharpe_ratio, expected_max_sharpe

    matrix = results.returns
    per_period = column_metrics(matrix)["sharpe"] / math.sqrt(SESSIONS_PER_YEAR)
    own = {t.config_hash: float(s) for t, s in zip(trials, per_period, strict=True)}
    counted = ledger.with_entries(own)  # this study's own figures for its trials
    every = counted.sharpes[np.isfinite(counted.sharpes)]
    n_trials = counted.n_trials
    variance = float(np.var(every, ddof=1)) if every.size > 1 else 0.0
    varying = matrix[:, np.std(matrix, axis=0) > 0]
    clusters = effective_trials(varying).n_clusters if varying.shape[1] > 1 else 1
    n_effective = max(1, n_trials - len(trials) + clusters)
    stitched = walk.stitched_returns
    dsr = deflated_sharpe_ratio(stitched, n_trials=n_trials, trial_sharpe_variance=variance)
    dsr_effective = deflated_sharpe_ratio(
        stitched, n_trials=n_effective, trial_sharpe_variance=variance
    )
    if varying.shape[1] >= 2:
        pbo = probability_of_backtest_overfitting(
            varying, n_partitions=study.pbo_partitions, metric="sharpe"
        )
        pbo_value, logits = pbo.pbo, pbo.logits
    else:
        pbo_value, logits = float("nan"), np.zeros(0)
    in_sample = walk.folds["in_sample_objective"].to_numpy()
    out_of_sample = walk.folds["out_of_sample_objective"].to_numpy()
    finite = np.isfinite(in_sample) & np.isfinite(out_of_sample)
    slope = (
        float(np.polyfit(in_sample[finite], out_of_sample[finite], 1)[0])
        if finite.sum() >= 2 and np.ptp(in_sample[finite]) > 0
        else float("nan")
    )
    reality = selection_reality_check(
        benchmark_returns,
        stitched[:, None],
        ["selection"],
        reps=reps,
        block_size=block_size,
        seed=seed,
    )
    bench_sharpe = column_metrics(benchmark_returns[:, None])["sharpe"][0]
    return StudyStatistics(
        n_trials=n_trials,
        n_study_trials=len(trials),
        n_effective=n_effective,
        trial_sharpe_variance=variance,
        deflated_sharpe=dsr.deflated_sharpe,
        deflated_sharpe_effective=dsr_effective.deflated_sharpe,
        expected_max_sharpe_annualized=expected_max_sharpe(n_trials, variance)
        * math.sqrt(SESSIONS_PER_YEAR),
        pbo=pbo_value,
        pbo_logits=logits,
        in_sample_mean=float(np.mean(in_sample[finite])) if finite.any() else float("nan"),
        out_of_sample_mean=float(np.mean(out_of_sample[finite])) if finite.any() else float("nan"),
        degradation_slope=slope,
        oos_loss_probability=float(np.mean(out_of_sample[finite] < 0))
        if finite.any()
        else float("nan"),
        spa_pvalue=float(reality.raw.spa_pvalue_consistent),
        spa_pvalue_volatility_matched=float(reality.volatility_matched.spa_pvalue_consistent),
        oos_sharpe=float(column_metrics(stitched[:, None])["sharpe"][0]),
        benchmark_sharpe=float(bench_sharpe),
    )


@dataclass(frozen=True)
class GateDecision:
    """Whether the study's selection may become a strategy, and why."""

    promoted: bool
    reasons: tuple[str, ...]


def gate_decision(study: StudySettings, stats: StudyStatistics) -> GateDecision:
    """The configured gates on the out-of-sample selection: DSR (ledger N) at least
    ``min_deflated_sharpe``, PBO at most ``max_pbo``, and the SPA p-value against the
    benchmark at most ``max_spa_pvalue``. The volatility-matched p-value is reported, not
    gated (both are in the reasons)."""
    gates = study.gates
    reasons: list[str] = []
    passed = True

    def check(ok: bool, text: str) -> None:
        nonlocal passed
        passed &= ok
        reasons.append(("pass: " if ok else "fail: ") + text)

    check(
        stats.deflated_sharpe >= gates.min_deflated_sharpe,
        f"deflated Sharpe {stats.deflated_sharpe:.3f} (N = {stats.n_trials} in the ledger) "
        f"vs >= {gates.min_deflated_sharpe}",
    )
    check(
        math.isfinite(stats.pbo) and stats.pbo <= gates.max_pbo,
        f"PBO {stats.pbo:.3f} vs <= {gates.max_pbo}",
    )
    check(
        stats.spa_pvalue <= gates.max_spa_pvalue,
        f"SPA p-value vs the benchmark {stats.spa_pvalue:.3f} vs <= {gates.max_spa_pvalue}",
    )
    reasons.append(
        f"info: SPA p-value vs the volatility-matched benchmark "
        f"{stats.spa_pvalue_volatility_matched:.3f}; deflated Sharpe with the effective "
        f"N = {stats.n_effective}: {stats.deflated_sharpe_effective:.3f}"
    )
    return GateDecision(passed, tuple(reasons))


@dataclass(frozen=True)
class StudyResult:
    """Everything a study stores: its trials, folds, stitched curve, statistics and decision."""

    study: StudySettings
    trials: pl.DataFrame
    folds: pl.DataFrame
    curve: pl.DataFrame
    statistics: StudyStatistics
    decision: GateDecision
    selected: Trial  # the trial chosen by the last fold: what promotion writes
    trial_list: tuple[Trial, ...]
    results: TrialReturns


def _params_json(params: dict[str, Any]) -> str:
    import json

    return json.dumps(params, sort_keys=True, default=float)


def run_study(
    study: StudySettings,
    base: StrategySettings,
    inputs: StudyInputs,
    ledger: LedgerView,
    evaluate: Callable[[StudyInputs, Sequence[Trial]], TrialReturns] = evaluate_reference,
    *,
    reps: int = 1000,
    block_size: int = 10,
) -> StudyResult:
    """Run ``study`` on ``inputs``: its trials, the walk-forward selection, the statistics
    (with ``ledger`` as it was before the study) and the gate decision.

    Raises ValueError naming the study for an invalid trial, too few sessions for a fold, no
    eligible trial in the last fold, or a stitched curve without variance.
    """
    trials = study_trials(study, base)
    results = evaluate(inputs, trials)
    folds = walk_forward_folds(results.dates, study)
    walk = select_walk_forward(results, folds, study)
    if walk.chosen[-1] < 0:
        raise ValueError(
            f"study {study.name}: no trial met the constraints on the last fold's train "
            "window (constraints.min_trades / constraints.max_drawdown)"
        )
    benchmark = (
        pl.DataFrame({"date": walk.curve["date"]})
        .join(
            inputs.benchmark.sort("date").select(
                "date", (pl.col("close") / pl.col("close").shift(1) - 1).alias("r")
            ),
            on="date",
            how="left",
        )["r"]
        .fill_null(0.0)
        .to_numpy()
    )
    stats = study_statistics(
        study,
        trials,
        results,
        walk,
        benchmark,
        ledger,
        reps=reps,
        block_size=block_size,
        seed=study.search.seed,
    )
    decision = gate_decision(study, stats)
    metrics = column_metrics(results.returns)
    chosen_count = np.bincount(walk.chosen[walk.chosen >= 0], minlength=len(trials))
    trials_frame = pl.DataFrame(
        {
            "trial": [t.number for t in trials],
            "config_hash": [t.config_hash for t in trials],
            "params": [_params_json(t.params) for t in trials],
            **{name: metrics[name] for name in ("sharpe", "sortino", "cagr", "calmar")},
            "max_drawdown": metrics["max_drawdown"],
            "trades": results.trades.sum(axis=0).astype(np.int64),
            "mean_turnover": results.turnover.mean(axis=0),
            "folds_chosen": chosen_count.astype(np.int64),
        }
    )
    return StudyResult(
        study=study,
        trials=trials_frame,
        folds=walk.folds,
        curve=walk.curve,
        statistics=stats,
        decision=decision,
        selected=trials[int(walk.chosen[-1])],
        trial_list=tuple(trials),
        results=results,
    )
