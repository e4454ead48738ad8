"""Small helpers every asset module shares: code versions, column schemas, check metadata."""

import hashlib
import json

import dagster as dg
import polars as pl

from quant_assets import __version__, schemas
from quant_assets.quality.gx import ValidationReport

STORED = {"io_manager_key": "warehouse_io_manager", "kinds": {"duckdb", "polars"}}


def code_version(*parts: object) -> str:
    """Code version = package version + hash of the config that shapes the asset's output."""
    payload = json.dumps([__version__, *parts], sort_keys=True, default=str)
    return f"{__version__}-{hashlib.sha256(payload.encode()).hexdigest()[:10]}"


def column_schema(columns: tuple[schemas.Column, ...]) -> dg.TableSchema:
    return dg.TableSchema(
        columns=[dg.TableColumn(c.name, str(c.dtype), description=c.description) for c in columns]
    )


def check_metadata(report: ValidationReport, windows: tuple, tickers: tuple) -> dict:
    covered = f"{windows[0]}..{windows[-1]}" if windows else "-"
    return {
        **report.as_metadata(),
        "partitions_covered": f"{covered} × {len(tickers) or 1} ticker(s)",
        "tickers": ", ".join(tickers) or "-",
    }


def markdown(frame: pl.DataFrame) -> str:
    header = "| " + " | ".join(frame.columns) + " |"
    rule = "|" + "---|" * frame.width
    rows = ["| " + " | ".join(str(v) for v in row) + " |" for row in frame.iter_rows()]
    return "\n".join([header, rule, *rows])
