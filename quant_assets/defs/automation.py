"""Declarative automation: every asset below the roots follows its inputs.

Each asset declares its own condition where it is defined (:func:`follows_inputs`); the roots
(``bars``, ``benchmark_bars``) declare none: the daily schedule and the sensors drive them. An
asset is requested when an input partition was updated (or is being requested in the same
tick), once no input is missing or in progress, for the latest date window (and a newly
missing latest cut-off trains a model). The automation sensor evaluates the conditions; the UI
shows, per asset and tick, which sub-condition was true — that is "why it ran". Requests
spanning several partitions become one Dagster backfill, which honours the single-run
backfill policies: one run per partitions definition, not one per partition.

Inputs an asset ignores, each with its reason at the asset:

- a strategy's assets read ``bars`` (risk look-backs, the book's prices) always together with
  their alpha, which a bars update reaches later through features, signals and predictions
  (other partitions definitions: a later tick). Triggering on the direct edge would size
  positions on today's prices and yesterday's alpha;
- ``backtest_report`` summarises the books: it follows the ``backtest`` assets only;
- a cut-off model declares every partition of its training inputs but reads only rows before
  its cut-off: a daily update must not retrain it; a new cut-off is trained because it is
  newly missing.
"""

from __future__ import annotations

from collections.abc import Sequence

import dagster as dg

from quant_assets.settings import Settings

AUTOMATION_SENSOR = "quant_assets_automation"


def follows_inputs(ignore: Sequence[dg.AssetKey | str] = ()) -> dg.AutomationCondition:
    """The condition of every non-root asset; updates of ``ignore`` do not trigger it."""
    condition = dg.AutomationCondition.eager()
    if ignore:
        keys = [dg.AssetKey.from_coercible(key) for key in ignore]
        return condition.ignore(dg.AssetSelection.assets(*keys))
    return condition


def build_automation_sensor(settings: Settings) -> dg.AutomationConditionSensorDefinition:
    """The sensor that evaluates the conditions: stopped by default (``operations.yaml``
    ``automation.enabled``), because the ``converge`` sensor keeps the whole graph current
    and the two would race for the latest window."""
    config = settings.operations.automation
    return dg.AutomationConditionSensorDefinition(
        AUTOMATION_SENSOR,
        target=dg.AssetSelection.all(),
        minimum_interval_seconds=config.minimum_interval_seconds,
        default_status=(
            dg.DefaultSensorStatus.RUNNING if config.enabled else dg.DefaultSensorStatus.STOPPED
        ),
        description=(
            "Materialises the latest window of every asset whose inputs were updated "
            "(AutomationCondition.eager). Off by default: the converge sensor does this for "
            "every window; do not run both."
        ),
    )
