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


def downstream_condition(ignore: Sequence[dg.AssetKey] = ()) -> dg.AutomationCondition:
    """The condition every non-root asset carries; updates of ``ignore`` do not trigger it."""
    condition = dg.AutomationCondition.eager()
    if ignore:
        return condition.ignore(dg.AssetSelection.assets(*ignore))
    return condition


def ignored_inputs(spec: dg.AssetSpec, strategies: set[str]) -> list[dg.AssetKey]:
    """The inputs of ``spec`` whose updates must not trigger it, each for a stated reason.

    - A strategy's assets read ``bars`` (risk look-backs, the book's prices) always together
      with their alpha, which a bars update reaches later through features, signals and
      predictions (other partitions definitions: a later tick). Triggering on the direct
      edge would size positions on today's prices and yesterday's alpha.
    - ``backtest_report`` summarises the books: it follows the ``backtest`` assets only
      (its other inputs all reach it through them).
    - ``next_state_model`` declares every partition of features/signals/labels (Dagster has
      no "every window before the cut-off" mapping for a multi-partitioned upstream) but
      reads only rows before its cut-off: a daily update must not retrain it. A new cut-off
      is trained because it is newly missing.
    """
    parents = [dep.asset_key for dep in spec.deps]
    name = spec.key.path[-1]
    if name == "backtest_report":
        return [key for key in parents if key.path[-1] != "backtest"]
    if spec.key.path[0] in strategies:
        return [key for key in parents if key in ROOT_ASSETS]
    if spec.key == dg.AssetKey("next_state_model"):
        return [key for key in parents if key.path[-1] in ("features", "signals", "labels")]
    return []


def with_automation(
    assets: Sequence[dg.AssetsDefinition], strategies: Sequence[str] = ()
) -> list[dg.AssetsDefinition]:
    """``assets`` with :func:`downstream_condition` on every asset except the roots."""
    prefixes = set(strategies)

    def attach(spec: dg.AssetSpec) -> dg.AssetSpec:
        if spec.key in ROOT_ASSETS:
            return spec
        condition = downstream_condition(ignored_inputs(spec, prefixes))
        return spec.replace_attributes(automation_condition=condition)

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
