"""The backtest report of one strategy: read the stored book, evaluate, write HTML, log to MLflow.

The Dagster edge of :mod:`quant_assets.backtest.evaluation` (which holds the logic).
"""

from __future__ import annotations

import hashlib
import json
from dataclasses import dataclass
from pathlib import Path

import dagster as dg
import numpy as np
import polars as pl

from quant_assets.defs.common import markdown
from quant_assets.defs.resources import WarehouseResource
from quant_assets.names import SESSIONS_PER_YEAR
from quant_assets.settings import Settings, StrategySettings

REPORTS_DIR = "reports"
STRATEGY_EXPERIMENT = "strategies"

# Metrics in the summary table (the report formats them by name: percentages, ratios).
SUMMARY = (
    "total_return",
    "annualized_return",
    "annualized_volatility",
    "sharpe",
    "sortino",
    "max_drawdown",
    "calmar",
    "win_rate",
    "average_daily_turnover",
    "average_gross_exposure",
    "alpha_annualized",
    "beta",
    "information_ratio",
    "deflated_sharpe",
    "spa_pvalue",
    "reality_check_pvalue",
)


@dataclass(frozen=True)
class ReportOutcome:
    row: pl.DataFrame
    metadata: dict
    decision: str
    reason: str


def format_metric(name: str, value: float | None) -> str:
    """A metric as the HTML report shows it (``None``: not computed)."""
    from quant_assets.backtest.report import format_metric_value

    return format_metric_value(name, float("nan") if value is None else value)


def report_path(home: Path, strategy: str) -> Path:
    return home / REPORTS_DIR / f"{strategy}.html"


def _book(warehouse: WarehouseResource, strategy: str) -> pl.DataFrame:
    if not warehouse.table_exists("backtest", schema=strategy):
        return pl.DataFrame()
    return warehouse.read_sql(
        "select date, ticker, pnl, equity, portfolio_return, gross_exposure, net_exposure, "
        "turnover from {table} order by date, ticker",
        "backtest",
        schema=strategy,
    )


def build_report(
    settings: Settings, strategy: StrategySettings, warehouse: WarehouseResource, home: Path
) -> ReportOutcome:
    """Evaluate ``strategy`` from the warehouse; write its HTML report and MLflow run."""
    from quant_assets.backtest.evaluation import daily_portfolio, evaluate_strategy
    from quant_assets.backtest.report import write_html_report

    name = strategy.name
    book = _book(warehouse, name)
    if book.is_empty():
        raise dg.Failure(description=f"{name}/backtest has no rows: materialise it first")
    start, end = book["date"].min(), book["date"].max()
    alpha = warehouse.read_sql(
        "select date, ticker, alpha_score from {table}", "alpha_scores", schema=name
    )
    regimes = warehouse.read("regimes", columns=["date", "regime_label"])
    benchmark = warehouse.read("benchmark_bars", columns=["date", "close"]).drop_nulls()
    others = {}
    for other in settings.strategies:
        if other == name:
            continue
        other_book = _book(warehouse, other)
        if not other_book.is_empty():
            others[other] = daily_portfolio(other_book)
    ledger = _record_in_ledger(settings, warehouse, daily_portfolio(book), others, name)
    try:
        evaluation = evaluate_strategy(
            strategy, book, alpha, regimes, benchmark, others, list(settings.strategies), ledger
        )
    except ValueError as exc:
        raise dg.Failure(description=str(exc)) from exc
    decision = "promoted" if evaluation.promoted else "refused"
    reason = "; ".join(evaluation.reasons)

    daily = evaluation.daily
    bench = (
        daily.select("date")
        .join(benchmark, on="date", how="left")
        .with_columns(pl.col("close").forward_fill().backward_fill())
    )
    bench_close = bench["close"].to_numpy()
    path = write_html_report(
        report_path(home, name),
        strategy=name,
        dates=daily["date"].to_list(),
        equity=daily["equity"].to_numpy(),
        benchmark_equity=bench_close * (daily["equity"][0] / bench_close[0])
        if len(bench_close) and np.isfinite(bench_close[0])
        else None,
        gross_exposure=daily["gross_exposure"].to_numpy(),
        net_exposure=daily["net_exposure"].to_numpy(),
        returns=daily["portfolio_return"].to_numpy(),
        pnl_by_regime=evaluation.pnl_by_regime,
        pnl_by_bucket=evaluation.pnl_by_bucket,
        metrics={
            **{k: evaluation.metrics.get(k, float("nan")) for k in SUMMARY},
            "period": f"{start!s} .. {end!s}",
            "decision": decision,
        },
        notes=[
            f"Promotion: {decision}",
            *evaluation.reasons,
            f"Compared in the reality check: {', '.join(evaluation.compared)}",
            strategy.description,
            *survivorship_notes(settings),
        ],
    )
    sha = hashlib.sha256(
        json.dumps(
            [strategy.model_dump(mode="json"), evaluation.metrics, str(start), str(end)],
            sort_keys=True,
            default=str,
        ).encode()
    ).hexdigest()
    registry = _registry(settings, home)
    run_id = registry.log_evaluation(
        run_name=name,
        params={
            "strategy": name,
            "period_start": str(start),
            "period_end": str(end),
            "alpha": strategy.alpha.model_dump(mode="json"),
            "sizing": strategy.sizing.model_dump(mode="json"),
            "backtest": strategy.backtest.model_dump(mode="json"),
            "risk": strategy.risk.model_dump(mode="json"),
            "promotion": strategy.promotion.model_dump(mode="json"),
        },
        metrics=evaluation.metrics,
        tags={"strategy": name, "promotion": decision, "promotion_reason": reason[:5000]},
        files=[path],
        tables={
            "pnl_by_regime": evaluation.pnl_by_regime.to_pandas(),
            "pnl_by_signal_bucket": evaluation.pnl_by_bucket.to_pandas(),
        },
        sha=sha,
    )
    row = pl.DataFrame(
        [
            {
                "strategy": name,
                "period_start": start,
                "period_end": end,
                **{k: float(v) for k, v in evaluation.metrics.items()},
                "promoted": evaluation.promoted,
                "promotion_reason": reason,
                "compared_strategies": ", ".join(evaluation.compared),
                "report_path": str(path),
                "mlflow_run_id": run_id,
            }
        ]
    )
    summary = pl.DataFrame(
        {
            "metric": list(SUMMARY),
            "value": [format_metric(k, evaluation.metrics.get(k)) for k in SUMMARY],
        }
    )
    metadata = {
        "period": f"{start!s} .. {end!s}",
        "promotion": decision,
        "promotion_reason": reason,
        "summary": dg.MetadataValue.md(markdown(summary)),
        "pnl_by_regime": dg.MetadataValue.md(markdown(_rounded(evaluation.pnl_by_regime))),
        "report": dg.MetadataValue.path(str(path)),
        "mlflow_run": dg.MetadataValue.url(registry.run_url(run_id)),
        **{
            k: dg.MetadataValue.float(float(v))
            for k, v in evaluation.metrics.items()
            if np.isfinite(v)
        },
    }
    return ReportOutcome(row=row, metadata=metadata, decision=decision, reason=reason)


