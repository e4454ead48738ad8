"""The PostgreSQL IO manager: the DuckDB rectangles, in one transaction, on a real server."""

from __future__ import annotations

from datetime import date

import dagster as dg
import pandas as pd
import polars as pl
import pytest

import quant_assets.defs.postgres_store as store
from quant_assets.defs.partitions import PARTITION_EXPR, TICKER_PARTITIONS, rectangle_from_keys
from quant_assets.defs.postgres_store import PostgresIOManager, PostgresWarehouseResource

MONTHS = dg.MonthlyPartitionsDefinition(start_date="2020-01-01", end_date="2020-07-01")
GRID = dg.MultiPartitionsDefinition({"date": MONTHS, "ticker": TICKER_PARTITIONS})
PASSWORD_ENV = "QUANT_ASSETS_TEST_IO_PASSWORD"


def make_asset(value_for, extra_column: bool = False):
    @dg.asset(
        name="prices",
        partitions_def=GRID,
        backfill_policy=dg.BackfillPolicy.single_run(),
        metadata={"partition_expr": PARTITION_EXPR},
    )
    def prices(context) -> pl.DataFrame:
        rect = rectangle_from_keys(context.partition_keys, GRID)
        days = pl.date_range(rect.start, rect.last_day, "1d", eager=True)
        frame = pl.DataFrame(
            [(d, t, value_for(t)) for d in days for t in rect.tickers],
            schema={"date": pl.Date, "ticker": pl.Utf8, "value": pl.Float64},
            orient="row",
        )
        if extra_column:
            frame = frame.with_columns(volume=pl.lit(7, dtype=pl.Int64))
        return frame

    return prices


def connection(pg) -> dict:
    return {"host": pg.host, "port": pg.port, "dbname": pg.dbname, "user": pg.user}


def run(pg, value_for, start: str, end: str, extra_column: bool = False) -> bool:
    instance = dg.DagsterInstance.ephemeral()
    instance.add_dynamic_partitions("ticker", ["AAA", "BBB", "CCC"])
    result = dg.materialize(
        [make_asset(value_for, extra_column)],
        instance=instance,
        resources={
            "io_manager": PostgresIOManager(
                **connection(pg), password=dg.EnvVar(PASSWORD_ENV), schema="market"
            )
        },
        tags={
            "dagster/asset_partition_range_start": start,
            "dagster/asset_partition_range_end": end,
        },
        raise_on_error=False,
    )
    if result.success:  # the password never reaches the metadata
        for event in result.get_asset_materialization_events():
            text = str(event.event_specific_data)
            assert pg.password not in text
    return result.success


def stored(pg) -> pl.DataFrame:
    resource = PostgresWarehouseResource(**connection(pg), password=pg.password, database="-")
    return resource.read_sql("select * from {table} order by ticker, date", "prices")


@pytest.fixture
def pg(pg_database, monkeypatch):
    monkeypatch.setenv(PASSWORD_ENV, pg_database.password)
    return pg_database


def test_a_range_run_over_months_and_tickers_writes_the_whole_rectangle(pg):
    assert run(pg, lambda t: 1.0, "2020-01-01|AAA", "2020-06-01|CCC")
    frame = stored(pg)
    assert frame["ticker"].unique().sort().to_list() == ["AAA", "BBB", "CCC"]
    assert frame.height == 3 * 182
    assert frame.schema["date"] == pl.Date and frame.schema["value"] == pl.Float64


def test_rerunning_a_sub_rectangle_replaces_exactly_its_rows(pg):
    assert run(pg, lambda t: 1.0, "2020-01-01|AAA", "2020-06-01|CCC")
    assert run(pg, lambda t: 2.0, "2020-03-01|BBB", "2020-04-01|BBB")
    frame = stored(pg)
    assert frame.height == 3 * 182
    changed = frame.filter(pl.col("value") == 2.0)
    assert changed["ticker"].unique().to_list() == ["BBB"]
    assert changed["date"].min() == date(2020, 3, 1)
    assert changed["date"].max() == date(2020, 4, 30)
    assert frame.select("ticker", "date").n_unique() == frame.height


def test_a_failed_copy_rolls_back_the_delete(pg, monkeypatch):
    assert run(pg, lambda t: 1.0, "2020-01-01|AAA", "2020-06-01|CCC")
    before = stored(pg)

    def failing_copy(conn, table_slice, frame):
        raise RuntimeError("disk full")

    monkeypatch.setattr(store, "_copy", failing_copy)
    assert not run(pg, lambda t: 5.0, "2020-01-01|AAA", "2020-06-01|CCC")
    assert stored(pg).equals(before)


def test_a_new_column_is_added_by_name_and_old_rows_read_null(pg):
    assert run(pg, lambda t: 1.0, "2020-01-01|AAA", "2020-06-01|CCC")
    assert run(pg, lambda t: 2.0, "2020-01-01|AAA", "2020-02-01|AAA", extra_column=True)
    frame = stored(pg)
    assert frame.columns == ["date", "ticker", "value", "volume"]
    new = frame.filter(pl.col("volume").is_not_null())
    assert new.height == 31 + 29 and new["value"].unique().to_list() == [2.0]
    assert frame.filter(pl.col("ticker") == "BBB")["volume"].null_count() == 182


