"""quant_assets: a quant research platform built as a Dagster asset graph.

The package is a hexagon: pure domain code (``providers``, ``features``, ``signals``,
``quality``) in the centre and the Dagster edge in ``quant_assets.defs``.
"""

__version__ = "0.1.0"
