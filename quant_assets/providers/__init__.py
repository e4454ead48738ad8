"""Bar providers: adapters behind one small interface (:class:`BarProvider`)."""

from quant_assets.providers.base import BAR_COLUMNS, BAR_SCHEMA, BarProvider, conform_bars

__all__ = ["BAR_COLUMNS", "BAR_SCHEMA", "BarProvider", "conform_bars"]
