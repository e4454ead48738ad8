"""Correctness through Dagster: no look-ahead, idempotent re-runs, split ranges equal one run.

Every test materialises real partitions on a temporary Dagster instance and DuckDB file, with
the files provider reading CSVs we then rewrite.
"""

from __future__ import annotations

from datetime import date

import duckdb
import numpy as np
import polars as pl
import pytest

from quant_assets.engine.runner import materialize
from quant_assets.settings import load_settings

TABLES = ("bars", "features", "signals")
START, END = date(2018, 1, 1), date(2019, 12, 31)


def run(project, **kwargs) -> None:
    outcomes = materialize(load_settings(project.config_dir), project.home, **kwargs)
    assert outcomes and all(o.success for o in outcomes), [o.error for o in outcomes]


def table(project, name: str) -> pl.DataFrame:
    with duckdb.connect(str(project.home / "warehouse.duckdb"), read_only=True) as conn:
        frame = conn.execute(f"select * from market.{name} order by ticker, date").pl()
    return frame.drop("ingested_at") if "ingested_at" in frame.columns else frame


@pytest.fixture
def project(make_project):
    return make_project(["AAA", "BBB", "CCC"], START, END)


@pytest.mark.parametrize(
    ("change", "cut"),
    # mid-month (the cut falls inside a partition window) and a month's last session
    [("rewrite", date(2019, 7, 16)), ("delete", date(2019, 2, 28))],
)
def test_future_bars_do_not_change_past_features_or_signals(project, cut, change):
    run(project)
    before = {name: table(project, name) for name in TABLES}
    assert before["signals"].filter(pl.col("warmed_up")).height > 0
    rng = np.random.default_rng(3)
    for ticker in [*project.tickers, project.benchmark]:
        frame = project.bars(ticker)
        future = pl.col("date") > cut
        if change == "delete":
            frame = frame.filter(~future)
        else:  # scale whole future bars: prices stay positive and OHLC stays consistent
            factor = pl.Series(rng.uniform(0.7, 1.3, frame.height))
            frame = frame.with_columns(
                [
                    pl.when(future).then(pl.col(c) * factor).otherwise(pl.col(c)).alias(c)
                    for c in ("open", "high", "low", "close")
                ]
            )
        project.write(ticker, frame)
    run(project)
    for name in TABLES:
        after = table(project, name)
        past_before = before[name].filter(pl.col("date") <= cut)
        past_after = after.filter(pl.col("date") <= cut)
        assert past_before.height > 0
        assert past_after.equals(past_before), f"{name} at or before {cut} changed"
        future_after = after.filter(pl.col("date") > cut)
        if change == "delete":
            assert future_after.height == 0, f"{name} kept rows after the deleted future"
        elif name != "signals":
            assert not future_after.equals(before[name].filter(pl.col("date") > cut))


def test_rematerialising_is_idempotent_and_leaves_other_partitions_untouched(project):
    run(project)
    first = {name: table(project, name) for name in TABLES}
    with duckdb.connect(str(project.home / "warehouse.duckdb"), read_only=True) as conn:
        stamps_before = conn.execute(
            "select ticker, date, ingested_at from market.bars order by ticker, date"
        ).pl()
    # Re-run one ticker for two months only.
    run(project, start=date(2019, 3, 1), end=date(2019, 4, 30), tickers=["BBB"])
    for name in TABLES:
        again = table(project, name)
        assert again.equals(first[name]), name
        keys = again.select("ticker", "date")
        assert keys.n_unique() == keys.height, f"duplicate rows in {name}"
    with duckdb.connect(str(project.home / "warehouse.duckdb"), read_only=True) as conn:
        stamps_after = conn.execute(
            "select ticker, date, ingested_at from market.bars order by ticker, date"
        ).pl()
    rerun = (pl.col("ticker") == "BBB") & pl.col("date").is_between(
        date(2019, 3, 1), date(2019, 4, 30)
    )
    assert stamps_after.filter(~rerun).equals(stamps_before.filter(~rerun))
    assert not stamps_after.filter(rerun).equals(stamps_before.filter(rerun))


def test_a_range_split_in_two_runs_equals_one_run(make_project):
    whole = make_project(["AAA", "BBB"], START, END)
    split = make_project(["AAA", "BBB"], START, END)
    run(whole)
    run(split, end=date(2018, 12, 31))
    run(split, start=date(2019, 1, 1))
    for name in TABLES:
        assert table(split, name).equals(table(whole, name)), name
