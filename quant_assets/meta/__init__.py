"""The meta-brain: one alpha score per (date, ticker) from signals, predictions and regimes.

Pure domain code (no Dagster, no MLflow). See :func:`quant_assets.meta.alpha.combine_signals`.
"""

from quant_assets.meta.alpha import ALPHA_SCORE_COLUMNS, combine_signals

__all__ = ["ALPHA_SCORE_COLUMNS", "combine_signals"]