def test_reads_are_ordered_by_ticker_then_date_and_load_as_pandas_too(pg):
    # written in the "wrong" order: CCC first
    assert run(pg, lambda t: 3.0, "2020-01-01|CCC", "2020-02-01|CCC")
    assert run(pg, lambda t: 1.0, "2020-01-01|AAA", "2020-02-01|BBB")
    instance = dg.DagsterInstance.ephemeral()
    instance.add_dynamic_partitions("ticker", ["AAA", "BBB", "CCC"])
    seen: dict[str, object] = {}

    @dg.asset(partitions_def=GRID, backfill_policy=dg.BackfillPolicy.single_run())
    def consumer(prices: pl.DataFrame) -> None:
        seen["polars"] = prices

    @dg.asset(partitions_def=GRID, backfill_policy=dg.BackfillPolicy.single_run())
    def pandas_consumer(prices: pd.DataFrame) -> None:
        seen["pandas"] = prices

    result = dg.materialize(
        [consumer, pandas_consumer, make_asset(lambda t: 0.0).to_source_asset()],
        instance=instance,
        resources={
            "io_manager": PostgresIOManager(
                **connection(pg), password=dg.EnvVar(PASSWORD_ENV), schema="market"
            )
        },
        tags={
            "dagster/asset_partition_range_start": "2020-01-01|AAA",
            "dagster/asset_partition_range_end": "2020-02-01|CCC",
        },
    )
    assert result.success
    frame = seen["polars"]
    assert isinstance(frame, pl.DataFrame) and frame.height == 3 * 60
    keys = frame.select("ticker", "date")
    assert keys.equals(keys.sort("ticker", "date"))
    assert isinstance(seen["pandas"], pd.DataFrame) and len(seen["pandas"]) == 3 * 60


def test_an_input_whose_table_is_missing_fails_with_the_asset_to_materialize(pg):
    instance = dg.DagsterInstance.ephemeral()
    instance.add_dynamic_partitions("ticker", ["AAA"])

    @dg.asset(partitions_def=GRID, backfill_policy=dg.BackfillPolicy.single_run())
    def consumer(prices: pl.DataFrame) -> None:
        pass

    result = dg.materialize(
        [consumer, make_asset(lambda t: 0.0).to_source_asset()],
        instance=instance,
        resources={
            "io_manager": PostgresIOManager(
                **connection(pg), password=dg.EnvVar(PASSWORD_ENV), schema="market"
            )
        },
        partition_key="2020-01-01|AAA",
        raise_on_error=False,
    )
    assert not result.success
    failure = result.get_step_failure_events()[0].step_failure_data
    assert "does not exist yet: materialize prices" in str(failure.user_failure_data.description)


def test_the_warehouse_resource_translates_placeholders_and_filters_tickers(pg):
    assert run(pg, lambda t: 1.0, "2020-01-01|AAA", "2020-02-01|CCC")
    resource = PostgresWarehouseResource(**connection(pg), password=pg.password, database="-")
    assert resource.table_exists("prices") and not resource.table_exists("nothing")
    rows = resource.read(
        "prices", start=date(2020, 2, 1), end=date(2020, 2, 3), tickers=["AAA", "CCC"]
    )
    assert rows.height == 4 and rows["ticker"].to_list() == ["AAA", "AAA", "CCC", "CCC"]
    counted = resource.read_sql(
        "select count(*) as n from {table} where date < ? and ticker like 'A%'",
        "prices",
        [date(2020, 1, 11)],
    )
    assert counted["n"].to_list() == [10]


def test_concurrent_writers_race_on_create_and_alter_without_errors_or_duplicates(pg):
    """Eight connections at once into a table that does not exist yet: different tickers
    (parallel), the same ticker twice (queued by the slice lock), half with a new column."""
    from concurrent.futures import ThreadPoolExecutor
    from datetime import datetime

    import psycopg
    from dagster._core.definitions.partitions.utils import TimeWindow
    from dagster._core.storage.db_io_manager import TablePartitionDimension, TableSlice

    days = pl.date_range(date(2020, 1, 1), date(2020, 3, 31), "1d", eager=True)

    def write(job: tuple[int, str]) -> None:
        number, ticker = job
        frame = pl.DataFrame({"date": days, "ticker": [ticker] * len(days), "value": 1.0 * number})
        if number % 2:
            frame = frame.with_columns(extra=pl.lit(number))
        table_slice = TableSlice(
            table="raced",
            schema="race_schema",
            partition_dimensions=[
                TablePartitionDimension(
                    "date", TimeWindow(datetime(2020, 1, 1), datetime(2020, 4, 1))
                ),
                TablePartitionDimension("ticker", [ticker]),
            ],
        )
        with psycopg.connect(**connection(pg), password=pg.password, autocommit=True) as conn:
            store.write_frame(conn, table_slice, frame)

    jobs = [(n, f"T{n % 6}") for n in range(8)]  # T0 and T1 are written twice
    with ThreadPoolExecutor(len(jobs)) as pool:
        list(pool.map(write, jobs))
    resource = PostgresWarehouseResource(**connection(pg), password=pg.password, database="-")
    rows = resource.read_sql("select * from {table}", "raced", schema="race_schema")
    assert rows.height == 6 * len(days)
    assert rows.select("ticker", "date").n_unique() == rows.height
    assert set(rows.columns) == {"date", "ticker", "value", "extra"}
