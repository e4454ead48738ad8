"""The asset graph so far: bars, benchmark_bars → features → signals.

Each asset is thin: work out the partition rectangle of the run, call the domain, validate
with the Great Expectations suite of its check, write through the DuckDB IO manager. All
assets compute a whole partition range in one run (single-run backfill policy).
"""

from collections.abc import Iterator
from dataclasses import asdict, replace
from datetime import UTC, date, datetime, timedelta

import dagster as dg
import polars as pl

from quant_assets import schemas
from quant_assets.defs.common import (
    check_metadata,
    code_version,
    column_schema,
    markdown,
)
from quant_assets.defs.partitions import (
    PARTITION_EXPR,
    date_partitions,
    lookback_mapping,
    rectangle_from_keys,
    ticker_date_partitions,
)
from quant_assets.defs.resources import WarehouseResource
from quant_assets.defs.schedules import SESSION_TAG
from quant_assets.errors import BadBarsError
from quant_assets.features.build import build_features, feature_columns, lookback_periods
from quant_assets.ingest import IngestedBars, ingest_bars, range_hash
from quant_assets.providers.base import available_columns
from quant_assets.providers.chain import RoutingError, route_bars
from quant_assets.providers.registry import build_provider_chain
from quant_assets.quality.derived import validate_features, validate_signals
from quant_assets.quality.gx import ValidationReport
from quant_assets.settings import Settings
from quant_assets.signals.rules import SIGNAL_COLUMNS, build_signals

# Calendar days fetched before a range so its first bar has a previous close (covers the
# longest exchange closures, e.g. 2001-09-11..17).
_PREVIOUS_CLOSE_MARGIN = timedelta(days=14)
_MAX_TABLE_ROWS = 25


def _quality_metadata(ingested: IngestedBars) -> dict:
    partitions = ingested.partitions
    if partitions.is_empty():
        return {"quality_score_min": dg.MetadataValue.float(1.0), "partitions_scored": 0}
    worst = partitions.sort("quality_score", "ticker", "window").head(_MAX_TABLE_ROWS)
    return {
        "quality_score_min": dg.MetadataValue.float(float(partitions["quality_score"].min())),
        "quality_score_mean": dg.MetadataValue.float(float(partitions["quality_score"].mean())),
        "partitions_scored": partitions.height,
        "quality_scores_lowest": dg.MetadataValue.md(
            markdown(
                worst.select(
                    "ticker",
                    "window",
                    "rows",
                    "missing_sessions",
                    "extreme_spike_flag",
                    "quality_score",
                )
            )
        ),
    }


