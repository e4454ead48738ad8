"""Promotion of a study's selection to a strategy (seed 002's autopilot: discovery → validation →
promotion gate → registry → paper book).

Only a selection whose stored decision passed every gate is promoted. It becomes an ordinary
strategy file, ``configs/strategies/<name>.yaml``: the selected trial's whole configuration,
plus a ``provenance`` block (study, ledger hash, gate figures, MLflow run) that changes no
computation. Every promotion is recorded in the warehouse (``research.promotions``).
"""

from __future__ import annotations

import json
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import duckdb
import yaml

from quant_assets.errors import QuantAssetsError

PROMOTIONS_TABLE = "research.promotions"
_FIGURES = (
    "oos_sharpe",
    "deflated_sharpe",
    "deflated_sharpe_effective",
    "pbo",
    "spa_pvalue",
    "spa_pvalue_volatility_matched",
    "n_trials_ledger",
    "n_trials_effective",
)


def promoted_document(config: dict[str, Any], decision: dict[str, Any]) -> dict[str, Any]:
    """The strategy file's content: ``config`` (the selected trial's alpha, sizing, risk,
    backtest, promotion) with the provenance of ``decision`` (a stored study decision row).

    Raises QuantAssetsError when the decision did not pass its gates, naming the reasons."""
    if not decision["promoted"]:
        raise QuantAssetsError(
            f"study {decision['study']}: its selection did not pass the gates, so it is not "
            f"promoted ({decision['reasons']})"
        )
    provenance = {
        "study": decision["study"],
        "base_strategy": decision["base_strategy"],
        "config_hash": decision["selected_hash"],
        "selected_trial": int(decision["selected_trial"]),
        "selected_params": json.loads(decision["selected_params"]),
        "out_of_sample": f"{decision['oos_start']} .. {decision['oos_end']}",
        **{k: float(decision[k]) for k in _FIGURES},
        "mlflow_run_id": decision["mlflow_run_id"],
        "promoted_at": datetime.now(UTC).replace(microsecond=0).isoformat(),
    }
    return {
        "description": f"Promoted from study {decision['study']} (trial "
        f"{decision['selected_trial']} of {decision['base_strategy']}).",
        **{
            k: v
            for k, v in config.items()
            if k in ("alpha", "sizing", "risk", "backtest", "promotion")
        },
        "provenance": provenance,
    }


def write_strategy_file(path: Path, document: dict[str, Any], *, replace: bool = False) -> Path:
    """Write the promoted strategy's YAML; refuses to overwrite unless ``replace``."""
    if path.exists() and not replace:
        raise QuantAssetsError(f"{path} exists: choose another --name or pass --replace")
    header = (
        "# Written by `quant-assets promote`: a study's selection that passed its gates.\n"
        "# The provenance block records where it came from; it changes no computation.\n"
    )
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(header + yaml.safe_dump(document, sort_keys=False))
    return path


def record_promotion(database: Path, strategy: str, document: dict[str, Any]) -> None:
    """Append the promotion to ``research.promotions`` (strategy, study, hash, figures)."""
    provenance = document["provenance"]
    with duckdb.connect(str(database)) as conn:
        conn.execute("create schema if not exists research")
        conn.execute(
            f"create table if not exists {PROMOTIONS_TABLE} (promoted_at timestamp, "
            "strategy varchar, study varchar, config_hash varchar, figures varchar)"
        )
        conn.execute(
            f"insert into {PROMOTIONS_TABLE} values (?, ?, ?, ?, ?)",
            [
                datetime.fromisoformat(provenance["promoted_at"]).replace(tzinfo=None),
                strategy,
                provenance["study"],
                provenance["config_hash"],
                json.dumps({k: provenance[k] for k in _FIGURES}),
            ],
        )
