"""Sensors: universe edits, new or changed files in the drop folder, failed runs."""

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
    rectangles,
    universe_partition_requests,
)
from quant_assets.settings import AlertSettings, load_settings


def _defs(project):
    return build_definitions(load_settings(project.config_dir), project.home)


def _tick(defs, name, instance, cursor=None):
    sensor = defs.resolve_sensor_def(name)
    with dg.build_sensor_context(
        instance=instance, cursor=cursor, repository_def=defs.get_repository_def()
    ) as context:
        return sensor.evaluate_tick(context)


def _bars_partitions(result) -> set[tuple[str, str]]:
    """The (window, ticker) pairs a tick's bars runs cover (range tags as rectangles)."""
    pairs = set()
    for request in result.run_requests:
        if request.asset_selection != [dg.AssetKey("bars")]:
            continue
        first = request.tags["dagster/asset_partition_range_start"].split("|")
        last = request.tags["dagster/asset_partition_range_end"].split("|")
        pairs.add((first[0], last[0], first[1], last[1]))
    return pairs


# --- universe -----------------------------------------------------------------------------


def test_requests_add_new_and_delete_removed_tickers():
    requests = universe_partition_requests(["AAA", "BBB", "DDD"], ["AAA", "BBB", "CCC"])
    adds = [r for r in requests if isinstance(r, dg.AddDynamicPartitionsRequest)]
    deletes = [r for r in requests if isinstance(r, dg.DeleteDynamicPartitionsRequest)]
    assert [list(r.partition_keys) for r in adds] == [["DDD"]]
    assert [list(r.partition_keys) for r in deletes] == [["CCC"]]
    assert universe_partition_requests(["AAA"], ["AAA"]) == []


def test_adding_a_ticker_adds_its_partition_and_backfills_its_history(make_project):
    project = make_project(["AAA", "BBB"], date(2019, 1, 1), date(2019, 3, 31))
    (project.config_dir / "regimes.yaml").write_text(yaml.safe_dump({"min_history_years": 1}))
    (project.config_dir / "models.yaml").write_text(yaml.safe_dump({"min_history_years": 1}))
    defs = _defs(project)
    with dg.instance_for_test() as instance:
        first = _tick(defs, "universe_sync", instance)
        assert [list(r.partition_keys) for r in first.dynamic_partitions_requests] == [
            ["AAA", "BBB"]
        ]
        assert not first.run_requests  # a fresh instance's first sync is not a change
        instance.add_dynamic_partitions("ticker", ["AAA", "BBB"])
        assert _tick(defs, "universe_sync", instance).skip_message

        universe = yaml.safe_load((project.config_dir / "universe.yaml").read_text())
        universe["tickers"].append("CCC")
        (project.config_dir / "universe.yaml").write_text(yaml.safe_dump(universe))
        result = _tick(defs, "universe_sync", instance)

    assert [list(r.partition_keys) for r in result.dynamic_partitions_requests] == [["CCC"]]
    (backfill,) = result.run_requests
    assert backfill.requires_backfill_daemon()
    assert backfill.tags["quant_assets/tickers_added"] == "CCC"
    subset = backfill.asset_graph_subset
    windows = ["2019-01-01", "2019-02-01", "2019-03-01"]
    bars = {str(k) for k in subset.get_partitions_subset(dg.AssetKey("bars")).get_partition_keys()}
    assert bars == {f"{w}|CCC" for w in windows}  # the new ticker's whole history, only
    assert dg.AssetKey("features") in subset.asset_keys
    assert dg.AssetKey("next_state_model") not in subset.asset_keys  # global models stay


def test_a_malformed_universe_edit_fails_the_tick_naming_the_file(make_project):
    project = make_project(["AAA"], date(2019, 1, 1), date(2019, 1, 31))
    defs = _defs(project)
    universe = yaml.safe_load((project.config_dir / "universe.yaml").read_text())
    universe["tickers"].append("AAPL; DROP TABLE bars")
    (project.config_dir / "universe.yaml").write_text(yaml.safe_dump(universe))
    with dg.instance_for_test() as instance:
        with pytest.raises(Exception, match=r"universe\.yaml.*AAPL; DROP TABLE bars"):
            _tick(defs, "universe_sync", instance)
        assert list(instance.get_dynamic_partitions("ticker")) == []


