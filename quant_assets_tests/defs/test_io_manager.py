"""The DuckDB IO manager: rectangles over date windows × tickers, replaced atomically."""

from __future__ import annotations

from datetime import date

import dagster as dg
import duckdb
import polars as pl
import pytest

from quant_assets.defs.io_manager import WarehouseIOManager
from quant_assets.defs.partitions import PARTITION_EXPR, TICKER_PARTITIONS, rectangle_from_keys

MONTHS = dg.MonthlyPartitionsDefinition(start_date="2020-01-01", end_date="2020-07-01")
GRID = dg.MultiPartitionsDefinition({"date": MONTHS, "ticker": TICKER_PARTITIONS})


def make_asset(value_for):
    @dg.asset(
        name="prices",
        partitions_def=GRID,
        backfill_policy=dg.BackfillPolicy.single_run(),
        metadata={"partition_expr": PARTITION_EXPR},
    )
    def prices(context) -> pl.DataFrame:
        rect = rectangle_from_keys(context.partition_keys, GRID)
        days = pl.date_range(rect.start, rect.last_day, "1d", eager=True)
        return pl.DataFrame(
            [(d, t, value_for(t)) for d in days for t in rect.tickers],
            schema={"date": pl.Date, "ticker": pl.Utf8, "value": pl.Float64},
            orient="row",
        )

    return prices


def run(tmp_path, value_for, start: str, end: str) -> bool:
    instance = dg.DagsterInstance.ephemeral()
    instance.add_dynamic_partitions("ticker", ["AAA", "BBB", "CCC"])
    result = dg.materialize(
        [make_asset(value_for)],
        instance=instance,
        resources={
            "io_manager": WarehouseIOManager(database=str(tmp_path / "w.duckdb"), schema="market")
        },
        tags={
            "dagster/asset_partition_range_start": start,
            "dagster/asset_partition_range_end": end,
        },
        raise_on_error=False,
    )
    return result.success


def stored(tmp_path) -> pl.DataFrame:
    with duckdb.connect(str(tmp_path / "w.duckdb"), read_only=True) as conn:
        return conn.execute("select * from market.prices order by ticker, date").pl()


def test_a_range_run_over_months_and_tickers_writes_the_whole_rectangle(tmp_path):
    assert run(tmp_path, lambda t: 1.0, "2020-01-01|AAA", "2020-06-01|CCC")
    frame = stored(tmp_path)
    assert frame["ticker"].unique().sort().to_list() == ["AAA", "BBB", "CCC"]
    assert frame.height == 3 * 182  # every day of Jan-Jun 2020 for three tickers


def test_rerunning_a_sub_rectangle_replaces_exactly_its_rows(tmp_path):
    assert run(tmp_path, lambda t: 1.0, "2020-01-01|AAA", "2020-06-01|CCC")
    assert run(tmp_path, lambda t: 2.0, "2020-03-01|BBB", "2020-04-01|BBB")
    frame = stored(tmp_path)
    assert frame.height == 3 * 182
    changed = frame.filter(pl.col("value") == 2.0)
    assert changed["ticker"].unique().to_list() == ["BBB"]
    assert changed["date"].min() == date(2020, 3, 1)
    assert changed["date"].max() == date(2020, 4, 30)
    assert frame.select("ticker", "date").n_unique() == frame.height


def test_a_failed_write_leaves_the_previous_rows_intact(tmp_path):
    assert run(tmp_path, lambda t: 1.0, "2020-01-01|AAA", "2020-06-01|CCC")
    before = stored(tmp_path)

    def broken(ticker: str) -> float:
        if ticker == "CCC":
            raise ValueError("provider died mid-range")
        return 3.0

    assert not run(tmp_path, broken, "2020-01-01|AAA", "2020-06-01|CCC")
    assert stored(tmp_path).equals(before)


def test_a_failed_insert_rolls_back_the_delete(tmp_path, monkeypatch):
    assert run(tmp_path, lambda t: 1.0, "2020-01-01|AAA", "2020-06-01|CCC")
    before = stored(tmp_path)
    import quant_assets.defs.io_manager as io

    def failing_write(connection, table_slice, arrow):
        raise RuntimeError("disk full")

    monkeypatch.setattr(io, "_write", failing_write)
    assert not run(tmp_path, lambda t: 5.0, "2020-01-01|AAA", "2020-06-01|CCC")
    assert stored(tmp_path).equals(before)


def test_a_non_rectangular_key_set_is_refused():
    keys = ["2020-01-01|AAA", "2020-02-01|AAA", "2020-01-01|BBB"]
    with pytest.raises(ValueError, match="not a rectangle"):
        rectangle_from_keys(keys, GRID)


def test_the_query_metadata_names_the_rectangle_not_every_ticker() -> None:
    # Run metadata is copied onto every partition's event: a 500-ticker run must not store a
    # 500-ticker SELECT 10,000 times.
    from datetime import datetime

    from quant_assets.dagster_internals import TablePartitionDimension, TableSlice
    from quant_assets.defs.io_manager import slice_query

    def query(tickers: list[str]) -> str:
        window = dg.TimeWindow(datetime(2020, 1, 1), datetime(2021, 1, 1))
        table_slice = TableSlice(
            table="bars",
            schema="market",
            partition_dimensions=[
                TablePartitionDimension(partition_expr="date", partitions=window),
                TablePartitionDimension(partition_expr="ticker", partitions=tickers),
            ],
        )
        return slice_query("market.bars", table_slice)

    assert query(["AAA", "BBB"]) == (
        "select * from market.bars where date >= '2020-01-01' and date < '2021-01-01' "
        "and ticker in ('AAA', 'BBB')"
    )
    wide = query([f"T{i:03d}" for i in range(500)])
    assert wide.endswith("ticker in (500 keys: 'T000' … 'T499')")
    assert len(wide) < 150
