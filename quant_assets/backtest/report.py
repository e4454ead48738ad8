"""The HTML backtest report of one strategy: a metrics table, interactive plots and notes.

One HTML page per strategy. The plots are plotly figures; the plotly.js bundle is referenced
as ``plotly.min.js`` beside the page (plotly's ``include_plotlyjs="directory"``) and written
there once, so the reports of a directory share one 3.5 MB bundle and open offline. Every
file is written atomically (a temporary file in the same directory, then a rename).
"""

from __future__ import annotations

import html
import os
import tempfile
from collections.abc import Sequence
from datetime import date
from pathlib import Path

import numpy as np
import plotly.graph_objects as go
import polars as pl
from plotly.offline import get_plotlyjs

from quant_assets.backtest.metrics import drawdown_series, rolling_sharpe

PLOTLY_BUNDLE = "plotly.min.js"
ROLLING_SHARPE_WINDOW = 126

# Section titles (each plot's heading in the page).
EQUITY_TITLE = "Equity vs benchmark (rebased to 1)"
DRAWDOWN_TITLE = "Drawdown"
ROLLING_SHARPE_TITLE = f"Rolling {ROLLING_SHARPE_WINDOW}-day Sharpe (annualised)"
EXPOSURE_TITLE = "Gross and net exposure"
REGIME_TITLE = "PnL by regime"
BUCKET_TITLE = "PnL by signal bucket"

# Float metrics whose name contains one of these are fractions shown as percentages.
_PERCENT_MARKERS = (
    "return",
    "drawdown",
    "volatility",
    "tracking_error",
    "alpha",
    "win_rate",
    "turnover",
    "exposure",
)
_COUNT_MARKERS = ("count", "days", "trials")

PAGE_STYLE = """
body { font-family: system-ui, -apple-system, Segoe UI, sans-serif; margin: 2rem auto;
       max-width: 1100px; color: #222; }
h1 { margin-bottom: 0.2rem; }
.subtitle { color: #666; margin-top: 0; }
table.metrics { border-collapse: collapse; margin: 1rem 0; }
table.metrics td, table.metrics th { padding: 0.25rem 0.9rem; border-bottom: 1px solid #ddd; }
table.metrics th { text-align: left; font-weight: 500; color: #444; }
table.metrics td { text-align: right; font-variant-numeric: tabular-nums; }
section { margin-top: 2rem; }
.empty { color: #888; font-style: italic; }
"""


def format_metric_value(name: str, value: float | str) -> str:
    """How the report shows one metric: strings as given, NaN as "–", fractions in percent.

    Floats whose name mentions a return, drawdown, volatility, tracking error, alpha, win
    rate, turnover or exposure are shown as percentages with 2 decimals (0.1234 →
    "12.34%"); counts (``n_*``, ``*count*``, ``*days*``, ``*trials*``) as integers; other
    floats (ratios, p-values) with 3 decimals. The result is not HTML-escaped.
    """
    if isinstance(value, str):
        return value
    number = float(value)
    if not np.isfinite(number):
        return "–"
    lowered = name.lower()
    if any(marker in lowered for marker in _PERCENT_MARKERS):
        return f"{number:.2%}"
    is_count = lowered.startswith("n_") or any(m in lowered for m in _COUNT_MARKERS)
    if is_count and number.is_integer():
        return f"{number:,.0f}"
    return f"{number:.3f}"


def _label(name: str) -> str:
    return name.replace("_", " ").capitalize()


def _checked_series(values: np.ndarray, name: str, length: int) -> np.ndarray:
    array = np.asarray(values, dtype=np.float64)
    if array.ndim != 1 or array.size != length:
        raise ValueError(f"{name} must be one-dimensional with {length} values (one per date)")
    if not np.all(np.isfinite(array)):
        raise ValueError(f"{name} contains NaN or infinite values")
    return array


def _rebased(values: np.ndarray, name: str) -> np.ndarray:
    if values[0] <= 0:
        raise ValueError(f"{name} must start positive to be rebased, got {values[0]}")
    return values / values[0]


def write_atomically(path: Path, text: str) -> None:
    """Write ``text`` to ``path`` through a temporary file in the same directory."""
    handle, temporary = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    try:
        with os.fdopen(handle, "w", encoding="utf-8") as stream:
            stream.write(text)
        # mkstemp creates 0600; a report is an ordinary file (the umask still applies).
        umask = os.umask(0)
        os.umask(umask)
        os.chmod(temporary, 0o666 & ~umask)
        os.replace(temporary, path)
    except BaseException:
        Path(temporary).unlink(missing_ok=True)
        raise


