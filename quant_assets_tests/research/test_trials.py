"""The vectorised trial evaluation (numba: alpha → positions → book) equals the strategy path
row for row, on the session pipeline's stored research tables."""

from __future__ import annotations

import numpy as np
import pytest

from quant_assets.defs.resources import WarehouseResource
from quant_assets.engine.studies import evaluate_trials, load_study_inputs
from quant_assets.research.studies import evaluate_reference, study_trials
from quant_assets.research.trials import evaluate_vectorised
from quant_assets.settings import StudySettings, load_settings

SPACES = {
    # alpha (with the model's prediction: horizon and scale variants), sizing and risk keys,
    # and the book's own settings (a second market grid for another volatility window)
    "hybrid_alpha": {
        "alpha.prediction_horizon": [1, 5],
        "alpha.disagreement_penalty": [0.0, 1.0],
        "sizing.target_volatility": [0.08],
        "risk.drawdown.max_drawdown": [0.12],
        "backtest.vol_window": [20, 40],
    },
    "mean_reversion_only": {
        "alpha.normalization": ["robust_zscore", "none"],
        "sizing.long_only": [True, False],
        "backtest.commission_bps": [1.0, 10.0],
        "backtest.fill": ["next_close"],
    },
}


@pytest.mark.parametrize("base", sorted(SPACES))
def test_every_trial_equals_the_strategy_path_bit_for_bit(pipeline, base):
    settings = load_settings(pipeline.config_dir)
    study = StudySettings.model_validate({"name": "probe", "base": base, "space": SPACES[base]})
    settings = settings.model_copy(update={"studies": {"probe": study}})
    warehouse = WarehouseResource(database=str(pipeline.home / "warehouse.duckdb"))
    inputs = load_study_inputs(settings, study, warehouse)
    trials = study_trials(study, settings.strategies[base])
    assert len(trials) == 8
    fast = evaluate_vectorised(inputs, trials, batch=3)  # batches that do not divide evenly
    slow = evaluate_reference(inputs, trials)
    assert fast.dates == slow.dates
    np.testing.assert_array_equal(fast.returns, slow.returns)
    np.testing.assert_array_equal(fast.trades, slow.trades)
    np.testing.assert_array_equal(fast.turnover, slow.turnover)
    assert (fast.trades.sum(axis=0) > 0).all()
    assert len({fast.returns[:, k].tobytes() for k in range(8)}) == 8  # every trial differs


def test_an_optimiser_allocator_is_refused_naming_the_key(pipeline):
    settings = load_settings(pipeline.config_dir)
    study = StudySettings.model_validate(
        {"name": "probe", "base": "trend_only", "space": {"sizing.allocator": ["risk_parity"]}}
    )
    warehouse = WarehouseResource(database=str(pipeline.home / "warehouse.duckdb"))
    inputs = load_study_inputs(settings, study, warehouse)
    with pytest.raises(ValueError, match=r"sizing\.allocator"):
        evaluate_vectorised(inputs, study_trials(study, settings.strategies["trend_only"]))


def test_a_study_over_allocators_runs_optimiser_trials_through_the_strategy_path(pipeline):
    # The kelly trial through the kernels, the risk-parity one through the strategy path,
    # each column in trial order and equal to the strategy path.
    settings = load_settings(pipeline.config_dir)
    study = StudySettings.model_validate(
        {
            "name": "probe",
            "base": "trend_only",
            "space": {"sizing.allocator": ["risk_parity", "kelly"]},
        }
    )
    warehouse = WarehouseResource(database=str(pipeline.home / "warehouse.duckdb"))
    inputs = load_study_inputs(settings, study, warehouse)
    trials = study_trials(study, settings.strategies["trend_only"])
    assert [t.strategy.sizing.allocator for t in trials] == ["risk_parity", "kelly"]
    routed = evaluate_trials(inputs, trials)
    slow = evaluate_reference(inputs, trials)
    assert routed.dates == slow.dates
    np.testing.assert_array_equal(routed.returns, slow.returns)
    np.testing.assert_array_equal(routed.trades, slow.trades)
    np.testing.assert_array_equal(routed.turnover, slow.turnover)
    assert not np.array_equal(routed.returns[:, 0], routed.returns[:, 1])
