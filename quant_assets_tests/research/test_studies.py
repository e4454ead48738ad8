"""Studies: the trials a space defines, the walk-forward folds, the choice per fold on its train
window only, the stitched out-of-sample curve, the statistics and the gate."""

from __future__ import annotations

from datetime import date, timedelta

import numpy as np
import pytest

from quant_assets.backtest.metrics import performance_metrics
from quant_assets.backtest.statistics import expected_max_sharpe
from quant_assets.research.ledger import LedgerView
from quant_assets.research.studies import (
    TrialReturns,
    column_metrics,
    gate_decision,
    select_walk_forward,
    strategy_hash,
    study_statistics,
    study_trials,
    walk_forward_folds,
)
from quant_assets.settings import StudySettings, load_settings

SHIPPED = load_settings("configs")
BASE = SHIPPED.strategies["trend_only"]


def _study(**overrides) -> StudySettings:
    raw = {
        "name": "probe",
        "base": "trend_only",
        "space": {"sizing.kelly_fraction": [0.2, 0.3], "sizing.max_weight": [0.05, 0.1, 0.15]},
        "walk_forward": {"train_sessions": 100, "test_sessions": 50},
        **overrides,
    }
    return StudySettings.model_validate(raw)


def test_a_grid_is_every_combination_each_a_whole_validated_strategy():
    trials = study_trials(_study(), BASE)
    assert len(trials) == 6
    assert [t.number for t in trials] == list(range(6))
    assert trials[1].params == {"sizing.kelly_fraction": 0.2, "sizing.max_weight": 0.1}
    assert trials[1].strategy.sizing.max_weight == 0.1
    assert trials[1].strategy.alpha == BASE.alpha  # what the space does not set is the base's
    assert len({t.config_hash for t in trials}) == 6


def test_the_base_values_hash_like_the_base_strategy_and_duplicates_are_one_trial():
    study = _study(space={"sizing.kelly_fraction": [BASE.sizing.kelly_fraction, 0.25, 0.250]})
    trials = study_trials(study, BASE)
    assert trials[0].config_hash == strategy_hash(BASE)
    assert len(trials) == 2  # 0.25 and 0.250 are the same configuration


def test_ranges_and_sampling_are_deterministic_for_a_seed():
    ranged = _study(space={"sizing.target_volatility": {"low": 0.05, "high": 0.15, "step": 0.05}})
    assert [t.params["sizing.target_volatility"] for t in study_trials(ranged, BASE)] == [
        0.05,
        0.1,
        0.15,
    ]
    sampled = _study(
        space={
            "sizing.target_volatility": {"low": 0.05, "high": 0.2},
            "sizing.volatility_window": {"low": 20, "high": 120, "integer": True},
            "sizing.long_only": [True, False],
        },
        search={"method": "sample", "trials": 12, "seed": 3},
    )
    first, again = study_trials(sampled, BASE), study_trials(sampled, BASE)
    assert [t.params for t in first] == [t.params for t in again]
    assert len(first) == 12
    assert all(0.05 <= t.params["sizing.target_volatility"] <= 0.2 for t in first)
    assert all(isinstance(t.params["sizing.volatility_window"], int) for t in first)


def test_a_trial_the_strategy_settings_refuse_names_the_study_values_and_key():
    study = _study(space={"sizing.max_weight": [0.1, 1.5]})
    with pytest.raises(ValueError, match=r"probe.*1\.5.*sizing\.max_weight"):
        study_trials(study, BASE)


def test_a_grid_above_the_cap_asks_for_sampling():
    study = _study(search={"max_grid": 5})
    with pytest.raises(ValueError, match="max_grid"):
        study_trials(study, BASE)


def test_anchored_folds_grow_and_rolling_folds_slide():
    dates = [date(2020, 1, 1) + timedelta(days=i) for i in range(330)]
    anchored = walk_forward_folds(dates, _study())
    assert [(f.train_start, f.train_end, f.test_end) for f in anchored] == [
        (0, 100, 150),
        (0, 150, 200),
        (0, 200, 250),
        (0, 250, 300),
        (0, 300, 330),
    ]
    rolling = walk_forward_folds(
        dates,
        _study(walk_forward={"scheme": "rolling", "train_sessions": 100, "test_sessions": 50}),
    )
    assert [(f.train_start, f.train_end) for f in rolling][:3] == [(0, 100), (50, 150), (100, 200)]
    with pytest.raises(ValueError, match="train_sessions"):
        walk_forward_folds(dates[:105], _study())  # 5 sessions: under a fifth of a test


def test_column_metrics_follow_the_report_conventions():
    rng = np.random.default_rng(5)
    returns = rng.normal(0.0004, 0.01, size=(500, 3))
    metrics = column_metrics(returns)
    for k in range(3):
        reference = performance_metrics(returns[:, k])
        for name, key in (
            ("sharpe", "sharpe"),
            ("sortino", "sortino"),
            ("cagr", "annualized_return"),
            ("calmar", "calmar"),
            ("max_drawdown", "max_drawdown"),
        ):
            assert metrics[name][k] == pytest.approx(reference[key], rel=1e-12), name