# --- drop folder --------------------------------------------------------------------------


def test_rectangles_group_contiguous_windows_and_tickers():
    windows = ["w1", "w2", "w3", "w4"]
    tickers = ["A", "B", "C", "D"]
    changed = {"A": ["w3", "w4"], "B": ["w3", "w4"], "D": ["w3", "w4"], "C": ["w1"]}
    assert rectangles(changed, windows, tickers) == [
        ("w1", "w1", ["C"]),
        ("w3", "w4", ["A", "B"]),
        ("w3", "w4", ["D"]),
    ]


def test_drop_folder_requests_exactly_new_and_changed_partitions_once(make_project):
    project = make_project(["AAA", "BBB", "CCC"], date(2019, 1, 1), date(2019, 4, 30))
    defs = _defs(project)
    ccc = project.bars("CCC")
    (project.drop / "CCC.csv").unlink()  # CCC arrives later, as a new file
    with dg.instance_for_test() as instance:
        instance.add_dynamic_partitions("ticker", ["AAA", "BBB", "CCC"])
        first = _tick(defs, "drop_folder", instance)
        # Every window of the files present, as one rectangle; the benchmark separately.
        assert _bars_partitions(first) == {("2019-01-01", "2019-04-01", "AAA", "BBB")}
        benchmark = [
            r for r in first.run_requests if r.asset_selection[0].path == ["benchmark_bars"]
        ]
        assert len(benchmark) == 1
        cursor = first.cursor

        again = _tick(defs, "drop_folder", instance, cursor)
        assert not again.run_requests  # nothing new: nothing runs twice
        assert again.skip_message == "no new or changed rows"

        # A new file and a change to one row of March in an existing file.
        project.write("CCC", ccc)
        bbb = project.bars("BBB").with_columns(
            pl.when(pl.col("date") == date(2019, 3, 15))
            .then(pl.col("close") * 1.01)
            .otherwise(pl.col("close"))
            .alias("close")
        )
        project.write("BBB", bbb)
        changed = _tick(defs, "drop_folder", instance, again.cursor or cursor)
        assert _bars_partitions(changed) == {
            ("2019-03-01", "2019-03-01", "BBB", "BBB"),
            ("2019-01-01", "2019-04-01", "CCC", "CCC"),
        }
        assert all(r.run_key for r in changed.run_requests)
        after = _tick(defs, "drop_folder", instance, changed.cursor)
        assert not after.run_requests


def test_drop_folder_reports_an_unreadable_file_and_keeps_going(make_project):
    project = make_project(["AAA", "BBB"], date(2019, 1, 1), date(2019, 2, 28))
    defs = _defs(project)
    (project.drop / "AAA.csv").write_text("date,close\n2019-01-02,abc\n")
    with dg.instance_for_test() as instance:
        instance.add_dynamic_partitions("ticker", ["AAA", "BBB"])
        result = _tick(defs, "drop_folder", instance)
    assert _bars_partitions(result) == {("2019-01-01", "2019-02-01", "BBB", "BBB")}
    assert "AAA.csv" not in json.loads(result.cursor)["files"]  # retried once fixed


def test_no_drop_folder_sensor_without_the_files_provider(make_project):
    project = make_project(["AAA"], date(2019, 1, 1), date(2019, 1, 31))
    providers = yaml.safe_load((project.config_dir / "providers.yaml").read_text())
    providers["provider"] = "synthetic"
    (project.config_dir / "providers.yaml").write_text(yaml.safe_dump(providers))
    names = [s.name for s in _defs(project).sensors]
    assert "drop_folder" not in names
    assert {"universe_sync", "run_failures", "quant_assets_automation"} <= set(names)


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