def ensure_plotly_bundle(directory: Path) -> None:
    """Write plotly.min.js into ``directory`` unless the installed plotly's bundle is there."""
    bundle = get_plotlyjs()
    target = directory / PLOTLY_BUNDLE
    if target.exists() and target.stat().st_size == len(bundle.encode("utf-8")):
        return
    write_atomically(target, bundle)


def _figure_html(figure: go.Figure, *, first: bool) -> str:
    figure.update_layout(
        template="plotly_white", height=380, margin={"l": 60, "r": 20, "t": 30, "b": 40}
    )
    return str(
        figure.to_html(
            full_html=False,
            include_plotlyjs="directory" if first else False,
            config={"displaylogo": False, "responsive": True},
        )
    )


def _group_bar(frame: pl.DataFrame, argument: str) -> go.Figure | None:
    """Bar chart of ``total`` per group (the first column); None when the frame is empty."""
    if frame.height == 0:
        return None
    if frame.width < 2 or "total" not in frame.columns:
        raise ValueError(
            f"{argument} needs a group column first and a 'total' column, got {frame.columns}"
        )
    group = frame.columns[0]
    labels = [str(label) for label in frame[group].to_list()]
    extra = [c for c in ("mean", "count", "share_positive") if c in frame.columns]
    hover = "<br>".join(
        [f"{group}: %{{x}}", "total: %{y:,.2f}"]
        + [f"{c}: %{{customdata[{i}]:,.3f}}" for i, c in enumerate(extra)]
    )
    customdata = frame.select(extra).to_numpy() if extra else None
    figure = go.Figure(
        go.Bar(
            x=labels,
            y=frame["total"].to_numpy(),
            customdata=customdata,
            hovertemplate=hover + "<extra></extra>",
            marker_color=["#2a9d8f" if v >= 0 else "#e76f51" for v in frame["total"]],
        )
    )
    figure.update_layout(xaxis_title=group, yaxis_title="total PnL")
    return figure


