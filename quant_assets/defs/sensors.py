"""Sensors: keep the dynamic ``ticker`` partitions in sync with ``universe.yaml``."""

from __future__ import annotations

import dagster as dg

from quant_assets.defs.partitions import TICKER_PARTITIONS
from quant_assets.settings import load_settings


def universe_partition_requests(
    wanted: list[str], existing: list[str]
) -> list[dg.AddDynamicPartitionsRequest | dg.DeleteDynamicPartitionsRequest]:
    """The add/delete requests that make ``existing`` ticker partitions equal ``wanted``."""
    requests: list[dg.AddDynamicPartitionsRequest | dg.DeleteDynamicPartitionsRequest] = []
    to_add = [t for t in wanted if t not in set(existing)]
    to_delete = [t for t in existing if t not in set(wanted)]
    if to_add:
        requests.append(TICKER_PARTITIONS.build_add_request(to_add))
    if to_delete:
        requests.append(TICKER_PARTITIONS.build_delete_request(to_delete))
    return requests


@dg.sensor(
    name="universe_sync",
    minimum_interval_seconds=30,
    default_status=dg.DefaultSensorStatus.RUNNING,
    description="Adds/removes ticker partitions so they match universe.yaml (re-read each tick).",
)
def universe_sync_sensor(context: dg.SensorEvaluationContext) -> dg.SensorResult:
    # Re-read the YAML on every tick: editing universe.yaml needs no code reload.
    wanted = load_settings().universe.tickers
    existing = list(context.instance.get_dynamic_partitions(TICKER_PARTITIONS.name or "ticker"))
    requests = universe_partition_requests(wanted, existing)
    if not requests:
        return dg.SensorResult(skip_reason="ticker partitions match universe.yaml")
    return dg.SensorResult(dynamic_partitions_requests=requests)
