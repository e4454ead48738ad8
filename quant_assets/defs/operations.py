"""Operations: what keeps the graph current and where it is stored — the daily schedules, the
sensors (universe, drop folder, failed runs, automation), the storage resources and the
executor chosen by ``storage.yaml``."""

from __future__ import annotations

from pathlib import Path

import dagster as dg

from quant_assets.defs.automation import build_automation_sensor
from quant_assets.defs.schedules import build_daily_schedules
from quant_assets.defs.sensors import build_sensors
from quant_assets.defs.storage import storage_executor, storage_resources
from quant_assets.settings import Settings


def defs(settings: Settings, home: Path) -> dg.Definitions:
    """Schedules, sensors, resources and the executor for data stored under ``home``."""
    return dg.Definitions(
        schedules=build_daily_schedules(settings),
        sensors=[*build_sensors(settings, home), build_automation_sensor(settings)],
        resources=storage_resources(settings, home),
        executor=storage_executor(settings),
    )
