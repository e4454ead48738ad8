"""A study from the warehouse: read the research tables, run it, record its trials in the ledger,
write its HTML report and its MLflow runs. Called by the study's Dagster asset."""

from __future__ import annotations

import hashlib
import json
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import polars as pl

from quant_assets.defs.resources import WarehouseResource
from quant_assets.research.studies import (
    StudyInputs,
    StudyResult,
    Trial,
    TrialReturns,
    column_metrics,
    run_study,
)
from quant_assets.settings import PREDICTION_COMPONENT, Settings, StudySettings

REPORTS_DIR = "reports"
STUDY_EXPERIMENT = "studies"
DECISION_COLUMNS = (
    "study",
    "base_strategy",
    "n_trials_study",
    "n_trials_ledger",
    "n_trials_effective",
    "selected_trial",
    "selected_hash",
    "selected_params",
    "oos_start",
    "oos_end",
    "oos_sharpe",
    "benchmark_sharpe",
    "deflated_sharpe",
    "deflated_sharpe_effective",
    "pbo",
    "spa_pvalue",
    "spa_pvalue_volatility_matched",
    "in_sample_mean_objective",
    "out_of_sample_mean_objective",
    "degradation_slope",
    "promoted",
    "reasons",
    "report_path",
    "mlflow_run_id",
)


def study_report_path(home: Path, study: str) -> Path:
    return home / REPORTS_DIR / f"study_{study}.html"


def study_start(settings: Settings):
    """The study's first session: the strategies' first window (the first model cut-off)."""
    from quant_assets.defs.partitions import first_window_start, ticker_date_partitions

    first_cutoff = settings.models.resolved_first_cutoff(settings.universe.start)
    return first_window_start(ticker_date_partitions(settings.universe, start=first_cutoff))


def _look_back_sessions(settings: Settings, study: StudySettings) -> int:
    """Sessions of bars before the start the widest trial needs (volatility, VaR, ADV)."""
    from quant_assets.research.studies import study_trials
    from quant_assets.risk import history_sessions

    base = settings.strategies[study.base]
    widest = max(
        max(
            history_sessions(t.strategy),
            t.strategy.backtest.adv_window + 1,
            t.strategy.backtest.vol_window + 1,
        )
        for t in study_trials(study, base)
    )
    return int(widest)


def load_study_inputs(
    settings: Settings, study: StudySettings, warehouse: WarehouseResource
) -> StudyInputs:
    """The research tables from the study's first session (bars and the benchmark with the
    look-back the widest trial needs), read as the strategy assets read them."""
    from quant_assets.models.cutoffs import days_for_sessions
    from quant_assets.research.studies import study_trials

    start = study_start(settings)
    look_back = start - days_for_sessions(_look_back_sessions(settings, study))
    trials = study_trials(study, settings.strategies[study.base])
    uses_model = any(PREDICTION_COMPONENT in t.strategy.alpha.components for t in trials)
    return StudyInputs(
        signals=warehouse.read("signals", start=start),
        predictions=warehouse.read("predictions", start=start) if uses_model else None,
        regimes=warehouse.read("regimes", start=start),
        bars=warehouse.read(
            "bars", start=look_back, columns=["date", "ticker", "open", "close", "volume"]
        ),
        benchmark=warehouse.read(
            "benchmark_bars", start=look_back, columns=["date", "close"]
        ).drop_nulls(),
        tickers=list(settings.universe.tickers),
        start=start,
        exits=settings.universe.exits,
    )


def strategies_evaluated(settings: Settings, inputs: StudyInputs, evaluate) -> dict[str, float]:
    """Every configured strategy's daily Sharpe on the study's sessions, by hash, evaluated by
    the study itself (the vectorised path equals the strategies' books): so the study's
    statistics do not depend on whether the reports ran before it."""
    from quant_assets.research.studies import Trial, strategy_hash

    trials = [
        Trial(-1, {}, strategy, strategy_hash(strategy))
        for strategy in settings.strategies.values()
    ]
    results = evaluate(inputs, trials)
    sharpes = column_metrics(results.returns)["sharpe"] / np.sqrt(252.0)
    return {t.config_hash: float(s) for t, s in zip(trials, sharpes, strict=True)}


def evaluate_trials(inputs: StudyInputs, trials: Sequence[Trial]) -> TrialReturns:
    """Every trial's daily returns, trades and turnover, in trial order: the trials sized by
    the Kelly allocator through the numba kernels (:func:`evaluate_vectorised`), those sized
    by an optimiser (``sizing.allocator`` mean_variance or risk_parity, which has no numba
    engine) through the strategy path itself (:func:`evaluate_reference`, seconds per trial).
    Both paths give the same numbers for a Kelly trial, bit for bit."""
    from quant_assets.research.studies import evaluate_reference
    from quant_assets.research.trials import evaluate_vectorised

    fast = [k for k, t in enumerate(trials) if t.strategy.sizing.allocator == "kelly"]
    slow = [k for k, t in enumerate(trials) if t.strategy.sizing.allocator != "kelly"]
    parts = [
        (members, run(inputs, [trials[k] for k in members]))
        for members, run in ((fast, evaluate_vectorised), (slow, evaluate_reference))
        if members
    ]
    if len(parts) == 1:
        return parts[0][1]
    dates = parts[0][1].dates
    if parts[1][1].dates != dates:
        raise ValueError("the vectorised and reference evaluations cover different sessions")
    merged = {
        name: np.empty((len(dates), len(trials)), dtype=getattr(parts[0][1], name).dtype)
        for name in ("returns", "trades", "turnover")
    }
    for members, result in parts:
        for name, array in merged.items():
            array[:, members] = getattr(result, name)
    return TrialReturns(dates=dates, **merged)


