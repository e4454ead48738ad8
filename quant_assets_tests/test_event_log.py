"""The batched event-log storage of every instance the project writes
(``dagster_internals.BatchedSqliteEventLogStorage``): a step's asset events are written in one
transaction per database, and everything that reads them sees what the stock SQLite storage
records event by event — materialised and failed partitions, the latest materialisation,
asset checks, the automation's view and the event counts — with no event lost or doubled when
a write fails."""

from pathlib import Path

import dagster as dg
import pytest

from quant_assets.dagster_internals import BatchedSqliteEventLogStorage
from quant_assets.engine.instance import dagster_home, open_instance

DAYS = dg.DailyPartitionsDefinition(start_date="2024-01-01", end_date="2024-03-01")  # 60 days
FAIL_FROM = "2024-02-20"  # the failing asset fails in its run from this partition on


@dg.asset(partitions_def=DAYS, backfill_policy=dg.BackfillPolicy.single_run())
def days(context: dg.AssetExecutionContext) -> None:
    context.log.info(f"{len(context.partition_keys)} partitions")


@dg.asset(partitions_def=DAYS, backfill_policy=dg.BackfillPolicy.single_run(), deps=[days])
def derived(context: dg.AssetExecutionContext) -> None:
    if context.partition_key_range.end >= FAIL_FROM:
        raise RuntimeError("bad input in the last partitions")


@dg.asset_check(asset=days)
def days_complete() -> dg.AssetCheckResult:
    return dg.AssetCheckResult(passed=True, metadata={"rows": 60})


def _stock_instance(root: Path) -> dg.DagsterInstance:
    home = root / "stock"
    home.mkdir()
    (home / "dagster.yaml").write_text(
        f"storage:\n  sqlite:\n    base_dir: {home / 'storage'}\ntelemetry:\n  enabled: false\n"
    )
    return dg.DagsterInstance.from_config(str(home))


def _run(instance: dg.DagsterInstance, selection: list, start: str, end: str) -> bool:
    result = dg.materialize(
        selection,
        instance=instance,
        tags={
            "dagster/asset_partition_range_start": start,
            "dagster/asset_partition_range_end": end,
        },
        raise_on_error=False,
    )
    return result.success


def _history(instance: dg.DagsterInstance) -> dict:
    """What the readers of the event log see, without run ids and timestamps."""
    keys = [dg.AssetKey("days"), dg.AssetKey("derived")]
    counts = {}
    for event_type in (
        dg.DagsterEventType.ASSET_MATERIALIZATION,
        dg.DagsterEventType.ASSET_MATERIALIZATION_PLANNED,
        dg.DagsterEventType.ASSET_FAILED_TO_MATERIALIZE,
        dg.DagsterEventType.ASSET_CHECK_EVALUATION,
        dg.DagsterEventType.ASSET_CHECK_EVALUATION_PLANNED,
    ):
        counts[event_type.value] = len(
            instance.get_event_records(dg.EventRecordsFilter(event_type=event_type))
        )
    latest = {
        key.to_user_string(): (
            event.asset_materialization.partition
            if (event := instance.get_latest_materialization_event(key)) is not None
            else None
        )
        for key in keys
    }
    return {
        "materialized": {
            key.to_user_string(): sorted(instance.get_materialized_partitions(key)) for key in keys
        },
        "counts": counts,
        "latest": latest,
        "checks": [
            record.event_log_entry.dagster_event.event_specific_data.passed
            for record in instance.get_event_records(
                dg.EventRecordsFilter(event_type=dg.DagsterEventType.ASSET_CHECK_EVALUATION)
            )
        ],
    }


def _scenario(instance: dg.DagsterInstance) -> None:
    assert _run(instance, [days, days_complete], "2024-01-01", "2024-02-29")
    assert _run(instance, [derived], "2024-01-01", "2024-02-10")
    assert not _run(instance, [derived], "2024-02-11", "2024-02-29")  # fails, nothing written


@pytest.fixture
def batches(monkeypatch: pytest.MonkeyPatch) -> list[int]:
    """The sizes of the batches the storage wrote in one go."""
    sizes: list[int] = []
    original = BatchedSqliteEventLogStorage.store_event_batch

    def spy(self: BatchedSqliteEventLogStorage, events):  # type: ignore[no-untyped-def]
        sizes.append(len(events))
        return original(self, events)

    monkeypatch.setattr(BatchedSqliteEventLogStorage, "store_event_batch", spy)
    return sizes


def test_the_project_instance_batches_and_reads_back_what_the_stock_storage_records(
    tmp_path: Path, batches: list[int], capfd: pytest.CaptureFixture[str]
) -> None:
    ours = open_instance(tmp_path / "ours")
    assert isinstance(ours.event_log_storage, BatchedSqliteEventLogStorage)
    stock = _stock_instance(tmp_path)
    _scenario(stock)
    assert not batches  # the stock storage never calls ours
    _scenario(ours)
    # 60 materialisations of one step went in batches, not 60 single writes.
    assert max(batches) >= 60
    expected = _history(stock)
    assert expected["materialized"]["days"] == DAYS.get_partition_keys()
    assert len(expected["materialized"]["derived"]) == 41
    assert _history(ours) == expected
    # Every batch was written by the batch path: Dagster never had to fall back to single
    # writes (it says so on stderr when a batch raises).
    assert "Exception while storing event batch" not in capfd.readouterr().err


def test_the_automation_sees_the_batched_partitions(tmp_path: Path, batches: list[int]) -> None:
    instance = open_instance(tmp_path)
    assert _run(instance, [days], "2024-01-01", "2024-02-29")
    assert batches
    condition = dg.AutomationCondition.missing()
    result = dg.evaluate_automation_conditions(
        defs=[days.with_attributes(automation_condition=condition)], instance=instance
    )
    assert result.total_requested == 0  # nothing missing: every partition is recorded


def test_a_failed_index_write_falls_back_event_by_event_without_doubling(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    calls = {"n": 0}
    original = BatchedSqliteEventLogStorage._store_asset_entries

    def fail_once(self, conn, events, ids, has_columns):  # type: ignore[no-untyped-def]
        calls["n"] += 1
        if calls["n"] == 1:
            raise RuntimeError("index.db is locked")
        return original(self, conn, events, ids, has_columns)

    monkeypatch.setattr(BatchedSqliteEventLogStorage, "_store_asset_entries", fail_once)
    ours = open_instance(tmp_path / "ours")
    stock = _stock_instance(tmp_path)
    _scenario(stock)
    _scenario(ours)
    assert calls["n"] >= 2
    assert _history(ours) == _history(stock)


def test_an_older_generated_instance_file_gets_the_batched_storage_and_keeps_its_history(
    tmp_path: Path,
) -> None:
    path = dagster_home(tmp_path)
    storage = path / "storage"
    stock = dg.DagsterInstance.from_config(str(path))  # the file we just wrote: ours
    stock.dispose()
    (path / "dagster.yaml").write_text(
        "# Written by quant-assets: the Dagster instance of this data directory.\n"
        f"storage:\n  sqlite:\n    base_dir: {storage}\ntelemetry:\n  enabled: false\n"
    )
    old = dg.DagsterInstance.from_config(str(path))
    assert _run(old, [days], "2024-01-01", "2024-01-31")
    old.dispose()
    instance = open_instance(tmp_path)
    assert isinstance(instance.event_log_storage, BatchedSqliteEventLogStorage)
    assert len(instance.get_materialized_partitions(dg.AssetKey("days"))) == 31
