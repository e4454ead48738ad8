"""The one place where the stages of the pipeline meet: each group module's ``Definitions``,
merged. ``dagster dev`` loads ``defs`` lazily (``[tool.dagster]`` in pyproject,
``workspace.yaml``); the CLI, the engine and tests call :func:`build_definitions` with their
own settings and data directory.

Config directory: ``$QUANT_ASSETS_CONFIG`` (default ``configs/``); data directory:
``$QUANT_ASSETS_HOME`` (default ``./data``).
"""

from __future__ import annotations

import os
import warnings
from pathlib import Path

import dagster as dg

from quant_assets.defs import (
    evaluation,
    market_data,
    models,
    operations,
    regimes,
    research,
    strategies,
    studies,
)
from quant_assets.settings import Settings, data_home, load_settings

# LightGBM's OpenMP threads busy-wait by default: with another process on a 2-core machine
# training was measured 5-30x slower (152 s vs ~25 s). Passive waiting costs nothing idle.
os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")


def build_definitions(settings: Settings | None = None, home: Path | None = None) -> dg.Definitions:
    """Definitions for ``settings`` (default: the configured directory) storing under ``home``."""
    from quant_assets.dagster_internals import cache_input_partition_mappings

    cache_input_partition_mappings()  # one partition mapping per input and step
    # We use beta APIs knowingly (backfill policies, multi-partition mappings); see
    # docs/architecture.md. Their warnings would drown every CLI run.
    warnings.filterwarnings("ignore", category=dg.BetaWarning)
    warnings.filterwarnings("ignore", category=dg.PreviewWarning)
    settings = settings or load_settings()
    home = home or data_home()
    return dg.Definitions.merge(
        market_data.defs(settings),
        research.defs(settings),
        regimes.defs(settings),
        models.defs(settings),
        strategies.defs(settings),
        studies.defs(settings),
        evaluation.defs(settings),
        operations.defs(settings, home),
    )


@dg.definitions
def defs() -> dg.Definitions:
    """What ``dagster dev`` and the daemon load: built when Dagster asks, not at import."""
    return build_definitions()
