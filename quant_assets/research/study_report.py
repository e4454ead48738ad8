"""The HTML report of a study: the gate decision and its figures, the parameter surface, in-sample
vs out-of-sample per fold, the stitched out-of-sample equity and the PBO histogram of logits.
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import plotly.graph_objects as go
import polars as pl

from quant_assets.backtest.report import write_html_page
from quant_assets.research.studies import StudyResult

SURFACE_TITLE = "Parameter surface (full-sample objective, best over the other parameters)"
FOLDS_TITLE = "In-sample vs out-of-sample objective of each fold's choice"
EQUITY_TITLE = "Stitched out-of-sample equity (each fold's choice on its test window)"
PBO_TITLE = "PBO: logits of the in-sample winner's out-of-sample rank (CSCV)"


def _surface(result: StudyResult) -> go.Figure | None:
    """Heatmap of the objective over the two ``surface`` parameters (or the first two of the
    space), the best value over the other parameters in each cell."""
    keys = list(result.study.surface or list(result.study.space)[:2])
    if len(keys) < 2:
        return None
    objective = result.study.objective
    params = [json.loads(p) for p in result.trials["params"]]
    frame = pl.DataFrame(
        {
            "x": [str(p[keys[0]]) for p in params],
            "y": [str(p[keys[1]]) for p in params],
            "value": result.trials[objective],
        }
    )
    table = frame.group_by("x", "y").agg(pl.col("value").max())
    xs = list(dict.fromkeys(str(p[keys[0]]) for p in params))
    ys = list(dict.fromkeys(str(p[keys[1]]) for p in params))
    cell = {(x, y): v for x, y, v in table.iter_rows()}
    z = [[cell.get((x, y)) for x in xs] for y in ys]
    figure = go.Figure(
        go.Heatmap(x=xs, y=ys, z=z, colorscale="Viridis", colorbar={"title": objective})
    )
    figure.update_layout(xaxis_title=keys[0], yaxis_title=keys[1])
    return figure


def _folds(result: StudyResult) -> go.Figure | None:
    folds = result.folds.filter(pl.col("chosen_trial") >= 0)
    if folds.height == 0:
        return None
    figure = go.Figure(
        go.Scatter(
            x=folds["in_sample_objective"].to_list(),
            y=folds["out_of_sample_objective"].to_list(),
            mode="markers+text",
            text=[f"fold {f}: trial {t}" for f, t in folds.select("fold", "chosen_trial").rows()],
            textposition="top center",
        )
    )
    objective = result.study.objective
    figure.update_layout(
        xaxis_title=f"in-sample {objective}", yaxis_title=f"out-of-sample {objective}"
    )
    return figure


def _equity(result: StudyResult) -> go.Figure | None:
    curve = result.curve
    if curve.height == 0:
        return None
    figure = go.Figure(
        go.Scatter(x=curve["date"].to_list(), y=curve["equity"].to_list(), name="selection")
    )
    figure.update_layout(yaxis_title="equity (rebased to 1)")
    return figure


def _pbo(result: StudyResult) -> go.Figure | None:
    logits = np.asarray(result.statistics.pbo_logits)
    logits = logits[np.isfinite(logits)]
    if logits.size == 0:
        return None
    figure = go.Figure(go.Histogram(x=logits, nbinsx=40))
    figure.add_vline(x=0.0, line_dash="dash")
    figure.update_layout(
        xaxis_title="logit of the relative out-of-sample rank (<= 0: overfit)",
        yaxis_title="combinations",
    )
    return figure


def write_study_report(path: Path, result: StudyResult) -> Path:
    """Write the study's HTML page to ``path`` (atomically, plotly.js beside it)."""
    stats, decision = result.statistics, result.decision
    curve = result.curve
    subtitle = (
        f"{result.study.name}: {len(result.trial_list)} trials of {result.study.base}, "
        f"{result.folds.height} folds ({result.study.walk_forward.scheme}), out of sample "
        f"{curve['date'][0]} .. {curve['date'][-1]}"
        if curve.height
        else result.study.name
    )
    metrics: dict[str, float | str] = {
        "decision": "promoted" if decision.promoted else "refused",
        "selected_trial": str(result.selected.number),
        "oos_sharpe": stats.oos_sharpe,
        "benchmark_sharpe": stats.benchmark_sharpe,
        "deflated_sharpe": stats.deflated_sharpe,
        "ledger_trials": str(stats.n_trials),
        "effective_trials": str(stats.n_effective),
        "deflated_sharpe_effective": stats.deflated_sharpe_effective,
        "pbo": stats.pbo,
        "spa_pvalue": stats.spa_pvalue,
        "spa_pvalue_volatility_matched": stats.spa_pvalue_volatility_matched,
        "in_sample_mean_objective": stats.in_sample_mean,
        "out_of_sample_mean_objective": stats.out_of_sample_mean,
    }
    notes = [
        *decision.reasons,
        f"Selected configuration: {json.dumps(result.selected.params, sort_keys=True)} "
        f"(hash {result.selected.config_hash})",
        result.study.description,
    ]
    return write_html_page(
        path,
        title=f"Study report: {result.study.name}",
        subtitle=subtitle,
        metrics=metrics,
        notes=[n for n in notes if n],
        sections=[
            (SURFACE_TITLE, _surface(result)),
            (FOLDS_TITLE, _folds(result)),
            (EQUITY_TITLE, _equity(result)),
            (PBO_TITLE, _pbo(result)),
        ],
    )
