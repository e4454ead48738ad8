"""The tear sheet of a signal evaluation: an HTML page of plots and tables, and a markdown
summary short enough for Dagster metadata.

The page follows the backtest report (:mod:`quant_assets.backtest.report`): plotly figures in
the ``plotly_white`` template, one ``<section>`` per plot, a metrics table. Unlike the report,
which writes a shared ``plotly.min.js`` beside its pages, :func:`tear_sheet_html` returns a
string, so the plotly.js bundle (about 3.5 MB) is inlined once in the page: it opens offline
wherever it is saved. Plots with one line per horizon show one horizon at a time, with a
button per horizon.
"""

from __future__ import annotations

import html
from collections.abc import Callable, Sequence
from typing import Any

import numpy as np
import plotly.graph_objects as go
import polars as pl
from plotly.offline import get_plotlyjs

from quant_assets.backtest.report import PAGE_STYLE
from quant_assets.research.signal_evaluation import SignalEvaluation

# Section titles (each plot's heading in the page).
CUMULATIVE_IC_TITLE = "Cumulative rank IC by origin date"
DECAY_TITLE = "IC decay: mean rank IC by horizon"
QUANTILE_TITLE = "Mean forward return by quantile"
REGIME_TITLE = "Mean rank IC by regime"
SUMMARY_TITLE = "Summary"
DROPPED_TITLE = "Left out of the evaluation"


def _number(decimals: int) -> Callable[[Any], str]:
    return lambda value: f"{value:.{decimals}f}"


def _percent(value: float) -> str:
    return f"{value:.1%}"


def _bps(value: float) -> str:
    return f"{value * 1e4:.1f}"


def _plain(value: object) -> str:
    return str(value)


# Summary columns shown, with their heading and format (null shows as "–").
_SUMMARY_COLUMNS: tuple[tuple[str, str, Callable[[Any], str]], ...] = (
    ("signal", "signal", _plain),
    ("horizon", "horizon (sessions)", _plain),
    ("n_dates", "dates", _plain),
    ("mean_ic", "mean IC", _number(4)),
    ("mean_rank_ic", "mean rank IC", _number(4)),
    ("rank_ic_t_stat", "rank IC t-stat", _number(2)),
    ("rank_ic_ir", "rank IC IR", _number(3)),
    ("rank_ic_hit_rate", "rank IC hit rate", _percent),
    ("mean_top_bottom_spread", "top−bottom spread (bps)", _bps),
    ("mean_rank_autocorrelation", "rank autocorrelation", _number(3)),
    ("mean_top_turnover", "top turnover", _percent),
    ("mean_bottom_turnover", "bottom turnover", _percent),
)
_DROPPED_COLUMNS: tuple[tuple[str, str, Callable[[Any], str]], ...] = (
    ("signal", "signal", _plain),
    ("horizon", "horizon (sessions)", _plain),
    ("reason", "reason", _plain),
    ("n_rows", "factor rows", _plain),
    ("n_dates", "dates", _plain),
)


def _cell(value: object, formatter: Callable[[Any], str]) -> str:
    if value is None or (isinstance(value, float) and not np.isfinite(value)):
        return "–"
    return formatter(value)


def _html_table(
    frame: pl.DataFrame, columns: Sequence[tuple[str, str, Callable[[Any], str]]]
) -> str:
    if frame.height == 0:
        return '<p class="empty">none</p>'
    head = "".join(f"<th>{html.escape(heading)}</th>" for _, heading, _ in columns)
    rows = "\n".join(
        "<tr>"
        + "".join(
            f"<td>{html.escape(_cell(row[name], formatter))}</td>" for name, _, formatter in columns
        )
        + "</tr>"
        for row in frame.iter_rows(named=True)
    )
    return f'<table class="metrics">\n<tr>{head}</tr>\n{rows}\n</table>'


def _one_horizon_at_a_time(figure: go.Figure, trace_horizons: list[int]) -> None:
    """Show the traces of the first horizon, with a button per horizon to switch."""
    horizons = sorted(set(trace_horizons))
    for trace, horizon in zip(figure.data, trace_horizons, strict=True):
        trace.visible = horizon == horizons[0]
    if len(horizons) < 2:
        return
    buttons = [
        {
            "label": f"{horizon} sessions",
            "method": "update",
            "args": [{"visible": [h == horizon for h in trace_horizons]}],
        }
        for horizon in horizons
    ]
    figure.update_layout(
        updatemenus=[
            {
                "type": "buttons",
                "direction": "left",
                "x": 0,
                "y": 1.15,
                "xanchor": "left",
                "buttons": buttons,
            }
        ]
    )