@dataclass(frozen=True)
class StudyOutcome:
    result: StudyResult
    decision_row: pl.DataFrame
    metadata: dict[str, Any]
    report: Path
    run_id: str


def _ledger_entries(trials: tuple[Trial, ...], results: TrialReturns):
    from quant_assets.research.ledger import LedgerEntry
    from quant_assets.settings import strategy_document

    sharpe = column_metrics(results.returns)["sharpe"] / np.sqrt(252.0)
    return [
        LedgerEntry(
            config_hash=t.config_hash,
            sharpe_per_period=float(s),
            n_sessions=len(results.dates),
            config=json.dumps(strategy_document(t.strategy), sort_keys=True),
        )
        for t, s in zip(trials, sharpe, strict=True)
    ]


def build_study(
    settings: Settings,
    study: StudySettings,
    warehouse: WarehouseResource,
    home: Path,
    evaluate=None,
) -> StudyOutcome:
    """Run ``study`` on the warehouse, record its trials in the ledger, write its report and
    MLflow runs; return its tables' rows and the Dagster metadata."""
    from quant_assets.engine.reporting import _registry_for
    from quant_assets.research.ledger import ledger_view, record_trials
    from quant_assets.research.study_report import write_study_report

    base = settings.strategies[study.base]
    inputs = load_study_inputs(settings, study, warehouse)
    database = Path(warehouse.database)
    evaluate = evaluate or evaluate_trials
    before = ledger_view(database).with_entries(strategies_evaluated(settings, inputs, evaluate))
    promotion = base.promotion
    result = run_study(
        study,
        base,
        inputs,
        before,
        evaluate,
        reps=promotion.bootstrap_reps,
        block_size=promotion.bootstrap_block,
    )
    record_trials(database, "study", study.name, _ledger_entries(result.trial_list, result.results))
    report = write_study_report(study_report_path(home, study.name), result)
    stats, decision = result.statistics, result.decision
    figures = {
        "oos_sharpe": stats.oos_sharpe,
        "benchmark_sharpe": stats.benchmark_sharpe,
        "deflated_sharpe": stats.deflated_sharpe,
        "deflated_sharpe_effective": stats.deflated_sharpe_effective,
        "pbo": stats.pbo,
        "spa_pvalue": stats.spa_pvalue,
        "spa_pvalue_volatility_matched": stats.spa_pvalue_volatility_matched,
        "in_sample_mean_objective": stats.in_sample_mean,
        "out_of_sample_mean_objective": stats.out_of_sample_mean,
        "degradation_slope": stats.degradation_slope,
        "n_trials_ledger": float(stats.n_trials),
        "n_trials_effective": float(stats.n_effective),
        "n_trials_study": float(stats.n_study_trials),
    }
    ranked = result.trials.sort(study.objective, descending=True, nulls_last=True)
    children = [
        (
            f"{study.name}/trial-{row['trial']}",
            {"config_hash": row["config_hash"], **json.loads(row["params"])},
            {k: row[k] for k in ("sharpe", "sortino", "cagr", "calmar", "max_drawdown")},
        )
        for row in ranked.head(study.top_runs).iter_rows(named=True)
    ]
    sha = hashlib.sha256(
        json.dumps(
            [study.model_dump(mode="json"), result.trials["config_hash"].to_list(), figures],
            sort_keys=True,
            default=str,
        ).encode()
    ).hexdigest()
    registry = _registry_for(settings, home, STUDY_EXPERIMENT)
    run_id = registry.log_study(
        run_name=study.name,
        params={
            "study": study.name,
            "base": study.base,
            "objective": study.objective,
            "search": study.search.model_dump(mode="json"),
            "walk_forward": study.walk_forward.model_dump(mode="json"),
            "gates": study.gates.model_dump(mode="json"),
            "selected_hash": result.selected.config_hash,
        },
        metrics=figures,
        tags={
            "study": study.name,
            "promotion": "promoted" if decision.promoted else "refused",
            "promotion_reason": "; ".join(decision.reasons)[:5000],
        },
        files=[report],
        trials=result.trials.to_pandas(),
        children=children,
        sha=sha,
    )
    curve = result.curve
    row = pl.DataFrame(
        [
            {
                "study": study.name,
                "base_strategy": study.base,
                "n_trials_study": stats.n_study_trials,
                "n_trials_ledger": stats.n_trials,
                "n_trials_effective": stats.n_effective,
                "selected_trial": result.selected.number,
                "selected_hash": result.selected.config_hash,
                "selected_params": json.dumps(result.selected.params, sort_keys=True),
                "oos_start": curve["date"][0],
                "oos_end": curve["date"][-1],
                **{k: float(v) for k, v in figures.items() if not k.startswith("n_trials")},
                "promoted": decision.promoted,
                "reasons": "; ".join(decision.reasons),
                "report_path": str(report),
                "mlflow_run_id": run_id,
            }
        ]
    ).select(DECISION_COLUMNS)
    metadata = {
        "decision": "promoted" if decision.promoted else "refused",
        "reasons": "\n".join(decision.reasons),
        "selected": json.dumps(result.selected.params, sort_keys=True),
        "trials": stats.n_study_trials,
        "ledger_trials": stats.n_trials,
        "report": str(report),
        "mlflow_run_id": run_id,
        **{k: round(float(v), 4) for k, v in figures.items() if np.isfinite(v)},
    }
    return StudyOutcome(result, row, metadata, report, run_id)
