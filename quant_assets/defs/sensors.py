"""Sensors: react to universe edits, new or changed files, and failed runs.

- ``universe_sync``: keeps the dynamic ``ticker`` partitions equal to ``universe.yaml`` (re-read
  every tick) and requests a backfill of what a universe change invalidates.
- ``drop_folder``: requests exactly the (date window, ticker) partitions of ``bars`` (and
  ``benchmark_bars``) whose rows in the files provider's folder are new or changed, by
  content hash, with a cursor so nothing runs twice.
- ``run_failures``: records every failed run under ``$QUANT_ASSETS_HOME/alerts`` and, when
  configured, posts it to a webhook whose URL comes from an environment variable.
"""

from __future__ import annotations

import hashlib
import itertools
import json
import urllib.error
import urllib.request
from collections.abc import Iterable, Sequence
from datetime import UTC, datetime
from pathlib import Path

import dagster as dg
import polars as pl
import tenacity

from quant_assets.dagster_internals import (
    AssetGraphSubset,
    AssetKeyPartitionKey,
    backfill_run_request,
)
from quant_assets.defs.common import CUTOFF_MODEL_TAG
from quant_assets.defs.partitions import (
    DATE_DIMENSION,
    TICKER_DIMENSION,
    TICKER_PARTITIONS,
    window_start_of,
)
from quant_assets.errors import ProviderError, QuantAssetsError
from quant_assets.settings import AlertSettings, Settings, load_settings
from quant_assets.tickers import TICKER_PATTERN

UNIVERSE_SENSOR = "universe_sync"
FILE_SENSOR = "drop_folder"
FAILURE_SENSOR = "run_failures"
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


def universe_backfill(
    asset_graph, added: Sequence[str], tickers_after: Sequence[str], strategy_prefixes: set[str]
) -> AssetGraphSubset:
    """What a universe change invalidates, as one backfill.

    A new ticker needs its own history in every per-ticker asset below ``bars`` (bars,
    features, signals, labels, predictions). Every strategy asset reads the whole
    cross-section, so its whole history changes with the universe (added or removed
    tickers): all of its partitions. The global models are not refitted (they were trained
    on the universe of their cut-off; refit them explicitly if wanted).
    """
    partitions: set[AssetKeyPartitionKey] = set()
    below_bars = asset_graph.get(dg.AssetKey("bars")).child_keys
    keys = _descendants(asset_graph, dg.AssetKey("bars"), below_bars)
    for key in sorted(keys | {dg.AssetKey("bars")}, key=lambda k: k.to_user_string()):
        node = asset_graph.get(key)
        if node.tags.get(CUTOFF_MODEL_TAG) == "true" or not node.is_materializable:
            continue
        in_strategy = key.path[0] in strategy_prefixes
        if not in_strategy and not added:
            continue
        partitions_def = node.partitions_def
        if partitions_def is None:
            partitions.add(AssetKeyPartitionKey(key, None))
            continue
        if isinstance(partitions_def, dg.MultiPartitionsDefinition):
            date_def = partitions_def.get_partitions_def_for_dimension(DATE_DIMENSION)
            tickers = tickers_after if in_strategy else added
            for window, ticker in itertools.product(date_def.get_partition_keys(), tickers):
                multi = dg.MultiPartitionKey({DATE_DIMENSION: window, TICKER_DIMENSION: ticker})
                partitions.add(AssetKeyPartitionKey(key, multi))
        elif in_strategy:
            for window in partitions_def.get_partition_keys():
                partitions.add(AssetKeyPartitionKey(key, window))
    return AssetGraphSubset.from_asset_partition_set(partitions, asset_graph)


def _descendants(asset_graph, root: dg.AssetKey, children: Iterable[dg.AssetKey]) -> set:
    seen: set[dg.AssetKey] = set()
    stack = list(children)
    while stack:
        key = stack.pop()
        if key in seen or key == root:
            continue
        seen.add(key)
        stack.extend(asset_graph.get(key).child_keys)
    return seen