def write_html_report(
    path: Path,
    *,
    strategy: str,
    dates: Sequence[date],
    equity: np.ndarray,
    benchmark_equity: np.ndarray | None,
    gross_exposure: np.ndarray,
    net_exposure: np.ndarray,
    returns: np.ndarray,
    pnl_by_regime: pl.DataFrame,
    pnl_by_bucket: pl.DataFrame | None,
    metrics: dict[str, float | str],
    notes: Sequence[str] = (),
) -> Path:
    """Write the strategy's HTML report to ``path``; return ``path``.

    Per-date inputs (``dates``, ``equity``, ``benchmark_equity``, ``gross_exposure``,
    ``net_exposure`` as fractions of equity, ``returns`` as simple per-period returns) must
    have one value per date. Equity and benchmark are rebased to 1 at the first date
    (linear/log toggle on the plot); drawdown and rolling Sharpe come from ``returns``.
    ``pnl_by_regime`` / ``pnl_by_bucket`` are :func:`~quant_assets.backtest.metrics.
    pnl_by_group` frames (group column first, then ``total``; an empty frame shows "no
    data", ``pnl_by_bucket=None`` leaves the section out). ``metrics`` values are shown
    via :func:`format_metric_value`; the strategy name, metric names and values and the
    ``notes`` are HTML-escaped. Creates the parent directory, writes ``plotly.min.js``
    beside the page if missing, and writes the page atomically.

    Refuses empty ``dates``, per-date arrays of another length, NaN/inf in them, an equity
    or benchmark not starting positive, and PnL frames without a ``total`` column.
    """
    n_dates = len(dates)
    if n_dates == 0:
        raise ValueError("dates is empty")
    x = list(dates)
    equity_rebased = _rebased(_checked_series(equity, "equity", n_dates), "equity")
    benchmark_rebased = (
        None
        if benchmark_equity is None
        else _rebased(
            _checked_series(benchmark_equity, "benchmark_equity", n_dates), "benchmark_equity"
        )
    )
    gross = _checked_series(gross_exposure, "gross_exposure", n_dates)
    net = _checked_series(net_exposure, "net_exposure", n_dates)
    period_returns = _checked_series(returns, "returns", n_dates)

    equity_figure = go.Figure(go.Scatter(x=x, y=equity_rebased, name=strategy, mode="lines"))
    if benchmark_rebased is not None:
        equity_figure.add_trace(
            go.Scatter(x=x, y=benchmark_rebased, name="benchmark", mode="lines")
        )
    equity_figure.update_layout(
        yaxis_title="growth of 1",
        updatemenus=[
            {
                "type": "buttons",
                "direction": "left",
                "x": 0,
                "y": 1.12,
                "xanchor": "left",
                "buttons": [
                    {"label": "linear", "method": "relayout", "args": [{"yaxis.type": "linear"}]},
                    {"label": "log", "method": "relayout", "args": [{"yaxis.type": "log"}]},
                ],
            }
        ],
    )
    drawdown_figure = go.Figure(
        go.Scatter(
            x=x, y=drawdown_series(period_returns), fill="tozeroy", mode="lines", name="drawdown"
        )
    )
    drawdown_figure.update_layout(yaxis_tickformat=".0%", yaxis_title="drawdown")
    sharpe_figure = go.Figure(
        go.Scatter(
            x=x,
            y=rolling_sharpe(period_returns, ROLLING_SHARPE_WINDOW),
            mode="lines",
            name="rolling Sharpe",
        )
    )
    sharpe_figure.update_layout(yaxis_title="Sharpe (annualised)")
    exposure_figure = go.Figure(
        [
            go.Scatter(x=x, y=gross, mode="lines", name="gross"),
            go.Scatter(x=x, y=net, mode="lines", name="net"),
        ]
    )
    exposure_figure.update_layout(yaxis_tickformat=".0%", yaxis_title="fraction of equity")

    sections: list[tuple[str, go.Figure | None]] = [
        (EQUITY_TITLE, equity_figure),
        (DRAWDOWN_TITLE, drawdown_figure),
        (ROLLING_SHARPE_TITLE, sharpe_figure),
        (EXPOSURE_TITLE, exposure_figure),
        (REGIME_TITLE, _group_bar(pnl_by_regime, "pnl_by_regime")),
    ]
    if pnl_by_bucket is not None:
        sections.append((BUCKET_TITLE, _group_bar(pnl_by_bucket, "pnl_by_bucket")))

    return write_html_page(
        path,
        title=f"Backtest report: {strategy}",
        subtitle=f"{x[0]} .. {x[-1]} ({n_dates} days)",
        metrics=metrics,
        notes=notes,
        sections=sections,
    )


def write_html_page(
    path: Path,
    *,
    title: str,
    subtitle: str,
    metrics: dict[str, float | str],
    notes: Sequence[str],
    sections: Sequence[tuple[str, go.Figure | None]],
) -> Path:
    """Write one report page: a metrics table, notes, then a titled section per figure (None:
    "no data"). Text is HTML-escaped; ``plotly.min.js`` is written beside the page once; the
    page is written atomically. Returns ``path``."""
    body: list[str] = []
    first_figure = True
    for section_title, figure in sections:
        body.append(f"<section>\n<h2>{html.escape(section_title)}</h2>")
        if figure is None:
            body.append('<p class="empty">no data</p>')
        else:
            body.append(_figure_html(figure, first=first_figure))
            first_figure = False
        body.append("</section>")

    rows = "\n".join(
        f"<tr><th>{html.escape(_label(name))}</th>"
        f"<td>{html.escape(format_metric_value(name, value))}</td></tr>"
        for name, value in metrics.items()
    )
    note_items = "\n".join(f"<li>{html.escape(note)}</li>" for note in notes)
    escaped = html.escape(title)
    page = f"""<!DOCTYPE html>
<html lang="en">
<head>
<meta charset="utf-8">
<title>{escaped}</title>
<style>{PAGE_STYLE}</style>
</head>
<body>
<h1>{escaped}</h1>
<p class="subtitle">{html.escape(subtitle)}</p>
<section>
<h2>Metrics</h2>
<table class="metrics">
{rows}
</table>
</section>
<section>
<h2>Notes</h2>
<ul class="notes">
{note_items}
</ul>
</section>
{chr(10).join(body)}
</body>
</html>
"""
    target = Path(path)
    target.parent.mkdir(parents=True, exist_ok=True)
    ensure_plotly_bundle(target.parent)
    write_atomically(target, page)
    return target
