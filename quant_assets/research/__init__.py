"""Research tools on the stored tables: does a signal predict returns (IC, quantile returns,
turnover), and the tear sheets that show it. Pure domain code: no Dagster, no MLflow."""
