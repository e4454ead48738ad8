"""Sensors: the converge sensor (universe edits, the drop folder, the next run) and failed runs."""

from __future__ import annotations

import json
import threading
from datetime import date
from http.server import BaseHTTPRequestHandler, HTTPServer
from typing import ClassVar

import dagster as dg
import polars as pl
import pytest
import yaml

from quant_assets.defs.definitions import build_definitions
from quant_assets.defs.sensors import (
    FAILURE_LOG,
    WebhookError,
    failure_record,
    post_webhook,
    universe_partition_requests,
)
from quant_assets.settings import AlertSettings, load_settings
from quant_assets_tests.conftest import copy_project


def _defs(project):
    return build_definitions(load_settings(project.config_dir), project.home)


def _tick(defs, name, instance, cursor=None):
    sensor = defs.resolve_sensor_def(name)
    with dg.build_sensor_context(
        instance=instance, cursor=cursor, repository_def=defs.get_repository_def()
    ) as context:
        return sensor.evaluate_tick(context)


# --- universe -----------------------------------------------------------------------------


def test_requests_add_new_and_delete_removed_tickers():
    requests = universe_partition_requests(["AAA", "BBB", "DDD"], ["AAA", "BBB", "CCC"])
    adds = [r for r in requests if isinstance(r, dg.AddDynamicPartitionsRequest)]
    deletes = [r for r in requests if isinstance(r, dg.DeleteDynamicPartitionsRequest)]
    assert [list(r.partition_keys) for r in adds] == [["DDD"]]
    assert [list(r.partition_keys) for r in deletes] == [["CCC"]]
    assert universe_partition_requests(["AAA"], ["AAA"]) == []


def _run(result) -> tuple[list[str], str | None, str | None]:
    """The one run a converge tick requests: its assets and partition range."""
    (request,) = result.run_requests
    assets = sorted(k.to_user_string() for k in request.asset_selection)
    tags = request.tags
    assert tags["quant_assets/launched_by"] == "converge"
    return (
        assets,
        tags.get("dagster/asset_partition_range_start"),
        tags.get("dagster/asset_partition_range_end"),
    )


@pytest.fixture
def converged_copy(pipeline, tmp_path):
    """A copy of the materialised pipeline (complete and current) and its instance."""
    from quant_assets.engine.instance import open_instance

    project = copy_project(pipeline, tmp_path / "copy")
    return project, open_instance(project.home)


def test_a_fresh_instance_first_syncs_the_universe_then_starts_from_the_roots(make_project):
    project = make_project(["AAA", "BBB"], date(2019, 1, 1), date(2019, 3, 31))
    defs = _defs(project)
    with dg.instance_for_test() as instance:
        first = _tick(defs, "converge", instance)
        assert [list(r.partition_keys) for r in first.dynamic_partitions_requests] == [
            ["AAA", "BBB"]
        ]
        assert not first.run_requests  # the next tick plans on the new partitions
        instance.add_dynamic_partitions("ticker", ["AAA", "BBB"])
        second = _tick(defs, "converge", instance, first.cursor)
    # Everything is missing: date-window assets first (no cut-off fits in three months, so
    # the regimes join the benchmark), like the CLI's first stage.
    assert _run(second) == (["benchmark_bars", "regimes"], "2019-01-01", "2019-03-01")
    pending = json.loads(second.cursor)["pending"]
    assert sorted(map(tuple, pending["bars"])) == [
        (w, t) for w in ("2019-01-01", "2019-02-01", "2019-03-01") for t in ("AAA", "BBB")
    ]  # the files' windows wait for their run


def test_a_malformed_universe_edit_fails_the_tick_naming_the_file(make_project):
    project = make_project(["AAA"], date(2019, 1, 1), date(2019, 1, 31))
    defs = _defs(project)
    universe = yaml.safe_load((project.config_dir / "universe.yaml").read_text())
    universe["tickers"].append("AAPL; DROP TABLE bars")
    (project.config_dir / "universe.yaml").write_text(yaml.safe_dump(universe))
    with dg.instance_for_test() as instance:
        with pytest.raises(Exception, match=r"universe\.yaml.*AAPL; DROP TABLE bars"):
            _tick(defs, "converge", instance)
        assert list(instance.get_dynamic_partitions("ticker")) == []


def test_a_complete_graph_requests_nothing_and_files_seen_first_are_not_reingested(
    converged_copy,
):
    project, instance = converged_copy
    defs = _defs(project)
    result = _tick(defs, "converge", instance)
    assert not result.run_requests
    assert result.skip_message == "every asset is complete and current"
    again = _tick(defs, "converge", instance, result.cursor)
    assert again.skip_message == "nothing changed since the last tick"  # one query, no plan


