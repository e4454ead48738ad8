"""Compare every table of two data directories, row for row and bit for bit.

Used to prove a refactor kept the stored tables identical: run ``make demo`` on the commit
before and after (two fresh clones), then

    python benchmarks/compare_warehouses.py /tmp/before/data /tmp/after/data

Columns that record *when* or *which run* (ingestion time, MLflow run ids, report paths) differ
between any two runs and are left out; everything else is compared exactly (floats by their
bits, NaN equal to NaN). Prints one line per table: identical, or how many rows differ and in
which columns.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

import duckdb
import polars as pl

# Differ between two runs of the same code: wall-clock time, run identifiers, file paths.
VOLATILE = {"ingested_at", "mlflow_run_id", "run_id", "report_path", "client_order_id"}


def tables(path: Path) -> dict[str, list[str]]:
    with duckdb.connect(str(path), read_only=True) as conn:
        rows = conn.execute(
            "select table_schema, table_name, column_name from information_schema.columns "
            "where table_schema not in ('main', 'information_schema', 'pg_catalog') "
            "order by table_schema, table_name, ordinal_position"
        ).fetchall()
    out: dict[str, list[str]] = {}
    for schema, table, column in rows:
        out.setdefault(f"{schema}.{table}", []).append(column)
    return out


def read(path: Path, table: str, columns: list[str]) -> pl.DataFrame:
    keys = [c for c in ("ticker", "cutoff", "date", "horizon", "strategy") if c in columns]
    order = f" order by {', '.join(keys)}" if keys else ""
    with duckdb.connect(str(path), read_only=True) as conn:
        return conn.execute(f"select {', '.join(columns)} from {table}{order}").pl()


def compare(before: Path, after: Path) -> int:
    """Print the comparison; the number of tables that differ."""
    left, right = tables(before / "warehouse.duckdb"), tables(after / "warehouse.duckdb")
    differing = 0
    for table in sorted(set(left) | set(right)):
        if table not in left or table not in right:
            print(f"{table:40s} only in {'after' if table in right else 'before'}")
            differing += 1
            continue
        if left[table] != right[table]:
            print(f"{table:40s} columns differ: {left[table]} vs {right[table]}")
            differing += 1
            continue
        columns = [c for c in left[table] if c not in VOLATILE]
        a, b = (
            read(before / "warehouse.duckdb", table, columns),
            read(after / "warehouse.duckdb", table, columns),
        )
        if a.height != b.height:
            print(f"{table:40s} rows differ: {a.height} vs {b.height}")
            differing += 1
            continue
        changed = [
            c for c in columns if not a[c].equals(b[c], check_names=False, check_dtypes=True)
        ]
        if changed:
            rows = a.with_row_index().join(b.with_row_index(), on="index", suffix="_b")
            mask = pl.any_horizontal(pl.col(c).ne_missing(pl.col(f"{c}_b")) for c in changed)
            print(f"{table:40s} {rows.filter(mask).height} of {a.height} rows differ in {changed}")
            differing += 1
        else:
            print(f"{table:40s} identical ({a.height} rows, {len(columns)} columns)")
    return differing


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("before", type=Path, help="data directory (before)")
    parser.add_argument("after", type=Path, help="data directory (after)")
    args = parser.parse_args()
    sys.exit(1 if compare(args.before, args.after) else 0)


if __name__ == "__main__":
    main()
