"""Market regimes of the benchmark: a Gaussian HMM with filtered probabilities, and rules.

Pure domain code (no Dagster, no MLflow). :mod:`quant_assets.regimes.hmm` fits a four-state
Gaussian hidden Markov model on the benchmark's daily log return and realised volatility, once
per cut-off, and turns it into *filtered* state probabilities (each date sees only data up to
itself). :mod:`quant_assets.regimes.rules` labels every session with transparent moving-average,
volatility, drawdown and VIX rules: the fallback wherever the HMM has no fit. ``combine_regimes``
merges both into the stored ``regimes`` rows; :mod:`quant_assets.regimes.stitch` picks, per date,
the HMM of the cut-off window that holds it (``stitch_regimes``).
"""

from quant_assets.regimes.hmm import (
    PROB_COLUMNS,
    REGIME_LABELS,
    RegimeFit,
    filtered_probabilities,
    fit_regime_model,
    hmm_regimes,
    label_states,
    regime_input_lookback_sessions,
    regime_inputs,
    smoothed_probabilities,
)
from quant_assets.regimes.rules import (
    bundled_vix,
    combine_regimes,
    rule_lookback_sessions,
    rule_regimes,
)
from quant_assets.regimes.stitch import StitchedRegimes, regime_read_start, stitch_regimes

__all__ = [
    "PROB_COLUMNS",
    "REGIME_LABELS",
    "RegimeFit",
    "StitchedRegimes",
    "bundled_vix",
    "combine_regimes",
    "filtered_probabilities",
    "fit_regime_model",
    "hmm_regimes",
    "label_states",
    "regime_input_lookback_sessions",
    "regime_inputs",
    "regime_read_start",
    "rule_lookback_sessions",
    "rule_regimes",
    "smoothed_probabilities",
    "stitch_regimes",
]
