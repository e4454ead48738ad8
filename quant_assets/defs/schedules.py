"""The daily update: after each session's close, one run ingests that session for the universe.

The schedules only request the roots: ``bars`` for every ticker in one run, and
``benchmark_bars`` (one schedule each: a schedule targets one partitions definition).
Everything downstream follows through the ``converge`` sensor (:mod:`quant_assets.defs.sensors`):
the new window's bars are newer than what reads them, so it runs the stale windows downstream
(and a model whose cut-off window has just opened), one range run per partitions definition.

Partitions are date *windows* (month or year, see partitions.py), so "the new trading date"
is the window holding it, capped at that session by the :data:`SESSION_TAG` run tag: a run
for session D never ingests bars dated after D, even when the provider already has them.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import date, datetime, time, timedelta

import dagster as dg
import exchange_calendars as xcals

from quant_assets.defs.partitions import DATE_DIMENSION, TICKER_DIMENSION, window_start_of
from quant_assets.settings import Settings

SESSION_TAG = "quant_assets/session"
DAILY_SCHEDULE = "daily_update"


@dataclass(frozen=True)
class CloseSchedule:
    """When the daily run fires: ``cron`` in the exchange's ``timezone``."""

    cron: str
    timezone: str
    close: time


def close_schedule(calendar: str, minutes_after_close: int) -> CloseSchedule:
    """The cron (every day; non-sessions are skipped at evaluation) ``minutes_after_close``
    after the calendar's regular close, in the exchange's own timezone (so daylight saving
    time needs nothing from us)."""
    cal = xcals.get_calendar(calendar)
    close = cal.close_times[-1][1]  # the regular close now in force
    fire = datetime.combine(date(2000, 1, 1), close) + timedelta(minutes=minutes_after_close)
    if fire.date() != date(2000, 1, 1):
        raise ValueError(
            f"minutes_after_close={minutes_after_close} pushes the daily run past midnight "
            f"({calendar} closes at {close:%H:%M})"
        )
    return CloseSchedule(f"{fire.minute} {fire.hour} * * *", str(cal.tz), close)


def session_of_tick(calendar: str, tick: datetime) -> date | None:
    """The session a tick at ``tick`` (exchange-local) ingests, or None on a non-session day."""
    day = tick.date()
    return day if xcals.get_calendar(calendar).is_session(day.isoformat()) else None


def daily_run_requests(
    settings: Settings, session: date, tickers: list[str]
) -> list[dg.RunRequest] | dg.SkipReason:
    """The runs that ingest ``session``: ``bars`` for every ticker partition (in partition
    order, one range run) and ``benchmark_bars``, both for the window holding ``session``."""
    universe = settings.universe
    if universe.end is not None and session > universe.end:
        return dg.SkipReason(f"{session} is after universe.yaml end ({universe.end})")
    if not tickers:
        return dg.SkipReason("no ticker partitions yet (the universe sensor adds them)")
    window = window_start_of(session, universe.partition_grain).isoformat()
    tags = {SESSION_TAG: session.isoformat(), "quant_assets/launched_by": DAILY_SCHEDULE}
    bars = dg.RunRequest(
        run_key=f"{DAILY_SCHEDULE}:{session}:bars",
        asset_selection=[dg.AssetKey("bars")],
        tags={
            **tags,
            "dagster/asset_partition_range_start": _multi_key(window, tickers[0]),
            "dagster/asset_partition_range_end": _multi_key(window, tickers[-1]),
        },
    )
    benchmark = dg.RunRequest(
        run_key=f"{DAILY_SCHEDULE}:{session}:benchmark_bars",
        asset_selection=[dg.AssetKey("benchmark_bars")],
        partition_key=window,
        tags=tags,
    )
    return [bars, benchmark]


def _multi_key(window: str, ticker: str) -> str:
    return str(dg.MultiPartitionKey({DATE_DIMENSION: window, TICKER_DIMENSION: ticker}))


def build_daily_schedules(settings: Settings) -> list[dg.ScheduleDefinition]:
    """``daily_update`` (bars, the whole universe in one run) and ``daily_benchmark_update``
    (benchmark_bars), on the same tick: a Dagster schedule targets one partitions definition.
    Running by default when ``operations.yaml: schedule.enabled``, except with the files
    provider alone (the converge sensor ingests the folder as it changes)."""
    calendar = settings.universe.calendar
    config = settings.operations.schedule
    when = close_schedule(calendar, config.minutes_after_close)
    # With the files provider alone, the converge sensor ingests the folder as files change:
    # a schedule re-ingesting the same files would only recompute the latest window twice.
    files_only = settings.providers.provider == "files" and not settings.providers.fallback
    running = config.enabled and not (files_only and settings.operations.converge.enabled)
    status = dg.DefaultScheduleStatus.RUNNING if running else dg.DefaultScheduleStatus.STOPPED
    when_text = f"After each {calendar} session ({when.close:%H:%M} {when.timezone} close + " + (
        f"{config.minutes_after_close} min)"
    )

    def build(name: str, asset: str, what: str) -> dg.ScheduleDefinition:
        @dg.schedule(
            name=name,
            cron_schedule=when.cron,
            execution_timezone=when.timezone,
            target=dg.AssetSelection.assets(asset),
            default_status=status,
            description=(
                f"{when_text}: ingest the session's {what}. Downstream assets follow by "
                "declarative automation. No run on holidays or weekends."
            ),
        )
        def daily(context: dg.ScheduleEvaluationContext):
            tick = context.scheduled_execution_time
            assert tick is not None
            session = session_of_tick(calendar, tick)
            if session is None:
                return dg.SkipReason(f"{tick:%Y-%m-%d} is not a {calendar} session")
            tickers = list(context.instance.get_dynamic_partitions(TICKER_DIMENSION))
            requests = daily_run_requests(settings, session, tickers)
            if isinstance(requests, dg.SkipReason):
                return requests
            return [r for r in requests if r.asset_selection == [dg.AssetKey(asset)]]

        return daily

    return [
        build(DAILY_SCHEDULE, "bars", "bars for the whole universe (one run)"),
        build(f"{DAILY_SCHEDULE}_benchmark", "benchmark_bars", "benchmark bars"),
    ]
