"""Features per (ticker, date): pure functions on polars frames."""

from quant_assets.features.build import build_features, feature_columns

__all__ = ["build_features", "feature_columns"]
