"""Research: ``features`` → ``signals`` per (date window, ticker).

Every value at date D uses bars at or before D only: features read the run's bars plus the
previous windows the longest feature needs (the ``bars`` input's partition mapping).
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
    table_asset,
    table_metadata,
)
from quant_assets.defs.partitions import by_date, lookback_mapping, ticker_date_partitions
from quant_assets.defs.resources import WarehouseResource
from quant_assets.features.build import build_features, feature_columns, lookback_periods
from quant_assets.providers.base import available_columns
from quant_assets.quality.derived import validate_features, validate_signals
from quant_assets.quality.gx import ValidationReport
from quant_assets.settings import Settings
from quant_assets.signals.rules import SIGNAL_COLUMNS, build_signals

GROUP = "research"


def defs(settings: Settings) -> dg.Definitions:
    """``features`` and ``signals`` with their checks."""
    return dg.Definitions(assets=[features_asset(settings), signals_asset(settings)])


_FEATURES_CHECK = (
    "Every feature is finite after the warm-up, where the ticker has the inputs it needs "
    "(high/low, volume, a complete benchmark)."
)


def features_asset(settings: Settings) -> dg.AssetsDefinition:
    schema = schemas.features_schema(settings.features)
    lookback = lookback_periods(settings.features, settings.universe.partition_grain)

    @dg.asset(
        **table_asset(
            partitions_def=ticker_date_partitions(settings.universe),
            group_name=GROUP,
            code_version=code_version(settings.features),
            metadata=table_metadata(schema, lookback_windows=lookback),
            automation_condition=follows_inputs(),
            ins={"bars": dg.AssetIn(partition_mapping=lookback_mapping(lookback))},
            deps=[dg.AssetDep("benchmark_bars", partition_mapping=by_date())],
            check_specs=[blocking_check("features", "features_finite", _FEATURES_CHECK)],
        )
    )
    def features(
        context: dg.AssetExecutionContext, bars: pl.DataFrame, warehouse: WarehouseResource
    ) -> Iterator:
        """Trend, volatility, volume and relative-strength features per (ticker, session).

        Reads the run's bars plus the previous windows the longest feature needs (the
        ``bars`` input's partition mapping), and the benchmark over the same span. Every
        value at date D uses bars at or before D only.
        """
        scope = RunScope.of(context)
        if bars.is_empty():
            empty = pl.DataFrame(schema={c.name: c.dtype for c in schema})
            report = ValidationReport(suite="features_finite", row_count=0)
            yield from checked_output("features_finite", report, empty, {}, scope=scope)
            return
        benchmark = _benchmark_closes(context, warehouse, bars["date"].min(), scope.rect.end)
        computed = build_features(bars, benchmark, settings.features)
        out = schemas.conform(scope.within(computed), schema)
        names = list(feature_columns(settings.features))
        report = validate_features(out, names, available_columns(bars))
        metadata = {
            "rows": out.height,
            "lookback_rows_read": bars.height - out.height,
            "warmed_up_rows": int(out["warmed_up"].sum()),
        }
        yield from checked_output("features_finite", report, out, metadata, scope=scope)

    return features


def _benchmark_closes(context, warehouse: WarehouseResource, start, end) -> pl.DataFrame:
    """The benchmark's closes over the features' span (empty, with a warning, when missing:
    the relative features are then null)."""
    benchmark = warehouse.read("benchmark_bars", start=start, end=end, columns=["date", "close"])
    if benchmark.is_empty():
        context.log.warning("no benchmark_bars rows for this span: relative features are null")
        return pl.DataFrame(schema={"date": pl.Date, "close": pl.Float64})
    return benchmark


def signals_asset(settings: Settings) -> dg.AssetsDefinition:
    @dg.asset(
        **table_asset(
            partitions_def=ticker_date_partitions(settings.universe),
            group_name=GROUP,
            code_version=code_version(settings.signals, settings.features),
            metadata=table_metadata(schemas.SIGNALS),
            automation_condition=follows_inputs(),
            check_specs=[
                blocking_check(
                    "signals",
                    "signals_in_unit_interval",
                    "Every signal lies in [-1, 1] and is defined after the warm-up.",
                )
            ],
        )
    )
    def signals(context: dg.AssetExecutionContext, features: pl.DataFrame) -> Iterator:
        """The four rule-based alpha signals in [-1, 1] per (ticker, session).

        ``trend_alpha`` (risk-adjusted 12-1 momentum + moving-average stack), ``mean_rev_alpha``
        (minus the squashed Bollinger z-score), ``vol_alpha`` (short- vs long-term volatility)
        and ``rel_strength_alpha`` (risk-adjusted 60-day return over the benchmark). See
        ``quant_assets/signals/rules.py`` for each rule.
        """
        if features.is_empty():
            out = pl.DataFrame(schema={c.name: c.dtype for c in schemas.SIGNALS})
        else:
            built = build_signals(features, settings.signals, settings.features)
            out = schemas.conform(built, schemas.SIGNALS)
        report = validate_signals(out, list(SIGNAL_COLUMNS))
        scope = RunScope.of(context)
        yield from checked_output(
            "signals_in_unit_interval", report, out, {"rows": out.height}, scope=scope
        )

    return signals
