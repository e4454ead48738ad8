"""Rule-based alpha signals in [-1, 1]: pure functions on feature frames."""

from quant_assets.signals.rules import SIGNAL_COLUMNS, build_signals

__all__ = ["SIGNAL_COLUMNS", "build_signals"]
