"""What every asset shares: its decorator arguments, its run's rectangle, its checks.

Each asset body does four things: read its window, call one domain function, validate, return.
The steps every asset repeats live here, once:

- :func:`table_asset` — the decorator arguments of a stored table (range runs, the warehouse
  IO manager, the column schema the UI shows, the stage facts the run plan reads);
- :class:`RunScope` — the partition rectangle of the run (dates × tickers), filtering frames to
  it and to the run's own tickers;
- :func:`checked_output` — the blocking check's result, a failed check failing the step before
  anything is written, then the output.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Callable, Iterator, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, TypeVar

import dagster as dg
import polars as pl

from quant_assets import __version__, schemas
from quant_assets.defs.partitions import PARTITION_EXPR, PartitionRectangle, rectangle_from_keys
from quant_assets.defs.resources import WarehouseResource
from quant_assets.quality.gx import ValidationReport
from quant_assets.settings import Settings

WAREHOUSE_IO_MANAGER = "warehouse_io_manager"
# Tags the graph carries so the run plan, the automation and the sensors read facts from the
# assets instead of lists of names (see quant_assets/engine/plan.py).
CUTOFF_MODEL_TAG = "quant_assets/cutoff_model"  # trained per cut-off: never retrained daily
# Each window continues from the stored state of the window before (a book, a filter):
# a change of one window reaches every later one (engine/convergence.py reads it).
PATH_DEPENDENT_TAG = "quant_assets/path_dependent"
LOOKBACK_METADATA = "lookback_windows"  # date windows a run reads before its first
TABLE_SCHEMA_METADATA = "schema"  # the DuckDB schema of the table (default: market)
_T = TypeVar("_T")


def code_version(*parts: object) -> str:
    """Code version = package version + hash of the config that shapes the asset's output."""
    payload = json.dumps([__version__, *parts], sort_keys=True, default=str)
    return f"{__version__}-{hashlib.sha256(payload.encode()).hexdigest()[:10]}"


def column_schema(columns: tuple[schemas.Column, ...]) -> dg.TableSchema:
    return dg.TableSchema(
        columns=[dg.TableColumn(c.name, str(c.dtype), description=c.description) for c in columns]
    )


def table_metadata(
    columns: tuple[schemas.Column, ...] | None,
    partition_expr: Any = PARTITION_EXPR,
    schema: str | None = None,
    lookback_windows: int | None = None,
) -> dict:
    """Metadata of a stored table: how the IO manager slices it, its DuckDB schema, its columns
    and (``lookback_windows``) how many date windows before a run's first it reads."""
    metadata: dict = {}
    if lookback_windows is not None:
        metadata[LOOKBACK_METADATA] = lookback_windows
    if partition_expr is not None:
        metadata["partition_expr"] = partition_expr
    if schema is not None:
        metadata[TABLE_SCHEMA_METADATA] = schema
    if columns is not None:
        metadata["dagster/column_schema"] = column_schema(columns)
    return metadata


def table_asset(
    *,
    partitions_def: dg.PartitionsDefinition | None,
    group_name: str,
    code_version: str,
    metadata: dict,
    automation_condition: dg.AutomationCondition | None,
    kinds: Sequence[str] = ("duckdb", "polars"),
    cutoff_model: bool = False,
    path_dependent: bool = False,
    **decorator: Any,
) -> dict:
    """The ``@dg.asset`` arguments every stored table shares: range runs (single-run
    backfills), the warehouse IO manager, kinds, its automation condition (None for the roots
    the schedules and sensors drive) and the facts the run plan reads."""
    return {
        "partitions_def": partitions_def,
        "backfill_policy": dg.BackfillPolicy.single_run() if partitions_def else None,
        "io_manager_key": WAREHOUSE_IO_MANAGER,
        "kinds": set(kinds),
        "group_name": group_name,
        "code_version": code_version,
        "metadata": metadata,
        "automation_condition": automation_condition,
        "tags": asset_tags(cutoff_model=cutoff_model, path_dependent=path_dependent),
        **decorator,
    }


def asset_tags(*, cutoff_model: bool = False, path_dependent: bool = False) -> dict | None:
    """The tags the run plan and the convergence closure read (None when neither applies)."""
    tags = {}
    if cutoff_model:
        tags[CUTOFF_MODEL_TAG] = "true"
    if path_dependent:
        tags[PATH_DEPENDENT_TAG] = "true"
    return tags or None


def model_check(asset: str, name: str, what: str, config: str) -> dg.AssetCheckSpec:
    """A warning check that every cut-off of a run produced a model (``what``), naming the
    config keys that decide it: a skipped cut-off leaves what reads it without a model, and
    that must not be silent (the UI, ``quant-assets status`` and the alerts show it)."""
    return dg.AssetCheckSpec(
        name, asset=asset, blocking=False, description=f"Every cut-off {what} (see {config})."
    )