def _record_in_ledger(
    settings: Settings,
    warehouse: WarehouseResource,
    own: pl.DataFrame,
    others: dict[str, pl.DataFrame],
    name: str | None = None,
) -> tuple[int, np.ndarray]:
    """Record the configured strategies with a stored book in the trial ledger (each by its
    content hash, with its daily Sharpe) and return the ledger's N and Sharpe ratios."""
    from quant_assets.research.ledger import LedgerEntry, ledger_view, record_trials
    from quant_assets.research.studies import column_metrics, strategy_hash
    from quant_assets.settings import strategy_document

    books = {**others}
    if name is not None:
        books[name] = own
    entries = []
    for strategy_name, daily in books.items():
        strategy = settings.strategies[strategy_name]
        returns = daily["portfolio_return"].drop_nulls().to_numpy()
        sharpe = float(column_metrics(returns[:, None])["sharpe"][0]) / np.sqrt(SESSIONS_PER_YEAR)
        entries.append(
            LedgerEntry(
                config_hash=strategy_hash(strategy),
                sharpe_per_period=sharpe,
                n_sessions=int(returns.size),
                config=json.dumps(strategy_document(strategy), sort_keys=True),
            )
        )
    database = Path(warehouse.database)
    for entry, strategy_name in zip(entries, books, strict=True):
        record_trials(database, "strategy", strategy_name, [entry])
    from quant_assets.research.studies import counted_with_strategies

    view = counted_with_strategies(ledger_view(database), list(settings.strategies.values()))
    return view.n_trials, view.sharpes


def _rounded(frame: pl.DataFrame) -> pl.DataFrame:
    return frame.with_columns(pl.col(pl.Float64).round(2))


def _registry(settings: Settings, home: Path):
    return _registry_for(settings, home, STRATEGY_EXPERIMENT)


def _registry_for(settings: Settings, home: Path, kind: str):
    """The MLflow registry beside the warehouse, in the ``<experiment>/<kind>`` experiment."""
    from quant_assets.models.registry import ModelRegistry

    mlflow_cfg = settings.models.mlflow
    return ModelRegistry(mlflow_cfg, home, experiment=f"{mlflow_cfg.experiment}/{kind}")


def survivorship_notes(settings: Settings) -> list[str]:
    """What the report says about survivorship bias: the bundled stocks are today's
    constituents; a universe without membership dates never holds a name that left."""
    notes = []
    if "bundled" in settings.providers.chain:
        notes.append(
            "Survivorship bias: the bundled stocks are 20 of today's S&P 500 constituents, "
            "chosen in hindsight; none of them failed, so this history flatters the strategy."
        )
    if not settings.universe.membership:
        notes.append(
            "The universe has no membership dates: every name is held as a member over the "
            "whole history. Give universe.yaml entries {from, to} for a point-in-time universe."
        )
    return notes
