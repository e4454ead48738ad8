"""The signal tear sheets from the warehouse: every rule signal, the model's edge per horizon and
every strategy's alpha score, evaluated against forward returns (IC, rank IC, decay, quantiles,
turnover, each by regime); an HTML tear sheet beside the reports and an MLflow run."""

from __future__ import annotations

import hashlib
import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import dagster as dg
import numpy as np
import polars as pl

from quant_assets.defs.resources import WarehouseResource
from quant_assets.research.signal_evaluation import SignalEvaluation
from quant_assets.settings import SIGNAL_COMPONENTS, Settings

REPORTS_DIR = "reports"
SIGNAL_EXPERIMENT = "signals"
TEAR_SHEET = "signal_tear_sheet.html"


def signal_factors(settings: Settings, warehouse: WarehouseResource) -> pl.DataFrame:
    """The factors, long (signal, date, ticker, value): the rule signals (null before their
    features warm up), ``model_edge_h<h>`` = p_up − p_down of each prediction horizon, and
    ``<strategy>.alpha_score`` of every strategy with stored scores."""
    signals = warehouse.read("signals", columns=["date", "ticker", "warmed_up", *SIGNAL_COMPONENTS])
    parts = [
        signals.select(
            pl.lit(name).alias("signal"),
            "date",
            "ticker",
            pl.when(pl.col("warmed_up")).then(pl.col(name)).alias("value"),
        )
        for name in SIGNAL_COMPONENTS
    ]
    if warehouse.table_exists("predictions"):
        predictions = warehouse.read(
            "predictions", columns=["date", "ticker", "horizon", "prob_up", "prob_down"]
        )
        parts.append(
            predictions.select(
                pl.format("model_edge_h{}", pl.col("horizon")).alias("signal"),
                "date",
                "ticker",
                (pl.col("prob_up") - pl.col("prob_down")).alias("value"),
            )
        )
    for name in settings.strategies:
        if warehouse.table_exists("alpha_scores", schema=name):
            scores = warehouse.read_sql(
                "select date, ticker, alpha_score from {table}", "alpha_scores", schema=name
            )
            parts.append(
                scores.select(
                    pl.lit(f"{name}.alpha_score").alias("signal"),
                    "date",
                    "ticker",
                    pl.col("alpha_score").alias("value"),
                )
            )
    return pl.concat(
        [p.with_columns(pl.col("value").cast(pl.Float64)) for p in parts], how="vertical"
    )


@dataclass(frozen=True)
class SignalEvaluationOutcome:
    evaluation: SignalEvaluation
    forward_returns: pl.DataFrame
    tear_sheet: Path
    run_id: str
    metadata: dict[str, Any]


def _summary_table(evaluation: SignalEvaluation) -> pl.DataFrame:
    """The summary over all dates (regime_label ``all``) and per regime, one table."""
    overall = evaluation.summary.with_columns(pl.lit("all").alias("regime_label"))
    by_regime = evaluation.summary_by_regime.with_columns(pl.col("regime_label").cast(pl.Utf8))
    return pl.concat([overall.select(by_regime.columns), by_regime], how="vertical_relaxed")


def build_signal_evaluation(
    settings: Settings, warehouse: WarehouseResource, home: Path
) -> SignalEvaluationOutcome:
    """Evaluate every factor on the stored bars and regimes; write the tear sheet and log the
    summary to MLflow (one run, reused while the content is unchanged)."""
    from quant_assets.backtest.report import ensure_plotly_bundle, write_atomically
    from quant_assets.engine.reporting import _registry_for
    from quant_assets.research.signal_evaluation import evaluate_signals, forward_returns
    from quant_assets.research.tearsheet import tear_sheet_html, tear_sheet_markdown

    config = settings.research.signal_evaluation
    closes = warehouse.read("bars", columns=["date", "ticker", "close"]).drop_nulls("close")
    regimes = warehouse.read("regimes", columns=["date", "regime_label"])
    factors = signal_factors(settings, warehouse)
    evaluation = evaluate_signals(
        factors,
        closes,
        regimes,
        horizons=config.horizons,
        decay_horizons=range(1, config.decay_horizons + 1),
        quantiles=config.quantiles,
        min_names=config.min_names,
    )
    returns = forward_returns(closes, config.horizons)
    directory = home / REPORTS_DIR
    directory.mkdir(parents=True, exist_ok=True)
    ensure_plotly_bundle(directory)
    path = directory / TEAR_SHEET
    write_atomically(
        path, tear_sheet_html(evaluation, "Signal tear sheet", plotly_src="plotly.min.js")
    )
    metrics: dict[str, float] = {}
    for row in evaluation.summary.iter_rows(named=True):
        prefix = f"{row['signal']}.h{row['horizon']}"
        for key in (
            "mean_ic",
            "mean_rank_ic",
            "rank_ic_t_stat",
            "rank_ic_ir",
            "rank_ic_hit_rate",
            "mean_top_bottom_spread",
        ):
            value = row[key]
            if value is not None and np.isfinite(value):
                metrics[f"{prefix}.{key}"] = float(value)
    summary = _summary_table(evaluation)
    sha = hashlib.sha256(
        json.dumps(
            [config.model_dump(mode="json"), summary.rows(), evaluation.dropped.rows()],
            sort_keys=True,
            default=str,
        ).encode()
    ).hexdigest()
    registry = _registry_for(settings, home, SIGNAL_EXPERIMENT)
    run_id = registry.log_evaluation(
        run_name="signal_evaluation",
        params={
            "evaluation": config.model_dump(mode="json"),
            "signals": sorted(set(factors["signal"].to_list())),
        },
        metrics=metrics,
        tags={"kind": "signal_evaluation"},
        files=[path],
        tables={"summary": summary.to_pandas(), "dropped": evaluation.dropped.to_pandas()},
        sha=sha,
    )
    markdown = tear_sheet_markdown(evaluation)
    metadata = {
        "summary": dg.MetadataValue.md(markdown),
        "tear_sheet": dg.MetadataValue.path(str(path)),
        "mlflow_run": dg.MetadataValue.url(registry.run_url(run_id)),
        "signals": evaluation.summary["signal"].n_unique(),
        "evaluated_dates": evaluation.ic["date"].n_unique(),
        "dropped_rows": int(evaluation.dropped["n_rows"].sum() or 0),
    }
    return SignalEvaluationOutcome(evaluation, returns, path, run_id, metadata)
