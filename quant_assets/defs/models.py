"""Models: ``labels`` → ``next_state_model`` (one LightGBM per training cut-off) →
``predictions``.

Labels are the future, so they are stored at the session on which the outcome becomes known
(see :mod:`quant_assets.models.labels`); a model at cut-off ``c`` trains on label rows dated
before ``c`` only, and features never read labels. ``predictions`` for a date use the champion
as of the cut-off whose window holds it (never a model trained on later data).
"""

from collections.abc import Iterator
from datetime import date

import dagster as dg
import polars as pl

from quant_assets import schemas
from quant_assets.defs.automation import follows_inputs
from quant_assets.defs.common import (
    RunScope,
    blocking_check,
    checked_output,
    code_version,
    markdown,
    model_check,
    model_check_result,
    model_registry,
    table_asset,
    table_metadata,
)
from quant_assets.defs.partitions import (
    before_cutoff,
    by_date,
    cutoff_keys_windows,
    cutoff_partitions,
    first_model_window,
    lookback_mapping,
    periods_for_sessions,
    same_window,
    ticker_date_partitions,
)
from quant_assets.defs.regimes import regime_version
from quant_assets.defs.resources import WarehouseResource
from quant_assets.features.build import feature_columns
from quant_assets.names import REGIME_PROB_COLUMNS, STATE_NAMES, STATE_PROB_COLUMNS
from quant_assets.quality.derived import validate_predictions
from quant_assets.settings import Settings
from quant_assets.signals.rules import SIGNAL_COLUMNS

GROUP = "models"
_TRAINING_INPUTS = ("features", "signals", "labels")
_TRAINED = "next_state_model_trained"
_TRAINED_CONFIG = (
    "models.yaml split (min_train_rows, validation_sessions, test_sessions) and "
    "min_history_years, or an earlier universe.yaml start"
)


def defs(settings: Settings) -> dg.Definitions:
    """``labels``, ``next_state_model`` and ``predictions`` with the predictions check."""
    assets = [labels_asset(settings), next_state_model_asset(settings), predictions_asset(settings)]
    return dg.Definitions(assets=assets)


def model_version(settings: Settings) -> str:
    return code_version(
        settings.models, settings.features, settings.signals, regime_version(settings)
    )


def input_columns(settings: Settings) -> list[str]:
    """The model's inputs: features, signals and the regime probabilities."""
    return [*feature_columns(settings.features), *SIGNAL_COLUMNS, *REGIME_PROB_COLUMNS]


def labels_asset(settings: Settings) -> dg.AssetsDefinition:
    from quant_assets.models.labels import label_lookback_sessions

    labels_settings = settings.models.labels
    grain = settings.universe.partition_grain
    lookback = periods_for_sessions(label_lookback_sessions(labels_settings), grain)

    @dg.asset(
        **table_asset(
            partitions_def=ticker_date_partitions(settings.universe),
            group_name=GROUP,
            code_version=code_version(labels_settings),
            metadata=table_metadata(schemas.LABELS),
            automation_condition=follows_inputs(),
            ins={"bars": dg.AssetIn(partition_mapping=lookback_mapping(lookback))},
        )
    )
    def labels(context: dg.AssetExecutionContext, bars: pl.DataFrame) -> dg.Output:
        """Next-state targets (down / flat / up) for each configured horizon.

        Stored at the session the outcome becomes known (origin + horizon), so a row dated D
        depends on bars up to D only and a model trained before a cut-off sees only outcomes
        known before it. Features never read this table.
        """
        from quant_assets.models.labels import next_state_labels

        if bars.is_empty():
            return dg.Output(pl.DataFrame(schema={c.name: c.dtype for c in schemas.LABELS}))
        computed = next_state_labels(bars.select("ticker", "date", "close"), labels_settings)
        out = schemas.conform(RunScope.of(context).within(computed), schemas.LABELS)
        counts = out.group_by("label").len().sort("label")
        named = (f"{STATE_NAMES[int(k)]}={n}" for k, n in counts.iter_rows() if k is not None)
        return dg.Output(out, metadata={"rows": out.height, "label_counts": ", ".join(named)})

    return labels


