"""The universe sensor keeps the dynamic ticker partitions equal to universe.yaml."""

from __future__ import annotations

from datetime import date

import dagster as dg
import yaml

from quant_assets.defs.sensors import universe_partition_requests, universe_sync_sensor


def test_requests_add_new_and_delete_removed_tickers():
    requests = universe_partition_requests(["AAA", "BBB", "DDD"], ["AAA", "BBB", "CCC"])
    adds = [r for r in requests if isinstance(r, dg.AddDynamicPartitionsRequest)]
    deletes = [r for r in requests if isinstance(r, dg.DeleteDynamicPartitionsRequest)]
    assert [list(r.partition_keys) for r in adds] == [["DDD"]]
    assert [list(r.partition_keys) for r in deletes] == [["CCC"]]
    assert universe_partition_requests(["AAA"], ["AAA"]) == []


def test_adding_a_ticker_to_universe_yaml_adds_its_partition(make_project, monkeypatch):
    project = make_project(["AAA", "BBB"], date(2020, 1, 1), date(2020, 1, 31))
    monkeypatch.setenv("QUANT_ASSETS_CONFIG", str(project.config_dir))
    with dg.instance_for_test() as instance:
        result = universe_sync_sensor(dg.build_sensor_context(instance=instance))
        assert isinstance(result, dg.SensorResult)
        added = [list(r.partition_keys) for r in result.dynamic_partitions_requests or []]
        assert added == [["AAA", "BBB"]]
        instance.add_dynamic_partitions("ticker", ["AAA", "BBB"])
        universe = yaml.safe_load((project.config_dir / "universe.yaml").read_text())
        universe["tickers"].append("CCC")
        (project.config_dir / "universe.yaml").write_text(yaml.safe_dump(universe))
        result = universe_sync_sensor(dg.build_sensor_context(instance=instance))
        added = [list(r.partition_keys) for r in result.dynamic_partitions_requests or []]
        assert added == [["CCC"]]