def _results(returns: np.ndarray, trades: np.ndarray | None = None) -> TrialReturns:
    n = returns.shape[0]
    dates = [date(2020, 1, 1) + timedelta(days=i) for i in range(n)]
    trades = np.ones_like(returns, dtype=np.int64) if trades is None else trades
    return TrialReturns(dates, returns, trades, np.zeros_like(returns))


def test_each_fold_chooses_the_best_trial_on_its_train_window_only():
    rng = np.random.default_rng(11)
    returns = rng.normal(0.0, 0.01, size=(300, 3))
    returns[:150, 1] += 0.004  # trial 1 is best while the first folds train ...
    returns[150:, 2] += 0.004  # ... trial 2 afterwards
    study = _study()
    walk = select_walk_forward(_results(returns), walk_forward_folds(range(300), study), study)
    assert walk.chosen.tolist()[0] == 1
    assert walk.chosen.tolist()[-1] == 2
    # The stitched curve is each fold's choice over its test window, back to back.
    for fold, pick in zip(walk.folds.iter_rows(named=True), walk.chosen, strict=True):
        rows = walk.curve.filter(walk.curve["fold"] == fold["fold"])
        assert (rows["trial"] == pick).all()
    assert walk.curve.height == 200
    np.testing.assert_array_equal(
        walk.stitched_returns,
        np.concatenate(
            [
                returns[f.test_start : f.test_end, c]
                for f, c in zip(walk_forward_folds(range(300), study), walk.chosen, strict=True)
            ]
        ),
    )


def test_nothing_after_a_folds_train_end_changes_its_choice_or_the_curve_before_it():
    rng = np.random.default_rng(12)
    returns = rng.normal(0.0002, 0.01, size=(300, 6))
    study = _study()
    folds = walk_forward_folds(range(300), study)
    before = select_walk_forward(_results(returns), folds, study)
    perturbed = returns.copy()
    perturbed[200:] = rng.normal(0.01, 0.05, size=(100, 6))  # the future changes entirely
    after = select_walk_forward(_results(perturbed), folds, study)
    decided = [f.number for f in folds if f.train_end <= 200]
    assert after.chosen[decided].tolist() == before.chosen[decided].tolist()
    upto = before.curve.filter(before.curve["date"] < date(2020, 1, 1) + timedelta(days=200))
    assert after.curve.head(upto.height).equals(upto)


def test_constraints_exclude_trials_on_the_train_window_and_an_empty_fold_holds_cash():
    rng = np.random.default_rng(13)
    returns = rng.normal(0.0, 0.01, size=(300, 2))
    returns[:, 0] += 0.003  # the best trial never trades enough
    trades = np.zeros((300, 2), dtype=np.int64)
    trades[:, 1] = 1
    study = _study(constraints={"min_trades": 10})
    walk = select_walk_forward(
        _results(returns, trades), walk_forward_folds(range(300), study), study
    )
    assert set(walk.chosen.tolist()) == {1}
    nobody = _study(constraints={"min_trades": 10_000})
    empty = select_walk_forward(
        _results(returns, trades), walk_forward_folds(range(300), nobody), nobody
    )
    assert (empty.chosen == -1).all() and (empty.stitched_returns == 0).all()
    assert empty.folds["note"][0].endswith("cash")


def test_statistics_count_the_ledger_and_the_gate_says_why():
    rng = np.random.default_rng(14)
    returns = rng.normal(0.0, 0.01, size=(600, 8))
    study = _study(walk_forward={"train_sessions": 200, "test_sessions": 100}, pbo_partitions=8)
    trials = study_trials(
        _study(space={"sizing.kelly_fraction": [0.1, 0.15, 0.2, 0.25, 0.3, 0.35, 0.4, 0.45]}),
        BASE,
    )
    results = _results(returns)
    walk = select_walk_forward(results, walk_forward_folds(range(600), study), study)
    bench = rng.normal(0.0003, 0.01, size=walk.stitched_returns.size)
    empty = LedgerView({})
    alone = study_statistics(study, trials, results, walk, bench, empty, reps=200)
    assert alone.n_trials == 8
    hashes = [f"{i:016x}" for i in range(92)]
    known = LedgerView(dict(zip(hashes, rng.normal(0, 0.02, 92), strict=True)))
    counted = study_statistics(study, trials, results, walk, bench, known, reps=200)
    assert counted.n_trials == 100
    # SR0 grows with N at the ledger's Sharpe variance; the effective N clusters the study.
    assert counted.expected_max_sharpe_annualized == pytest.approx(
        expected_max_sharpe(100, counted.trial_sharpe_variance) * np.sqrt(252)
    )
    assert counted.n_effective <= 100
    assert counted.deflated_sharpe <= counted.deflated_sharpe_effective
    assert counted.pbo_logits.size == 70  # C(8, 4)
    assert 0.0 <= counted.pbo <= 1.0
    decision = gate_decision(study, counted)
    assert not decision.promoted  # noise does not pass
    assert any(r.startswith("fail: deflated Sharpe") and "N = 100" in r for r in decision.reasons)
    assert any("volatility-matched" in r for r in decision.reasons)
