"""The model half of the graph: labels, regime_model → regimes, next_state_model → predictions.

Models are partitioned by training cut-off: partition ``c`` of ``regime_model`` or
``next_state_model`` is fitted on data strictly before ``c`` and serves the dates of its window
``[c, next cut-off)``. The partition mappings say exactly that: a model reads the windows
before its cut-off, and ``regimes``/``predictions`` for a date read the model whose window
holds it (never one trained on later data).

Labels are the future, so they are stored at the session on which the outcome becomes known
(see :mod:`quant_assets.models.labels`); a model at cut-off ``c`` trains on label rows dated
before ``c`` only, and features never read labels.
"""

from collections.abc import Iterator
from datetime import date

import dagster as dg
import polars as pl

from quant_assets import schemas
from quant_assets.defs.common import STORED, check_metadata, code_version, column_schema, markdown
from quant_assets.defs.partitions import (
    DATE_DIMENSION,
    PARTITION_EXPR,
    TICKER_DIMENSION,
    cutoff_partitions,
    date_partitions,
    days_for_sessions,
    lookback_mapping,
    periods_for_sessions,
    rectangle_from_keys,
    ticker_date_partitions,
)
from quant_assets.defs.resources import WarehouseResource
from quant_assets.features.build import feature_columns
from quant_assets.quality.derived import validate_predictions, validate_regimes
from quant_assets.settings import FREQUENCY_MONTHS, CutoffSettings, Settings
from quant_assets.signals.rules import SIGNAL_COLUMNS

REGIME_LABELS = schemas.REGIME_LABEL_NAMES
PROB_COLUMNS = schemas.REGIME_PROB_COLUMNS
STATES = schemas.STATE_NAMES


def _windows_before(cutoffs: CutoffSettings, settings: Settings) -> int:
    """Cut-off windows from the universe start to the last cut-off: the offset that maps a
    model to *every* earlier data window (an expanding training window)."""
    universe = settings.universe
    last = universe.end or date.today()
    months = (last.year - universe.start.year + 1) * 12
    return months // FREQUENCY_MONTHS[cutoffs.cutoff_frequency] + 1


def _before_cutoff(cutoffs: CutoffSettings, settings: Settings) -> dg.TimeWindowPartitionMapping:
    """A cut-off partition reads every date window strictly before its cut-off."""
    return dg.TimeWindowPartitionMapping(
        start_offset=-_windows_before(cutoffs, settings),
        end_offset=-1,
        allow_nonexistent_upstream_partitions=True,
    )


def _same_window() -> dg.MultiPartitionMapping:
    """Per-ticker input over the same dates (the upstream's date windows start earlier)."""
    return dg.MultiPartitionMapping(
        {
            DATE_DIMENSION: dg.DimensionPartitionMapping(
                DATE_DIMENSION, dg.TimeWindowPartitionMapping()
            ),
            TICKER_DIMENSION: dg.DimensionPartitionMapping(
                TICKER_DIMENSION, dg.IdentityPartitionMapping()
            ),
        }
    )


def _cutoff_windows(keys: list[str], partitions_def: dg.TimeWindowPartitionsDefinition) -> list:
    """(cut-off, end of its window) per partition key, in order."""
    windows = [partitions_def.time_window_for_partition_key(k) for k in sorted(keys)]
    return [(w.start.date(), w.end.date()) for w in windows]


