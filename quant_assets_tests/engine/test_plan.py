"""The run plan, the automation, ``export`` and ``status`` read the graph: a new asset and a
new strategy are picked up with no list of names edited anywhere."""

from datetime import date

import dagster as dg
import polars as pl
import pytest
import yaml

from quant_assets.defs.automation import follows_inputs
from quant_assets.defs.common import RunScope, table_asset, table_metadata
from quant_assets.defs.definitions import build_definitions
from quant_assets.defs.partitions import ticker_date_partitions
from quant_assets.engine.plan import all_assets, group_assets, plan_runs, stages
from quant_assets.engine.runner import materialize
from quant_assets.errors import QuantAssetsError
from quant_assets.settings import load_settings
from quant_assets.store import read_table, table_summary
from quant_assets_tests.conftest import SHIPPED_CONFIGS, write_fast_model_configs


@pytest.fixture
def project(make_project):
    project = write_fast_model_configs(
        make_project(["AAA", "BBB", "CCC"], date(2018, 1, 1), date(2020, 12, 31))
    )
    # A new strategy is a new YAML file (here: trend_only under another name).
    config = yaml.safe_load((SHIPPED_CONFIGS / "strategies" / "trend_only.yaml").read_text())
    (project.config_dir / "strategies" / "slow_trend.yaml").write_text(yaml.safe_dump(config))
    return project


def momentum_rank_asset(settings) -> dg.AssetsDefinition:
    """A new per-ticker research asset, written the way every asset is (the shared helpers)."""

    @dg.asset(
        **table_asset(
            partitions_def=ticker_date_partitions(settings.universe),
            group_name="research",
            code_version="1",
            metadata=table_metadata(None),
            automation_condition=follows_inputs(),
        )
    )
    def momentum_rank(context: dg.AssetExecutionContext, signals: pl.DataFrame) -> pl.DataFrame:
        """The cross-ticker rank of trend_alpha per date."""
        scope = RunScope.of(context)
        ranked = signals.with_columns(pl.col("trend_alpha").rank().over("date").alias("rank"))
        return scope.within(ranked.select("date", "ticker", "rank"))

    return momentum_rank


def extended(project) -> dg.Definitions:
    settings = load_settings(project.config_dir)
    base = build_definitions(settings, project.home)
    return dg.Definitions.merge(base, dg.Definitions(assets=[momentum_rank_asset(settings)]))


def test_the_plan_puts_a_new_per_ticker_asset_into_the_run_of_its_partitions(project):
    settings = load_settings(project.config_dir)
    defs = extended(project)
    plans = plan_runs(settings, defs, ["momentum_rank"], date(2020, 1, 1), date(2020, 6, 30), None)
    per_ticker = [p for p in plans if "bars" in p.assets]
    assert len(per_ticker) == 1
    assert per_ticker[0].assets == ("bars", "features", "signals", "momentum_rank")
    assert (per_ticker[0].range_start, per_ticker[0].range_end) == (
        "2020-01-01|AAA",
        "2020-06-01|CCC",
    )


def test_a_new_strategy_yaml_joins_the_strategy_runs_with_its_orders_and_report(project):
    defs = extended(project)
    assert group_assets(defs, "slow_trend") == (
        "slow_trend/alpha_scores",
        "slow_trend/positions",
        "slow_trend/backtest",
        "slow_trend/orders",
        "slow_trend/paper_book",
        "slow_trend/backtest_report",
    )
    runs = stages(defs, all_assets(defs))
    positions_run = next(run for run in runs if "trend_only/positions" in run)
    assert {"slow_trend/alpha_scores", "slow_trend/positions", "slow_trend/backtest"} <= set(
        positions_run
    )
    orders_run = next(run for run in runs if "trend_only/orders" in run)
    assert {"slow_trend/orders", "slow_trend/paper_book"} <= set(orders_run)
    reports = {f"{s}/backtest_report" for s in load_settings(project.config_dir).strategies}
    assert reports <= set(runs[-1])  # the whole-history summaries run last, together
    assert "slow_trend/backtest_report" in runs[-1] and "signal_evaluation" in runs[-1]


def test_stages_run_in_dependency_order_one_partitions_definition_each(project):
    defs = extended(project)
    graph = defs.resolve_asset_graph()
    runs = stages(defs, all_assets(defs))
    position = {asset: i for i, run in enumerate(runs) for asset in run}
    for asset, i in position.items():
        node = graph.get(dg.AssetKey.from_user_string(asset))
        assert {position[p.to_user_string()] for p in node.parent_keys} <= set(range(i + 1))
        partitions = {graph.get(dg.AssetKey.from_user_string(a)).partitions_def for a in runs[i]}
        assert len(partitions) == 1, runs[i]
    assert runs[0] == ("benchmark_bars",)


def test_automation_reads_the_roots_and_conditions_from_the_assets(project):
    defs = extended(project)
    graph = defs.resolve_asset_graph()
    roots = {
        k.to_user_string() for k in graph.materializable_asset_keys if not graph.get(k).parent_keys
    }
    assert roots == {"bars", "benchmark_bars"}
    for key in graph.materializable_asset_keys:
        condition = graph.get(key).automation_condition
        assert (condition is None) == (key.to_user_string() in roots), key


def test_export_and_status_know_every_stored_table_strategies_and_new_assets_included(project):
    settings = load_settings(project.config_dir)
    defs = extended(project)
    outcomes = materialize(
        settings, project.home, ["momentum_rank"], date(2020, 1, 1), date(2020, 3, 31), defs=defs
    )
    assert [o.success for o in outcomes] == [True, True], [o.error for o in outcomes]
    known = all_assets(defs)
    assert {"momentum_rank", "slow_trend/positions", "hybrid_alpha/paper_book"} <= set(known)
    ranks = read_table(project.home, "momentum_rank", known=known)
    assert ranks.columns == ["date", "ticker", "rank"]
    assert ranks.height == 3 * 62  # 62 NYSE sessions in Jan-Mar 2020, three tickers
    assert ranks["ticker"].to_list() == sorted(ranks["ticker"].to_list())  # ordered by ticker, date
    with pytest.raises(QuantAssetsError, match="unknown table 'positions'"):
        read_table(project.home, "positions", known=known)
    with pytest.raises(QuantAssetsError, match="has not been materialised yet"):
        read_table(project.home, "slow_trend/positions", known=known)
    summary = {row[0]: row for row in table_summary(project.home, known)}
    assert summary["momentum_rank"][1:3] == (3 * 62, 3)
    assert summary["slow_trend/positions"][1] == 0