def next_state_model_asset(settings: Settings) -> dg.AssetsDefinition:
    cutoffs_def = cutoff_partitions(settings.models, settings.universe)
    version = model_version(settings)
    columns = input_columns(settings)

    @dg.asset(
        **table_asset(
            partitions_def=cutoffs_def,
            group_name=GROUP,
            code_version=version,
            metadata=table_metadata(schemas.NEXT_STATE_MODEL, partition_expr="cutoff"),
            # Declared on every partition of its training inputs (Dagster has no "every
            # window before the cut-off" mapping for a multi-partitioned upstream), it reads
            # only rows before its cut-off: their daily updates must not retrain it.
            automation_condition=follows_inputs(ignore=_TRAINING_INPUTS),
            kinds=("duckdb", "lightgbm", "mlflow"),
            cutoff_model=True,
            check_specs=[model_check("next_state_model", _TRAINED, "is trained", _TRAINED_CONFIG)],
            deps=[
                dg.AssetDep(
                    "regimes", partition_mapping=before_cutoff(settings.models, settings.universe)
                ),
                *(
                    dg.AssetDep(n, partition_mapping=dg.AllPartitionMapping())
                    for n in _TRAINING_INPUTS
                ),
            ],
        )
    )
    def next_state_model(
        context: dg.AssetExecutionContext, warehouse: WarehouseResource
    ) -> Iterator[dg.Output | dg.AssetCheckResult]:
        """One global LightGBM classifier per horizon across all tickers, trained walk-forward
        at each cut-off on features, signals and regime probabilities with targets known
        strictly before it: train | purge + embargo | validation (early stopping) | purge +
        embargo | test. Logged as one MLflow run per cut-off (all horizons), registered as a
        version tagged with the cut-off; the promotion gate moves ``@champion`` only when the
        test metric beats the champion's on the same window by the configured margin."""
        from quant_assets.models.next_state import training_frame
        from quant_assets.models.walk_forward import train_cutoffs

        cutoffs = [c for c, _ in cutoff_keys_windows(context.partition_keys, cutoffs_def)]
        tables = [
            warehouse.read(t, end=cutoffs[-1]) for t in ("features", "signals", "regimes", "labels")
        ]
        features, signals, regimes, labels = tables
        horizons = settings.models.labels.horizons
        frame = training_frame(features, signals, regimes, labels, columns, horizons)
        registry = model_registry(settings, warehouse, "next_state")
        champion = _previous_champion(warehouse, cutoffs[0])
        out = train_cutoffs(
            context.log.info, registry, settings, frame, cutoffs, columns, champion, version
        )
        yield dg.Output(out, metadata=_model_metadata(out, registry, settings))
        skipped = out.filter(pl.col("gate_decision") == "skipped")
        failed = dict(zip(skipped["cutoff"].cast(pl.Utf8), skipped["gate_reason"], strict=True))
        yield model_check_result(_TRAINED, failed, len(cutoffs), _TRAINED_CONFIG)

    return next_state_model


def _previous_champion(warehouse: WarehouseResource, first_cutoff: date) -> tuple | None:
    """The champion after the gate of the cut-off before ``first_cutoff`` (stored rows)."""
    if not warehouse.table_exists("next_state_model"):
        return None
    previous = warehouse.read_sql(
        "select champion_version, champion_cutoff from {table} where cutoff < ? "
        "and champion_version is not null order by cutoff desc limit 1",
        "next_state_model",
        [first_cutoff],
    )
    if previous.is_empty():
        return None
    return previous["champion_version"][0], previous["champion_cutoff"][0]