def test_a_changed_row_in_the_drop_folder_runs_exactly_its_window_first(converged_copy):
    project, instance = converged_copy
    defs = _defs(project)
    cursor = _tick(defs, "converge", instance).cursor
    bbb = project.bars("BBB")
    fix = pl.col("date") == date(2017, 3, 15)
    project.write(
        "BBB",
        bbb.with_columns(
            pl.when(fix).then(pl.col(c) * 1.01).otherwise(pl.col(c))
            for c in ("open", "high", "low", "close")
        ),
    )
    result = _tick(defs, "converge", instance, cursor)
    assert _run(result) == (["bars"], "2017-01-01|BBB", "2017-01-01|BBB")
    assert json.loads(result.cursor)["pending"] == {}  # the run covers the change


def test_a_bad_file_is_refused_once_recorded_and_blocks_nothing(converged_copy):
    project, instance = converged_copy
    defs = _defs(project)
    cursor = _tick(defs, "converge", instance).cursor
    bad = project.bars("AAA").with_columns(
        pl.when(pl.col("date") == date(2018, 6, 5))
        .then(-1.0)
        .otherwise(pl.col("close"))
        .alias("close")
    )
    project.write("AAA", bad)
    ccc = project.bars("CCC")
    project.write(
        "CCC",
        ccc.with_columns(
            pl.when(pl.col("date") == date(2019, 2, 1)).then(pl.col(c) * 1.01).otherwise(pl.col(c))
            for c in ("open", "high", "low", "close")
        ),
    )
    result = _tick(defs, "converge", instance, cursor)
    # The last window: what reads it back is in the same window, so it joins the run.
    per_ticker = ["bars", "features", "labels", "signals"]
    assert _run(result) == (per_ticker, "2019-01-01|CCC", "2019-01-01|CCC")
    alerts = (project.home / "alerts" / FAILURE_LOG).read_text().splitlines()
    (record,) = [json.loads(line) for line in alerts]
    assert record["kind"] == "input_refused"
    assert record["file"].endswith("AAA.csv")
    assert "ticker=AAA" in record["error"] and "2018-06-05" in record["error"]
    again = _tick(defs, "converge", instance, result.cursor)
    assert len((project.home / "alerts" / FAILURE_LOG).read_text().splitlines()) == 1  # once
    assert "AAA.csv" in json.loads(again.cursor)["folder"]["refused"]


def test_the_sensor_waits_while_a_run_is_in_progress(converged_copy):
    project, instance = converged_copy
    defs = _defs(project)
    instance.add_run(
        dg.DagsterRun(job_name="elsewhere", run_id="r" * 32, status=dg.DagsterRunStatus.STARTED)
    )
    result = _tick(defs, "converge", instance)
    assert not result.run_requests
    assert result.skip_message.startswith("waiting for 1 run(s) in progress")


# --- failed runs --------------------------------------------------------------------------


class _Receiver(BaseHTTPRequestHandler):
    received: ClassVar[list[dict]] = []
    statuses: ClassVar[list[int]] = []

    def do_POST(self):
        length = int(self.headers["Content-Length"])
        status = self.statuses.pop(0) if self.statuses else 200
        if status == 200:
            self.received.append(json.loads(self.rfile.read(length)))
        self.send_response(status)
        self.end_headers()

    def log_message(self, *args):
        pass


@pytest.fixture
def webhook():
    """A real HTTP server on 127.0.0.1 that records what it receives."""
    _Receiver.received, _Receiver.statuses = [], []
    server = HTTPServer(("127.0.0.1", 0), _Receiver)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield f"http://127.0.0.1:{server.server_port}/hook?token=s3cret", _Receiver
    server.shutdown()


def _failing_run(project, instance):
    """A real failed run: bars for a ticker whose file is missing."""
    (project.drop / "AAA.csv").unlink()
    defs = _defs(project)
    instance.add_dynamic_partitions("ticker", ["AAA"])
    job = defs.resolve_implicit_global_asset_job_def()
    result = job.execute_in_process(
        instance=instance,
        asset_selection=[dg.AssetKey("bars")],
        partition_key="2019-01-01|AAA",
        raise_on_error=False,
        tags={"quant_assets/launched_by": "test", "secret_token": "s3cret"},
    )
    assert not result.success
    return defs, result


def _evaluate_failure_sensor(defs, instance, run_id):
    run = instance.get_run_by_id(run_id)
    failure = next(
        e
        for e in instance.all_logs(run_id)
        if e.dagster_event and e.dagster_event.event_type_value == "PIPELINE_FAILURE"
    )
    context = dg.build_run_status_sensor_context(
        sensor_name="run_failures",
        dagster_event=failure.dagster_event,
        dagster_instance=instance,
        dagster_run=run,
        repository_def=defs.get_repository_def(),
    ).for_run_failure()
    defs.resolve_sensor_def("run_failures")._run_status_sensor_fn(context)


