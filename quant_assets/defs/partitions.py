"""Partitions: a time window of configurable grain (``date``) × a dynamic ``ticker`` dimension.

Why windows and not days: Dagster spends ~11-16 ms of bookkeeping per asset-partition
materialisation (see docs/architecture.md for the numbers measured here), so one partition per
session × ticker over 33 years would cost hours. Rows inside a partition are the exchange
sessions of that window.
"""

from __future__ import annotations

import itertools
import math
from dataclasses import dataclass
from datetime import date, datetime, timedelta

import dagster as dg

from quant_assets.errors import QuantAssetsError
from quant_assets.settings import FREQUENCY_MONTHS, CutoffSettings, UniverseSettings

TICKER_DIMENSION = "ticker"
DATE_DIMENSION = "date"
TICKER_PARTITIONS = dg.DynamicPartitionsDefinition(name=TICKER_DIMENSION)
PARTITION_EXPR = {DATE_DIMENSION: "date", TICKER_DIMENSION: "ticker"}
_CRON = {"month": "0 0 1 * *", "year": "0 0 1 1 *"}
_CUTOFF_CRON = {**_CRON, "quarter": "0 0 1 1,4,7,10 *"}


def next_window_start(day: date, grain: str) -> date:
    """The first day of the window after the one containing ``day``."""
    if grain == "year":
        return date(day.year + 1, 1, 1)
    return date(day.year + (day.month == 12), day.month % 12 + 1, 1)


def window_start_of(day: date, grain: str) -> date:
    """The first day of the window containing ``day``."""
    return date(day.year, 1, 1) if grain == "year" else date(day.year, day.month, 1)


def _windows(start: date, cron: str, end: date | None) -> dg.TimeWindowPartitionsDefinition:
    # end_offset=1: the current, incomplete window exists (a daily run for today's session
    # writes into it), also when evaluated at a past time (schedule tests, replays); ``end``
    # still caps the set.
    return dg.TimeWindowPartitionsDefinition(
        start=datetime.combine(start, datetime.min.time()),
        cron_schedule=cron,
        fmt="%Y-%m-%d",
        end=datetime.combine(end, datetime.min.time()) if end is not None else None,
        end_offset=1,
    )


def date_partitions(
    universe: UniverseSettings, start: date | None = None
) -> dg.TimeWindowPartitionsDefinition:
    """Windows of ``universe.partition_grain`` from ``universe.start`` (or ``start``).

    With ``end`` set, the last window is the one containing ``end``; without it the current,
    incomplete window is included (``end_offset=1``) so a daily update refreshes it.
    """
    grain = universe.partition_grain
    end = next_window_start(universe.end, grain) if universe.end is not None else None
    return _windows(window_start_of(start or universe.start, grain), _CRON[grain], end)


