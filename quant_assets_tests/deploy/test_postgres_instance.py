"""The production profile against a real PostgreSQL: deploy/dagster.yaml's instance, and
parallel runs (separate processes, multiprocess executor) writing the shared data backend."""

from __future__ import annotations

import multiprocessing
import time
from datetime import date
from pathlib import Path

import dagster as dg
import pytest
import yaml
from dagster._core.run_coordinator import QueuedRunCoordinator
from dagster_docker import DockerRunLauncher
from dagster_postgres import (
    PostgresEventLogStorage,
    PostgresRunStorage,
    PostgresScheduleStorage,
)

from quant_assets.defs.definitions import build_definitions
from quant_assets.defs.postgres_store import PostgresWarehouseResource
from quant_assets.defs.storage import storage_executor
from quant_assets.engine.instance import sync_ticker_partitions
from quant_assets.engine.runner import materialize
from quant_assets.settings import load_settings
from quant_assets.store import read_table
from quant_assets_tests.conftest import Project, write_project

REPO = Path(__file__).resolve().parents[2]
DEPLOY_INSTANCE = REPO / "deploy" / "dagster.yaml"
PASSWORD_ENV = "QUANT_ASSETS_TEST_DATA_PASSWORD"
TICKERS = ["AAA", "BBB", "CCC"]
START, END = date(2015, 1, 1), date(2016, 12, 31)


def production_instance_home(root: Path, pg, monkeypatch) -> Path:
    """A DAGSTER_HOME holding deploy/dagster.yaml as shipped, except the two local paths
    (/app/data/... in the containers) moved under ``root``; its env points at ``pg``."""
    for name, value in pg.dagster_env().items():
        monkeypatch.setenv(name, value)
    config = yaml.safe_load(DEPLOY_INSTANCE.read_text())
    config["compute_logs"]["config"]["base_dir"] = str(root / "compute_logs")
    config["local_artifact_storage"]["config"]["base_dir"] = str(root / "artifacts")
    home = root / "dagster_home"
    home.mkdir(parents=True)
    (home / "dagster.yaml").write_text(yaml.safe_dump(config))
    return home


def test_the_production_instance_loads_with_postgres_storage_queue_and_docker_launcher(
    pg_database, tmp_path, monkeypatch
):
    home = production_instance_home(tmp_path, pg_database, monkeypatch)
    with dg.DagsterInstance.from_config(str(home)) as instance:
        assert isinstance(instance.run_storage, PostgresRunStorage)
        assert isinstance(instance.event_log_storage, PostgresEventLogStorage)
        assert isinstance(instance.schedule_storage, PostgresScheduleStorage)
        coordinator = instance.run_coordinator
        assert isinstance(coordinator, QueuedRunCoordinator)
        assert coordinator.get_run_queue_config().max_concurrent_runs == 8
        limits = {
            limit["key"]: limit
            for limit in coordinator.get_run_queue_config().tag_concurrency_limits
        }
        assert limits["quant_assets/kind"]["limit"] == 2
        assert limits["quant_assets/strategy"]["value"] == {"applyLimitPerUniqueValue": True}
        # The Docker launcher is constructed without a Docker daemon (it connects at launch).
        launcher = instance.run_launcher
        assert isinstance(launcher, DockerRunLauncher)
        assert launcher.networks == ["quant_assets_network"]
        assert "DAGSTER_POSTGRES_PASSWORD" in launcher.env_vars
        assert launcher.container_kwargs["auto_remove"] is True
    text = DEPLOY_INSTANCE.read_text()
    assert pg_database.password not in text and "password:\n        env:" in text


def test_a_run_on_the_production_instance_is_stored_in_postgres(pg_database, tmp_path, monkeypatch):
    home = production_instance_home(tmp_path, pg_database, monkeypatch)

    @dg.asset
    def upstream() -> int:
        return 1

    @dg.asset
    def downstream(upstream: int) -> int:
        return upstream + 1

    with dg.DagsterInstance.from_config(str(home)) as instance:
        result = dg.materialize([upstream, downstream], instance=instance)
        assert result.success
    # A second instance object (as the webserver or another container would open) reads it back.
    with dg.DagsterInstance.from_config(str(home)) as reader:
        run = reader.get_run_by_id(result.run_id)
        assert run is not None and run.status == dg.DagsterRunStatus.SUCCESS
        assert reader.get_latest_materialization_event(dg.AssetKey("downstream")) is not None
        step_events = reader.all_logs(result.run_id, of_type=dg.DagsterEventType.STEP_SUCCESS)
        assert {e.step_key for e in step_events} == {"upstream", "downstream"}
    with pg_database.connect() as conn:
        stored = conn.execute("select count(*) from runs where run_id = %s", [result.run_id])
        assert stored.fetchone() == (1,)
        events = conn.execute("select count(*) from event_logs where run_id = %s", [result.run_id])
        assert (events.fetchone() or (0,))[0] > 5


def postgres_project(root: Path, pg) -> Project:
    project = write_project(root, TICKERS, START, END, grain="year")
    storage = {
        "backend": "postgres",
        "postgres": {
            "host": pg.host,
            "port": pg.port,
            "database": pg.dbname,
            "user": pg.user,
            "password_env": PASSWORD_ENV,
        },
        "max_concurrent": 2,
    }
    (project.config_dir / "storage.yaml").write_text(yaml.safe_dump(storage))
    return project


