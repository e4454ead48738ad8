"""What ``quant-assets status`` says: how complete and current every asset is, and why not.

Read from the Dagster instance and the alerts log of a data directory: per asset the
partitions expected, materialised, stale and failed (:mod:`quant_assets.engine.convergence`),
then the problems a user has to act on, each naming the asset, the partitions and what to
change: partitions whose latest run failed (with the run's error), checks whose latest
evaluation failed (a model cut-off skipped for too few rows names its config keys), and
drop-folder files the ``converge`` sensor refused.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path

import dagster as dg

from quant_assets.defs.definitions import build_definitions
from quant_assets.defs.partitions import TICKER_DIMENSION
from quant_assets.defs.sensors import ALERTS_DIR, FAILURE_LOG
from quant_assets.engine.convergence import (
    Completeness,
    GraphState,
    GraphView,
    completeness,
    graph_state,
    to_key,
)
from quant_assets.engine.instance import open_instance
from quant_assets.settings import Settings

_MAX_REFUSED = 5


@dataclass(frozen=True)
class Problem:
    """Something that keeps the graph from converging, and what to do about it."""

    asset: str
    what: str
    reason: str
    action: str


@dataclass(frozen=True)
class GraphStatus:
    assets: list[Completeness]
    problems: list[Problem]

    @property
    def complete(self) -> bool:
        """Every asset complete and current (warnings may still need attention)."""
        return all(a.complete for a in self.assets)


def graph_status(settings: Settings, home: Path) -> GraphStatus:
    """The completeness of every asset of ``settings``' graph stored under ``home``."""
    graph = build_definitions(settings, home).resolve_asset_graph()
    instance = open_instance(home)
    tickers = list(instance.get_dynamic_partitions(TICKER_DIMENSION)) or settings.universe.tickers
    state = graph_state(GraphView(graph, tickers), instance)
    alerts = _alerts(home)
    problems = [
        *_failed_partitions(state, alerts),
        *_failed_checks(graph, instance),
        *_refused_inputs(alerts),
    ]
    return GraphStatus(completeness(state), problems)


def _alerts(home: Path) -> list[dict]:
    path = home / ALERTS_DIR / FAILURE_LOG
    if not path.exists():
        return []
    out = []
    for line in path.read_text(encoding="utf-8").splitlines():
        try:
            out.append(json.loads(line))
        except json.JSONDecodeError:
            continue
    return out


def _failed_partitions(state: GraphState, alerts: list[dict]) -> list[Problem]:
    errors = {a["run_id"]: a.get("error", "") for a in alerts if "run_id" in a}
    out = []
    for key, parts in sorted(state.blocked().items(), key=lambda kv: kv[0].to_user_string()):
        by_run: dict[str, list[str]] = {}
        for part in parts:
            run_id = state.failed_runs.get(key, {}).get(part, "?")
            by_run.setdefault(run_id, []).append(str(to_key(state.view, key, part)))
        for run_id, keys in sorted(by_run.items()):
            keys.sort()
            span = keys[0] if len(keys) == 1 else f"{keys[0]} .. {keys[-1]} ({len(keys)})"
            out.append(
                Problem(
                    asset=key.to_user_string(),
                    what=f"failed: {span}",
                    reason=errors.get(run_id) or f"run {run_id[:8]} failed (see the Dagster UI)",
                    action="fix what the error names; the converge sensor retries when an "
                    "input changes (or run `quant-assets materialize` for these partitions)",
                )
            )
    return out


def _failed_checks(graph, instance: dg.DagsterInstance) -> list[Problem]:
    keys = sorted(graph.asset_check_keys, key=lambda k: (k.asset_key.to_user_string(), k.name))
    latest = instance.event_log_storage.get_latest_asset_check_execution_by_key(keys)
    out = []
    for check_key in keys:
        record = latest.get(check_key)
        if record is None or record.status.value != "FAILED" or record.event is None:
            continue
        event = record.event.dagster_event
        evaluation = event.event_specific_data if event is not None else None
        metadata = getattr(evaluation, "metadata", {}) or {}
        reason = _text(metadata.get("reasons")) or _text(metadata.get("failures"))
        out.append(
            Problem(
                asset=check_key.asset_key.to_user_string(),
                what=f"check {check_key.name} failed",
                reason=reason or "see the check in the Dagster UI",
                action=f"change {_text(metadata['config'])}"
                if "config" in metadata
                else "see the check's metadata in the Dagster UI",
            )
        )
    return out


def _text(value) -> str:
    if value is None:
        return ""
    return str(getattr(value, "value", value)).strip()


def _refused_inputs(alerts: list[dict]) -> list[Problem]:
    """Refused files not changed since (a corrected file is read again, and passes or is
    refused anew)."""
    refused = [a for a in alerts if a.get("kind") == "input_refused" and _unchanged_since(a)]
    return [
        Problem(
            asset="bars",
            what=f"file refused at {a.get('failed_at', '?')}",
            reason=a.get("error", ""),
            action="correct the file in the drop folder: the next tick reads it again",
        )
        for a in refused[-_MAX_REFUSED:]
    ]


def _unchanged_since(record: dict) -> bool:
    path = Path(record.get("file", ""))
    if not path.is_file():
        return False
    at = datetime.fromisoformat(record["failed_at"]).timestamp()
    return path.stat().st_mtime <= at