def cutoff_partitions(
    cutoffs: CutoffSettings, universe: UniverseSettings
) -> dg.TimeWindowPartitionsDefinition:
    """Training cut-offs: partition ``c`` is the model fitted on data strictly before ``c``
    and used for the dates of its window ``[c, next cut-off)``."""
    end = None
    if universe.end is not None:
        months = FREQUENCY_MONTHS[cutoffs.cutoff_frequency]
        index = (universe.end.year * 12 + universe.end.month - 1) // months * months + months
        end = date(index // 12, index % 12 + 1, 1)
    return _windows(
        cutoffs.resolved_first_cutoff(universe.start), _CUTOFF_CRON[cutoffs.cutoff_frequency], end
    )


def ticker_date_partitions(
    universe: UniverseSettings, start: date | None = None
) -> dg.MultiPartitionsDefinition:
    """The per-instrument partitions: ``date`` window × dynamic ``ticker`` (from ``start``)."""
    return dg.MultiPartitionsDefinition(
        {DATE_DIMENSION: date_partitions(universe, start), TICKER_DIMENSION: TICKER_PARTITIONS}
    )


def periods_for_sessions(sessions: int, grain: str) -> int:
    """How many whole windows of ``grain`` surely hold ``sessions`` exchange sessions.

    Conservative: counts the fewest sessions a window can hold on NYSE-like calendars (15 in a
    month — September 2001 had 15 — and 240 in a year); extra rows change nothing, every
    statistic is window-exact.
    """
    return math.ceil(sessions / {"month": 15, "year": 240}[grain])


def lookback_mapping(periods: int) -> dg.MultiPartitionMapping:
    """Each (window, ticker) reads the same ticker's previous ``periods`` windows and itself."""
    return dg.MultiPartitionMapping(
        {
            DATE_DIMENSION: dg.DimensionPartitionMapping(
                DATE_DIMENSION,
                dg.TimeWindowPartitionMapping(
                    start_offset=-periods, allow_nonexistent_upstream_partitions=True
                ),
            ),
            TICKER_DIMENSION: dg.DimensionPartitionMapping(
                TICKER_DIMENSION, dg.IdentityPartitionMapping()
            ),
        }
    )


@dataclass(frozen=True)
class PartitionRectangle:
    """The dates × tickers a run covers: ``[start, end)`` and the tickers, sorted."""

    start: date
    end: date  # exclusive
    tickers: tuple[str, ...]
    windows: tuple[date, ...]

    @property
    def last_day(self) -> date:
        return self.end - timedelta(days=1)


def rectangle_from_keys(
    partition_keys: list[str] | list[dg.MultiPartitionKey],
    partitions_def: dg.PartitionsDefinition,
) -> PartitionRectangle:
    """The rectangle of a set of partition keys; refuse a set that is not a full rectangle.

    A run over several windows × several tickers must write exactly the product of both, so
    the IO manager can replace it with one ``DELETE ... WHERE date in window AND ticker IN``.
    """
    if not partition_keys:
        raise ValueError("no partition keys: nothing to compute")
    if isinstance(partitions_def, dg.MultiPartitionsDefinition):
        date_def = partitions_def.get_partitions_def_for_dimension(DATE_DIMENSION)
        pairs = set()
        for key in partition_keys:
            multi = (
                key
                if isinstance(key, dg.MultiPartitionKey)
                else partitions_def.get_partition_key_from_str(str(key))
            )
            dims = multi.keys_by_dimension
            pairs.add((dims[DATE_DIMENSION], dims[TICKER_DIMENSION]))
        windows = sorted({w for w, _ in pairs})
        tickers = sorted({t for _, t in pairs})
        if len(pairs) != len(windows) * len(tickers):
            raise ValueError(
                f"partition selection is not a rectangle ({len(pairs)} keys over "
                f"{len(windows)} windows × {len(tickers)} tickers); run contiguous ranges"
            )
    else:
        date_def = partitions_def
        windows = sorted({str(k) for k in partition_keys})
        tickers = []
    assert isinstance(date_def, dg.TimeWindowPartitionsDefinition)
    time_windows = [date_def.time_window_for_partition_key(w) for w in windows]
    for previous, current in itertools.pairwise(time_windows):
        if previous.end != current.start:
            raise ValueError(
                f"partition windows are not contiguous ({previous.end:%Y-%m-%d} to "
                f"{current.start:%Y-%m-%d}); run contiguous ranges"
            )
    return PartitionRectangle(
        start=time_windows[0].start.date(),
        end=time_windows[-1].end.date(),
        tickers=tuple(tickers),
        windows=tuple(w.start.date() for w in time_windows),
    )


def by_date() -> dg.MultiToSingleDimensionPartitionMapping:
    """A date × ticker asset reads (or is read by) a date-only asset over the same windows."""
    return dg.MultiToSingleDimensionPartitionMapping(partition_dimension_name=DATE_DIMENSION)


def same_window() -> dg.MultiPartitionMapping:
    """Per-ticker input over the same dates (the upstream's date windows may start earlier)."""
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


def cross_section(start_offset: int = 0, end_offset: int = 0) -> dg.MultiPartitionMapping:
    """Every ticker's partitions of the same date windows (shifted by the offsets): what an
    asset deciding across tickers reads."""
    return dg.MultiPartitionMapping(
        {
            DATE_DIMENSION: dg.DimensionPartitionMapping(
                DATE_DIMENSION,
                dg.TimeWindowPartitionMapping(
                    start_offset=start_offset,
                    end_offset=end_offset,
                    allow_nonexistent_upstream_partitions=True,
                ),
            ),
            TICKER_DIMENSION: dg.DimensionPartitionMapping(
                TICKER_DIMENSION, dg.AllPartitionMapping()
            ),
        }
    )


def before_cutoff(
    cutoffs: CutoffSettings, universe: UniverseSettings
) -> dg.TimeWindowPartitionMapping:
    """A cut-off partition reads every date window strictly before its cut-off (an expanding
    training window): the offset spans the universe start to the last cut-off."""
    last = universe.end or date.today()
    months = (last.year - universe.start.year + 1) * 12
    windows_before = months // FREQUENCY_MONTHS[cutoffs.cutoff_frequency] + 1
    return dg.TimeWindowPartitionMapping(
        start_offset=-windows_before, end_offset=-1, allow_nonexistent_upstream_partitions=True
    )


def cutoff_keys_windows(
    keys: list[str], partitions_def: dg.TimeWindowPartitionsDefinition
) -> list[tuple[date, date]]:
    """(cut-off, end of its window) per cut-off partition key, in order."""
    windows = [partitions_def.time_window_for_partition_key(k) for k in sorted(keys)]
    return [(w.start.date(), w.end.date()) for w in windows]


def first_cutoff_origin(cutoffs: CutoffSettings, universe: UniverseSettings) -> str:
    """Where the first model cut-off comes from, in the config's own words (for errors)."""
    if cutoffs.first_cutoff is not None:
        return "models.yaml first_cutoff"
    return (
        f"universe.yaml start {universe.start} + models.yaml min_history_years "
        f"{cutoffs.min_history_years} at cutoff_frequency {cutoffs.cutoff_frequency}"
    )


def first_model_window(cutoffs: CutoffSettings, universe: UniverseSettings) -> date:
    """The first model cut-off, where predictions and strategies start: it must begin a
    window of the universe's grain, since a window's predictions come from the cut-offs it
    holds. Raises QuantAssetsError naming the keys to change when it falls inside one."""
    first = cutoffs.resolved_first_cutoff(universe.start)
    grain = universe.partition_grain
    window = window_start_of(first, grain)
    if window != first:
        origin = first_cutoff_origin(cutoffs, universe)
        raise QuantAssetsError(
            f"the first model cut-off {first} ({origin}) falls inside the {grain} window "
            f"starting {window} (universe.yaml partition_grain {grain}): that window's "
            f"predictions would need models before the first cut-off. Set models.yaml "
            f"first_cutoff to {window} or {next_window_start(first, grain)}, or use "
            "partition_grain: month"
        )
    return first


def first_window_start(partitions_def: dg.PartitionsDefinition) -> date:
    """The first day of the first date window of ``partitions_def``."""
    if isinstance(partitions_def, dg.MultiPartitionsDefinition):
        partitions_def = partitions_def.get_partitions_def_for_dimension(DATE_DIMENSION)
    first = partitions_def.get_first_partition_key()
    if first is None:
        raise QuantAssetsError(
            "no date windows: the partitions start after universe.yaml's end (is the first "
            "model cut-off, models.yaml min_history_years, after the end?)"
        )
    return date.fromisoformat(first)


def previous_window_start(partitions_def: dg.PartitionsDefinition, day: date) -> date:
    """The first day of the date window before the one starting at ``day`` (``day`` itself
    for the first window)."""
    if isinstance(partitions_def, dg.MultiPartitionsDefinition):
        partitions_def = partitions_def.get_partitions_def_for_dimension(DATE_DIMENSION)
    assert isinstance(partitions_def, dg.TimeWindowPartitionsDefinition)
    window = partitions_def.get_prev_partition_window(
        partitions_def.time_window_for_partition_key(day.isoformat()).start
    )
    return window.start.date() if window else day
