"""Names declared once: the vocabulary every layer shares.

Regime and next-state names, the annualisation convention, and where the tables live. This
module imports nothing from the package, so settings, schemas, the domain and the Dagster edge
can all read it.
"""

from __future__ import annotations

# Market regimes, in the order of the HMM's probability columns and of every regime table.
REGIME_NAMES: tuple[str, ...] = ("bull", "bear", "choppy", "crash")
REGIME_PROB_COLUMNS: tuple[str, ...] = tuple(f"regime_prob_{name}" for name in REGIME_NAMES)

# Next-state classes of the labels and the model, by class code 0, 1, 2.
STATE_NAMES: tuple[str, ...] = ("down", "flat", "up")
STATE_PROB_COLUMNS: tuple[str, ...] = tuple(f"prob_{name}" for name in STATE_NAMES)

# Trading sessions in a year: the annualisation convention of every statistic.
SESSIONS_PER_YEAR = 252

# Where the stored tables live: one DuckDB file in the data directory, the shared tables in
# one schema, each strategy's tables in a schema named after the strategy.
WAREHOUSE_FILE = "warehouse.duckdb"  # not "market.duckdb": DuckDB confuses file and schema names
MARKET_SCHEMA = "market"
