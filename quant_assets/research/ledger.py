"""The trial ledger: every strategy configuration ever evaluated, by content hash.

One row per distinct configuration (the hash of what decides its returns — alpha, sizing, risk,
backtest: :func:`quant_assets.research.studies.strategy_hash`), whoever evaluated it: a
study's trials and every configured strategy's report. A configuration evaluated again keeps
its row (first source, first time) and updates its latest Sharpe and evaluation count, so the
number of trials only grows when something new is tried. The Deflated Sharpe of a study's
selection and of every strategy report takes its N from here, and the variance of the
trials' Sharpe ratios from the rows' ``sharpe_per_period``.

The ledger is append-only by design: deleting a study's config does not un-try its trials.
It lives in the warehouse, schema ``research``, table ``trial_ledger``.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path

import duckdb
import numpy as np
import polars as pl

LEDGER_SCHEMA = "research"
LEDGER_TABLE = "trial_ledger"
_QUALIFIED = f"{LEDGER_SCHEMA}.{LEDGER_TABLE}"
LEDGER_COLUMNS: dict[str, str] = {
    "config_hash": "16 hex characters: the content hash of alpha, sizing, risk and backtest",
    "source_kind": "study | strategy: who evaluated it first",
    "source_name": "the study or strategy that evaluated it first",
    "first_evaluated_at": "UTC time of the first evaluation",
    "last_evaluated_at": "UTC time of the latest evaluation",
    "evaluations": "how many times it was evaluated",
    "sharpe_per_period": "daily Sharpe ratio (ddof=1) of its latest evaluation (NaN: none)",
    "n_sessions": "sessions in its latest evaluation",
    "config": "the configuration, canonical JSON",
}

# When and how often a configuration was evaluated: not what it is (compare tables without).
LEDGER_RUN_COLUMNS = ("first_evaluated_at", "last_evaluated_at", "evaluations")


@dataclass(frozen=True)
class LedgerEntry:
    config_hash: str
    sharpe_per_period: float
    n_sessions: int
    config: str


@dataclass(frozen=True)
class LedgerView:
    """What the ledger knows: each distinct configuration's latest daily Sharpe (NaN: none)."""

    sharpe_of: Mapping[str, float]

    @property
    def hashes(self) -> frozenset[str]:
        return frozenset(self.sharpe_of)

    @property
    def sharpes(self) -> np.ndarray:
        """The configurations' Sharpe ratios, in hash order."""
        return np.array([self.sharpe_of[h] for h in sorted(self.sharpe_of)], dtype=np.float64)

    @property
    def n_trials(self) -> int:
        return len(self.sharpe_of)

    def with_entries(self, sharpe_of: Mapping[str, float]) -> LedgerView:
        """The view with ``sharpe_of`` added (their Sharpe replacing the ledger's)."""
        return LedgerView({**self.sharpe_of, **sharpe_of})


def _ensure(conn: duckdb.DuckDBPyConnection) -> None:
    conn.execute(f"create schema if not exists {LEDGER_SCHEMA}")
    conn.execute(
        f"create table if not exists {_QUALIFIED} ("
        "config_hash varchar primary key, source_kind varchar not null, "
        "source_name varchar not null, first_evaluated_at timestamp not null, "
        "last_evaluated_at timestamp not null, evaluations bigint not null, "
        "sharpe_per_period double, n_sessions bigint, config varchar not null)"
    )


def record_trials(
    database: Path | str, source_kind: str, source_name: str, entries: Sequence[LedgerEntry]
) -> int:
    """Record ``entries`` as evaluated now by ``source_name``; returns how many were new.

    In one transaction: new hashes are inserted, known ones get their latest Sharpe, session
    count, time and one more evaluation (their first source and time stay).
    """
    if source_kind not in ("study", "strategy"):
        raise ValueError(f"source_kind must be study or strategy, got {source_kind!r}")
    if not entries:
        return 0
    now = datetime.now(UTC).replace(tzinfo=None)
    frame = pl.DataFrame(
        {
            "config_hash": [e.config_hash for e in entries],
            "sharpe_per_period": [float(e.sharpe_per_period) for e in entries],
            "n_sessions": [int(e.n_sessions) for e in entries],
            "config": [e.config for e in entries],
        }
    ).unique("config_hash", keep="last", maintain_order=True)
    with duckdb.connect(str(database)) as conn:
        _ensure(conn)
        conn.execute("begin transaction")
        known = {
            row[0]
            for row in conn.execute(
                f"select config_hash from {_QUALIFIED} where config_hash in "
                "(select config_hash from frame)"
            ).fetchall()
        }
        conn.execute(
            f"update {_QUALIFIED} as l set last_evaluated_at = ?, "
            "evaluations = l.evaluations + 1, sharpe_per_period = f.sharpe_per_period, "
            "n_sessions = f.n_sessions from frame as f where l.config_hash = f.config_hash",
            [now],
        )
        conn.execute(
            f"insert into {_QUALIFIED} select config_hash, ?, ?, ?, ?, 1, sharpe_per_period, "
            f"n_sessions, config from frame where config_hash not in "
            f"(select config_hash from {_QUALIFIED})",
            [source_kind, source_name, now, now],
        )
        conn.execute("commit")
    return frame.height - len(known)


def read_ledger(database: Path | str) -> pl.DataFrame:
    """Every ledger row (empty with the ledger's columns if nothing was recorded yet)."""
    with duckdb.connect(str(database)) as conn:
        _ensure(conn)
        return conn.execute(f"select * from {_QUALIFIED} order by first_evaluated_at").pl()


def ledger_view(database: Path | str) -> LedgerView:
    """The ledger's distinct configurations and their latest Sharpe ratios."""
    rows = read_ledger(database)
    sharpes = rows["sharpe_per_period"].fill_null(np.nan).to_list()
    return LedgerView(dict(zip(rows["config_hash"].to_list(), sharpes, strict=True)))