def build_model_assets(settings: Settings) -> list:
    """labels, regime_model, regimes, next_state_model, predictions and their checks."""
    # Definition time stays cheap: hmmlearn, LightGBM and MLflow load inside the assets.
    from quant_assets.models.labels import label_lookback_sessions

    universe = settings.universe
    grain = universe.partition_grain
    per_ticker = ticker_date_partitions(universe)
    by_date = date_partitions(universe)
    regime_cutoffs = cutoff_partitions(settings.regimes, universe)
    model_cutoffs = cutoff_partitions(settings.models, universe)
    first_model_cutoff = settings.models.resolved_first_cutoff(universe.start)
    predicted = ticker_date_partitions(universe, start=first_model_cutoff)
    labels_settings = settings.models.labels
    feature_names = list(feature_columns(settings.features))
    input_columns = [*feature_names, *SIGNAL_COLUMNS, *PROB_COLUMNS]
    single_run = dg.BackfillPolicy.single_run()
    stored = {**STORED, "backfill_policy": single_run}
    regime_version = code_version(settings.regimes, universe.benchmark)
    model_version = code_version(
        settings.models, settings.features, settings.signals, regime_version
    )
    prob_state_columns = [f"prob_{s}" for s in STATES]

    @dg.asset(
        partitions_def=per_ticker,
        **stored,
        group_name="models",
        code_version=code_version(labels_settings),
        ins={
            "bars": dg.AssetIn(
                partition_mapping=lookback_mapping(
                    periods_for_sessions(label_lookback_sessions(labels_settings), grain)
                )
            )
        },
        metadata={
            "partition_expr": PARTITION_EXPR,
            "dagster/column_schema": column_schema(schemas.LABELS),
        },
    )
    def labels(context: dg.AssetExecutionContext, bars: pl.DataFrame) -> dg.Output:
        """Next-state targets (down / flat / up) for each configured horizon.

        Stored at the session the outcome becomes known (origin + horizon), so a row dated D
        depends on bars up to D only and a model trained before a cut-off sees only outcomes
        known before it. Features never read this table.
        """
        from quant_assets.models.labels import next_state_labels

        rect = rectangle_from_keys(context.partition_keys, per_ticker)
        if bars.is_empty():
            return dg.Output(pl.DataFrame(schema={c.name: c.dtype for c in schemas.LABELS}))
        computed = next_state_labels(bars.select("ticker", "date", "close"), labels_settings)
        out = schemas.conform(
            computed.filter((pl.col("date") >= rect.start) & (pl.col("date") < rect.end)),
            schemas.LABELS,
        )
        counts = out.group_by("label").len().sort("label")
        return dg.Output(
            out,
            metadata={
                "rows": out.height,
                "label_counts": ", ".join(
                    f"{STATES[int(k)]}={n}" for k, n in counts.iter_rows() if k is not None
                ),
            },
        )

    @dg.asset(
        partitions_def=regime_cutoffs,
        **{**stored, "kinds": {"duckdb", "hmmlearn", "mlflow"}},
        group_name="models",
        code_version=regime_version,
        deps=[
            dg.AssetDep(
                "benchmark_bars", partition_mapping=_before_cutoff(settings.regimes, settings)
            )
        ],
        metadata={
            "partition_expr": "cutoff",
            "dagster/column_schema": column_schema(schemas.REGIME_MODEL),
        },
    )
    def regime_model(
        context: dg.AssetExecutionContext, warehouse: WarehouseResource
    ) -> Iterator[dg.Output]:
        """A 4-state Gaussian HMM on the benchmark's daily log return and realised volatility,
        fitted on sessions strictly before each cut-off (several seeded EM restarts, best
        likelihood kept). States are named bull / bear / choppy / crash by their mean and
        volatility, so refits keep their meanings. Too little history or no convergence →
        the rule-based fallback, with the reason. Each fit is an MLflow run and version."""
        from quant_assets.models.walk_forward import log_regime_fit
        from quant_assets.regimes import fit_regime_model, regime_inputs

        windows = _cutoff_windows(context.partition_keys, regime_cutoffs)
        closes = warehouse.read(
            "benchmark_bars", end=windows[-1][0], columns=["date", "close"]
        ).filter(pl.col("close").is_not_null())
        inputs = regime_inputs(closes, settings.regimes.realized_vol_window)
        registry = _registry(settings, warehouse, "regime_hmm")
        rows = []
        for cutoff, _ in windows:
            fit = fit_regime_model(inputs, cutoff, settings.regimes)
            record = log_regime_fit(registry, settings, fit, regime_version)
            rows.append(
                {
                    "cutoff": cutoff,
                    "status": fit.status,
                    "reason": fit.reason,
                    "n_obs": fit.n_obs,
                    "train_start": fit.train_start,
                    "train_end": fit.train_end,
                    "log_likelihood": fit.log_likelihood,
                    "fit_json": fit.to_json(),
                    "mlflow_version": record.version if record else None,
                    "mlflow_run_id": record.run_id if record else None,
                    "_url": record.version_url if record else None,
                }
            )
        frame = pl.from_dicts(
            rows, schema={**{c.name: c.dtype for c in schemas.REGIME_MODEL}, "_url": pl.Utf8}
        )
        summary = frame.select(
            pl.col("cutoff").cast(pl.Utf8),
            "status",
            "n_obs",
            pl.col("log_likelihood").round(1),
            pl.col("mlflow_version"),
            pl.col("reason").fill_null(""),
        )
        last = rows[-1]
        metadata = {
            "cutoffs": len(rows),
            "fallbacks": int((frame["status"] == "fallback").sum()),
            "fits": dg.MetadataValue.md(markdown(summary.tail(25))),
            "mlflow_tracking_uri": registry.tracking_uri,
        }
        if last["_url"]:
            metadata["mlflow_model_version"] = dg.MetadataValue.url(last["_url"])
        if last["reason"]:
            metadata["fallback_reason"] = last["reason"]
        yield dg.Output(schemas.conform(frame, schemas.REGIME_MODEL), metadata=metadata)

    regime_lookback_sessions = max(
        settings.regimes.filter_burn_in_sessions + settings.regimes.realized_vol_window + 1,
        0,
    )

    @dg.asset(
        partitions_def=by_date,
        **stored,
        group_name="models",
        code_version=regime_version,
        ins={
            "regime_model": dg.AssetIn(
                partition_mapping=dg.TimeWindowPartitionMapping(
                    allow_nonexistent_upstream_partitions=True
                )
            )
        },
        deps=["benchmark_bars"],
        metadata={
            "partition_expr": "date",
            "dagster/column_schema": column_schema(schemas.REGIMES),
        },
        check_specs=[
            dg.AssetCheckSpec(
                "regimes_valid",
                asset="regimes",
                blocking=True,
                description=(
                    "Great Expectations: one row per date, regime and rule labels in {bull, "
                    "bear, choppy, crash}, probabilities in [0, 1] summing to 1."
                ),
            )
        ],
    )
    def regimes(
        context: dg.AssetExecutionContext,
        regime_model: pl.DataFrame,
        warehouse: WarehouseResource,
    ) -> Iterator:
        """Market regime per session: forward-**filtered** HMM probabilities (the recursion up
        to and including that day, from a fixed burn-in before the model's cut-off — never
        smoothed) from the model whose cut-off precedes the date, plus the rule-based label
        (moving averages, realised volatility, VIX where available). Dates no fitted HMM
        covers (before the first cut-off, or a fallback fit) use the rule label, one-hot."""
        from quant_assets.regimes import (
            RegimeFit,
            bundled_vix,
            combine_regimes,
            hmm_regimes,
            regime_inputs,
            rule_lookback_sessions,
            rule_regimes,
        )

        rect = rectangle_from_keys(context.partition_keys, by_date)
        rules_cfg = settings.regimes.rules
        model_rows = (
            regime_model.filter(pl.col("cutoff") < rect.end).sort("cutoff")
            if not regime_model.is_empty()
            else regime_model
        )
        read_from = rect.start - days_for_sessions(rule_lookback_sessions(rules_cfg))
        if not model_rows.is_empty():
            earliest_cutoff = model_rows["cutoff"].min()
            assert isinstance(earliest_cutoff, date)
            read_from = min(
                read_from, earliest_cutoff - days_for_sessions(regime_lookback_sessions)
            )
        closes = warehouse.read(
            "benchmark_bars", start=read_from, end=rect.end, columns=["date", "close"]
        ).filter(pl.col("close").is_not_null())
        vix = bundled_vix() if rules_cfg.vix_source == "bundled" else None
        rules = rule_regimes(closes, rules_cfg, vix)
        inputs = regime_inputs(closes, settings.regimes.realized_vol_window)
        hmm_parts, reasons = [], []
        cutoffs = model_rows["cutoff"].to_list() if not model_rows.is_empty() else []
        for index, row in enumerate(model_rows.iter_rows(named=True)):
            window_end = cutoffs[index + 1] if index + 1 < len(cutoffs) else rect.end
            start, end = max(rect.start, row["cutoff"]), min(rect.end, window_end)
            if start >= end:
                continue
            if row["status"] != "fitted":
                reasons.append(f"{row['cutoff']}: {row['reason']}")
                continue
            fit = RegimeFit.from_json(row["fit_json"])
            part = hmm_regimes(fit, inputs, start, end, settings.regimes.filter_burn_in_sessions)
            hmm_parts.append(part.with_columns(pl.lit(row["cutoff"]).alias("model_cutoff")))
        hmm = pl.concat(hmm_parts) if hmm_parts else None
        combined = combine_regimes(
            hmm.drop("model_cutoff") if hmm is not None else None, rules, rect.start, rect.end
        )
        if hmm is not None:
            combined = combined.join(hmm.select("date", "model_cutoff"), on="date", how="left")
        else:
            combined = combined.with_columns(pl.lit(None, dtype=pl.Date).alias("model_cutoff"))
        out = schemas.conform(combined.sort("date"), schemas.REGIMES)
        report = validate_regimes(out, list(REGIME_LABELS), list(PROB_COLUMNS))
        rules_rows = int((out["regime_source"] == "rules").sum())
        if not cutoffs or cutoffs[0] > rect.start:
            reasons.insert(0, "dates before the first HMM cut-off use the rule-based label")
        counts = out.group_by("regime_label").len().sort("regime_label")
        yield dg.AssetCheckResult(
            check_name="regimes_valid",
            passed=report.success,
            metadata=check_metadata(report, rect.windows, ()),
        )
        if not report.success:
            raise dg.Failure(description=report.summary())
        yield dg.Output(
            out,
            metadata={
                "rows": out.height,
                "rules_fallback_rows": rules_rows,
                "fallback_reasons": "; ".join(reasons) or "-",
                "label_counts": ", ".join(f"{k}={n}" for k, n in counts.iter_rows()),
            },
        )

    @dg.asset(
        partitions_def=model_cutoffs,
        **{**stored, "kinds": {"duckdb", "lightgbm", "mlflow"}},
        group_name="models",
        code_version=model_version,
        deps=[
            dg.AssetDep("regimes", partition_mapping=_before_cutoff(settings.models, settings)),
            # Dagster has no built-in "every earlier window" mapping for a multi-partitioned
            # upstream: declared on all partitions, the rows before the cut-off are read.
            *(
                dg.AssetDep(name, partition_mapping=dg.AllPartitionMapping())
                for name in ("features", "signals", "labels")
            ),
        ],
        metadata={
            "partition_expr": "cutoff",
            "dagster/column_schema": column_schema(schemas.NEXT_STATE_MODEL),
        },
    )
    def next_state_model(
        context: dg.AssetExecutionContext, warehouse: WarehouseResource
    ) -> Iterator[dg.Output]:
        """One global LightGBM classifier per horizon across all tickers, trained walk-forward
        at each cut-off on features, signals and regime probabilities with targets known
        strictly before it: train | purge + embargo | validation (early stopping) | purge +
        embargo | test. Logged as one MLflow run per cut-off (all horizons), registered as a
        version tagged with the cut-off; the promotion gate moves ``@champion`` only when the
        test metric beats the champion's on the same window by the configured margin."""
        from quant_assets.models.walk_forward import train_cutoff

        windows = _cutoff_windows(context.partition_keys, model_cutoffs)
        frame = _training_frame(warehouse, windows[-1][0], input_columns, settings)
        registry = _registry(settings, warehouse, "next_state")
        champion = _previous_champion(warehouse, windows[0][0])
        rows: list[dict] = []
        for cutoff, _ in windows:
            trained, champion = train_cutoff(
                context.log.info,
                registry,
                settings,
                frame,
                cutoff,
                input_columns,
                champion,
                model_version,
            )
            rows.extend(trained)
        out = pl.from_dicts(rows, schema={c.name: c.dtype for c in schemas.NEXT_STATE_MODEL})
        yield dg.Output(out, metadata=_model_metadata(out, registry, settings))

    @dg.asset(
        partitions_def=predicted,
        **stored,
        group_name="models",
        code_version=model_version,
        ins={
            "features": dg.AssetIn(partition_mapping=_same_window()),
            "signals": dg.AssetIn(partition_mapping=_same_window()),
            "regimes": dg.AssetIn(
                partition_mapping=dg.MultiToSingleDimensionPartitionMapping(
                    partition_dimension_name=DATE_DIMENSION
                )
            ),
            "next_state_model": dg.AssetIn(
                partition_mapping=dg.MultiToSingleDimensionPartitionMapping(
                    partition_dimension_name=DATE_DIMENSION
                )
            ),
        },
        metadata={
            "partition_expr": PARTITION_EXPR,
            "dagster/column_schema": column_schema(schemas.PREDICTIONS),
        },
        check_specs=[
            dg.AssetCheckSpec(
                "predictions_valid",
                asset="predictions",
                blocking=True,
                description=(
                    "Great Expectations: one row per (ticker, date, horizon), states in {down, "
                    "flat, up}, probabilities in [0, 1] summing to 1, a model version on every "
                    "row and its cut-off on or before the date (walk-forward)."
                ),
            )
        ],
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
        from quant_assets.models.next_state import predict_next_state

        rect = rectangle_from_keys(context.partition_keys, predicted)
        registry = _registry(settings, warehouse, "next_state")
        rows = _model_inputs(features, signals, regimes, input_columns)
        live_cutoff = model_cutoffs.get_last_partition_key()
        parts, used = [], {}
        by_cutoff = (
            next_state_model.group_by("cutoff", maintain_order=True)
            .agg(pl.col("champion_version").first(), pl.col("champion_cutoff").first())
            .sort("cutoff")
        )
        cutoffs = by_cutoff["cutoff"].to_list()
        for index, row in enumerate(by_cutoff.iter_rows(named=True)):
            window_end = cutoffs[index + 1] if index + 1 < len(cutoffs) else rect.end
            version, model_cutoff = row["champion_version"], row["champion_cutoff"]
            if live_cutoff is not None and row["cutoff"].isoformat() == live_cutoff:
                live = registry.champion(settings.models.mlflow.registered_model)
                if live is not None:
                    version, model_cutoff = live
            window_rows = rows.filter(
                (pl.col("date") >= row["cutoff"]) & (pl.col("date") < window_end)
            )
            if version is None or window_rows.is_empty():
                continue
            model = registry.load_python_model(settings.models.mlflow.registered_model, version)
            predicted_rows = predict_next_state(model.boosters, window_rows, input_columns)
            parts.append(
                predicted_rows.with_columns(
                    pl.lit(version).alias("model_version"),
                    pl.lit(model_cutoff).alias("model_cutoff"),
                )
            )
            used[row["cutoff"].isoformat()] = f"v{version} (cut-off {model_cutoff})"
        schema = {c.name: c.dtype for c in schemas.PREDICTIONS}
        out = schemas.conform(pl.concat(parts), schemas.PREDICTIONS) if parts else None
        if out is None:
            out = pl.DataFrame(schema=schema)
        report = validate_predictions(out, list(STATES), prob_state_columns)
        yield dg.AssetCheckResult(
            check_name="predictions_valid",
            passed=report.success,
            metadata=check_metadata(report, rect.windows, rect.tickers),
        )
        if not report.success:
            raise dg.Failure(description=report.summary())
        yield dg.Output(
            out,
            metadata={
                "rows": out.height,
                "models_used": "; ".join(f"{k}: {v}" for k, v in used.items()) or "-",
            },
        )

    return [labels, regime_model, regimes, next_state_model, predictions]


def _registry(settings: Settings, warehouse: WarehouseResource, model: str):
    """The MLflow registry beside the warehouse; one experiment per model kind."""
    from pathlib import Path

    from quant_assets.models.registry import ModelRegistry

    mlflow_cfg = settings.models.mlflow
    return ModelRegistry(
        mlflow_cfg, Path(warehouse.database).parent, experiment=f"{mlflow_cfg.experiment}/{model}"
    )


def _training_frame(
    warehouse: WarehouseResource, until: date, input_columns: list[str], settings: Settings
) -> pl.DataFrame:
    """Features, signals, regimes and labels strictly before ``until``, joined per row."""
    from quant_assets.models.next_state import training_frame

    def read(table: str) -> pl.DataFrame:
        return warehouse.read(table, end=until)

    return training_frame(
        read("features"),
        read("signals"),
        read("regimes"),
        read("labels"),
        input_columns,
        settings.models.labels.horizons,
    )


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
    last = out.sort("cutoff").tail(1).row(0, named=True) if out.height else None
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
    if last is not None:
        metadata["gate_decision"] = str(last["gate_decision"])
        metadata["gate_reason"] = str(last["gate_reason"])
        metadata["champion_version"] = str(last["champion_version"])
        if last.get("run_id"):
            metadata["mlflow_run"] = dg.MetadataValue.url(registry.run_url(last["run_id"]))
            metadata["mlflow_model_version"] = dg.MetadataValue.url(
                registry.version_url(settings.models.mlflow.registered_model, last["version"])
            )
    return metadata


def _model_inputs(
    features: pl.DataFrame, signals: pl.DataFrame, regimes: pl.DataFrame, input_columns: list[str]
) -> pl.DataFrame:
    """ticker, date and the model's input columns for the rows to predict."""
    if features.is_empty():
        return pl.DataFrame(schema={"ticker": pl.Utf8, "date": pl.Date})
    joined = features.join(
        signals.drop("warmed_up", strict=False), on=["ticker", "date"], how="left"
    ).join(regimes, on="date", how="left")
    return joined.select("ticker", "date", *input_columns)