def test_a_failed_run_is_recorded_and_posted_to_the_webhook(make_project, webhook, monkeypatch):
    url, receiver = webhook
    project = make_project(["AAA"], date(2019, 1, 1), date(2019, 1, 31))
    ops = {"alerts": {"webhook_url_env": "QA_TEST_WEBHOOK", "max_attempts": 3}}
    (project.config_dir / "operations.yaml").write_text(yaml.safe_dump(ops))
    monkeypatch.setenv("QA_TEST_WEBHOOK", url)
    receiver.statuses = [503]  # the first attempt is refused: retried
    with dg.instance_for_test() as instance:
        defs, result = _failing_run(project, instance)
        _evaluate_failure_sensor(defs, instance, result.run_id)
    (line,) = (project.home / "alerts" / FAILURE_LOG).read_text().splitlines()
    record = json.loads(line)
    assert record["run_id"] == result.run_id
    assert record["assets"] == ["bars"]
    assert record["tags"]["quant_assets/launched_by"] == "test"
    assert record["tags"]["dagster/partition"] == "2019-01-01|AAA"
    assert "secret_token" not in record["tags"]  # only our and Dagster's partition tags
    (posted,) = receiver.received
    assert posted["run"] == record
    assert result.run_id[:8] in posted["text"]
    assert "s3cret" not in line and "s3cret" not in json.dumps(posted)


def test_the_webhook_is_off_by_default(make_project, webhook):
    _, receiver = webhook
    project = make_project(["AAA"], date(2019, 1, 1), date(2019, 1, 31))
    with dg.instance_for_test() as instance:
        defs, result = _failing_run(project, instance)
        _evaluate_failure_sensor(defs, instance, result.run_id)
    assert (project.home / "alerts" / FAILURE_LOG).exists()
    assert receiver.received == []


def test_webhook_errors_never_reveal_the_url(webhook):
    url, receiver = webhook
    receiver.statuses = [500, 500]
    alerts = AlertSettings(webhook_url_env="X", max_attempts=2, timeout_seconds=2)
    record = {"run_id": "r" * 32, "job": "j", "assets": [], "error": "boom"}
    with pytest.raises(WebhookError) as raised:
        post_webhook(url, record, alerts)
    assert "s3cret" not in str(raised.value) and "127.0.0.1" not in str(raised.value)
    assert "HTTP 500 after 2 attempt(s)" in str(raised.value)


def test_alert_config_takes_a_variable_name_not_a_url(make_project):
    project = make_project(["AAA"], date(2019, 1, 1), date(2019, 1, 31))
    ops = {"alerts": {"webhook_url_env": "https://hooks.example.com/T0/B0/xyz"}}
    (project.config_dir / "operations.yaml").write_text(yaml.safe_dump(ops))
    with pytest.raises(Exception, match=r"operations\.yaml.*webhook_url_env"):
        load_settings(project.config_dir)


def test_failure_record_keeps_only_our_tags():
    run = dg.DagsterRun(
        job_name="__ASSET_JOB",
        run_id="a" * 32,
        tags={"x": "1", "quant_assets/session": "2019-01-02"},
    )
    from datetime import UTC, datetime

    record = failure_record(run, "boom\nsecond line", datetime(2020, 1, 1, tzinfo=UTC))
    assert record["tags"] == {"quant_assets/session": "2019-01-02"}
    assert record["error"] == "boom"


def test_a_skipped_model_cutoff_is_a_failed_check_in_the_alerts_and_in_status(make_project):
    from quant_assets.engine.instance import open_instance
    from quant_assets.engine.status import graph_status
    from quant_assets_tests.conftest import FAST_MODELS, FAST_REGIMES, materialize_all

    project = make_project(["AAA", "BBB"], date(2019, 1, 1), date(2020, 12, 31), grain="year")
    models = {**FAST_MODELS, "min_history_years": 1}
    models["split"] = {**FAST_MODELS["split"], "min_train_rows": 1_000_000}  # too few rows
    (project.config_dir / "models.yaml").write_text(yaml.safe_dump(models))
    regimes = {**FAST_REGIMES, "min_history_years": 1}
    (project.config_dir / "regimes.yaml").write_text(yaml.safe_dump(regimes))
    materialize_all(project, ["next_state_model"])
    instance = open_instance(project.home)
    (run,) = [
        r
        for r in instance.get_runs()
        if dg.AssetKey("next_state_model") in (r.asset_selection or set())
    ]
    context = dg.build_run_status_sensor_context(
        sensor_name="check_warnings",
        dagster_event=next(iter(instance.all_logs(run.run_id))).dagster_event,
        dagster_instance=instance,
        dagster_run=run,
    )
    defs = _defs(project)
    defs.resolve_sensor_def("check_warnings")._run_status_sensor_fn(context)
    records = [
        json.loads(x) for x in (project.home / "alerts" / FAILURE_LOG).read_text().splitlines()
    ]
    (record,) = [r for r in records if r["check"] == "next_state_model_trained"]
    assert record["kind"] == "check_failed" and record["assets"] == ["next_state_model"]
    assert record["error"].startswith("2020-01-01: cut-off 2020-01-01")
    assert "min_train_rows" in record["config"]
    report = graph_status(load_settings(project.config_dir), project.home)
    (problem,) = [p for p in report.problems if p.asset == "next_state_model"]
    assert problem.what == "check next_state_model_trained failed"
    assert "min_train_rows" in problem.action