def _model_metadata(out: pl.DataFrame, registry, settings: Settings) -> dict:
    summary = (
        out.group_by("cutoff", maintain_order=True)
        .agg(
            pl.col("version").first(),
            pl.col("gate_decision").first(),
            pl.col("test_log_loss").mean().round(4).alias("test_log_loss_mean"),
            pl.col("test_information_coefficient").mean().round(4).alias("test_ic_mean"),
            pl.col("champion_version").first(),
        )
        .with_columns(pl.col("cutoff").cast(pl.Utf8))
    )
    metadata: dict = {
        "cutoffs": summary.height,
        "promoted": int((summary["gate_decision"] == "promoted").sum()),
        "walk_forward": dg.MetadataValue.md(markdown(summary.tail(25))),
        "mlflow_tracking_uri": registry.tracking_uri,
    }
    if out.height:
        last = out.sort("cutoff").tail(1).row(0, named=True)
        metadata["gate_decision"] = str(last["gate_decision"])
        metadata["gate_reason"] = str(last["gate_reason"])
        metadata["champion_version"] = str(last["champion_version"])
        if last.get("run_id"):
            model = settings.models.mlflow.registered_model
            metadata["mlflow_run"] = dg.MetadataValue.url(registry.run_url(last["run_id"]))
            metadata["mlflow_model_version"] = dg.MetadataValue.url(
                registry.version_url(model, last["version"])
            )
    return metadata


def predictions_asset(settings: Settings) -> dg.AssetsDefinition:
    universe = settings.universe
    predicted = ticker_date_partitions(
        universe, start=first_model_window(settings.models, universe)
    )
    live_key = cutoff_partitions(settings.models, universe).get_last_partition_key()
    columns = input_columns(settings)

    @dg.asset(
        **table_asset(
            partitions_def=predicted,
            group_name=GROUP,
            code_version=model_version(settings),
            metadata=table_metadata(schemas.PREDICTIONS),
            automation_condition=follows_inputs(),
            ins={
                "features": dg.AssetIn(partition_mapping=same_window()),
                "signals": dg.AssetIn(partition_mapping=same_window()),
                "regimes": dg.AssetIn(partition_mapping=by_date()),
                "next_state_model": dg.AssetIn(partition_mapping=by_date()),
            },
            check_specs=[_predictions_check()],
        )
    )
    def predictions(
        context: dg.AssetExecutionContext,
        features: pl.DataFrame,
        signals: pl.DataFrame,
        regimes: pl.DataFrame,
        next_state_model: pl.DataFrame,
        warehouse: WarehouseResource,
    ) -> Iterator:
        """Out-of-sample next-state probabilities per (ticker, session, horizon).

        Each date uses the champion as of the cut-off whose window holds it (the walk-forward
        record of the gate: never a model trained on later data); dates in the newest window
        — the daily update — use the version behind ``@champion`` in MLflow."""
        scope = RunScope.of(context)
        inputs = (features, signals, regimes)
        out, used = _predict(
            settings, warehouse, next_state_model, inputs, scope, live_key, columns
        )
        report = validate_predictions(out, list(STATE_NAMES), list(STATE_PROB_COLUMNS))
        models_used = "; ".join(f"{k}: {v}" for k, v in used.items()) or "-"
        metadata = {"rows": out.height, "models_used": models_used}
        yield from checked_output("predictions_valid", report, out, metadata, scope=scope)

    return predictions


def _predict(settings, warehouse, model_rows, inputs, scope, live_key, columns):
    """Walk the cut-off windows: each date's rows (features, signals and regimes joined)
    predicted by the champion as of its window (the live window by the MLflow
    ``@champion``); the conformed frame and the models used."""
    from quant_assets.models.next_state import model_input_rows, predict_walk_forward

    rows = model_input_rows(*inputs, columns)

    registry = model_registry(settings, warehouse, "next_state")
    model_name = settings.models.mlflow.registered_model
    predicted_rows, used = predict_walk_forward(
        model_rows,
        rows,
        scope.rect.end,
        columns,
        lambda version: registry.load_python_model(model_name, version).boosters,
        date.fromisoformat(live_key) if live_key else None,
        lambda: registry.champion(model_name),
    )
    if predicted_rows is None:
        return pl.DataFrame(schema={c.name: c.dtype for c in schemas.PREDICTIONS}), used
    return schemas.conform(predicted_rows, schemas.PREDICTIONS), used


def _predictions_check() -> dg.AssetCheckSpec:
    return blocking_check(
        "predictions",
        "predictions_valid",
        "Great Expectations: one row per (ticker, date, horizon), states in {down, flat, up}, "
        "probabilities in [0, 1] summing to 1, a model version on every row and its cut-off "
        "on or before the date (walk-forward).",
    )
