"""Market data: ``bars`` (date window × ticker) and ``benchmark_bars`` (date windows).

The roots of the graph: the daily schedule and the drop-folder sensor drive them, so they
carry no automation condition. Both validate every row and partition with the blocking bars
suite before anything is written.
"""

from collections.abc import Iterator
from dataclasses import asdict
from datetime import date

import dagster as dg

from quant_assets import schemas
from quant_assets.defs.common import (
    RunScope,
    as_float,
    blocking_check,
    check_metadata,
    code_version,
    markdown,
    table_asset,
    table_metadata,
)
from quant_assets.defs.partitions import date_partitions, ticker_date_partitions
from quant_assets.defs.schedules import SESSION_TAG
from quant_assets.errors import BadBarsError
from quant_assets.ingest import IngestedBars, range_hash
from quant_assets.providers.chain import RoutingError
from quant_assets.providers.routing import ingest_range
from quant_assets.quality.gx import ValidationReport
from quant_assets.settings import Settings

GROUP = "market_data"
_MAX_TABLE_ROWS = 25


def defs(settings: Settings) -> dg.Definitions:
    """``bars`` and ``benchmark_bars`` with their checks."""
    return dg.Definitions(assets=[bars_asset(settings), benchmark_bars_asset(settings)])


def provider_version(settings: Settings) -> str:
    return code_version(settings.providers, settings.quality, settings.universe.calendar)


def _checks(prefix: str, what: str) -> list[dg.AssetCheckSpec]:
    return [
        blocking_check(
            prefix,
            f"{prefix}_quality",
            f"Great Expectations suite on {what}: non-null keys, unique (ticker, date), positive "
            "prices, low <= open/close <= high, volume >= 0, no missing exchange sessions, "
            "quality score >= minimum. Blocking: a failure writes nothing.",
        ),
        dg.AssetCheckSpec(
            f"{prefix}_return_spikes",
            asset=prefix,
            description="Warns when |daily return| exceeds the configured spike threshold.",
        ),
    ]


def bars_asset(settings: Settings) -> dg.AssetsDefinition:
    @dg.asset(
        **table_asset(
            partitions_def=ticker_date_partitions(settings.universe),
            group_name=GROUP,
            code_version=provider_version(settings),
            metadata=table_metadata(schemas.BARS),
            automation_condition=None,  # a root: the schedule and the sensors drive it
            check_specs=_checks("bars", "the instruments' bars"),
        )
    )
    def bars(context: dg.AssetExecutionContext) -> Iterator:
        """Clean, adjusted daily OHLCV per ticker from the configured provider.

        One row per (ticker, exchange session) with provider, ingestion time, a sha256 of the
        raw provider row and a return-spike flag. Each partition's quality score (seed 003
        §4.2) is in the materialisation and check metadata. Validated before it is written:
        a failing partition range writes nothing.
        """
        scope = RunScope.of(context)
        yield from _ingest(context, settings, scope, "bars", list(scope.rect.tickers))

    return bars


def benchmark_bars_asset(settings: Settings) -> dg.AssetsDefinition:
    universe = settings.universe

    @dg.asset(
        **table_asset(
            partitions_def=date_partitions(universe),
            group_name=GROUP,
            code_version=code_version(provider_version(settings), universe.benchmark),
            metadata=table_metadata(schemas.BARS, partition_expr="date"),
            automation_condition=None,  # a root: the schedule and the sensors drive it
            check_specs=_checks("benchmark_bars", "the benchmark index"),
        )
    )
    def benchmark_bars(context: dg.AssetExecutionContext) -> Iterator:
        """Daily bars of the benchmark index (``universe.yaml: benchmark``), one row per session."""
        scope = RunScope.of(context)
        yield from _ingest(context, settings, scope, "benchmark_bars", [universe.benchmark])

    return benchmark_bars


def _ingest(
    context: dg.AssetExecutionContext,
    settings: Settings,
    scope: RunScope,
    prefix: str,
    tickers: list[str],
) -> Iterator:
    """Fetch (through the provider chain), validate and emit one run's rectangle."""
    session = context.run.tags.get(SESSION_TAG)
    try:
        ingested, routing = ingest_range(
            settings,
            tickers,
            scope.rect.start,
            scope.rect.end,
            session=date.fromisoformat(session) if session is not None else None,
        )
    except RoutingError as error:
        raise dg.Failure(
            description=str(error),
            metadata={"attempts": dg.MetadataValue.json([asdict(a) for a in error.attempts])},
        ) from error
    if "providers" in routing:
        routing = {**routing, "providers": dg.MetadataValue.json(routing["providers"])}
    yield from _emit(ingested, prefix, scope.rect.windows, scope.rect.tickers, routing)


def _emit(
    ingested: IngestedBars, prefix: str, windows: tuple, tickers: tuple, routing: dict
) -> Iterator:
    blocking = ValidationReport(
        suite=f"{prefix}_quality",
        row_count=ingested.row_report.row_count,
        outcomes=ingested.row_report.outcomes + ingested.partition_report.outcomes,
    )
    quality = _quality_metadata(ingested)
    yield dg.AssetCheckResult(
        check_name=f"{prefix}_quality",
        passed=blocking.success,
        severity=dg.AssetCheckSeverity.ERROR,
        metadata={**check_metadata(blocking, windows, tickers), **quality},
    )
    try:
        blocking.raise_for_failures(source=prefix)
    except BadBarsError as error:  # nothing is written: the run fails, downstream never runs
        raise dg.Failure(
            description=str(error), metadata={"failed_rules": blocking.summary()}
        ) from error
    frame = ingested.frame
    yield dg.Output(
        frame,
        metadata={
            "rows": frame.height,
            "raw_hash": range_hash(frame) if frame.height else "-",
            "first_date": str(frame["date"].min()),
            "last_date": str(frame["date"].max()),
            # Output metadata is copied into every partition's materialisation event, so only
            # scalars here; the per-partition score table lives on the check result.
            "quality_score_min": quality["quality_score_min"],
            **routing,  # which provider served each ticker and every fallback attempt
        },
    )
    yield dg.AssetCheckResult(
        check_name=f"{prefix}_return_spikes",
        passed=ingested.spike_report.success,
        severity=dg.AssetCheckSeverity.WARN,
        metadata=check_metadata(ingested.spike_report, windows, tickers),
    )


def _quality_metadata(ingested: IngestedBars) -> dict:
    partitions = ingested.partitions
    if partitions.is_empty():
        return {"quality_score_min": dg.MetadataValue.float(1.0), "partitions_scored": 0}
    worst = partitions.sort("quality_score", "ticker", "window").head(_MAX_TABLE_ROWS)
    columns = ("ticker", "window", "rows", "missing_sessions", "extreme_spike_flag")
    return {
        "quality_score_min": dg.MetadataValue.float(as_float(partitions["quality_score"].min())),
        "quality_score_mean": dg.MetadataValue.float(as_float(partitions["quality_score"].mean())),
        "partitions_scored": partitions.height,
        "quality_scores_lowest": dg.MetadataValue.md(
            markdown(worst.select(*columns, "quality_score"))
        ),
    }
