"""The code location ``dagster dev`` loads (pyproject ``[tool.dagster]``, ``workspace.yaml``).

Config directory: ``$QUANT_ASSETS_CONFIG`` (default ``configs/``); data directory:
``$QUANT_ASSETS_HOME`` (default ``./data``).
"""

from quant_assets.defs.factory import build_definitions

defs = build_definitions()