def build_assets(settings: Settings) -> list:
    """The assets (with their checks) for one config directory."""
    universe = settings.universe
    per_ticker = ticker_date_partitions(universe)
    by_date = date_partitions(universe)
    grain = universe.partition_grain
    lookback = lookback_periods(settings.features, grain)
    single_run = dg.BackfillPolicy.single_run()
    provider_version = code_version(settings.providers, settings.quality, universe.calendar)
    stored = dict(  # what every asset shares: range runs, the DuckDB IO manager
        backfill_policy=single_run,
        io_manager_key="warehouse_io_manager",
        kinds={"duckdb", "polars"},
    )

    def ingest(context: dg.AssetExecutionContext, tickers: list[str], start, end):
        last_day = end - timedelta(days=1)
        session = context.run.tags.get(SESSION_TAG)
        if session is not None:  # a daily run for session D never stores bars after D
            last_day = min(last_day, date.fromisoformat(session))
            end = last_day + timedelta(days=1)
        first_day = start - _PREVIOUS_CLOSE_MARGIN
        chain = build_provider_chain(settings)
        if len(chain) == 1:  # one provider: its data goes to the quality suite as it is
            raw, served_by, routing = chain[0].fetch_bars(tickers, first_day, last_day), {}, {}
            name = chain[0].name
        else:  # the next provider when one fails or its data fails the blocking checks
            try:
                routed = route_bars(
                    chain,
                    tickers,
                    first_day,
                    last_day,
                    calendar=universe.calendar,
                    grain=grain,
                    quality=settings.quality,
                )
            except RoutingError as error:
                raise dg.Failure(
                    description=str(error),
                    metadata={
                        "attempts": dg.MetadataValue.json([asdict(a) for a in error.attempts])
                    },
                ) from error
            raw, served_by, name = routed.frame, routed.served_by, chain[0].name
            routing = routed.as_metadata()
        ingested = ingest_bars(
            raw,
            provider=name,
            start=start,
            end=end,
            calendar=universe.calendar,
            grain=grain,
            quality=settings.quality,
            ingested_at=datetime.now(UTC),
        )
        if served_by:  # each row names the provider that actually served its ticker
            frame = ingested.frame.with_columns(
                pl.col("ticker").replace_strict(served_by, default=name).alias("provider")
            )
            ingested = replace(ingested, frame=frame)
        return ingested, {
            "provider_chain": " → ".join(p.name for p in chain),
            **({"providers": dg.MetadataValue.json(routing)} if routing else {}),
        }

    def emit_ingested(
        context: dg.AssetExecutionContext,
        ingested: IngestedBars,
        prefix: str,
        windows,
        tickers,
        routing: dict,
    ) -> Iterator:
        blocking = ValidationReport(
            suite=f"{prefix}_quality",
            row_count=ingested.row_report.row_count,
            outcomes=ingested.row_report.outcomes + ingested.partition_report.outcomes,
        )
        yield dg.AssetCheckResult(
            check_name=f"{prefix}_quality",
            passed=blocking.success,
            severity=dg.AssetCheckSeverity.ERROR,
            metadata={
                **check_metadata(blocking, windows, tickers),
                **_quality_metadata(ingested),
            },
        )
        try:
            blocking.raise_for_failures(source=prefix)
        except BadBarsError as error:
            # Nothing is written: the run fails here, downstream never runs.
            raise dg.Failure(
                description=str(error), metadata={"failed_rules": blocking.summary()}
            ) from error
        yield dg.Output(
            ingested.frame,
            metadata={
                "rows": ingested.frame.height,
                "raw_hash": range_hash(ingested.frame) if ingested.frame.height else "-",
                "first_date": str(ingested.frame["date"].min()),
                "last_date": str(ingested.frame["date"].max()),
                # Output metadata is copied into every partition's materialisation event, so
                # only scalars here; the per-partition score table lives on the check result.
                "quality_score_min": _quality_metadata(ingested)["quality_score_min"],
                # Which provider served each ticker and every fallback attempt (per partition).
                **routing,
            },
        )
        yield dg.AssetCheckResult(
            check_name=f"{prefix}_return_spikes",
            passed=ingested.spike_report.success,
            severity=dg.AssetCheckSeverity.WARN,
            metadata=check_metadata(ingested.spike_report, windows, tickers),
        )

    @dg.asset(
        partitions_def=per_ticker,
        **stored,
        group_name="market_data",
        code_version=provider_version,
        metadata={
            "partition_expr": PARTITION_EXPR,
            "dagster/column_schema": column_schema(schemas.BARS),
        },
        check_specs=[
            dg.AssetCheckSpec(
                "bars_quality",
                asset="bars",
                blocking=True,
                description=(
                    "Great Expectations suite: non-null keys, unique (ticker, date), positive "
                    "prices, low <= open/close <= high, volume >= 0, no missing exchange "
                    "sessions, quality score >= minimum. Blocking: a failure writes nothing."
                ),
            ),
            dg.AssetCheckSpec(
                "bars_return_spikes",
                asset="bars",
                description="Warns when |daily return| exceeds the configured spike threshold.",
            ),
        ],
    )
    def bars(context: dg.AssetExecutionContext) -> Iterator:
        """Clean, adjusted daily OHLCV per ticker from the configured provider.

        One row per (ticker, exchange session) with provider, ingestion time, a sha256 of the
        raw provider row and a return-spike flag. Each partition's quality score (seed 003
        §4.2) is in the materialisation and check metadata. Validated before it is written:
        a failing partition range writes nothing.
        """
        rect = rectangle_from_keys(context.partition_keys, per_ticker)
        ingested, routing = ingest(context, list(rect.tickers), rect.start, rect.end)
        yield from emit_ingested(context, ingested, "bars", rect.windows, rect.tickers, routing)

    @dg.asset(
        partitions_def=by_date,
        **stored,
        group_name="market_data",
        code_version=code_version(provider_version, universe.benchmark),
        metadata={
            "partition_expr": "date",
            "dagster/column_schema": column_schema(schemas.BARS),
        },
        check_specs=[
            dg.AssetCheckSpec(
                "benchmark_bars_quality",
                asset="benchmark_bars",
                blocking=True,
                description="The bars suite applied to the benchmark index. Blocking.",
            ),
            dg.AssetCheckSpec(
                "benchmark_bars_return_spikes",
                asset="benchmark_bars",
                description="Warns when the benchmark's |daily return| exceeds the threshold.",
            ),
        ],
    )
    def benchmark_bars(context: dg.AssetExecutionContext) -> Iterator:
        """Daily bars of the benchmark index (``universe.yaml: benchmark``), one row per session."""
        rect = rectangle_from_keys(context.partition_keys, by_date)
        ingested, routing = ingest(context, [universe.benchmark], rect.start, rect.end)
        yield from emit_ingested(context, ingested, "benchmark_bars", rect.windows, (), routing)

    feature_names = list(feature_columns(settings.features))
    features_schema = schemas.features_schema(settings.features)

    @dg.asset(
        partitions_def=per_ticker,
        **stored,
        group_name="research",
        code_version=code_version(settings.features),
        ins={"bars": dg.AssetIn(partition_mapping=lookback_mapping(lookback))},
        deps=[
            dg.AssetDep(
                "benchmark_bars",
                partition_mapping=dg.MultiToSingleDimensionPartitionMapping(
                    partition_dimension_name="date"
                ),
            )
        ],
        metadata={
            "partition_expr": PARTITION_EXPR,
            "dagster/column_schema": column_schema(features_schema),
            "lookback_windows": lookback,
        },
        check_specs=[
            dg.AssetCheckSpec(
                "features_finite",
                asset="features",
                blocking=True,
                description=(
                    "Every feature is finite after the warm-up, where the ticker has the "
                    "inputs it needs (high/low, volume, a complete benchmark)."
                ),
            )
        ],
    )
    def features(
        context: dg.AssetExecutionContext, bars: pl.DataFrame, warehouse: WarehouseResource
    ) -> Iterator:
        """Trend, volatility, volume and relative-strength features per (ticker, session).

        Reads the run's bars plus the previous windows the longest feature needs (the
        ``bars`` input's partition mapping), and the benchmark over the same span. Every
        value at date D uses bars at or before D only.
        """
        rect = rectangle_from_keys(context.partition_keys, per_ticker)
        if bars.is_empty():
            yield dg.Output(pl.DataFrame(schema={c.name: c.dtype for c in features_schema}))
            yield dg.AssetCheckResult(check_name="features_finite", passed=True)
            return
        benchmark = warehouse.read(
            "benchmark_bars",
            start=bars["date"].min(),
            end=rect.end,
            columns=["date", "close"],
        )
        if benchmark.is_empty():
            context.log.warning("no benchmark_bars rows for this span: relative features are null")
            benchmark = pl.DataFrame(schema={"date": pl.Date, "close": pl.Float64})
        computed = build_features(bars, benchmark, settings.features)
        out = schemas.conform(
            computed.filter((pl.col("date") >= rect.start) & (pl.col("date") < rect.end)),
            features_schema,
        )
        report = validate_features(out, feature_names, available_columns(bars))
        yield dg.Output(
            out,
            metadata={
                "rows": out.height,
                "lookback_rows_read": bars.height - out.height,
                "warmed_up_rows": int(out["warmed_up"].sum()),
            },
        )
        yield dg.AssetCheckResult(
            check_name="features_finite",
            passed=report.success,
            metadata=check_metadata(report, rect.windows, rect.tickers),
        )

    @dg.asset(
        partitions_def=per_ticker,
        **stored,
        group_name="research",
        code_version=code_version(settings.signals, settings.features),
        metadata={
            "partition_expr": PARTITION_EXPR,
            "dagster/column_schema": column_schema(schemas.SIGNALS),
        },
        check_specs=[
            dg.AssetCheckSpec(
                "signals_in_unit_interval",
                asset="signals",
                blocking=True,
                description="Every signal lies in [-1, 1] and is defined after the warm-up.",
            )
        ],
    )
    def signals(context: dg.AssetExecutionContext, features: pl.DataFrame) -> Iterator:
        """The four rule-based alpha signals in [-1, 1] per (ticker, session).

        ``trend_alpha`` (risk-adjusted 12-1 momentum + moving-average stack), ``mean_rev_alpha``
        (minus the squashed Bollinger z-score), ``vol_alpha`` (short- vs long-term volatility)
        and ``rel_strength_alpha`` (risk-adjusted 60-day return over the benchmark). See
        ``quant_assets/signals/rules.py`` for each rule.
        """
        rect = rectangle_from_keys(context.partition_keys, per_ticker)
        if features.is_empty():
            out = pl.DataFrame(schema={c.name: c.dtype for c in schemas.SIGNALS})
        else:
            out = schemas.conform(
                build_signals(features, settings.signals, settings.features), schemas.SIGNALS
            )
        report = validate_signals(out, list(SIGNAL_COLUMNS))
        yield dg.Output(out, metadata={"rows": out.height})
        yield dg.AssetCheckResult(
            check_name="signals_in_unit_interval",
            passed=report.success,
            metadata=check_metadata(report, rect.windows, rect.tickers),
        )

    return [bars, benchmark_bars, features, signals]
