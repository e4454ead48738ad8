"""The daily path end to end on a temporary instance: the schedule's runs for a new session,
then declarative automation until every asset is current, down to each strategy's orders."""

from __future__ import annotations

from datetime import date
from pathlib import Path

import duckdb
import polars as pl
import pytest

from quant_assets.engine.daily import AUTOMATION_TAG, run_daily_update
from quant_assets.engine.instance import open_instance
from quant_assets.research.ledger import LEDGER_RUN_COLUMNS
from quant_assets.settings import load_settings
from quant_assets_tests.conftest import copy_project

# Columns that record when a row was written, not what it says.
RUN_TIME_COLUMNS = {"ingested_at", "report_path", *LEDGER_RUN_COLUMNS}  # report_path: the home
# Unpartitioned summaries carrying MLflow run ids and times: compared through their inputs.
SUMMARY_TABLES = {"backtest_report"}


def _tables(home: Path) -> dict[str, pl.DataFrame]:
    with duckdb.connect(str(home / "warehouse.duckdb"), read_only=True) as conn:
        names = conn.execute(
            "select table_schema, table_name from information_schema.tables "
            "where table_schema not in ('information_schema', 'pg_catalog')"
        ).fetchall()
        out = {}
        for schema, table in names:
            if table in SUMMARY_TABLES:
                continue
            frame = conn.execute(f"select * from {schema}.{table}").pl()
            frame = frame.drop([c for c in frame.columns if c in RUN_TIME_COLUMNS])
            out[f"{schema}.{table}"] = frame.sort(frame.columns)
    return out


def _last_date(home: Path, table: str) -> date:
    with duckdb.connect(str(home / "warehouse.duckdb"), read_only=True) as conn:
        return conn.execute(f"select max(date) from {table}").fetchone()[0]


@pytest.fixture(scope="module")
def daily(pipeline, tmp_path_factory):
    """A copy of the materialised pipeline taken back to 2019-12-30 by the daily path (files
    without the 31st), then advanced to 2019-12-31 when that session's rows arrive."""
    project = copy_project(pipeline, tmp_path_factory.mktemp("daily"))
    settings = load_settings(project.config_dir)
    full = {path: pl.read_csv(path, try_parse_dates=True) for path in project.drop.glob("*.csv")}
    for path, frame in full.items():
        frame.filter(pl.col("date") < date(2019, 12, 31)).write_csv(path)
    before = run_daily_update(settings, project.home, date(2019, 12, 30))
    state_before = {
        t: _last_date(project.home, t) for t in ("market.bars", "hybrid_alpha.backtest")
    }
    for path, frame in full.items():  # the session's rows arrive
        frame.write_csv(path)
    after = run_daily_update(settings, project.home, date(2019, 12, 31))
    return project, before, after, state_before


def test_daily_path_brings_every_asset_to_the_new_session(daily, pipeline):
    project, before, after, state_before = daily
    assert before.success and after.success
    assert state_before == {
        "market.bars": date(2019, 12, 30),
        "hybrid_alpha.backtest": date(2019, 12, 30),
    }
    # After the update every table equals the one the full-history run wrote.
    updated, reference = _tables(project.home), _tables(pipeline.home)
    assert updated.keys() == reference.keys()
    for name, frame in reference.items():
        differing = [c for c in frame.columns if not updated[name][c].equals(frame[c])]
        assert updated[name].equals(frame), (name, differing)


def test_daily_path_is_one_run_per_root_then_automation(daily):
    project, _, after, _ = daily
    labels = [run.plan.label for run in after.runs]
    assert labels[0].startswith("daily_update: bars 2019-01-01|AAA..2019-01-01|DDD")
    assert labels[1].startswith("daily_update: benchmark_bars 2019-01-01")
    assert all(label.startswith("automation:") for label in labels[2:])
    automated = {a for run in after.runs[2:] for a in run.plan.assets}
    for strategy in ("hybrid_alpha", "trend_only", "mean_reversion_only"):
        assert {f"{strategy}/positions", f"{strategy}/backtest"} <= automated
    assert {"features", "signals", "labels", "regimes", "predictions"} <= automated
    # The daily update never retrains a model: the cut-off's training window is unchanged.
    assert not automated & {"regime_model", "next_state_model"}
    instance = open_instance(project.home)
    try:
        run = instance.get_run_by_id(after.runs[-1].run_id)
        assert run is not None and run.tags["quant_assets/launched_by"] == "automation"
        assert AUTOMATION_TAG in run.tags
    finally:
        instance.dispose()


def test_daily_path_does_nothing_on_a_holiday(daily):
    project, *_ = daily
    outcome = run_daily_update(load_settings(project.config_dir), project.home, date(2019, 12, 25))
    assert outcome.runs == []
    assert outcome.skipped == "2019-12-25 is not a XNYS session"


def test_with_the_kill_switch_the_next_sessions_orders_add_no_exposure(daily):
    import dagster as dg

    from quant_assets_tests.conftest import materialize_all

    project, *_ = daily
    strategies = ("hybrid_alpha", "trend_only", "mean_reversion_only")
    switch = project.home / "KILL_SWITCH"
    switch.touch()
    try:
        materialize_all(project, [f"{s}/orders" for s in strategies], upstream=False)
    finally:
        switch.unlink()
    with duckdb.connect(str(project.home / "warehouse.duckdb"), read_only=True) as conn:
        for strategy in strategies:
            latest = conn.execute(f"select * from {strategy}.orders where date = '2019-12-31'").pl()
            signed = pl.when(pl.col("side") == "BUY").then(1.0).otherwise(-1.0) * pl.col("quantity")
            after = (pl.col("current_shares") + signed).abs()
            assert latest["kill_switch"].all(), strategy
            assert latest.filter(after > pl.col("current_shares").abs()).is_empty(), strategy
    instance = open_instance(project.home)
    try:
        for strategy in strategies:
            event = instance.get_latest_materialization_event(dg.AssetKey([strategy, "orders"]))
            assert event is not None and event.asset_materialization is not None
            assert event.asset_materialization.metadata["kill_switch_active"].value is True
    finally:
        instance.dispose()
