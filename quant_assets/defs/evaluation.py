"""The signal tear sheets as one Dagster multi-asset over the research assets: the forward
returns (stored at the session they are realised), the per-date ICs, and the summary, decay and
quantile tables, in the warehouse schema ``research``."""

from collections.abc import Iterator
from pathlib import Path

import dagster as dg

from quant_assets.defs.automation import follows_inputs
from quant_assets.defs.common import WAREHOUSE_IO_MANAGER, code_version, domain_call, table_metadata
from quant_assets.defs.resources import WarehouseResource
from quant_assets.research.ledger import LEDGER_SCHEMA
from quant_assets.settings import Settings

OUTPUTS = {
    "forward_returns": "forward return of each (origin session, ticker) over each horizon, "
    "stored at the session it is realised (as-of)",
    "signal_evaluation": "per signal and horizon, over all dates (regime_label 'all') and per "
    "regime: mean IC and rank IC, std, t-stat, IR, hit rate, top−bottom spread, rank "
    "autocorrelation and turnover",
    "signal_ic": "per signal, origin date and horizon: IC, rank IC, names, top−bottom spread",
    "signal_decay": "per signal and horizon 1..N: mean IC and rank IC (the decay curve)",
    "signal_quantiles": "per signal, horizon and quantile: mean forward and excess return",
}


def defs(settings: Settings) -> dg.Definitions:
    return dg.Definitions(assets=[signal_evaluation_asset(settings)])


def signal_evaluation_asset(settings: Settings) -> dg.AssetsDefinition:
    alpha = [dg.AssetKey([name, "alpha_scores"]) for name in settings.strategies]
    reads = [dg.AssetKey(k) for k in ("signals", "predictions", "regimes", "bars")] + alpha
    version = code_version(settings.research.signal_evaluation, sorted(settings.strategies))
    automation = follows_inputs(ignore=[dg.AssetKey("bars")])
    outs = {
        name: dg.AssetOut(
            key=dg.AssetKey(name),
            io_manager_key=WAREHOUSE_IO_MANAGER,
            metadata=table_metadata(None, partition_expr=None, schema=LEDGER_SCHEMA),
            code_version=version,
            automation_condition=automation,
            kinds={"duckdb", "plotly", "mlflow"} if name == "signal_evaluation" else {"duckdb"},
            description=description,
            group_name="research",
        )
        for name, description in OUTPUTS.items()
    }

    @dg.multi_asset(name="signal_evaluation_tables", outs=outs, deps=reads)
    def signal_tables(context: dg.AssetExecutionContext, warehouse: WarehouseResource) -> Iterator:
        """Does each signal predict returns? Every rule signal, the model's edge (p_up − p_down)
        per horizon and every strategy's alpha score against forward returns: per-date IC and
        rank IC, their mean, t-stat, IR and hit rate, IC decay, quantile returns and the
        top−bottom spread, rank autocorrelation and turnover, each also by regime; what was
        left out is counted. An HTML tear sheet and an MLflow run."""
        from quant_assets.engine.signal_evaluation import _summary_table, build_signal_evaluation

        home = Path(warehouse.database).parent
        outcome = domain_call(
            "signal_evaluation", lambda: build_signal_evaluation(settings, warehouse, home)
        )
        evaluation = outcome.evaluation
        frames = {
            "forward_returns": outcome.forward_returns,
            "signal_evaluation": _summary_table(evaluation),
            "signal_ic": evaluation.ic,
            "signal_decay": evaluation.decay,
            "signal_quantiles": evaluation.quantile_returns,
        }
        for name, frame in frames.items():
            metadata = {"rows": frame.height}
            if name == "signal_evaluation":
                metadata = {**metadata, **outcome.metadata}
            yield dg.Output(frame, output_name=name, metadata=metadata)

    return signal_tables