def model_check_result(
    name: str, failed: Mapping[str, str], cutoffs: int, config: str
) -> dg.AssetCheckResult:
    """The result of :func:`model_check`: ``failed`` maps a cut-off to why it has no model."""
    reasons = "; ".join(f"{cutoff}: {why}" for cutoff, why in sorted(failed.items()))
    return dg.AssetCheckResult(
        check_name=name,
        passed=not failed,
        severity=dg.AssetCheckSeverity.WARN,
        metadata={
            "cutoffs": cutoffs,
            "without_model": len(failed),
            "reasons": reasons[:2000] or "-",
            "config": config,
        },
    )


def blocking_check(asset: str | dg.AssetKey, name: str, description: str) -> dg.AssetCheckSpec:
    """A check that must pass before the asset is written (and anything downstream runs)."""
    return dg.AssetCheckSpec(name, asset=asset, blocking=True, description=description)


@dataclass(frozen=True)
class RunScope:
    """The rectangle of one run: its date windows × tickers (no tickers: date-only)."""

    rect: PartitionRectangle

    @classmethod
    def of(cls, context: dg.AssetExecutionContext) -> RunScope:
        partitions_def = context.assets_def.partitions_def
        assert partitions_def is not None, "RunScope is for partitioned assets"
        return cls(rectangle_from_keys(context.partition_keys, partitions_def))

    def within(self, frame: pl.DataFrame, column: str = "date") -> pl.DataFrame:
        """``frame``'s rows dated inside the run's windows."""
        return frame.filter((pl.col(column) >= self.rect.start) & (pl.col(column) < self.rect.end))

    def own_tickers(self, frame: pl.DataFrame) -> pl.DataFrame:
        """``frame``'s rows of the run's own tickers: a run decided across every ticker writes
        only the partitions it was asked for."""
        return frame.filter(pl.col("ticker").is_in(list(self.rect.tickers)))

    def check_metadata(self, report: ValidationReport, tickers: bool = True) -> dict:
        return check_metadata(report, self.rect.windows, self.rect.tickers if tickers else ())


def check_metadata(report: ValidationReport, windows: tuple, tickers: tuple) -> dict:
    covered = f"{windows[0]}..{windows[-1]}" if windows else "-"
    return {
        **report.as_metadata(),
        "partitions_covered": f"{covered} × {len(tickers) or 1} ticker(s)",
        "tickers": ", ".join(tickers) or "-",
    }


def checked_output(
    check_name: str,
    report: ValidationReport,
    value: object,
    metadata: dict,
    *,
    scope: RunScope | None = None,
    asset_key: dg.AssetKey | None = None,
    output_name: str = "result",
    tickers_in_metadata: bool = True,
) -> Iterator:
    """The check's result, then (only when it passed) the output: a failed blocking check
    fails the step with the failed rules and nothing is written."""
    yield dg.AssetCheckResult(
        check_name=check_name,
        asset_key=asset_key,
        passed=report.success,
        metadata=scope.check_metadata(report, tickers_in_metadata) if scope else {},
    )
    if not report.success:
        raise dg.Failure(description=report.summary())
    yield dg.Output(value, output_name=output_name, metadata=metadata)


def domain_call(what: dg.AssetKey | str, call: Callable[[], _T]) -> _T:
    """``call()``; a ``ValueError`` (bad input the domain refused) fails the step naming the
    asset, with the domain's message (which names the ticker, date or rule)."""
    try:
        return call()
    except ValueError as exc:
        name = what.to_user_string() if isinstance(what, dg.AssetKey) else what
        raise dg.Failure(description=f"{name}: {exc}") from exc


def model_registry(settings: Settings, warehouse: WarehouseResource, kind: str):
    """The MLflow registry beside the warehouse; one experiment per model kind."""
    from quant_assets.models.registry import ModelRegistry

    mlflow_cfg = settings.models.mlflow
    home = Path(warehouse.database).parent
    return ModelRegistry(mlflow_cfg, home, experiment=f"{mlflow_cfg.experiment}/{kind}")


def as_float(value: Any, default: float = 0.0) -> float:
    """A polars aggregate (``Series.mean()``, ``.max()``...) as a float; ``default`` for None."""
    return default if value is None else float(value)


def markdown(frame: pl.DataFrame) -> str:
    header = "| " + " | ".join(frame.columns) + " |"
    rule = "|" + "---|" * frame.width
    rows = ["| " + " | ".join(str(v) for v in row) + " |" for row in frame.iter_rows()]
    return "\n".join([header, rule, *rows])
