"""The asset graph as Dagster sees it: keys, lineage, partitions, checks; and a smoke run."""

from __future__ import annotations

from datetime import date

import dagster as dg
import duckdb
import pytest

from quant_assets.defs.definitions import build_definitions
from quant_assets.engine.instance import open_instance
from quant_assets.engine.plan import plan_runs
from quant_assets.engine.runner import materialize
from quant_assets.settings import load_settings


@pytest.fixture
def small_project(make_project):
    return make_project(["AAA", "BBB", "CCC"], date(2020, 1, 1), date(2020, 12, 31))


def test_graph_has_the_pipeline_assets_with_true_lineage(small_project):
    defs = build_definitions(load_settings(small_project.config_dir), small_project.home)
    graph = defs.resolve_asset_graph()
    keys = {k.to_user_string() for k in graph.get_all_asset_keys()}
    assert keys == {
        "bars",
        "benchmark_bars",
        "features",
        "signals",
        "labels",
        "regime_model",
        "regimes",
        "next_state_model",
        "predictions",
        # the signal tear sheets (one multi-asset over the research assets)
        "forward_returns",
        "signal_evaluation",
        "signal_ic",
        "signal_decay",
        "signal_quantiles",
    }
    parents = {k: {p.to_user_string() for p in graph.get(dg.AssetKey(k)).parent_keys} for k in keys}
    assert parents["features"] == {"bars", "benchmark_bars"}
    assert parents["signals"] == {"features"}
    assert parents["bars"] == set() and parents["benchmark_bars"] == set()
    assert parents["labels"] == {"bars"}  # features never read labels
    assert parents["regime_model"] == {"benchmark_bars"}
    assert parents["regimes"] == {"regime_model", "benchmark_bars"}
    assert parents["next_state_model"] == {"features", "signals", "labels", "regimes"}
    assert parents["predictions"] == {"features", "signals", "regimes", "next_state_model"}


def test_models_are_partitioned_by_cutoff_and_read_only_the_windows_before_it(make_project):
    project = make_project(["AAA"], date(2015, 1, 1), date(2019, 12, 31))
    graph = build_definitions(load_settings(project.config_dir), project.home).resolve_asset_graph()
    model_key, regimes_key = dg.AssetKey("next_state_model"), dg.AssetKey("regimes")
    cutoffs = graph.get(model_key).partitions_def
    assert cutoffs.get_partition_keys() == ["2018-01-01", "2019-01-01"]  # start + 3 years
    mapping = graph.get_partition_mapping(model_key, regimes_key)
    upstream = mapping.get_upstream_mapped_partitions_result_for_partitions(
        cutoffs.empty_subset().with_partition_keys(["2019-01-01"]),
        cutoffs,
        graph.get(regimes_key).partitions_def,
    ).partitions_subset.get_partition_keys()
    assert min(upstream) == "2015-01-01" and max(upstream) == "2018-12-01"
    # A date uses the model whose cut-off window holds it, never a later one.
    predictions = graph.get(dg.AssetKey("predictions")).partitions_def
    to_model = graph.get_partition_mapping(dg.AssetKey("predictions"), model_key)
    key = dg.MultiPartitionKey({"date": "2019-07-01", "ticker": "AAA"})
    mapped = to_model.get_upstream_mapped_partitions_result_for_partitions(
        predictions.empty_subset().with_partition_keys([key]), predictions, cutoffs
    ).partitions_subset.get_partition_keys()
    assert list(mapped) == ["2019-01-01"]