def build_universe_sensor(settings: Settings) -> dg.SensorDefinition:
    config = settings.operations.universe_sensor
    strategies = set(settings.strategies)

    @dg.sensor(
        name=UNIVERSE_SENSOR,
        # What its backfills may target (Dagster requires it for backfill requests).
        asset_selection=dg.AssetSelection.assets("bars").downstream(),
        minimum_interval_seconds=config.minimum_interval_seconds,
        default_status=_status(config.enabled),
        description=(
            "Adds/removes ticker partitions so they match universe.yaml (re-read each tick) and "
            "backfills a new ticker's history and every strategy's cross-section."
        ),
    )
    def universe_sync(context: dg.SensorEvaluationContext) -> dg.SensorResult:
        # Re-read the YAML on every tick: editing universe.yaml needs no code reload. A
        # malformed edit (bad ticker, bad YAML) fails the tick with the file, key and rule.
        wanted = load_settings(settings.config_dir).universe.tickers
        existing = list(context.instance.get_dynamic_partitions(TICKER_DIMENSION))
        requests = universe_partition_requests(wanted, existing)
        if not requests:
            return dg.SensorResult(skip_reason="ticker partitions match universe.yaml")
        added = [t for t in wanted if t not in set(existing)]
        removed = [t for t in existing if t not in set(wanted)]
        after = [t for t in existing if t in set(wanted)] + added  # partition order
        context.log.info(f"universe change: added {added or '-'}, removed {removed or '-'}")
        run_requests = []
        if existing:  # the first sync of a fresh instance is not a change of the universe
            assert context.repository_def is not None  # sensors always run in a repository
            graph = context.repository_def.asset_graph
            subset = universe_backfill(graph, added, after, strategies)
            if subset.num_partitions_and_non_partitioned_assets:
                run_requests.append(
                    backfill_run_request(
                        subset,
                        tags={
                            "quant_assets/launched_by": UNIVERSE_SENSOR,
                            "quant_assets/tickers_added": ",".join(added) or "-",
                            "quant_assets/tickers_removed": ",".join(removed) or "-",
                        },
                    )
                )
        return dg.SensorResult(dynamic_partitions_requests=requests, run_requests=run_requests)

    return universe_sync


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


def rectangles(
    changed: dict[str, list[str]], window_order: Sequence[str], ticker_order: list[str]
) -> list[tuple[str, str, list[str]]]:
    """Group changed (window, ticker) pairs into (first window, last window, tickers)
    rectangles: contiguous windows per ticker, then contiguous tickers sharing a span."""
    spans: dict[tuple[str, str], list[str]] = {}
    position = {w: i for i, w in enumerate(window_order)}
    for ticker, windows in changed.items():
        indexes = sorted(position[w] for w in windows if w in position)
        for _, run in itertools.groupby(enumerate(indexes), lambda pair: pair[1] - pair[0]):
            block = [i for _, i in run]
            span = (window_order[block[0]], window_order[block[-1]])
            spans.setdefault(span, []).append(ticker)
    out = []
    rank = {t: i for i, t in enumerate(ticker_order)}
    for (first, last), tickers in sorted(spans.items()):
        ordered = sorted(tickers, key=lambda t: rank[t])
        for _, named in itertools.groupby(enumerate(ordered), lambda pair: rank[pair[1]] - pair[0]):
            out.append((first, last, [t for _, t in named]))
    return out


def build_file_sensor(settings: Settings) -> dg.SensorDefinition | None:
    """The drop-folder sensor, or None when the files provider is not in use."""
    from quant_assets.defs.partitions import date_partitions

    files = settings.providers.files
    in_use = {settings.providers.provider, *getattr(settings.providers, "fallback", [])}
    if files is None or "files" not in in_use:
        return None
    folder = files.path
    config = settings.operations.file_sensor
    universe = settings.universe
    grain = universe.partition_grain
    windows_def = date_partitions(universe)
    benchmark = universe.benchmark

    @dg.sensor(
        name=FILE_SENSOR,
        asset_selection=dg.AssetSelection.assets("bars", "benchmark_bars"),
        minimum_interval_seconds=config.minimum_interval_seconds,
        default_status=_status(config.enabled),
        description=(
            f"Watches {folder}: requests exactly the (window, ticker) partitions of bars and "
            "benchmark_bars whose rows are new or changed (content hashes in the cursor)."
        ),
    )
    def drop_folder(context: dg.SensorEvaluationContext) -> dg.SensorResult:
        cursor = json.loads(context.cursor) if context.cursor else {"files": {}, "windows": {}}
        tickers = set(load_settings(settings.config_dir).universe.tickers)
        order = [
            t for t in context.instance.get_dynamic_partitions(TICKER_DIMENSION) if t in tickers
        ]
        valid_windows = windows_def.get_partition_keys()
        wanted = tickers | {benchmark}
        changed, problems = scan_folder(folder, wanted, cursor, grain, set(valid_windows))
        for problem in problems:
            context.log.error(problem)
        requests = file_run_requests(changed, valid_windows, order, benchmark)
        new_cursor = json.dumps(cursor, sort_keys=True)
        if not requests:
            reason = "; ".join(problems) if problems else "no new or changed rows"
            return dg.SensorResult(skip_reason=reason, cursor=new_cursor)
        return dg.SensorResult(run_requests=requests, cursor=new_cursor)

    return drop_folder


