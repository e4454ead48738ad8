"""The HTML backtest report: one page of metrics, plots and notes beside a shared plotly.js."""

from __future__ import annotations

from datetime import date, timedelta
from pathlib import Path

import numpy as np
import polars as pl
import pytest

from quant_assets.backtest.report import (
    BUCKET_TITLE,
    DRAWDOWN_TITLE,
    EQUITY_TITLE,
    EXPOSURE_TITLE,
    PLOTLY_BUNDLE,
    REGIME_TITLE,
    ROLLING_SHARPE_TITLE,
    format_metric_value,
    write_html_report,
)

N_DAYS = 200


def _inputs(**overrides):
    rng = np.random.default_rng(4)
    returns = rng.normal(0.0005, 0.01, N_DAYS)
    benchmark = rng.normal(0.0003, 0.01, N_DAYS)
    inputs = {
        "strategy": "momentum",
        "dates": [date(2024, 1, 1) + timedelta(days=i) for i in range(N_DAYS)],
        "equity": 1_000_000 * np.cumprod(1 + returns),
        "benchmark_equity": 4_800 * np.cumprod(1 + benchmark),
        "gross_exposure": np.full(N_DAYS, 1.2),
        "net_exposure": np.full(N_DAYS, 0.1),
        "returns": returns,
        "pnl_by_regime": pl.DataFrame(
            {"regime_label": ["bear", "bull"], "total": [-1200.5, 5300.25], "mean": [-3.0, 8.0]}
        ),
        "pnl_by_bucket": pl.DataFrame(
            {"signal_bucket": ["Q1 (lowest)", "Q5 (highest)"], "total": [-10.0, 40.0]}
        ),
        "metrics": {
            "total_return": 0.1234,
            "max_drawdown": -0.0567,
            "sharpe": 1.23456,
            "n_trials": 3.0,
            "calmar": float("nan"),
            "decision": "promoted",
        },
        "notes": ["Promotion: promoted", "deflated Sharpe 0.970 >= 0.95"],
    }
    return inputs | overrides


def test_the_report_is_written_with_every_plot_title_and_metric_value(tmp_path: Path):
    path = write_html_report(tmp_path / "reports" / "momentum.html", **_inputs())
    assert path == tmp_path / "reports" / "momentum.html"
    page = path.read_text(encoding="utf-8")
    for title in (
        EQUITY_TITLE,
        DRAWDOWN_TITLE,
        ROLLING_SHARPE_TITLE,
        EXPOSURE_TITLE,
        REGIME_TITLE,
        BUCKET_TITLE,
    ):
        assert f"<h2>{title}</h2>" in page
    assert "Rolling 126-day Sharpe" in page
    for shown in ("12.34%", "-5.67%", "1.235", "<td>3</td>", "<td>–</td>", "promoted"):
        assert shown in page
    assert "<li>deflated Sharpe 0.970 &gt;= 0.95</li>" in page
    assert page.count("Plotly.newPlot") == 6


def test_plotly_js_is_written_once_beside_the_reports_not_into_them(tmp_path: Path):
    first = write_html_report(tmp_path / "a.html", **_inputs())
    bundle = tmp_path / PLOTLY_BUNDLE
    assert bundle.is_file()
    assert bundle.stat().st_size > 1_000_000
    written_at = bundle.stat().st_mtime_ns
    second = write_html_report(tmp_path / "b.html", **_inputs(strategy="other"))
    assert bundle.stat().st_mtime_ns == written_at  # reused, not rewritten
    for page in (first, second):
        text = page.read_text(encoding="utf-8")
        assert f'src="{PLOTLY_BUNDLE}"' in text
        assert len(text.encode()) < 500_000
    assert sorted(p.name for p in tmp_path.iterdir()) == ["a.html", "b.html", PLOTLY_BUNDLE]


def test_a_hostile_strategy_name_and_note_are_html_escaped(tmp_path: Path):
    hostile = "<script>alert('x')</script>"
    page = write_html_report(
        tmp_path / "r.html", **_inputs(strategy=f"evil{hostile}", notes=[hostile])
    ).read_text(encoding="utf-8")
    assert hostile not in page
    assert "<li>&lt;script&gt;alert(&#x27;x&#x27;)&lt;/script&gt;</li>" in page
    assert "Backtest report: evil&lt;script&gt;" in page


def test_the_bucket_section_is_left_out_without_buckets_and_empty_frames_say_no_data(
    tmp_path: Path,
):
    page = write_html_report(
        tmp_path / "r.html",
        **_inputs(
            pnl_by_bucket=None,
            pnl_by_regime=pl.DataFrame(schema={"regime_label": pl.Utf8}),
            benchmark_equity=None,
        ),
    ).read_text(encoding="utf-8")
    assert BUCKET_TITLE not in page
    assert '<p class="empty">no data</p>' in page
    assert page.count("Plotly.newPlot") == 4


def test_metric_values_are_percentages_ratios_or_counts_by_name():
    assert format_metric_value("annualized_return", 0.071) == "7.10%"
    assert format_metric_value("max_drawdown", -0.2) == "-20.00%"
    assert format_metric_value("information_ratio", 0.51234) == "0.512"
    assert format_metric_value("n_trials", 12.0) == "12"
    assert format_metric_value("sharpe", float("inf")) == "–"
    assert format_metric_value("period", "2024-01-01 .. 2024-12-31") == "2024-01-01 .. 2024-12-31"


def test_the_report_refuses_inputs_of_the_wrong_length_or_with_nan(tmp_path: Path):
    with pytest.raises(ValueError, match="net_exposure must be one-dimensional with 200"):
        write_html_report(tmp_path / "r.html", **_inputs(net_exposure=np.zeros(3)))
    broken = np.full(N_DAYS, 1.0)
    broken[5] = np.nan
    with pytest.raises(ValueError, match="equity contains NaN"):
        write_html_report(tmp_path / "r.html", **_inputs(equity=broken))
    with pytest.raises(ValueError, match="pnl_by_regime needs"):
        write_html_report(
            tmp_path / "r.html", **_inputs(pnl_by_regime=pl.DataFrame({"regime": ["a"]}))
        )
    assert not (tmp_path / "r.html").exists()
