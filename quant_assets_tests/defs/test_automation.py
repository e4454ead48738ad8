"""Declarative automation and code versions: who follows whom, and what a config edit makes
stale."""

from __future__ import annotations

import shutil

import dagster as dg
import yaml

from quant_assets.defs.definitions import build_definitions
from quant_assets.engine.instance import open_instance
from quant_assets.settings import load_settings


def _graph(config_dir, home):
    return build_definitions(load_settings(config_dir), home).resolve_asset_graph()


def _code_versions(config_dir, home) -> dict[str, str | None]:
    graph = _graph(config_dir, home)
    return {
        key.to_user_string(): graph.get(key).code_version for key in graph.materializable_asset_keys
    }


def test_roots_follow_the_schedule_and_everything_else_follows_its_inputs(pipeline):
    graph = _graph(pipeline.config_dir, pipeline.home)
    for key in graph.materializable_asset_keys:
        condition = graph.get(key).automation_condition
        if key.to_user_string() in ("bars", "benchmark_bars"):
            assert condition is None, key
        else:
            assert condition is not None and "eager" in condition.get_label(), key


def test_strategy_assets_are_not_triggered_by_the_direct_bars_edge(pipeline):
    graph = _graph(pipeline.config_dir, pipeline.home)
    positions = graph.get(dg.AssetKey(["hybrid_alpha", "positions"]))
    assert dg.AssetKey("bars") in positions.parent_keys
    description = str(positions.automation_condition)
    assert "bars" in description  # the ignored selection is part of the condition


def _edited_copy(pipeline, tmp_path, file: str, edit) -> object:
    config_dir = tmp_path / "configs"
    shutil.copytree(pipeline.config_dir, config_dir)
    path = config_dir / file
    data = yaml.safe_load(path.read_text()) if path.exists() else {}
    edit(data)
    path.write_text(yaml.safe_dump(data))
    return config_dir


def _changed(pipeline, config_dir) -> set[str]:
    before = _code_versions(pipeline.config_dir, pipeline.home)
    after = _code_versions(config_dir, pipeline.home)
    assert before.keys() == after.keys()
    return {key for key in before if before[key] != after[key]}


def test_a_strategy_edit_changes_exactly_that_strategys_affected_assets(pipeline, tmp_path):
    def edit(config):
        config.setdefault("sizing", {})["max_weight"] = 0.07

    config_dir = _edited_copy(pipeline, tmp_path, "strategies/trend_only.yaml", edit)
    study = {f"sizing/{t}" for t in ("trials", "returns", "folds", "curve", "decision")}
    # and the study whose base it is (its trials are variants of that config)
    assert _changed(pipeline, config_dir) == {"trend_only/positions", *study}


def test_a_feature_edit_changes_features_and_what_is_computed_from_their_config(pipeline, tmp_path):
    def edit(config):
        config["atr_window"] = 21

    config_dir = _edited_copy(pipeline, tmp_path, "features.yaml", edit)
    changed = _changed(pipeline, config_dir)
    assert {"features", "signals"} <= changed
    assert not {k for k in changed if "/" in k}  # no strategy asset's own code changed
    assert "bars" not in changed and "regimes" not in changed


def test_stored_materialisations_carry_the_code_version_dagster_compares(pipeline, tmp_path):
    """Dagster marks an asset stale when its current code version differs from the one
    recorded on its latest materialisation: after the edit, only trend_only/positions does."""

    def edit(config):
        config.setdefault("sizing", {})["max_weight"] = 0.07

    config_dir = _edited_copy(pipeline, tmp_path, "strategies/trend_only.yaml", edit)
    current = _code_versions(config_dir, pipeline.home)
    instance = open_instance(pipeline.home)
    try:
        stale = set()
        for name in ("trend_only/positions", "trend_only/backtest", "hybrid_alpha/positions"):
            key = dg.AssetKey(name.split("/"))
            event = instance.get_latest_materialization_event(key)
            assert event is not None and event.asset_materialization is not None
            recorded = event.asset_materialization.tags["dagster/code_version"]
            if recorded != current[name]:
                stale.add(name)
    finally:
        instance.dispose()
    assert stale == {"trend_only/positions"}
