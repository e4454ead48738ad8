"""The daily schedule: after each session's close, the new session for the whole universe."""

from __future__ import annotations

from datetime import date, datetime
from zoneinfo import ZoneInfo

import dagster as dg
import pytest

from quant_assets.defs.definitions import build_definitions
from quant_assets.defs.schedules import SESSION_TAG, close_schedule
from quant_assets.settings import load_settings

NEW_YORK = ZoneInfo("America/New_York")


def test_cron_fires_after_the_calendars_close_in_the_exchange_timezone():
    nyse = close_schedule("XNYS", 30)
    assert (nyse.cron, nyse.timezone) == ("30 16 * * *", "America/New_York")
    london = close_schedule("XLON", 45)  # closes 16:30 London time
    assert (london.cron, london.timezone) == ("15 17 * * *", "Europe/London")
    with pytest.raises(ValueError, match="past midnight"):
        close_schedule("XNYS", 480 + 60)


class _Tick:
    """Both daily schedules evaluated at one tick."""

    def __init__(self, results):
        self.run_requests = [r for result in results for r in result.run_requests]
        self.skip_message = " ".join(result.skip_message or "" for result in results)


def _evaluate(project, tick: datetime) -> _Tick:
    settings = load_settings(project.config_dir)
    defs = build_definitions(settings, project.home)
    results = []
    with dg.instance_for_test() as instance:
        instance.add_dynamic_partitions("ticker", project.tickers)
        for name in ("daily_update", "daily_update_benchmark"):
            with dg.build_schedule_context(
                instance=instance,
                scheduled_execution_time=tick,
                repository_def=defs.get_repository_def(),
            ) as context:
                results.append(defs.resolve_schedule_def(name).evaluate_tick(context))
    return _Tick(results)


def test_schedule_targets_exactly_the_new_session_for_every_ticker(make_project):
    project = make_project(["AAA", "BBB", "CCC"], date(2019, 1, 1), date(2019, 12, 31))
    result = _evaluate(project, datetime(2019, 12, 30, 16, 30, tzinfo=NEW_YORK))
    requests = {
        tuple(k.to_user_string() for k in r.asset_selection): r for r in result.run_requests
    }
    bars = requests[("bars",)]
    # Month windows: the window holding the session, every ticker, capped at the session.
    assert bars.tags["dagster/asset_partition_range_start"] == "2019-12-01|AAA"
    assert bars.tags["dagster/asset_partition_range_end"] == "2019-12-01|CCC"
    assert bars.tags[SESSION_TAG] == "2019-12-30"
    benchmark = requests[("benchmark_bars",)]
    assert benchmark.partition_key == "2019-12-01"
    assert benchmark.tags[SESSION_TAG] == "2019-12-30"
    assert len(result.run_requests) == 2
    assert len({r.run_key for r in result.run_requests}) == 2  # no duplicate run on re-tick


@pytest.mark.parametrize(
    "day, reason",
    [
        (date(2019, 12, 25), "Christmas"),
        (date(2019, 12, 28), "Saturday"),
        (date(2019, 12, 29), "Sunday"),
        (date(2019, 11, 28), "Thanksgiving"),
    ],
)
def test_schedule_requests_nothing_on_holidays_and_weekends(make_project, day, reason):
    project = make_project(["AAA"], date(2019, 1, 1), date(2019, 12, 31))
    result = _evaluate(project, datetime.combine(day, datetime.min.time(), NEW_YORK))
    assert not result.run_requests, reason
    assert "not a XNYS session" in (result.skip_message or "")


def test_schedule_over_a_holiday_week_runs_on_exactly_its_sessions(make_project):
    project = make_project(["AAA", "BBB"], date(2019, 1, 1), date(2019, 12, 31))
    ran = []
    for day in range(23, 30):  # Mon 23 .. Sun 29 December 2019; the 25th is Christmas
        tick = datetime(2019, 12, day, 16, 30, tzinfo=NEW_YORK)
        if _evaluate(project, tick).run_requests:
            ran.append(day)
    assert ran == [23, 24, 26, 27]


def test_schedule_skips_sessions_after_the_universe_end(make_project):
    project = make_project(["AAA"], date(2019, 1, 1), date(2019, 6, 28))
    result = _evaluate(project, datetime(2019, 7, 1, 16, 30, tzinfo=NEW_YORK))
    assert not result.run_requests
    assert "after universe.yaml end" in (result.skip_message or "")


@pytest.mark.parametrize(
    ("provider", "status"),
    [("files", dg.DefaultScheduleStatus.STOPPED), ("synthetic", dg.DefaultScheduleStatus.RUNNING)],
)
def test_with_the_files_provider_alone_the_drop_folder_is_the_daily_trigger(
    make_project, provider, status
):
    import yaml

    project = make_project(["AAA"], date(2019, 1, 1), date(2019, 6, 28))
    providers = yaml.safe_load((project.config_dir / "providers.yaml").read_text())
    providers["provider"] = provider
    (project.config_dir / "providers.yaml").write_text(yaml.safe_dump(providers))
    defs = build_definitions(load_settings(project.config_dir), project.home)
    assert defs.resolve_schedule_def("daily_update").default_status == status