def _cumulative_ic_figure(evaluation: SignalEvaluation) -> go.Figure | None:
    """Running sum of the daily rank IC per signal (undefined dates add 0)."""
    if evaluation.ic.height == 0:
        return None
    figure = go.Figure()
    trace_horizons = []
    for (horizon, signal), group in evaluation.ic.sort("date").group_by(
        ["horizon", "signal"], maintain_order=True
    ):
        figure.add_trace(
            go.Scatter(
                x=group["date"].to_list(),
                y=group["rank_ic"].fill_null(0.0).cum_sum().to_numpy(),
                mode="lines",
                name=str(signal),
                legendgroup=str(signal),
            )
        )
        trace_horizons.append(int(horizon))
    _one_horizon_at_a_time(figure, trace_horizons)
    figure.update_layout(yaxis_title="cumulative rank IC", xaxis_title="origin date")
    return figure


def _decay_figure(evaluation: SignalEvaluation) -> go.Figure | None:
    if evaluation.decay.height == 0:
        return None
    figure = go.Figure()
    for (signal,), group in evaluation.decay.group_by(["signal"], maintain_order=True):
        figure.add_trace(
            go.Scatter(
                x=group["horizon"].to_numpy(),
                y=group["mean_rank_ic"].to_numpy(),
                mode="lines+markers",
                name=str(signal),
            )
        )
    figure.add_hline(y=0, line_color="#999", line_width=1)
    figure.update_layout(xaxis_title="horizon (sessions)", yaxis_title="mean rank IC")
    return figure


def _grouped_bars(
    frame: pl.DataFrame, category: str, value: str, axis_title: str, *, percent: bool
) -> go.Figure | None:
    """Bars of ``value`` by ``category``, one colour per signal, one horizon at a time."""
    if frame.height == 0:
        return None
    figure = go.Figure()
    trace_horizons = []
    for (horizon, signal), group in frame.sort("horizon", "signal", category).group_by(
        ["horizon", "signal"], maintain_order=True
    ):
        figure.add_trace(
            go.Bar(
                x=[str(label) for label in group[category].to_list()],
                y=group[value].to_numpy(),
                name=str(signal),
                legendgroup=str(signal),
            )
        )
        trace_horizons.append(int(horizon))
    _one_horizon_at_a_time(figure, trace_horizons)
    figure.update_layout(barmode="group", xaxis_title=category, yaxis_title=axis_title)
    if percent:
        figure.update_layout(yaxis_tickformat=".2%")
    return figure


def _figure_html(figure: go.Figure) -> str:
    figure.update_layout(
        template="plotly_white", height=380, margin={"l": 60, "r": 20, "t": 50, "b": 40}
    )
    return str(
        figure.to_html(
            full_html=False,
            include_plotlyjs=False,
            config={"displaylogo": False, "responsive": True},
        )
    )


