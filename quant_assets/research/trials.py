"""Every trial of a study through the numba kernels — alpha → positions → book — equal to the
strategy path (:func:`quant_assets.research.studies.evaluate_reference`) row for row.

The inputs are prepared once for all trials: the dense signal, prediction and regime arrays of
:mod:`quant_assets.meta.alpha_kernel` (one prediction variant per distinct horizon and scale),
the returns, decision dates and regime codes of :mod:`quant_assets.risk.sizing_kernel`, and the
market grids of :mod:`quant_assets.backtest.trial_book` (one per distinct volatility and ADV
window). Trials that share an alpha configuration share one alpha grid; the sizing engine runs
the trials of a batch across cores; the books reuse per-thread work buffers. Only what a study
keeps leaves the loop: each trial's daily return, trades and turnover. Memory is bounded by the
batch size (``batch`` trials of target weights at a time).

A strategy sized by an optimiser (``sizing.allocator`` other than ``kelly``) has no numba
engine: such a trial is refused here with the key named;
:func:`quant_assets.engine.studies.evaluate_trials` sends it through the strategy path.
"""

from __future__ import annotations

import json
from collections.abc import Sequence

import numpy as np
import polars as pl

from quant_assets.research.studies import StudyInputs, Trial, TrialReturns
from quant_assets.settings import PREDICTION_COMPONENT

DEFAULT_BATCH = 64


def _alpha_key(trial: Trial) -> str:
    return json.dumps(trial.strategy.alpha.model_dump(mode="json"), sort_keys=True)


def evaluate_vectorised(
    inputs: StudyInputs, trials: Sequence[Trial], *, batch: int = DEFAULT_BATCH
) -> TrialReturns:
    """The daily book returns, trades and turnover of every trial (sessions × trials).

    Raises ValueError naming the key for a trial the kernels cannot run (an optimiser
    allocator), and what the strategy path refuses (missing regimes, bad bars).
    """
    from quant_assets.backtest.trial_book import (
        book_parameters,
        simulate_trials,
        trial_market,
    )
    from quant_assets.meta.alpha_kernel import alpha_inputs, alpha_scores
    from quant_assets.risk.sizing_kernel import (
        SizedTrials,
        size_trials,
        sizing_inputs,
        trial_parameters,
    )

    if not trials:
        raise ValueError("no trials to evaluate")
    tickers = list(inputs.tickers)
    signals = inputs.signals
    dates = signals.select(pl.col("date").unique().sort())["date"]
    variants = sorted(
        {
            (t.strategy.alpha.prediction_horizon, t.strategy.alpha.prediction_scale)
            for t in trials
            if PREDICTION_COMPONENT in t.strategy.alpha.components
        }
    )
    prepared = alpha_inputs(
        signals, inputs.predictions, inputs.regimes, tickers, dates, prediction_variants=variants
    )
    # One alpha grid per distinct alpha configuration.
    alpha_of: dict[str, int] = {}
    for trial in trials:
        alpha_of.setdefault(_alpha_key(trial), len(alpha_of))
    first_of = {key: next(t for t in trials if _alpha_key(t) == key) for key in alpha_of}
    grids = np.empty((len(alpha_of), dates.len(), len(tickers)))
    confidence = np.empty((dates.len(), len(tickers)))
    for key, index in alpha_of.items():
        alpha_scores(prepared, first_of[key].strategy.alpha, grids[index], confidence)

    closes = inputs.bars.select("date", "ticker", "close").drop_nulls()
    frame_dates = pl.DataFrame(  # the decision dates; the alphas come from the alpha kernel
        {"date": dates, "ticker": tickers[0], "alpha_score": np.nan}
    )
    sizing = sizing_inputs(frame_dates, closes, inputs.regimes, start=inputs.start, tickers=tickers)
    decision = sizing.dates  # the alpha dates on or after the start
    offset = dates.len() - len(decision)  # alpha rows before the start are not sized
    parameters = np.vstack([trial_parameters(t.strategy) for t in trials])
    alpha_index = np.array([alpha_of[_alpha_key(t)] for t in trials], dtype=np.int64)

    markets = {}
    for trial in trials:
        backtest = trial.strategy.backtest
        window = (backtest.vol_window, backtest.adv_window)
        if window not in markets:
            markets[window] = trial_market(
                inputs.book_bars,
                tickers,
                start=inputs.start,
                vol_window=backtest.vol_window,
                adv_window=backtest.adv_window,
            )
    sessions = next(iter(markets.values())).sessions
    row_of = {d: i for i, d in enumerate(sessions.to_list())}
    rows = np.array([row_of.get(d, -1) for d in decision], dtype=np.int64)
    if (rows < 0).any():
        missing = decision[int(np.flatnonzero(rows < 0)[0])]
        raise ValueError(f"bars: no session {missing} for a decision date of the alpha scores")

    n_sessions, n_trials = len(sessions), len(trials)
    returns = np.empty((n_sessions, n_trials))
    trades = np.zeros((n_sessions, n_trials), dtype=np.int64)
    turnover = np.empty((n_sessions, n_trials))
    size = max(1, min(batch, n_trials))
    sized_buffers = SizedTrials.allocate(size, len(decision), len(tickers))
    targets = np.full((size, n_sessions, len(tickers)), np.nan)
    equity = np.empty((size, n_sessions))
    day_return = np.empty((size, n_sessions))
    day_turnover = np.empty((size, n_sessions))
    day_trades = np.zeros((size, n_sessions), dtype=np.int64)
    count = np.zeros(size, dtype=np.int64)
    for begin in range(0, n_trials, size):
        chunk = list(range(begin, min(begin + size, n_trials)))
        k = len(chunk)
        sized = size_trials(
            sizing.returns,
            sizing.decision_index,
            sizing.regime_code,
            grids[:, offset:, :],
            parameters[chunk],
            alpha_index=alpha_index[chunk],
            out=sized_buffers,
        )
        targets[:k, rows, :] = sized.target_weight[:k]
        for window, market in markets.items():
            members = [
                j
                for j, t in enumerate(chunk)
                if (trials[t].strategy.backtest.vol_window, trials[t].strategy.backtest.adv_window)
                == window
            ]
            if not members:
                continue
            book = np.vstack([book_parameters(trials[chunk[j]].strategy.backtest) for j in members])
            of_trial = np.array(members, dtype=np.int64)
            simulate_trials(
                targets[:k],
                of_trial,
                market.open_price,
                market.close_price,
                market.daily_vol,
                market.adv_shares,
                book,
                equity[: len(members)],
                day_return[: len(members)],
                day_turnover[: len(members)],
                count[: len(members)],
                trades_per_date=day_trades[: len(members)],
            )
            for m, j in enumerate(members):
                returns[:, chunk[j]] = day_return[m]
                turnover[:, chunk[j]] = day_turnover[m]
                trades[:, chunk[j]] = day_trades[m]
    return TrialReturns(sessions.to_list(), returns, trades, turnover)