def scan_folder(
    folder: Path, wanted: set[str], cursor: dict, grain: str, valid_windows: set[str]
) -> tuple[dict[str, list[str]], list[str]]:
    """The changed date windows per symbol of the files in ``folder`` that are new or changed
    since ``cursor`` (updated in place), and the files that could not be read (retried when
    they change again)."""
    from quant_assets.providers.files import read_bar_file

    changed: dict[str, list[str]] = {}
    problems: list[str] = []
    for path in sorted(folder.glob("*")):
        symbol = path.stem
        if path.suffix not in (".csv", ".parquet") or not TICKER_PATTERN.fullmatch(symbol):
            continue
        if symbol not in wanted:
            continue
        digest = _file_digest(path)
        if cursor["files"].get(path.name) == digest:
            continue
        try:
            bars = read_bar_file(path, symbol)
        except (ProviderError, QuantAssetsError) as exc:
            problems.append(str(exc))
            continue
        after = window_hashes(bars.select(_BAR_VALUES), grain)
        windows = changed_windows(cursor["windows"].get(symbol, {}), after)
        changed[symbol] = [w for w in windows if w in valid_windows]
        cursor["files"][path.name] = digest
        cursor["windows"][symbol] = after
    return changed, problems


def file_run_requests(
    changed: dict[str, list[str]],
    window_order: Sequence[str],
    ticker_order: list[str],
    benchmark: str,
) -> list[dg.RunRequest]:
    """One range run per rectangle of changed ``bars`` partitions, one per contiguous span of
    changed ``benchmark_bars`` windows; the run key makes a repeated request a no-op."""
    requests = []
    per_ticker = {t: w for t, w in changed.items() if t != benchmark and w and t in ticker_order}
    for first, last, block in rectangles(per_ticker, window_order, ticker_order):
        start = dg.MultiPartitionKey({DATE_DIMENSION: first, TICKER_DIMENSION: block[0]})
        end = dg.MultiPartitionKey({DATE_DIMENSION: last, TICKER_DIMENSION: block[-1]})
        requests.append(
            dg.RunRequest(
                run_key=_run_key("bars", first, last, block, changed),
                asset_selection=[dg.AssetKey("bars")],
                tags={
                    "quant_assets/launched_by": FILE_SENSOR,
                    "dagster/asset_partition_range_start": str(start),
                    "dagster/asset_partition_range_end": str(end),
                },
            )
        )
    if changed.get(benchmark):
        spans = rectangles({benchmark: changed[benchmark]}, window_order, [benchmark])
        for first, last, _ in spans:
            requests.append(
                dg.RunRequest(
                    run_key=_run_key("benchmark_bars", first, last, [benchmark], changed),
                    asset_selection=[dg.AssetKey("benchmark_bars")],
                    tags={
                        "quant_assets/launched_by": FILE_SENSOR,
                        "dagster/asset_partition_range_start": first,
                        "dagster/asset_partition_range_end": last,
                    },
                )
            )
    return requests


def _run_key(asset: str, first: str, last: str, tickers: list[str], changed: dict) -> str:
    payload = json.dumps([asset, first, last, tickers, changed], sort_keys=True)
    return f"{FILE_SENSOR}:{asset}:{hashlib.sha256(payload.encode()).hexdigest()[:20]}"


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


def _now() -> datetime:
    return datetime.now(UTC)


def _status(enabled: bool) -> dg.DefaultSensorStatus:
    return dg.DefaultSensorStatus.RUNNING if enabled else dg.DefaultSensorStatus.STOPPED


def build_sensors(settings: Settings, home: Path) -> list:
    """Every sensor of ``settings`` (the file sensor only with a files folder)."""
    sensors: list = [build_universe_sensor(settings), build_failure_sensor(settings, home)]
    drop = build_file_sensor(settings)
    if drop is not None:
        sensors.append(drop)
    return sensors