def test_per_ticker_assets_are_date_by_ticker_partitioned_and_benchmark_by_date(small_project):
    defs = build_definitions(load_settings(small_project.config_dir), small_project.home)
    graph = defs.resolve_asset_graph()
    for name in ("bars", "features", "signals"):
        partitions = graph.get(dg.AssetKey(name)).partitions_def
        assert isinstance(partitions, dg.MultiPartitionsDefinition)
        assert {d.name for d in partitions.partitions_defs} == {"date", "ticker"}
        assert graph.get(dg.AssetKey(name)).backfill_policy == dg.BackfillPolicy.single_run()
    benchmark = graph.get(dg.AssetKey("benchmark_bars")).partitions_def
    assert isinstance(benchmark, dg.TimeWindowPartitionsDefinition)
    assert benchmark.get_first_partition_key() == "2020-01-01"
    assert benchmark.get_last_partition_key() == "2020-12-01"


def test_bars_checks_are_blocking_and_every_asset_is_checked(small_project):
    defs = build_definitions(load_settings(small_project.config_dir), small_project.home)
    graph = defs.resolve_asset_graph()
    checks = {k.to_user_string() for k in graph.asset_check_keys}
    assert {
        "bars:bars_quality",
        "bars:bars_return_spikes",
        "benchmark_bars:benchmark_bars_quality",
        "features:features_finite",
        "signals:signals_in_unit_interval",
    } <= checks
    specs = {
        spec.key.to_user_string(): spec
        for node in defs.assets or []
        for spec in node.check_specs  # type: ignore[union-attr]
    }
    assert specs["bars:bars_quality"].blocking
    assert specs["benchmark_bars:benchmark_bars_quality"].blocking


def test_a_range_backfill_is_one_run_for_all_tickers(small_project):
    settings = load_settings(small_project.config_dir)
    defs = build_definitions(settings, small_project.home)
    plans = plan_runs(settings, defs, ["signals"], date(2020, 1, 1), date(2020, 12, 31), None)
    per_ticker = [p for p in plans if "bars" in p.assets]
    assert len(per_ticker) == 1
    assert per_ticker[0].partitions == 12 * 3
    assert per_ticker[0].assets == ("bars", "features", "signals")


def test_smoke_materialises_bars_to_signals_for_three_tickers_and_three_months(small_project):
    settings = load_settings(small_project.config_dir)
    outcomes = materialize(
        settings, small_project.home, ["signals"], date(2020, 3, 1), date(2020, 5, 31)
    )
    assert [o.success for o in outcomes] == [True, True], [o.error for o in outcomes]
    with duckdb.connect(str(small_project.home / "warehouse.duckdb"), read_only=True) as conn:
        for table in ("bars", "features", "signals"):
            rows = conn.execute(
                f"select count(*), count(distinct ticker), min(date), max(date) from market.{table}"
            ).fetchall()[0]
            assert rows[0] == 3 * 63, table  # 63 NYSE sessions in Mar-May 2020
            assert rows[1] == 3
            assert (rows[2], rows[3]) == (date(2020, 3, 2), date(2020, 5, 29))
    instance = open_instance(small_project.home)
    try:
        for name in ("bars", "features", "signals"):
            keys = instance.get_materialized_partitions(dg.AssetKey(name))
            assert len(keys) == 9, name
        check = instance.event_log_storage.get_latest_asset_check_execution_by_key(
            [dg.AssetCheckKey(dg.AssetKey("bars"), "bars_quality")]
        )
        assert check[dg.AssetCheckKey(dg.AssetKey("bars"), "bars_quality")].status.value == (
            "SUCCEEDED"
        )
    finally:
        instance.dispose()


def test_the_benchmark_run_adds_only_look_back_windows_not_yet_materialised(small_project):
    settings = load_settings(small_project.config_dir)
    defs = build_definitions(settings, small_project.home)
    start, end = date(2020, 11, 1), date(2020, 11, 30)
    cold = plan_runs(settings, defs, ["signals"], start, end, None)
    assert (cold[0].range_start, cold[0].range_end) == ("2020-01-01", "2020-11-01")
    done = {f"2020-{m:02d}-01" for m in range(1, 11)}
    warm = plan_runs(settings, defs, ["signals"], start, end, None, {"benchmark_bars": done})
    assert (warm[0].range_start, warm[0].range_end) == ("2020-11-01", "2020-11-01")
