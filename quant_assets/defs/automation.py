"""Declarative automation: every asset below the roots follows its inputs.

The roots (``bars``, ``benchmark_bars``) are driven by the daily schedule and the sensors;
every other asset carries :meth:`dagster.AutomationCondition.eager`: it is requested when
an input partition was updated (or is being requested in the same tick), once no input is
missing or in progress, for the latest date window (and a newly missing latest cut-off
trains a model). The automation sensor evaluates the conditions; the UI shows, per asset
and tick, which sub-condition was true — that is "why it ran". Requests spanning several
partitions become one Dagster backfill, which honours the single-run backfill policies:
one run per partitions definition, not one per partition.
"""

from __future__ import annotations

from collections.abc import Sequence

import dagster as dg

from quant_assets.settings import Settings

ROOT_ASSETS = frozenset({dg.AssetKey("bars"), dg.AssetKey("benchmark_bars")})
AUTOMATION_SENSOR = "quant_assets_automation"


def downstream_condition() -> dg.AutomationCondition:
    """The condition every non-root asset carries."""
    return dg.AutomationCondition.eager()


def with_automation(assets: Sequence[dg.AssetsDefinition]) -> list[dg.AssetsDefinition]:
    """``assets`` with :func:`downstream_condition` on every asset except the roots."""

    def attach(spec: dg.AssetSpec) -> dg.AssetSpec:
        if spec.key in ROOT_ASSETS:
            return spec
        return spec.replace_attributes(automation_condition=downstream_condition())

    return list(dg.map_asset_specs(attach, list(assets)))


def build_automation_sensor(settings: Settings) -> dg.AutomationConditionSensorDefinition:
    """The sensor that evaluates the conditions (running by default under ``dagster dev``)."""
    return dg.AutomationConditionSensorDefinition(
        AUTOMATION_SENSOR,
        target=dg.AssetSelection.all(),
        minimum_interval_seconds=settings.operations.automation_interval_seconds,
        default_status=dg.DefaultSensorStatus.RUNNING,
        description="Materialises every asset whose inputs were updated (AutomationCondition).",
    )
