"""Every private Dagster name the project uses, in one place.

This is the only module allowed to import ``dagster._…`` (or a ``_``-prefixed name from a
Dagster package); ``quant_assets_tests/test_dagster_internals.py`` enforces it. A Dagster
upgrade that moves or changes one of these breaks here, and only here.

Each name says what we need it for, why no public API does it (checked against the
installed dagster 1.13 and dagster 1.12.0 / dagster-duckdb 0.28.0, the bottom of the pinned
range: the same paths and signatures in both), and what would replace it.

Not here because a public name does the same thing (use those):

- ``dagster.TimeWindow`` and ``dagster.partition_loading_context`` (exported in
  ``dagster/__init__.py`` in 1.12.0 and 1.13; the same objects as the private paths).
- ``dagster.DagsterInstance.from_config(dir)`` instead of
  ``DagsterInstance.from_ref(InstanceRef.from_dir(dir))``: ``dagster/_core/instance/factory.py``
  ``create_instance_from_config`` is exactly that composition.
- The ``local_artifact_storage`` block of the instance YAML: ``InstanceRef.config_defaults``
  (``dagster/_core/instance/ref.py``) defaults it to ``LocalArtifactStorage(base_dir=<the
  instance directory>)``, which is what the block spelled out.
"""

from __future__ import annotations

from collections.abc import Mapping

import dagster as dg

# --- Multi-asset backfills from a sensor (defs/sensors.py: the universe sensor) -----------
# A sensor can only launch a *backfill* (specific partitions of many assets, run by the
# backfill daemon with each asset's BackfillPolicy) by returning
# ``RunRequest.for_asset_graph_subset(AssetGraphSubset, tags)``. Its docstring in
# dagster/_core/definitions/run_request.py: "intentionally left private since
# AssetGraphSubset is not part of the public API. Other constructor methods will be
# public." No public constructor exists yet; the public RunRequest fields
# (asset_selection + partition_key / the partition-range tags) launch single runs, not a
# backfill of a non-contiguous set of partitions. Replace with that promised public
# constructor when it ships.
from dagster._core.definitions.assets.graph.asset_graph_subset import AssetGraphSubset

# --- Runs for the partitions automation requested (defs/daily.py) -----------------------
# ``dg.evaluate_automation_conditions`` (public) returns the requested partitions per asset
# but no run requests; this is the function the automation daemon itself uses to group
# them into runs by BackfillPolicy (dagster/_core/definitions/
# automation_tick_evaluation_context.py). No public equivalent. Call it inside
# ``dg.partition_loading_context(dynamic_partitions_store=instance)`` (public).
from dagster._core.definitions.automation_tick_evaluation_context import (
    build_run_requests_with_backfill_policies,
)

# --- (asset key, partition key) pairs (defs/sensors.py, defs/daily.py) -------------------
# The element type of the two private APIs above (``AssetGraphSubset.from_asset_partition_set``
# and ``build_run_requests_with_backfill_policies`` take sets of it);
# dagster/_core/definitions/events.py. Not exported, no public twin (dir(dagster) has no
# AssetPartitionKey-like name). Goes away with the two APIs it feeds.
from dagster._core.definitions.events import AssetKeyPartitionKey

# --- The database IO manager machinery (defs/io_manager.py, defs/postgres_store.py) -------
# dagster-duckdb's public ``DuckDBIOManager`` is only the *factory*: its
# ``create_io_manager`` returns a ``DbIOManager``, and the table slice (which rows a run
# writes/reads) is computed in ``DbIOManager._get_table_slice``. Our rectangle slicing and
# transactional write override ``_get_table_slice`` / ``handle_output`` of the IO manager
# itself, so we subclass ``DbIOManager`` (and ``DbClient`` for PostgreSQL). Its type handlers
# must subclass ``DbTypeHandler`` and receive a ``TableSlice`` of ``TablePartitionDimension``.
# All live in dagster/_core/storage/db_io_manager.py; ``DuckDBIOManager.type_handlers()`` is
# typed with ``DbTypeHandler`` yet nothing exports it, and Dagster's own integrations
# (dagster_duckdb/io_manager.py, dagster-duckdb-polars, -pandas) import it from this private
# path too. Replace if dagster ever exports the db_io_manager module.
from dagster._core.storage.db_io_manager import (
    DbClient,
    DbIOManager,
    DbTypeHandler,
    TablePartitionDimension,
    TableSlice,
)

# --- Retrying the DuckDB connect (defs/io_manager.py) -------------------------------------
# DuckDB holds a process-exclusive file lock; dagster-duckdb's own client retries
# ``duckdb.connect`` with this helper (dagster/_utils/backoff.py), and we keep its exact
# retry schedule. ``dagster.Backoff`` is only the RetryPolicy enum, not a retry helper.
from dagster._utils.backoff import backoff

# --- dagster-duckdb internals (defs/io_manager.py, defs/postgres_store.py) ----------------
# ``DuckDbClient`` (the SELECT/DELETE statement builder the stock manager uses) is not in
# ``dagster_duckdb.__all__``/docs; ``_get_cleanup_statement`` (the DELETE of a table slice,
# with its escaping of partition keys) is underscore-private
# (dagster_duckdb/io_manager.py). Reused so both backends select/delete exactly what the
# stock manager would. Replace with our own SQL builder if dagster-duckdb changes them.
from dagster_duckdb.io_manager import DuckDbClient
from dagster_duckdb.io_manager import _get_cleanup_statement as duckdb_cleanup_statement

__all__ = [
    "AssetGraphSubset",
    "AssetKeyPartitionKey",
    "DbClient",
    "DbIOManager",
    "DbTypeHandler",
    "DuckDbClient",
    "TablePartitionDimension",
    "TableSlice",
    "backfill_run_request",
    "backoff",
    "build_run_requests_with_backfill_policies",
    "duckdb_cleanup_statement",
]


def backfill_run_request(
    subset: AssetGraphSubset, tags: Mapping[str, str] | None = None
) -> dg.RunRequest:
    """A sensor's request for a backfill of ``subset`` (run by the backfill daemon).

    ``RunRequest.for_asset_graph_subset`` is a method of a public class, but documented as
    private (see ``AssetGraphSubset`` above): it is called here so that it, too, has one home.
    """
    return dg.RunRequest.for_asset_graph_subset(subset, tags=tags)
