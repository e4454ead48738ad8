"""Sensors: keep the graph complete and current, and record failures.

- ``converge``: each tick keeps the dynamic ``ticker`` partitions equal to ``universe.yaml``
  (re-read every tick), ingests new or changed files of the files provider's folder (content
  hashes per date window in the cursor; a file failing the blocking bar rules is refused and
  recorded), and launches the next range run that brings the graph to complete and current
  (:mod:`quant_assets.engine.convergence`): missing partitions whose inputs exist (a fresh
  deployment, a new ticker, a new model cut-off), partitions older than an input, and
  everything that reads them. One run at a time, each one partitions definition over one
  rectangle, like ``quant-assets materialize``; it waits while any run is in progress.

  Why not a Dagster backfill: the backfill daemon splits a multi-partition subset into one
  run per key of its smaller dimension (``get_partition_key_ranges`` in
  dagster/_core/definitions/partitions/subset/default.py), i.e. per ticker or per window,
  launched side by side: slow at 500 tickers and wrong for the strategies, which decide
  across tickers and continue each window from the one before.
- ``run_failures``: records every failed run under ``$QUANT_ASSETS_HOME/alerts`` and, when
  configured, posts it to a webhook whose URL comes from an environment variable;
  ``check_warnings`` records there the failed checks of successful runs (a model cut-off
  skipped for too few rows names the config keys to change).
"""

from __future__ import annotations

import hashlib
import json
import time
import urllib.error
import urllib.request
from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import UTC, date, datetime
from pathlib import Path
from typing import Any

import dagster as dg
import polars as pl
import tenacity

from quant_assets.defs.partitions import (
    TICKER_DIMENSION,
    TICKER_PARTITIONS,
    next_window_start,
    window_start_of,
)
from quant_assets.engine.convergence import (
    GraphView,
    Parts,
    Step,
    convergence_target,
    graph_state,
    next_step,
    parts_of,
    runs_in_progress,
    step_run_request,
)
from quant_assets.errors import ProviderError, QuantAssetsError
from quant_assets.settings import AlertSettings, Settings, load_settings
from quant_assets.tickers import TICKER_PATTERN

CONVERGE_SENSOR = "converge"
FAILURE_SENSOR = "run_failures"
CHECK_SENSOR = "check_warnings"
ALERTS_DIR = "alerts"
FAILURE_LOG = "run_failures.jsonl"
_BAR_VALUES = ("date", "open", "high", "low", "close", "volume")


# --- universe ------------------------------------------------------------------------------


def universe_partition_requests(
    wanted: list[str], existing: list[str]
) -> list[dg.AddDynamicPartitionsRequest | dg.DeleteDynamicPartitionsRequest]:
    """The add/delete requests that make ``existing`` ticker partitions equal ``wanted``."""
    requests: list[dg.AddDynamicPartitionsRequest | dg.DeleteDynamicPartitionsRequest] = []
    to_add = [t for t in wanted if t not in set(existing)]
    to_delete = [t for t in existing if t not in set(wanted)]
    if to_add:
        requests.append(TICKER_PARTITIONS.build_add_request(to_add))
    if to_delete:
        requests.append(TICKER_PARTITIONS.build_delete_request(to_delete))
    return requests


# --- drop folder ---------------------------------------------------------------------------


