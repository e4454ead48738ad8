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

import os
from collections.abc import Mapping, Sequence
from typing import Any

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

# --- Asset and check event types (the batched event log below) ---------------------------
from dagster._core.events import ASSET_CHECK_EVENTS, ASSET_EVENTS

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

# --- Batched event-log writes (engine/instance.py writes the instance YAML) ---------------
# Stock SQLite storage writes every asset-partition materialisation as its own pair of
# transactions (the run's shard, then index.db: row, tags, asset_keys), ~16 ms each; a
# 500-ticker × 20-year backfill spends most of its wall time there. Dagster already hands a
# step's materialisations/observations/planned events to ``EventLogStorage.store_event_batch``
# when ``DAGSTER_EVENT_BATCH_SIZE`` > 0 (dagster/_core/instance/methods/event_methods.py,
# ``handle_new_event``, falling back to one-by-one ``store_event`` if the batch raises), but
# the SQLite storage inherits the base loop; only dagster-postgres overrides it
# (dagster-io/dagster#19862). ``BatchedSqliteEventLogStorage`` below is the stock SQLite
# storage with that override: one transaction per database per batch, the same rows.
# Written against the methods both ends of the pinned range have (dagster 1.12.22 lacks
# 1.13's connection-taking ``_store_asset_event_tags``/``_store_asset_event``);
# quant_assets_tests/test_event_log.py passes on 1.12.22 and 1.13.27.
# Private: the storage class and its event-type sets live in dagster/_core/storage/
# event_log/ and dagster/_core/events/. Replace when Dagster batches SQLite writes itself, or
# ships range materialisation events (dagster-io/dagster#19829, #31694, #18789).
from dagster._core.storage.event_log import SqliteEventLogStorage
from dagster._core.storage.event_log.schema import AssetEventTagsTable, AssetKeyTable

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

# The storages of the instance YAML that engine/instance.py writes (the legacy per-storage
# keys: a ``storage: custom:`` block would wrap ours in LegacyEventLogStorage, which does not
# forward ``store_event_batch``).
RUN_STORAGE_MODULE = ("dagster._core.storage.runs", "SqliteRunStorage")
SCHEDULE_STORAGE_MODULE = ("dagster._core.storage.schedules", "SqliteScheduleStorage")
EVENT_LOG_STORAGE_MODULE = ("quant_assets.dagster_internals", "BatchedSqliteEventLogStorage")
# Events per batch: a step's events are flushed at its end or at this many.
EVENT_BATCH_SIZE = "1000"


def _inserted_id(conn: Any, statement: Any) -> int:
    """The primary key of the row ``statement`` inserts."""
    key = conn.execute(statement).inserted_primary_key
    if key is None or key[0] is None:
        raise RuntimeError("event log: the insert returned no event id")
    return int(key[0])