def tear_sheet_html(
    evaluation: SignalEvaluation, title: str, *, plotly_src: str | None = None
) -> str:
    """A self-contained HTML page (a string) showing ``evaluation``.

    Sections: the summary table (per signal and horizon: dates, mean IC, mean rank IC, rank IC
    t-stat, IR and hit rate, top−bottom spread in bps, rank autocorrelation, top/bottom
    turnover), the cumulative rank IC per signal, the IC decay curve, the mean forward return
    per quantile, the mean rank IC per regime (each with a button per horizon), and the table of
    what was left out (:attr:`SignalEvaluation.dropped`). A plot without data shows "no data".
    The plotly.js bundle is inlined, or referenced as ``plotly_src`` (a path beside the page,
    as the backtest reports share one bundle); ``title`` and every label are HTML-escaped.
    """
    dates = evaluation.ic["date"]
    span = (
        f"origin dates {dates.min()!s} .. {dates.max()!s}; "
        if evaluation.ic.height
        else "no evaluated dates; "
    )
    subtitle = (
        f"{span}{evaluation.quantiles} quantiles; dates with fewer than "
        f"{evaluation.min_names} names left out. Rank IC is Spearman's, IC Pearson's; returns "
        "are simple forward returns over h sessions of each ticker."
    )
    sections: list[tuple[str, go.Figure | None]] = [
        (CUMULATIVE_IC_TITLE, _cumulative_ic_figure(evaluation)),
        (DECAY_TITLE, _decay_figure(evaluation)),
        (
            QUANTILE_TITLE,
            _grouped_bars(
                evaluation.quantile_returns,
                "quantile",
                "mean_forward_return",
                "mean forward return",
                percent=True,
            ),
        ),
        (
            REGIME_TITLE,
            _grouped_bars(
                evaluation.summary_by_regime,
                "regime_label",
                "mean_rank_ic",
                "mean rank IC",
                percent=False,
            ),
        ),
    ]
    body: list[str] = []
    for heading, figure in sections:
        body.append(f"<section>\n<h2>{html.escape(heading)}</h2>")
        body.append(_figure_html(figure) if figure is not None else '<p class="empty">no data</p>')
        body.append("</section>")
    escaped_title = html.escape(title)
    script = (
        f'<script type="text/javascript">{get_plotlyjs()}</script>'
        if plotly_src is None
        else f'<script src="{html.escape(plotly_src)}"></script>'
    )
    return f"""<!DOCTYPE html>
<html lang="en">
<head>
<meta charset="utf-8">
<title>{escaped_title}</title>
<style>{PAGE_STYLE}</style>
{script}
</head>
<body>
<h1>{escaped_title}</h1>
<p class="subtitle">{html.escape(subtitle)}</p>
<section>
<h2>{html.escape(SUMMARY_TITLE)}</h2>
{_html_table(evaluation.summary, _SUMMARY_COLUMNS)}
</section>
{chr(10).join(body)}
<section>
<h2>{html.escape(DROPPED_TITLE)}</h2>
{_html_table(evaluation.dropped, _DROPPED_COLUMNS)}
</section>
</body>
</html>
"""


_MARKDOWN_COLUMNS: tuple[tuple[str, str, Callable[[Any], str]], ...] = (
    ("signal", "signal", _plain),
    ("horizon", "horizon", _plain),
    ("mean_ic", "mean IC", _number(4)),
    ("mean_rank_ic", "rank IC", _number(4)),
    ("rank_ic_t_stat", "t-stat", _number(2)),
    ("rank_ic_ir", "IC IR", _number(3)),
    ("rank_ic_hit_rate", "hit rate", _percent),
    ("mean_top_bottom_spread", "top−bottom (bps)", _bps),
)


def tear_sheet_markdown(evaluation: SignalEvaluation) -> str:
    """A short markdown summary for Dagster metadata: one table row per (signal, horizon) with
    mean IC (Pearson), mean rank IC (Spearman), the rank IC's t-stat, IR and hit rate, and the
    mean top-minus-bottom quantile spread in bps; then one line per reason something was left
    out (factor rows summed over signals), or a line saying nothing was."""
    header = "| " + " | ".join(heading for _, heading, _ in _MARKDOWN_COLUMNS) + " |"
    rule = "|" + "|".join("---" if i < 1 else "---:" for i in range(len(_MARKDOWN_COLUMNS))) + "|"
    rows = [
        "| "
        + " | ".join(_cell(row[name], formatter) for name, _, formatter in _MARKDOWN_COLUMNS)
        + " |"
        for row in evaluation.summary.iter_rows(named=True)
    ]
    lines = [
        f"Signal evaluation: {evaluation.quantiles} quantiles, at least "
        f"{evaluation.min_names} names per date; t-stat, IC IR and hit rate are of the rank IC.",
        "",
        header,
        rule,
        *rows,
        "",
    ]
    shown = evaluation.dropped.filter(
        pl.col("horizon").is_null() | pl.col("horizon").is_in(evaluation.horizons)
    )
    totals = (
        shown.group_by("reason", "horizon")
        .agg(pl.col("n_rows").sum(), pl.col("signal").n_unique().alias("n_signals"))
        .sort("reason", "horizon", nulls_last=False)
    )
    if totals.height == 0:
        lines.append("Nothing was left out.")
    for row in totals.iter_rows(named=True):
        where = "" if row["horizon"] is None else f" at horizon {row['horizon']}"
        lines.append(
            f"- left out{where}: {row['n_rows']} factor rows, {row['reason']} "
            f"({row['n_signals']} signal(s))"
        )
    return "\n".join(lines) + "\n"
