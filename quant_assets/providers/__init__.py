"""Bar providers: adapters behind one small interface (:class:`BarProvider`).

Adapters: ``bundled``, ``synthetic``, ``files`` (offline) and ``yahoo`` (network). The
fallback chain that tries them in order, per ticker, is
:func:`quant_assets.providers.chain.route_bars`.
"""

from quant_assets.providers.base import BAR_COLUMNS, BAR_SCHEMA, BarProvider, conform_bars

__all__ = ["BAR_COLUMNS", "BAR_SCHEMA", "BarProvider", "conform_bars"]
