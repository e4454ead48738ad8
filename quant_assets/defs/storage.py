"""Where the tables live and how a run executes, chosen by ``storage.yaml``.

The embedded default is one DuckDB file under the data directory and the in-process
executor (DuckDB allows a single writing process). The shared-storage profile (PostgreSQL,
see docs/deployment.md) lets several processes and machines write partitions at once, so its
runs use the multiprocess executor.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import dagster as dg

from quant_assets.defs.io_manager import WarehouseIOManager
from quant_assets.defs.postgres_store import PostgresIOManager, PostgresWarehouseResource
from quant_assets.defs.resources import WAREHOUSE_SCHEMA, WarehouseResource, warehouse_path
from quant_assets.settings import Settings


def storage_resources(settings: Settings, home: Path) -> dict[str, object]:
    """The ``warehouse_io_manager`` and ``warehouse`` resources for the configured storage."""
    database = str(warehouse_path(home))
    storage = settings.storage
    if storage.backend == "postgres":
        pg = storage.postgres
        # The password is resolved from the environment when the resources are built; the
        # definitions, the run config and the UI only ever hold the variable's name.
        connection: dict[str, Any] = {
            "host": pg.host,
            "port": pg.port,
            "dbname": pg.database,
            "user": pg.user,
            "password": dg.EnvVar(pg.password_env),
            "sslmode": pg.sslmode,
        }
        return {
            "warehouse_io_manager": PostgresIOManager(**connection, schema=pg.schema_name),
            # ``database`` anchors the local files (reports, MLflow) in the data directory.
            "warehouse": PostgresWarehouseResource(
                **connection, database=database, schema_name=pg.schema_name
            ),
        }
    return {
        "warehouse_io_manager": WarehouseIOManager(database=database, schema=WAREHOUSE_SCHEMA),
        "warehouse": WarehouseResource(database=database),
    }


def storage_executor(settings: Settings) -> dg.ExecutorDefinition:
    """The executor runs use with the configured storage."""
    if settings.storage.backend == "postgres":
        # Several processes may write at once: steps run in parallel, each in its own process.
        return dg.multiprocess_executor.configured(
            {"max_concurrent": settings.storage.max_concurrent}
        )
    # One process: on 2 cores a step subprocess costs seconds of imports (dagster, polars,
    # GX) and the steps are sequential anyway (bars -> features -> signals), and DuckDB
    # allows a single writing process. See docs/architecture.md.
    return dg.in_process_executor
