"""The one place where assets, checks, resources, sensors and the executor meet.

:func:`build_definitions` is called by ``definitions.py`` (what ``dagster dev`` loads), by the
CLI and by tests, each with its own settings and data directory.
"""

from __future__ import annotations

import os
import warnings
from pathlib import Path

import dagster as dg

from quant_assets.defs.assets import build_assets
from quant_assets.defs.automation import build_automation_sensor, with_automation
from quant_assets.defs.model_assets import build_model_assets
from quant_assets.defs.schedules import build_daily_schedules
from quant_assets.defs.sensors import build_sensors
from quant_assets.defs.storage import storage_executor, storage_resources
from quant_assets.defs.strategy_assets import build_strategy_assets
from quant_assets.settings import Settings, data_home, load_settings

# LightGBM's OpenMP threads busy-wait by default: with another process on a 2-core machine
# training was measured 5-30x slower (152 s vs ~25 s). Passive waiting costs nothing idle.
os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")


def build_definitions(settings: Settings | None = None, home: Path | None = None) -> dg.Definitions:
    """Definitions for ``settings`` (default: the configured directory) storing under ``home``."""
    # We use beta APIs knowingly (backfill policies, multi-partition mappings); see
    # docs/architecture.md. Their warnings would drown every CLI run.
    warnings.filterwarnings("ignore", category=dg.BetaWarning)
    warnings.filterwarnings("ignore", category=dg.PreviewWarning)
    settings = settings or load_settings()
    home = home or data_home()
    return dg.Definitions(
        assets=with_automation(
            [
                *build_assets(settings),
                *build_model_assets(settings),
                *build_strategy_assets(settings),
            ],
            strategies=list(settings.strategies),
        ),
        schedules=build_daily_schedules(settings),
        sensors=[*build_sensors(settings, home), build_automation_sensor(settings)],
        resources=storage_resources(settings, home),
        executor=storage_executor(settings),
    )