def _write_one_ticker(config_dir: str, data_home: str, dagster_home: str, ticker: str, queue):
    """A writer process: bars + features for one ticker, on the production instance."""
    started = time.perf_counter()
    try:
        settings = load_settings(config_dir)
        with dg.DagsterInstance.from_config(dagster_home) as instance:
            outcomes = materialize(
                settings,
                Path(data_home),
                ["bars", "features"],
                tickers=[ticker],
                instance=instance,
                upstream=False,
            )
        errors = [o.error for o in outcomes if not o.success]
        queue.put((ticker, bool(outcomes) and not errors, errors, time.perf_counter() - started))
    except BaseException as error:  # report, never hang the parent
        queue.put((ticker, False, [repr(error)], time.perf_counter() - started))


def test_parallel_runs_of_different_tickers_write_postgres_without_losing_rows(
    pg_database, tmp_path, monkeypatch
):
    monkeypatch.setenv(PASSWORD_ENV, pg_database.password)
    home = production_instance_home(tmp_path, pg_database, monkeypatch)
    project = postgres_project(tmp_path / "shared", pg_database)
    settings = load_settings(project.config_dir)
    with dg.DagsterInstance.from_config(str(home)) as instance:
        sync_ticker_partitions(instance, TICKERS)
        # The benchmark first (features read it), in-process as the CLI runs it.
        outcomes = materialize(settings, project.home, ["benchmark_bars"], instance=instance)
        assert outcomes and all(o.success for o in outcomes), [o.error for o in outcomes]
        windows = sorted(instance.get_materialized_partitions(dg.AssetKey("benchmark_bars")))

    # Separate OS processes, one run per ticker, all writing the same PostgreSQL tables and
    # the same PostgreSQL-backed instance at once. Spawned: forked children hung on a lock
    # a dagster thread of this process held at fork time.
    context = multiprocessing.get_context("spawn")
    queue = context.Queue()
    started = time.perf_counter()
    writers = [
        context.Process(
            target=_write_one_ticker,
            args=(str(project.config_dir), str(project.home), str(home), ticker, queue),
        )
        for ticker in TICKERS
    ]
    for writer in writers:
        writer.start()
    results = [queue.get(timeout=240) for _ in writers]
    for writer in writers:
        writer.join(timeout=60)
    wall = time.perf_counter() - started
    for ticker, success, errors, _ in results:
        assert success, f"{ticker}: {errors}"
    print(
        f"\n{len(TICKERS)} parallel writer processes (bars+features, {len(windows)} windows): "
        f"{wall:.1f} s wall; runs {', '.join(f'{r[3]:.1f}' for r in results)} s"
    )

    # The serial reference: the same files, the embedded DuckDB backend, one in-process run.
    reference = write_project(tmp_path / "reference", TICKERS, START, END, grain="year")
    serial_started = time.perf_counter()
    outcomes = materialize(
        load_settings(reference.config_dir), reference.home, ["bars", "features"]
    )
    assert outcomes and all(o.success for o in outcomes), [o.error for o in outcomes]
    print(f"serial reference (DuckDB, one run): {time.perf_counter() - serial_started:.1f} s")

    warehouse = PostgresWarehouseResource(
        host=pg_database.host,
        port=pg_database.port,
        dbname=pg_database.dbname,
        user=pg_database.user,
        password=pg_database.password,
        database=str(project.home / "unused.duckdb"),
    )
    for table in ("bars", "features", "benchmark_bars"):
        expected = read_table(reference.home, table)
        got = warehouse.read(table).select(expected.columns)
        assert got.height == expected.height > 0, table
        keys = ["ticker", "date"] if "ticker" in expected.columns else ["date"]
        assert got.select(keys).n_unique() == got.height, f"{table}: duplicated rows"
        # ingested_at is the wall-clock time of each ingestion: it differs by design.
        compared = [c for c in expected.columns if c != "ingested_at"]
        got, expected = got.sort(keys).select(compared), expected.sort(keys).select(compared)
        assert got.schema == expected.schema, f"{table}: {got.schema} != {expected.schema}"
        differing = [c for c in compared if not got[c].equals(expected[c])]
        assert not differing, f"{table}: content differs in {differing}"

    with dg.DagsterInstance.from_config(str(home)) as instance:
        stored = instance.get_materialized_partitions(dg.AssetKey("features"))
        assert len(stored) == len(windows) * len(TICKERS)


def test_the_postgres_backend_runs_steps_in_the_multiprocess_executor(pg_database, tmp_path):
    project = postgres_project(tmp_path, pg_database)
    settings = load_settings(project.config_dir)
    executor = storage_executor(settings)
    assert executor.name == "multiprocess"
    job = build_definitions(settings, project.home).resolve_implicit_global_asset_job_def()
    assert job.executor_def.name == "multiprocess"
    assert settings.storage.max_concurrent == 2


@pytest.mark.parametrize("path", ["deploy/storage.yaml", "configs/storage.yaml"])
def test_the_shipped_storage_files_parse(path):
    from quant_assets.settings import StorageSettings

    settings = StorageSettings(**yaml.safe_load((REPO / path).read_text()))
    assert settings.backend == ("postgres" if path.startswith("deploy") else "duckdb")
