"""``s/orders`` and ``s/paper_book`` through Dagster on a real instance and DuckDB file.

Runs on a copy of conftest's session ``pipeline`` (four synthetic tickers, 2015-2019, year
windows, strategies from the first model cut-off, 2017), so the shared project is untouched.
"""

from __future__ import annotations

import json
import time
from datetime import date

import dagster as dg
import duckdb
import numpy as np
import polars as pl
import pytest
from conftest import copy_project

from quant_assets.defs.definitions import build_definitions
from quant_assets.defs.orders import KILL_SWITCH_FILE
from quant_assets.engine.instance import open_instance
from quant_assets.settings import load_settings

STRATEGIES = ("hybrid_alpha", "mean_reversion_only", "trend_only")
WINDOWS = ("2017-01-01", "2019-01-01")
LAST_WINDOW = ("2019-01-01", "2019-01-01")


def definitions(project) -> dg.Definitions:
    """The project's graph: the pipeline's stages and every strategy's own Definitions."""
    return build_definitions(load_settings(project.config_dir), project.home)


def run_orders(project, strategies, window_range) -> dg.ExecuteInProcessResult:
    job = definitions(project).resolve_implicit_global_asset_job_def()
    keys = [dg.AssetKey([s, a]) for s in strategies for a in ("orders", "paper_book")]
    with open_instance(project.home) as instance:
        return job.execute_in_process(
            instance=instance,
            asset_selection=keys,
            tags={
                "dagster/asset_partition_range_start": window_range[0],
                "dagster/asset_partition_range_end": window_range[1],
            },
            raise_on_error=False,
        )


def table(project, qualified: str) -> pl.DataFrame:
    with duckdb.connect(str(project.home / "warehouse.duckdb"), read_only=True) as conn:
        return conn.execute(f"select * from {qualified} order by date, ticker").pl()


def output_metadata(result: dg.ExecuteInProcessResult, key: dg.AssetKey) -> dict:
    # A range run records one materialization per window, all with the run's metadata.
    event = [e for e in result.get_asset_materialization_events() if e.asset_key == key][-1]
    return {k: v.value for k, v in event.materialization.metadata.items()}


@pytest.fixture(scope="module")
def orders_project(pipeline, tmp_path_factory):
    """A copy of the pipeline whose orders are materialised over 2017-2019 in one run."""
    project = copy_project(pipeline, tmp_path_factory.mktemp("orders"))
    with duckdb.connect(str(project.home / "warehouse.duckdb")) as conn:
        for name in STRATEGIES:  # the pipeline may have materialised them already
            for asset in ("orders", "paper_book"):
                conn.execute(f"drop table if exists {name}.{asset}")
    # A later window alone is refused: the book before it is not stored.
    refused = run_orders(project, STRATEGIES[:1], LAST_WINDOW)
    assert not refused.success
    started = time.perf_counter()
    result = run_orders(project, STRATEGIES, WINDOWS)
    seconds = time.perf_counter() - started
    assert result.success
    print(f"orders + paper_book, 3 strategies × 3 windows × 4 tickers: {seconds:.2f} s")
    return project, result, refused


def test_a_window_after_the_first_is_refused_until_the_one_before_is_stored(orders_project):
    _, _, refused = orders_project
    messages = [
        e.step_failure_data.user_failure_data.description
        for e in refused.get_step_failure_events()
        if e.step_failure_data.user_failure_data is not None
    ]
    assert any("materialise the window 2018-01-01 first" in m for m in messages), messages


def test_orders_and_paper_book_cover_every_session_and_ticker(orders_project, pipeline):
    project, result, _ = orders_project
    positions = table(project, "hybrid_alpha.positions")
    for name in STRATEGIES:
        book = table(project, f"{name}.paper_book")
        assert book.height == positions.height  # one row per (date, ticker)
        assert book["date"].min() == date(2017, 1, 3) and book["date"].max() == date(2019, 12, 31)
        orders = table(project, f"{name}.orders")
        assert orders.height > 50
        assert set(orders["side"].unique()) <= {"BUY", "SELL"}
        assert (orders["quantity"] > 0).all() and (orders["quantity"] % 1 == 0).all()
        assert not orders["kill_switch"].any()
        assert orders["strategy"].unique().to_list() == [name]
        assert all(isinstance(json.loads(c), list) for c in orders["reason_codes"])
        daily = book.group_by("date").agg(
            pl.col("cash").first(),
            pl.col("equity").first(),
            (pl.col("shares") * pl.col("mark_price")).fill_null(0).sum().alias("held"),
        )
        np.testing.assert_allclose(daily["cash"] + daily["held"], daily["equity"], rtol=1e-9)
        # Every order of a session is the order filled on the next one.
        filled = book.filter(pl.col("order_quantity") != 0).select("date", "ticker")
        assert filled.height == orders.filter(pl.col("date") < date(2019, 12, 31)).height
        checks = [
            e
            for e in result.get_asset_check_evaluations()
            if e.asset_key == dg.AssetKey([name, "orders"])
        ]
        assert checks and all(c.passed for c in checks)
    meta = output_metadata(result, dg.AssetKey(["hybrid_alpha", "orders"]))
    assert meta["kill_switch_active"] is False
    assert meta["latest_session"] == "2019-12-31" and meta["latest_session_is_live"] is True
    assert meta["paper_equity"] > 0
    assert meta["kill_switch_file"] == str(project.home / KILL_SWITCH_FILE)


