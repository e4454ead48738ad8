"""Where the tables live and how a run executes, chosen by config.

The embedded default is one DuckDB file under the data directory and the in-process
executor (DuckDB allows a single writing process). The shared-storage profile (PostgreSQL,
see docs/deployment.md) lets several processes and machines write partitions at once.
"""

from __future__ import annotations

from pathlib import Path

import dagster as dg

from quant_assets.defs.io_manager import WarehouseIOManager
from quant_assets.defs.resources import WAREHOUSE_SCHEMA, WarehouseResource, warehouse_path
from quant_assets.settings import Settings


def storage_resources(settings: Settings, home: Path) -> dict[str, object]:
    """The ``warehouse_io_manager`` and ``warehouse`` resources for the configured storage."""
    database = str(warehouse_path(home))
    return {
        "warehouse_io_manager": WarehouseIOManager(database=database, schema=WAREHOUSE_SCHEMA),
        "warehouse": WarehouseResource(database=database),
    }


def storage_executor(settings: Settings) -> dg.ExecutorDefinition:
    """The executor runs use with the configured storage."""
    # One process: on 2 cores a step subprocess costs seconds of imports (dagster, polars,
    # GX) and the steps are sequential anyway (bars -> features -> signals), and DuckDB
    # allows a single writing process. See docs/architecture.md.
    return dg.in_process_executor