class BatchedSqliteEventLogStorage(SqliteEventLogStorage):
    """Dagster's SQLite event-log storage writing a batch of asset events (one step's
    materialisations, observations, planned and failed-to-materialise events, check planned
    events) in one transaction per database: the run's shard, then index.db. Same rows as
    ``store_event`` one by one: event rows, indexed tags, the asset_keys entry (each column
    from the last event that sets it, as successive updates leave it) and check rows.

    If the shard insert fails nothing is written and the error goes to Dagster, which stores
    the events one by one. Once the shard is committed the index is written in one
    transaction and, should that fail, event by event, so no event is recorded twice.

    Loading this storage turns Dagster's batching on in the process
    (``DAGSTER_EVENT_BATCH_SIZE``, unless set already): every process that opens the
    instance — CLI, ``dagster dev``, the daemon, run and step workers — batches.
    """

    def __init__(self, base_dir: str, inst_data: Any = None) -> None:
        os.environ.setdefault("DAGSTER_EVENT_BATCH_SIZE", EVENT_BATCH_SIZE)
        super().__init__(base_dir, inst_data=inst_data)

    @classmethod
    def from_config_value(  # type: ignore[override]
        cls, inst_data: Any, config_value: Mapping[str, Any]
    ) -> BatchedSqliteEventLogStorage:
        # The base returns SqliteEventLogStorage(...) by name: it would drop the subclass.
        return cls(inst_data=inst_data, **config_value)

    def store_event_batch(self, events: Sequence[Any]) -> None:
        if not events:
            return
        if len({event.run_id for event in events}) != 1:  # Dagster batches one step's events
            for event in events:
                self.store_event(event)
            return
        statements = [self.prepare_insert_event(event) for event in events]
        with self.run_connection(events[0].run_id) as conn:
            for statement in statements:
                conn.execute(statement)
        pairs = list(zip(events, statements, strict=True))
        assets = [(event, statement) for event, statement in pairs if self._asset_event(event)]
        if assets:
            has_columns, has_tags = self._index_schema()
            try:
                with self.index_transaction() as conn:
                    ids = [_inserted_id(conn, statement) for _, statement in assets]
                    asset_events = [event for event, _ in assets]
                    if has_tags:
                        self._store_tags(conn, asset_events, ids)
                    self._store_asset_entries(conn, asset_events, ids, has_columns)
            except Exception:  # the shard is committed: finish the index event by event
                for event, statement in assets:
                    self._index_one(event, statement)
        for event, statement in pairs:  # check events: one per check per run, the stock way
            if event.is_dagster_event and event.dagster_event_type in ASSET_CHECK_EVENTS:
                self._index_one(event, statement)

    def _index_schema(self) -> tuple[bool, bool]:
        """Whether index.db has the asset-key index columns and the tags table. Read on their
        own connection (so before the batch's transaction), and remembered once present:
        migrations only add them, so a step does not inspect the schema for every batch."""
        if not getattr(self, "_schema_complete", False):
            has_columns = self.has_asset_key_index_cols()
            has_tags = self.has_table(AssetEventTagsTable.name)
            if not (has_columns and has_tags):
                return has_columns, has_tags
            self._schema_complete = True
        return True, True

    def _store_tags(self, conn: Any, events: Sequence[Any], ids: Sequence[int]) -> None:
        """The indexed tags of the events, one executemany (``store_asset_event_tags``' rows)."""
        rows = [
            {
                "event_id": event_id,
                "asset_key": event.dagster_event.asset_key.to_string(),
                "key": key,
                "value": value,
                "event_timestamp": self._event_insert_timestamp(event),
            }
            for event_id, event in zip(ids, events, strict=True)
            for key, value in self._tags_for_asset_event(event).items()
        ]
        if rows:
            conn.execute(AssetEventTagsTable.insert(), rows)

    def _asset_event(self, event: Any) -> bool:
        return bool(
            event.is_dagster_event
            and event.dagster_event_type in ASSET_EVENTS
            and event.dagster_event.asset_key
        )

    def _store_asset_entries(
        self, conn: Any, events: Sequence[Any], ids: Sequence[int], has_columns: bool
    ) -> None:
        """The asset_keys rows the events leave: per asset key, each column from the last event
        that sets it (a materialisation sets the last materialisation, run and timestamp; a
        planned event the run and timestamp; an observation the timestamp). Only the last
        event of each type per key is serialised: a later one of a type overwrites it."""
        last: dict[tuple[str, Any], int] = {}
        for position, event in enumerate(events):
            key = event.dagster_event.asset_key.to_string()
            last[(key, event.dagster_event_type)] = position
        merged: dict[str, dict[str, Any]] = {}
        for position in sorted(last.values()):
            event = events[position]
            values = self._get_asset_entry_values(event, ids[position], has_columns)
            merged.setdefault(event.dagster_event.asset_key.to_string(), {}).update(values)
        for key, values in merged.items():
            if not values:
                continue
            updated = conn.execute(
                AssetKeyTable.update().values(**values).where(AssetKeyTable.c.asset_key == key)
            )
            if updated.rowcount == 0:
                conn.execute(AssetKeyTable.insert().values(asset_key=key, **values))

    def _index_one(self, event: Any, statement: Any) -> None:
        """The index part of the stock ``store_event`` for one event already in its shard,
        through the storage's public per-event methods (the same in dagster 1.12 and 1.13)."""
        if self._asset_event(event):
            with self.index_connection() as conn:
                event_id = _inserted_id(conn, statement)
            self.store_asset_event(event, event_id)
            self.store_asset_event_tags([event], [event_id])
        elif event.is_dagster_event and event.dagster_event_type in ASSET_CHECK_EVENTS:
            with self.index_connection() as conn:
                event_id = _inserted_id(conn, statement)
            self.store_asset_check_event(event, event_id)


__all__ = [
    "EVENT_BATCH_SIZE",
    "EVENT_LOG_STORAGE_MODULE",
    "RUN_STORAGE_MODULE",
    "SCHEDULE_STORAGE_MODULE",
    "AssetGraphSubset",
    "AssetKeyPartitionKey",
    "BatchedSqliteEventLogStorage",
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


# --- One mapping per input and step (the strategies' runs at wide universes) --------------
# A step maps its partition range onto each input's upstream partitions twice: once for the
# data-version cache (``DataVersionCache._fetch_input_asset_version_info``, with
# ``require_valid_partitions=False``) and once to build the input context
# (``StepExecutionContext.for_input_manager``). For a multi-partitioned input that means
# building a ``MultiPartitionKey`` per (ticker, window) each time: py-spy put ~60 % of a
# 500-ticker strategy run in ``BaseMultiPartitionMapping._get_dependency_partitions_subset``.
# The result depends only on the step (its partition range, the job's asset layer, the
# instance's dynamic partitions, all fixed during the step), so it is kept on the step's
# context after the first valid mapping; an invalid one is never cached and is recomputed
# as Dagster would, raising where Dagster raises. Replace when Dagster memoises it (no
# upstream issue found) — the private method is ``StepExecutionContext.
# asset_partitions_subset_for_input`` in dagster/_core/execution/context/system.py, the
# same signature in 1.12 and 1.13.
from dagster._core.errors import DagsterInvariantViolationError  # noqa: E402
from dagster._core.execution.context.system import StepExecutionContext  # noqa: E402

_UNCACHED_SUBSET_FOR_INPUT = StepExecutionContext.asset_partitions_subset_for_input


def _subset_for_input(
    self: StepExecutionContext, input_name: str, require_valid_partitions: bool = True
) -> Any:
    cache = self.__dict__.setdefault("_quant_assets_input_subsets", {})
    if input_name in cache:
        return cache[input_name]
    try:
        subset = _UNCACHED_SUBSET_FOR_INPUT(self, input_name, require_valid_partitions=True)
    except DagsterInvariantViolationError:
        if require_valid_partitions:
            raise
        return _UNCACHED_SUBSET_FOR_INPUT(self, input_name, require_valid_partitions=False)
    cache[input_name] = subset
    return subset


def cache_input_partition_mappings() -> None:
    """Install the per-step cache above (idempotent); called when the definitions load."""
    if StepExecutionContext.asset_partitions_subset_for_input is not _subset_for_input:
        StepExecutionContext.asset_partitions_subset_for_input = _subset_for_input  # type: ignore[method-assign]
