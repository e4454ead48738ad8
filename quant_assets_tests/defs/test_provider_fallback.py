"""The provider chain through Dagster: a ticker the primary cannot serve comes from the next
provider, and each partition's materialisation says who served it and every attempt."""

from __future__ import annotations

from datetime import date

import dagster as dg
import duckdb
import polars as pl
import yaml

from quant_assets_tests.conftest import materialize_all


def _use_fallback(project, fallback: list[str]) -> None:
    path = project.config_dir / "providers.yaml"
    providers = yaml.safe_load(path.read_text())
    providers["fallback"] = fallback
    path.write_text(yaml.safe_dump(providers))


def test_a_ticker_failing_the_primarys_checks_is_served_by_the_fallback(make_project):
    project = make_project(["AAA", "BBB"], date(2020, 1, 1), date(2020, 2, 29))
    bad = project.bars("BBB").with_columns(
        pl.when(pl.col("date") == date(2020, 2, 12))
        .then(-1.0)
        .otherwise(pl.col("close"))
        .alias("close")
    )
    project.write("BBB", bad)
    _use_fallback(project, ["synthetic"])
    materialize_all(project, ["bars"], tickers=["AAA", "BBB"])

    with duckdb.connect(str(project.home / "warehouse.duckdb"), read_only=True) as conn:
        served = dict(
            conn.execute(
                "select ticker, any_value(provider) from market.bars group by 1"
            ).fetchall()
        )
        negative = conn.execute("select count(*) from market.bars where close <= 0").fetchone()[0]
    assert served == {"AAA": "files", "BBB": "synthetic"}
    assert negative == 0

    from quant_assets.engine.instance import open_instance

    instance = open_instance(project.home)
    try:
        event = instance.get_latest_materialization_event(dg.AssetKey("bars"))
        assert event is not None and event.asset_materialization is not None
        metadata = event.asset_materialization.metadata
    finally:
        instance.dispose()
    assert metadata["provider_chain"].value == "files → synthetic"
    routing = metadata["providers"].value
    assert routing["served_by"] == {"AAA": "files", "BBB": "synthetic"}
    assert routing["fallback_tickers"] == ["BBB"]
    rejected = [a for a in routing["attempts"] if a["outcome"] == "rejected"]
    assert [(a["provider"], a["ticker"]) for a in rejected] == [("files", "BBB")]


def test_when_every_provider_fails_nothing_is_written_and_the_error_names_each(make_project):
    from quant_assets.engine.runner import materialize
    from quant_assets.settings import load_settings

    project = make_project(["AAA", "ZZZ"], date(2020, 1, 1), date(2020, 1, 31))
    (project.drop / "ZZZ.csv").unlink()
    _use_fallback(project, ["bundled"])  # the bundled data has no ZZZ either
    outcomes = materialize(load_settings(project.config_dir), project.home, ["bars"])
    failed = [o for o in outcomes if not o.success]
    assert failed
    message = failed[0].error or ""
    assert "ZZZ" in message and "files" in message and "bundled" in message
    database = project.home / "warehouse.duckdb"
    if database.exists():  # the failed run may not even have created the file
        with duckdb.connect(str(database), read_only=True) as conn:
            tables = {
                r[0] for r in conn.execute("select table_name from information_schema.tables")
            }
            assert "bars" not in tables
