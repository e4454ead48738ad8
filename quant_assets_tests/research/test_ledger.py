"""The trial ledger counts every distinct configuration once, whoever evaluated it, and keeps
the latest Sharpe of each."""

from __future__ import annotations

import numpy as np
import pytest

from quant_assets.research.ledger import LedgerEntry, ledger_view, read_ledger, record_trials


def _entry(config_hash: str, sharpe: float) -> LedgerEntry:
    return LedgerEntry(config_hash, sharpe, 250, '{"sizing": {}}')


def test_new_configurations_are_added_and_known_ones_updated_not_recounted(tmp_path):
    database = tmp_path / "warehouse.duckdb"
    assert ledger_view(database).n_trials == 0
    assert (
        record_trials(database, "study", "s1", [_entry("a" * 16, 0.01), _entry("b" * 16, 0.02)])
        == 2
    )
    assert (
        record_trials(
            database, "strategy", "trend_only", [_entry("b" * 16, 0.03), _entry("c" * 16, np.nan)]
        )
        == 1
    )
    rows = read_ledger(database).sort("config_hash")
    assert rows["config_hash"].to_list() == ["a" * 16, "b" * 16, "c" * 16]
    assert rows["evaluations"].to_list() == [1, 2, 1]
    assert rows["source_name"].to_list() == ["s1", "s1", "trend_only"]  # the first evaluator
    assert rows["sharpe_per_period"][1] == 0.03  # the latest evaluation
    view = ledger_view(database)
    assert view.n_trials == 3
    assert sorted(np.nan_to_num(view.sharpes).tolist()) == [0.0, 0.01, 0.03]


def test_only_studies_and_strategies_record_trials(tmp_path):
    with pytest.raises(ValueError, match="source_kind"):
        record_trials(tmp_path / "w.duckdb", "notebook", "x", [_entry("d" * 16, 0.0)])