def test_kill_switch_makes_the_newest_orders_flat_only_and_history_stays_as_issued(
    orders_project, tmp_path
):
    project, _, _ = orders_project
    name, newest_day = "hybrid_alpha", date(2019, 9, 10)
    # The data ends on a session with open positions (the shipped run is flat from September
    # 2019 on, in a crash regime): a copy whose bars and positions stop there.
    live = copy_project(project, tmp_path / "live")
    with duckdb.connect(str(live.home / "warehouse.duckdb")) as conn:
        for qualified in ("market.bars", f"{name}.positions"):
            conn.execute(f"delete from {qualified} where date > ?", [newest_day])
    before = table(live, f"{name}.orders").filter(pl.col("date") <= newest_day)
    book_before = table(live, f"{name}.paper_book").filter(pl.col("date") <= newest_day)
    held = book_before.filter((pl.col("date") == newest_day) & (pl.col("shares") != 0))
    assert held.height > 0
    switch = live.home / KILL_SWITCH_FILE
    switch.touch()
    try:
        result = run_orders(live, [name], LAST_WINDOW)
    finally:
        switch.unlink()
    assert result.success
    meta = output_metadata(result, dg.AssetKey([name, "orders"]))
    assert meta["kill_switch_active"] is True
    assert meta["kill_switch_sessions"] == str(newest_day)
    assert meta["pending_orders"] == held.height
    after = table(live, f"{name}.orders")
    newest = after.filter(pl.col("date") == newest_day)
    # Every held name is closed in full, nothing is opened or increased.
    assert newest["ticker"].to_list() == held["ticker"].to_list()
    assert newest["kill_switch"].all() and (newest["side"] == "SELL").all()
    assert (newest["target_shares"] == 0).all()
    assert (newest["quantity"] == newest["current_shares"]).all()
    assert all("KILL_SWITCH" in json.loads(c) for c in newest["reason_codes"])
    # Only the live session's orders changed; the book up to it is the same.
    older = pl.col("date") < newest_day
    assert after.filter(older).equals(before.filter(older))
    assert not after.filter(~older).equals(before.filter(~older))
    assert table(live, f"{name}.paper_book").equals(book_before)

    # With the file gone, recomputing the window reads back what was issued: idempotent.
    again = run_orders(live, [name], LAST_WINDOW)
    assert again.success
    assert output_metadata(again, dg.AssetKey([name, "orders"]))["kill_switch_active"] is False
    assert table(live, f"{name}.orders").equals(after)
    assert table(live, f"{name}.paper_book").equals(book_before)


def test_rerunning_a_window_is_idempotent(orders_project):
    project, _, _ = orders_project
    name = "mean_reversion_only"
    orders, book = table(project, f"{name}.orders"), table(project, f"{name}.paper_book")
    assert run_orders(project, [name], LAST_WINDOW).success
    assert table(project, f"{name}.orders").equals(orders)
    assert table(project, f"{name}.paper_book").equals(book)


def test_orders_valid_rejects_a_kill_switch_order_that_adds_and_a_broken_book(orders_project):
    from quant_assets.quality.derived import validate_orders

    project, _, _ = orders_project
    window = pl.col("date").is_between(date(2018, 3, 1), date(2018, 3, 31))
    orders = table(project, "hybrid_alpha.orders").filter(window)
    book = table(project, "hybrid_alpha.paper_book").filter(window)
    assert orders.height > 0
    assert validate_orders(orders, book, 1.0).success
    adding = orders.with_columns(
        pl.lit(True).alias("kill_switch"),
        (pl.col("current_shares") + 1).alias("target_shares"),
    )
    report = validate_orders(adding, book, 1.0)
    assert not report.success
    assert "reduces_or_no_kill_switch" in report.summary()
    odd_lot = orders.with_columns(pl.col("quantity") + 0.5)
    assert "lot_error" in validate_orders(odd_lot, book, 1.0).summary()
    broken = book.with_columns(pl.col("equity") + 1.0)
    assert "accounting_error" in validate_orders(orders, broken, 1.0).summary()