def _file_digest(path: Path) -> str:
    digest = hashlib.sha256()
    with path.open("rb") as handle:
        for block in iter(lambda: handle.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def window_hashes(bars: pl.DataFrame, grain: str) -> dict[str, str]:
    """sha256 (first 16 hex digits) of each date window's rows of one ticker's file."""
    if bars.is_empty():
        return {}
    out = {}
    ordered = bars.sort("date")
    windows = [window_start_of(d, grain).isoformat() for d in ordered["date"]]
    framed = ordered.with_columns(pl.Series("window", windows))
    for (window,), rows in framed.group_by("window", maintain_order=True):
        digest = hashlib.sha256(rows.drop("window").write_csv().encode()).hexdigest()[:16]
        out[str(window)] = digest
    return out


def changed_windows(before: dict[str, str], after: dict[str, str]) -> list[str]:
    """Windows whose rows were added, changed or removed."""
    return sorted(w for w in set(before) | set(after) if before.get(w) != after.get(w))


def files_sensor_in_use(settings: Settings) -> bool:
    """Whether the drop-folder sensor exists: the files provider is in the chain."""
    in_use = {settings.providers.provider, *getattr(settings.providers, "fallback", [])}
    return settings.providers.files is not None and "files" in in_use


@dataclass
class FolderScan:
    """The new or changed files of a folder: per symbol its changed date windows, and the
    cursor entries to commit once its rows pass the checks."""

    changed: dict[str, list[str]] = field(default_factory=dict)
    problems: list[tuple[str, str]] = field(default_factory=list)  # (file name, why)
    entries: dict[str, tuple[str, str, dict[str, str]]] = field(default_factory=dict)
    accepted: list[str] = field(default_factory=list)
    first_seen: set[str] = field(default_factory=set)  # no window hashes in the cursor yet

    def accept(self, symbol: str, cursor: dict) -> None:
        """Commit ``symbol``'s file to ``cursor`` (a rejected file is looked at again when it
        changes: its hash is not recorded)."""
        name, digest, after = self.entries[symbol]
        cursor["files"][name] = digest
        cursor["windows"][symbol] = after
        self.accepted.append(symbol)


def scan_folder(
    folder: Path, wanted: set[str], cursor: dict, grain: str, valid_windows: set[str]
) -> FolderScan:
    """The changed date windows per symbol of the files in ``folder`` that are new or changed
    since ``cursor`` (committed by :meth:`FolderScan.accept`), and the files that could not be
    read (their digest goes to ``cursor["refused"]``: looked at again when they change)."""
    from quant_assets.providers.files import read_bar_file

    scan = FolderScan()
    for path in sorted(folder.glob("*")):
        symbol = path.stem
        if path.suffix not in (".csv", ".parquet") or not TICKER_PATTERN.fullmatch(symbol):
            continue
        if symbol not in wanted:
            continue
        digest = _file_digest(path)
        refused = cursor.setdefault("refused", {})
        if digest in (cursor["files"].get(path.name), refused.get(path.name)):
            continue  # seen, or refused and unchanged since (said once)
        try:
            bars = read_bar_file(path, symbol)
        except (ProviderError, QuantAssetsError) as exc:
            scan.problems.append((path.name, str(exc)))
            refused[path.name] = digest
            continue
        after = window_hashes(bars.select(_BAR_VALUES), grain)
        if symbol not in cursor["windows"]:
            scan.first_seen.add(symbol)
        windows = changed_windows(cursor["windows"].get(symbol, {}), after)
        scan.changed[symbol] = [w for w in windows if w in valid_windows]
        scan.entries[symbol] = (path.name, digest, after)
    return scan


def file_problem(settings: Settings, symbol: str, windows: list[str], grain: str) -> str | None:
    """Why ``symbol``'s changed windows would fail the blocking bar checks (the run's own
    rules, through the configured provider chain), naming file, ticker, date and rule; None
    when they pass. A bad file is not requested, so it blocks nothing else."""
    from quant_assets.errors import BadBarsError
    from quant_assets.providers.routing import ingest_range
    from quant_assets.quality.gx import ValidationReport

    first = date.fromisoformat(min(windows))
    end = next_window_start(date.fromisoformat(max(windows)), grain)
    try:
        ingested, _ = ingest_range(settings, [symbol], first, end, session=None)
    except (ProviderError, QuantAssetsError) as exc:
        return f"{symbol}: {exc}"
    report = ValidationReport(
        suite="bars_quality",
        row_count=ingested.row_report.row_count,
        outcomes=ingested.row_report.outcomes + ingested.partition_report.outcomes,
    )
    try:
        report.raise_for_failures(source=f"drop folder file of {symbol}")
    except BadBarsError as error:
        return str(error).splitlines()[0]
    return None


def problem_record(sensor: str, path: Path, problem: str, at: datetime) -> dict:
    """An alert record for an input a sensor refused (a bad file): nothing ran for it."""
    return {
        "kind": "input_refused",
        "sensor": sensor,
        "file": str(path),
        "failed_at": at.astimezone(UTC).isoformat(timespec="seconds"),
        "error": problem.strip().splitlines()[0][:500] if problem else "",
    }


# --- convergence ---------------------------------------------------------------------------


def build_converge_sensor(settings: Settings, home: Path) -> dg.SensorDefinition:
    """The sensor that keeps every asset complete and current (see the module docstring)."""
    from quant_assets.defs.partitions import date_partitions

    config = settings.operations.converge
    files = settings.providers.files if files_sensor_in_use(settings) else None
    windows_def = date_partitions(settings.universe)

    @dg.sensor(
        name=CONVERGE_SENSOR,
        asset_selection=dg.AssetSelection.all(),
        minimum_interval_seconds=config.minimum_interval_seconds,
        default_status=_status(config.enabled),
        description=(
            "Keeps the graph complete and current: syncs ticker partitions with universe.yaml, "
            + (f"ingests new or changed files of {files.path}, " if files is not None else "")
            + "then launches, one at a time, the range runs that bring every asset up to "
            "date: missing partitions whose inputs exist, partitions older than an input, and "
            "everything that reads them (like `quant-assets materialize`)."
        ),
    )
    def converge(context: dg.SensorEvaluationContext) -> dg.SensorResult:
        cursor = _load_cursor(context.cursor)
        # Re-read the YAML on every tick: editing universe.yaml needs no code reload. A
        # malformed edit (bad ticker, bad YAML) fails the tick with the file, key and rule.
        current = load_settings(settings.config_dir)
        existing = list(context.instance.get_dynamic_partitions(TICKER_DIMENSION))
        requests = universe_partition_requests(current.universe.tickers, existing)
        if requests:  # this tick changes the partitions; the next one plans on them
            _universe_changed(context, current.universe.tickers, existing, cursor)
            return dg.SensorResult(
                dynamic_partitions_requests=requests, cursor=_dump_cursor(cursor)
            )
        running = runs_in_progress(context.instance)
        if running:
            reason = f"waiting for {len(running)} run(s) in progress ({running[0][:8]}, ...)"
            return dg.SensorResult(skip_reason=reason, cursor=context.cursor)
        if files is not None:
            valid = set(windows_def.get_partition_keys())
            _scan_drop_folder(context, current, files.path, cursor, existing, valid, home)
        return _next_run(context, existing, cursor)

    return converge


def _universe_changed(
    context: dg.SensorEvaluationContext, wanted: list[str], existing: list[str], cursor: dict
) -> None:
    removed = [t for t in existing if t not in set(wanted)]
    added = [t for t in wanted if t not in set(existing)]
    context.log.info(f"universe change: added {added or '-'}, removed {removed or '-'}")
    if removed:
        assert context.repository_def is not None
        _add_pending(cursor, removal_seeds(context.repository_def.asset_graph, existing, removed))


def _next_run(
    context: dg.SensorEvaluationContext, tickers: list[str], cursor: dict
) -> dg.SensorResult:
    """The next run of the plan, or why there is none."""
    if _unchanged(context.instance, cursor):
        return dg.SensorResult(
            skip_reason="nothing changed since the last tick", cursor=_dump_cursor(cursor)
        )
    assert context.repository_def is not None  # sensors always run in a repository
    view = GraphView(context.repository_def.asset_graph, tickers)
    state = graph_state(view, context.instance)
    step = next_step(view, convergence_target(state, _pending(view, cursor)))
    if step is None:
        return dg.SensorResult(
            skip_reason="every asset is complete and current", cursor=_dump_cursor(cursor)
        )
    _launched(cursor, view, step)
    context.log.info(f"next run: {step.describe()}")
    tags = {"quant_assets/launched_by": CONVERGE_SENSOR, "quant_assets/step": step.describe()[:250]}
    return dg.SensorResult(run_requests=[step_run_request(step, tags)], cursor=_dump_cursor(cursor))


def removal_seeds(asset_graph, before: Sequence[str], removed: Sequence[str]) -> Parts:
    """What read the removed tickers' history (their cross-sections, the models trained on
    them): the closure of their bars, minus their own partitions (gone)."""
    view = GraphView(asset_graph, before)
    roots = {r: parts_of(view, r, view.windows[r], removed) for r in view.roots()}
    closure = view.affected({r: p for r, p in roots.items() if view.per_ticker(r)})
    gone = set(removed)
    kept = {k: {p for p in v if p[1] not in gone} for k, v in closure.items()}
    return {k: v for k, v in kept.items() if v}


def _scan_drop_folder(
    context: dg.SensorEvaluationContext,
    current: Settings,
    folder: Path,
    cursor: dict,
    tickers: Sequence[str],
    valid_windows: set[str],
    home: Path,
) -> None:
    """Add the changed windows of new or changed files to the pending seeds; a file failing
    the blocking bar rules is refused (recorded in the alerts, looked at again when it
    changes) and blocks nothing else."""
    benchmark = current.universe.benchmark
    grain = current.universe.partition_grain
    scan = scan_folder(folder, {*tickers, benchmark}, cursor["folder"], grain, valid_windows)
    problems = list(scan.problems)
    refused = cursor["folder"].setdefault("refused", {})
    for symbol, windows in sorted(scan.changed.items()):
        name, digest, _ = scan.entries[symbol]
        problem = file_problem(current, symbol, windows, grain) if windows else None
        if problem is None:
            scan.accept(symbol, cursor["folder"])
            refused.pop(name, None)
        else:
            problems.append((name, problem))
            refused[name] = digest
    for name, problem in problems:
        context.log.error(problem)
        record_failure(home, problem_record(CONVERGE_SENSOR, folder / name, problem, _now()))
    seeds: Parts = {}
    stored: dict[str, set[str]] = {}  # read only when a file is seen for the first time
    for symbol in scan.accepted:
        windows = scan.changed[symbol]
        if symbol in scan.first_seen:
            # A file seen for the first time (a fresh cursor next to a warehouse the CLI
            # filled from this folder): only its windows not stored yet are new; its later
            # changes are tracked by hash.
            asset = "benchmark_bars" if symbol == benchmark else "bars"
            if asset not in stored:
                stored[asset] = context.instance.get_materialized_partitions(dg.AssetKey(asset))
            windows = [
                w
                for w in windows
                if (w if asset == "benchmark_bars" else f"{w}|{symbol}") not in stored[asset]
            ]
        if symbol == benchmark:
            seeds.setdefault(dg.AssetKey("benchmark_bars"), set()).update(
                (w, None) for w in windows
            )
        else:
            seeds.setdefault(dg.AssetKey("bars"), set()).update((w, symbol) for w in windows)
    if any(seeds.values()):
        context.log.info(f"new or changed files: {', '.join(sorted(scan.accepted))}")
        _add_pending(cursor, seeds)


# A full look at the graph at least this often, even when no event was written: a new date
# window or cut-off opens with the calendar, not with an event.
_FULL_CHECK_SECONDS = 600


def _unchanged(instance: dg.DagsterInstance, cursor: dict) -> bool:
    """Whether nothing was written to the event log (no run, no materialisation) and no seed
    is pending since the last full look, which was recent: that look's answer still holds.
    Keeps idle ticks cheap (one query instead of reading every asset's partitions)."""
    last_event = instance.event_log_storage.get_maximum_record_id() or 0
    now = time.time()
    same = (
        not cursor["pending"]
        and cursor.get("last_event") == last_event
        and now - cursor.get("checked_at", 0) < _FULL_CHECK_SECONDS
    )
    if not same:
        cursor["last_event"], cursor["checked_at"] = last_event, now
    return same


def _load_cursor(text: str | None) -> dict:
    cursor = json.loads(text) if text else {}
    cursor.setdefault("folder", {"files": {}, "windows": {}})
    cursor.setdefault("pending", {})
    return cursor


def _dump_cursor(cursor: dict) -> str:
    return json.dumps(cursor, sort_keys=True)


def _add_pending(cursor: dict, seeds: Parts) -> None:
    """Remember seeds (changed history) until a launched run covers them."""
    for key, parts in seeds.items():
        if not parts:
            continue
        known = {tuple(p) for p in cursor["pending"].get(key.to_user_string(), [])}
        known |= {tuple(p) for p in parts}
        cursor["pending"][key.to_user_string()] = sorted(known, key=lambda p: tuple(map(str, p)))


def _pending(view: GraphView, cursor: dict) -> Parts:
    out: Parts = {}
    for name, parts in cursor["pending"].items():
        key = dg.AssetKey.from_user_string(name)
        if key in view.keys:
            out[key] = {(p[0], p[1]) for p in parts} & view.all_parts(key)
    return out


def _launched(cursor: dict, view: GraphView, step: Step) -> None:
    """Drop the pending seeds the launched run covers."""
    for key in step.assets:
        name = key.to_user_string()
        if name in cursor["pending"]:
            left = [p for p in cursor["pending"][name] if (p[0], p[1]) not in step.parts]
            if left:
                cursor["pending"][name] = left
            else:
                del cursor["pending"][name]


# --- failed runs ---------------------------------------------------------------------------


def failure_record(run: dg.DagsterRun, message: str, failed_at: datetime) -> dict:
    """What a failure alert says: the run, its job, its partitions, the first error line.

    Run tags are filtered to ours and Dagster's partition tags: nothing else from the
    environment (no secrets) reaches the log or the webhook.
    """
    keep = ("quant_assets/", "dagster/asset_partition_range", "dagster/partition")
    return {
        "run_id": run.run_id,
        "job": run.job_name,
        "status": run.status.value,
        "failed_at": failed_at.astimezone(UTC).isoformat(timespec="seconds"),
        "assets": sorted(k.to_user_string() for k in (run.asset_selection or [])),
        "tags": {k: v for k, v in sorted(run.tags.items()) if k.startswith(keep)},
        "error": (message or "").strip().splitlines()[0][:500] if message else "",
    }


def record_failure(home: Path, record: dict) -> Path:
    """Append ``record`` to ``home/alerts/run_failures.jsonl``; returns the file."""
    folder = home / ALERTS_DIR
    folder.mkdir(parents=True, exist_ok=True)
    path = folder / FAILURE_LOG
    with path.open("a", encoding="utf-8") as handle:
        handle.write(json.dumps(record, sort_keys=True) + "\n")
    return path


def post_webhook(url: str, record: dict, alerts: AlertSettings) -> int:
    """POST ``record`` as JSON to ``url`` with retries (tenacity); returns the HTTP status.

    Retries connection errors and 5xx/429 with exponential backoff; the URL is never logged
    or raised in an error message (it usually embeds a token).
    """
    body = json.dumps({"text": _summary(record), "run": record}).encode()

    @tenacity.retry(
        stop=tenacity.stop_after_attempt(alerts.max_attempts),
        wait=tenacity.wait_exponential(multiplier=0.2, max=5),
        retry=tenacity.retry_if_exception_type(_TransientWebhookError),
        reraise=True,
    )
    def send() -> int:
        request = urllib.request.Request(
            url, data=body, method="POST", headers={"Content-Type": "application/json"}
        )
        try:
            with urllib.request.urlopen(request, timeout=alerts.timeout_seconds) as response:
                return int(response.status)
        except urllib.error.HTTPError as exc:
            if exc.code == 429 or exc.code >= 500:
                raise _TransientWebhookError(f"webhook answered HTTP {exc.code}") from None
            raise WebhookError(f"webhook refused the alert: HTTP {exc.code}") from None
        except (urllib.error.URLError, TimeoutError, ConnectionError) as exc:
            reason = getattr(exc, "reason", exc)
            raise _TransientWebhookError(f"webhook unreachable ({type(reason).__name__})") from None

    try:
        return send()
    except _TransientWebhookError as exc:
        raise WebhookError(f"{exc} after {alerts.max_attempts} attempt(s)") from None


class WebhookError(QuantAssetsError):
    """The alert webhook could not be reached or refused the alert (URL never included)."""


class _TransientWebhookError(WebhookError):
    pass


def _summary(record: dict) -> str:
    assets = ", ".join(record["assets"][:5]) or record["job"]
    return f"quant_assets run {record['run_id'][:8]} failed ({assets}): {record['error']}"


def build_failure_sensor(settings: Settings, home: Path) -> dg.RunFailureSensorDefinition:
    alerts = settings.operations.alerts

    @dg.run_failure_sensor(
        name=FAILURE_SENSOR,
        default_status=dg.DefaultSensorStatus.RUNNING,
        monitor_all_code_locations=False,
        description=(
            "Records every failed run in alerts/run_failures.jsonl and posts it to the "
            "webhook named by operations.yaml alerts.webhook_url_env (off by default)."
        ),
    )
    def run_failures(context: dg.RunFailureSensorContext) -> None:
        record = failure_record(context.dagster_run, context.failure_event.message or "", _now())
        path = record_failure(home, record)
        context.log.info(f"recorded failed run {record['run_id']} in {path}")
        if alerts.webhook_url_env is None:
            return
        url = dg.EnvVar(alerts.webhook_url_env).get_value()
        if not url:
            context.log.warning(f"alerts: ${alerts.webhook_url_env} is not set; webhook skipped")
            return
        status = post_webhook(url, record, alerts)
        context.log.info(f"alert posted to the webhook (HTTP {status})")

    return run_failures


def failed_check_records(instance: dg.DagsterInstance, run: dg.DagsterRun, at: datetime):
    """An alert record per check a successful run evaluated as failed (a warning: a model
    cut-off skipped for too few rows, return spikes), with its asset, the run's partitions,
    the reasons and the config keys to change."""
    keep = ("dagster/asset_partition_range", "dagster/partition")
    out = []
    for entry in instance.all_logs(run.run_id, of_type=dg.DagsterEventType.ASSET_CHECK_EVALUATION):
        evaluation: Any = entry.dagster_event.event_specific_data if entry.dagster_event else None
        if evaluation is None or evaluation.passed:
            continue
        metadata = {k: getattr(v, "value", v) for k, v in (evaluation.metadata or {}).items()}
        reason = metadata.get("reasons") or metadata.get("failures") or ""
        out.append(
            {
                "kind": "check_failed",
                "run_id": run.run_id,
                "failed_at": at.astimezone(UTC).isoformat(timespec="seconds"),
                "assets": [evaluation.asset_key.to_user_string()],
                "check": evaluation.check_name,
                "tags": {k: v for k, v in sorted(run.tags.items()) if k.startswith(keep)},
                "error": str(reason).strip().splitlines()[0][:500] if reason else "",
                "config": str(metadata.get("config", "")),
            }
        )
    return out


def build_check_sensor(home: Path) -> dg.RunStatusSensorDefinition:
    @dg.run_status_sensor(
        name=CHECK_SENSOR,
        run_status=dg.DagsterRunStatus.SUCCESS,
        default_status=dg.DefaultSensorStatus.RUNNING,
        monitor_all_code_locations=False,
        description=(
            "Records every failed check of a successful run (a skipped model cut-off, return "
            "spikes) in alerts/run_failures.jsonl, next to the failed runs."
        ),
    )
    def check_warnings(context: dg.RunStatusSensorContext) -> None:
        for record in failed_check_records(context.instance, context.dagster_run, _now()):
            record_failure(home, record)
            context.log.info(f"recorded failed check {record['check']} of {record['assets'][0]}")

    return check_warnings


def _now() -> datetime:
    return datetime.now(UTC)


def _status(enabled: bool) -> dg.DefaultSensorStatus:
    return dg.DefaultSensorStatus.RUNNING if enabled else dg.DefaultSensorStatus.STOPPED


def build_sensors(settings: Settings, home: Path) -> list:
    """Every sensor of ``settings``: converge, run_failures and check_warnings."""
    return [
        build_converge_sensor(settings, home),
        build_failure_sensor(settings, home),
        build_check_sensor(home),
    ]
