"""Regimes: ``regime_model`` (one HMM per training cut-off) → ``regimes`` (date windows).

Partition ``c`` of ``regime_model`` is fitted on benchmark sessions strictly before ``c`` and
serves the dates of its window ``[c, next cut-off)``; ``regimes`` for a date reads the model
whose window holds it (never one trained on later data).
"""

from collections.abc import Iterator

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
    cutoff_keys_windows,
    cutoff_partitions,
    date_partitions,
    periods_for_sessions,
)
from quant_assets.defs.resources import WarehouseResource
from quant_assets.names import REGIME_NAMES, REGIME_PROB_COLUMNS
from quant_assets.quality.derived import validate_regimes
from quant_assets.settings import Settings

GROUP = "regimes"


def defs(settings: Settings) -> dg.Definitions:
    """``regime_model`` and ``regimes`` with the regimes check."""
    return dg.Definitions(assets=[regime_model_asset(settings), regimes_asset(settings)])


def regime_version(settings: Settings) -> str:
    return code_version(settings.regimes, settings.universe.benchmark)


_FITTED = "regime_model_fitted"
_FITTED_CONFIG = (
    "regimes.yaml min_train_sessions and min_history_years, or an earlier universe.yaml start "
    "(until then the rule-based regime labels are used)"
)


def regime_model_asset(settings: Settings) -> dg.AssetsDefinition:
    cutoffs_def = cutoff_partitions(settings.regimes, settings.universe)
    version = regime_version(settings)

    @dg.asset(
        **table_asset(
            partitions_def=cutoffs_def,
            group_name=GROUP,
            code_version=version,
            metadata=table_metadata(schemas.REGIME_MODEL, partition_expr="cutoff"),
            automation_condition=follows_inputs(),
            kinds=("duckdb", "hmmlearn", "mlflow"),
            cutoff_model=True,
            check_specs=[model_check("regime_model", _FITTED, "has a fitted HMM", _FITTED_CONFIG)],
            deps=[
                dg.AssetDep(
                    "benchmark_bars",
                    partition_mapping=before_cutoff(settings.regimes, settings.universe),
                )
            ],
        )
    )
    def regime_model(
        context: dg.AssetExecutionContext, warehouse: WarehouseResource
    ) -> Iterator[dg.Output | dg.AssetCheckResult]:
        """A 4-state Gaussian HMM on the benchmark's daily log return and realised volatility,
        fitted on sessions strictly before each cut-off (several seeded EM restarts, best
        likelihood kept). States are named bull / bear / choppy / crash by their mean and
        volatility, so refits keep their meanings. Too little history or no convergence →
        the rule-based fallback, with the reason. Each fit is an MLflow run and version."""
        from quant_assets.models.walk_forward import fit_regime_cutoffs
        from quant_assets.regimes import regime_inputs

        windows = cutoff_keys_windows(context.partition_keys, cutoffs_def)
        closes = warehouse.read("benchmark_bars", end=windows[-1][0], columns=["date", "close"])
        inputs = regime_inputs(
            closes.filter(pl.col("close").is_not_null()), settings.regimes.realized_vol_window
        )
        registry = model_registry(settings, warehouse, "regime_hmm")
        frame = fit_regime_cutoffs(registry, settings, inputs, [c for c, _ in windows], version)
        yield dg.Output(
            schemas.conform(frame, schemas.REGIME_MODEL),
            metadata=_fit_metadata(frame, registry.tracking_uri),
        )
        fallbacks = frame.filter(pl.col("status") == "fallback")
        failed = dict(
            zip(fallbacks["cutoff"].cast(pl.Utf8), fallbacks["reason"].fill_null(""), strict=True)
        )
        yield model_check_result(_FITTED, failed, len(windows), _FITTED_CONFIG)

    return regime_model


def _fit_metadata(frame: pl.DataFrame, tracking_uri: str) -> dict:
    summary = frame.select(
        pl.col("cutoff").cast(pl.Utf8),
        "status",
        "n_obs",
        pl.col("log_likelihood").round(1),
        pl.col("mlflow_version"),
        pl.col("reason").fill_null(""),
    )
    last = frame.row(frame.height - 1, named=True)
    metadata = {
        "cutoffs": frame.height,
        "fallbacks": int((frame["status"] == "fallback").sum()),
        "fits": dg.MetadataValue.md(markdown(summary.tail(25))),
        "mlflow_tracking_uri": tracking_uri,
    }
    if last["_url"]:
        metadata["mlflow_model_version"] = dg.MetadataValue.url(last["_url"])
    if last["reason"]:
        metadata["fallback_reason"] = last["reason"]
    return metadata


_REGIMES_CHECK = (
    "Great Expectations: one row per date, regime and rule labels in {bull, bear, choppy, "
    "crash}, probabilities in [0, 1] summing to 1."
)


def regimes_asset(settings: Settings) -> dg.AssetsDefinition:
    from quant_assets.regimes import rule_lookback_sessions

    lookback = periods_for_sessions(
        rule_lookback_sessions(settings.regimes.rules), settings.universe.partition_grain
    )
    same_or_earlier = dg.TimeWindowPartitionMapping(allow_nonexistent_upstream_partitions=True)

    @dg.asset(
        **table_asset(
            partitions_def=date_partitions(settings.universe),
            group_name=GROUP,
            code_version=regime_version(settings),
            metadata=table_metadata(
                schemas.REGIMES, partition_expr="date", lookback_windows=lookback
            ),
            automation_condition=follows_inputs(),
            path_dependent=True,  # the filter recursion runs from the model's burn-in on
            ins={"regime_model": dg.AssetIn(partition_mapping=same_or_earlier)},
            deps=["benchmark_bars"],
            check_specs=[blocking_check("regimes", "regimes_valid", _REGIMES_CHECK)],
        )
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
        from quant_assets.regimes import bundled_vix, regime_read_start, stitch_regimes

        rect = RunScope.of(context).rect
        read_from = regime_read_start(regime_model, rect.start, rect.end, settings.regimes)
        closes = warehouse.read(
            "benchmark_bars", start=read_from, end=rect.end, columns=["date", "close"]
        ).filter(pl.col("close").is_not_null())
        vix = bundled_vix() if settings.regimes.rules.vix_source == "bundled" else None
        stitched = stitch_regimes(regime_model, closes, rect.start, rect.end, settings.regimes, vix)
        out = schemas.conform(stitched.frame.sort("date"), schemas.REGIMES)
        report = validate_regimes(out, list(REGIME_NAMES), list(REGIME_PROB_COLUMNS))
        counts = out.group_by("regime_label").len().sort("regime_label")
        metadata = {
            "rows": out.height,
            "rules_fallback_rows": int((out["regime_source"] == "rules").sum()),
            "fallback_reasons": "; ".join(stitched.reasons) or "-",
            "label_counts": ", ".join(f"{k}={n}" for k, n in counts.iter_rows()),
        }
        yield from checked_output(
            "regimes_valid", report, out, metadata, scope=RunScope.of(context)
        )

    return regimes
