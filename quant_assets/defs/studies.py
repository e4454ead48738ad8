"""Each study of ``configs/studies/`` as one Dagster multi-asset: its trials, folds, stitched
out-of-sample curve and gate decision, four tables in the schema named after the study, with
lineage from the research assets it reads."""

from collections.abc import Iterator
from pathlib import Path

import dagster as dg

from quant_assets import schemas
from quant_assets.defs.automation import follows_inputs
from quant_assets.defs.common import (
    WAREHOUSE_IO_MANAGER,
    code_version,
    domain_call,
    table_metadata,
)
from quant_assets.defs.resources import WarehouseResource
from quant_assets.settings import PREDICTION_COMPONENT, Settings, StudySettings

STUDY_TABLES = {
    "trials": schemas.STUDY_TRIALS,
    "returns": schemas.STUDY_RETURNS,
    "folds": schemas.STUDY_FOLDS,
    "curve": schemas.STUDY_CURVE,
    "decision": schemas.STUDY_DECISION,
}


def defs(settings: Settings) -> dg.Definitions:
    return dg.Definitions(assets=[study_asset(settings, s) for s in settings.studies.values()])


def study_reads(settings: Settings, study: StudySettings) -> list[dg.AssetKey]:
    """The research assets a study reads (its lineage)."""
    base = settings.strategies[study.base]
    reads = ["signals", "regimes", "bars", "benchmark_bars"]
    weights_model = PREDICTION_COMPONENT in base.alpha.components or any(
        key.endswith(f".{PREDICTION_COMPONENT}") for key in study.space
    )
    if weights_model:
        reads.append("predictions")
    return [dg.AssetKey(name) for name in reads]


def study_asset(settings: Settings, study: StudySettings) -> dg.AssetsDefinition:
    name = study.name
    base = settings.strategies[study.base]
    reads = study_reads(settings, study)
    version = code_version(study, base.model_dump(mode="json"))
    # A study follows the research tables, except the bars: they reach it through the signals.
    automation = follows_inputs(ignore=[dg.AssetKey("bars"), dg.AssetKey("benchmark_bars")])
    outs = {
        table: dg.AssetOut(
            key=dg.AssetKey([name, table]),
            io_manager_key=WAREHOUSE_IO_MANAGER,
            metadata=table_metadata(columns, partition_expr=None, schema=name),
            code_version=version,
            automation_condition=automation,
            kinds={"duckdb", "numba", "mlflow"} if table == "decision" else {"duckdb", "polars"},
            description=f"Study {name} ({study.base}): {table}. {study.description}".strip(),
        )
        for table, columns in STUDY_TABLES.items()
    }

    @dg.multi_asset(name=f"study_{name}", outs=outs, deps=reads, group_name=f"study_{name}")
    def study_tables(context: dg.AssetExecutionContext, warehouse: WarehouseResource) -> Iterator:
        """Every trial of the study (alpha → positions → book), the walk-forward choice per
        fold on its train window, the stitched out-of-sample curve, the DSR with the ledger's
        N, the PBO, the SPA p-values and the gate decision; an HTML report and MLflow runs."""
        from quant_assets.engine.studies import build_study
        from quant_assets.research.studies import trial_returns_frame

        home = Path(warehouse.database).parent
        outcome = domain_call(name, lambda: build_study(settings, study, warehouse, home))
        result = outcome.result
        context.log.info(
            f"study {name}: {outcome.metadata['decision']} — {outcome.metadata['reasons']}"
        )
        frames = {
            "trials": result.trials,
            "returns": trial_returns_frame(result.results),
            "folds": result.folds,
            "curve": result.curve,
            "decision": outcome.decision_row,
        }
        for table, frame in frames.items():
            conformed = schemas.conform(frame, STUDY_TABLES[table])
            metadata = {"rows": conformed.height}
            if table == "decision":
                metadata = {**metadata, **outcome.metadata}
            yield dg.Output(conformed, output_name=table, metadata=metadata)

    return study_tables
