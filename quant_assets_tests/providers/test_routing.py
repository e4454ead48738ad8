"""Ingesting a range through the provider chain, outside Dagster: the session cap, the margin
before the range, who served each ticker, and a chain that cannot serve a ticker.

Projects are the shared files-provider fixture (synthetic CSVs); the fallbacks are the
synthetic and bundled providers. ``_former_ingest`` is the ``ingest`` closure of the bars
assets before it moved to :mod:`quant_assets.providers.routing` (at 51ddda9, minus Dagster),
kept as the reference.
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from dataclasses import replace
from datetime import UTC, date, datetime, timedelta

import polars as pl
import pytest
import yaml
from polars.testing import assert_frame_equal

from quant_assets.ingest import IngestedBars, ingest_bars
from quant_assets.providers import routing
from quant_assets.providers.chain import RoutingError, route_bars
from quant_assets.providers.registry import build_provider_chain
from quant_assets.providers.routing import PREVIOUS_CLOSE_MARGIN, ingest_range
from quant_assets.settings import Settings, load_settings

START, END = date(2020, 1, 1), date(2020, 3, 1)
SESSION = date(2020, 2, 14)  # a Friday
STAMP = datetime(2020, 2, 14, 22, 0, tzinfo=UTC)


def _settings(project, fallback: list[str] | None = None) -> Settings:
    if fallback is not None:
        path = project.config_dir / "providers.yaml"
        providers = yaml.safe_load(path.read_text())
        providers["fallback"] = fallback
        path.write_text(yaml.safe_dump(providers))
    return load_settings(project.config_dir)


def _corrupt(project, ticker: str) -> None:
    """A negative close: the files provider's bars of ``ticker`` fail the row checks."""
    bad = project.bars(ticker).with_columns(
        pl.when(pl.col("date") == date(2020, 2, 12))
        .then(-1.0)
        .otherwise(pl.col("close"))
        .alias("close")
    )
    project.write(ticker, bad)


def _former_ingest(
    settings: Settings, tickers: list[str], start: date, end: date, session: str | None
) -> tuple[IngestedBars, dict]:
    """The assets' ``ingest`` closure at 51ddda9: the session tag is text, the routing is
    wrapped in Dagster metadata there (plain here), ``ingested_at`` is :data:`STAMP`."""
    universe, grain = settings.universe, settings.universe.partition_grain
    last_day = end - timedelta(days=1)
    if session is not None:
        last_day = min(last_day, date.fromisoformat(session))
        end = last_day + timedelta(days=1)
    first_day = start - timedelta(days=14)
    chain = build_provider_chain(settings)
    if len(chain) == 1:
        raw, served_by, routing_metadata = chain[0].fetch_bars(tickers, first_day, last_day), {}, {}
        name = chain[0].name
    else:
        routed = route_bars(
            chain,
            tickers,
            first_day,
            last_day,
            calendar=universe.calendar,
            grain=grain,
            quality=settings.quality,
        )
        raw, served_by, name = routed.frame, routed.served_by, chain[0].name
        routing_metadata = routed.as_metadata()
    ingested = ingest_bars(
        raw,
        provider=name,
        start=start,
        end=end,
        calendar=universe.calendar,
        grain=grain,
        quality=settings.quality,
        ingested_at=STAMP,
    )
    if served_by:
        frame = ingested.frame.with_columns(
            pl.col("ticker").replace_strict(served_by, default=name).alias("provider")
        )
        ingested = replace(ingested, frame=frame)
    return ingested, {
        "provider_chain": " → ".join(p.name for p in chain),
        **({"providers": routing_metadata} if routing_metadata else {}),
    }


def _assert_same(ours: tuple[IngestedBars, dict], theirs: tuple[IngestedBars, dict]) -> None:
    assert_frame_equal(ours[0].frame, theirs[0].frame, check_exact=True)
    assert_frame_equal(ours[0].partitions, theirs[0].partitions, check_exact=True)
    for report in ("row_report", "partition_report", "spike_report"):
        assert getattr(ours[0], report).success == getattr(theirs[0], report).success
        assert getattr(ours[0], report).outcomes == getattr(theirs[0], report).outcomes
    assert ours[1] == theirs[1]


@pytest.mark.parametrize("session", [None, SESSION], ids=["range run", "daily run"])
@pytest.mark.parametrize("fallback", [[], ["synthetic"]], ids=["one provider", "a chain"])
def test_ingesting_equals_the_former_asset_closure(make_project, session, fallback):
    project = make_project(["AAA", "BBB"], START, date(2020, 2, 29))
    _corrupt(project, "BBB")
    settings = _settings(project, fallback)
    tickers = ["AAA", "BBB"]
    iso = session.isoformat() if session else None
    ours = ingest_range(settings, tickers, START, END, session=session, ingested_at=STAMP)
    _assert_same(ours, _former_ingest(settings, tickers, START, END, iso))


def test_a_daily_run_keeps_no_bar_after_its_session(make_project):
    project = make_project(["AAA"], START, date(2020, 2, 29))
    settings = _settings(project)
    ingested, metadata = ingest_range(
        settings, ["AAA"], START, END, session=SESSION, ingested_at=STAMP
    )
    assert ingested.frame["date"].max() == SESSION
    assert ingested.frame["date"].min() == date(2020, 1, 2)  # the first session of the range
    assert metadata == {"provider_chain": "files"}
    whole, _ = ingest_range(settings, ["AAA"], START, END, session=None, ingested_at=STAMP)
    assert whole.frame["date"].max() == date(2020, 2, 28)


class _Recording:
    """A provider that records each fetch and answers from another one."""

    def __init__(self, inner) -> None:
        self.inner, self.name, self.calls = inner, inner.name, []

    def fetch_bars(self, tickers: Sequence[str], start: date, end: date) -> pl.DataFrame:
        self.calls.append((list(tickers), start, end))
        return self.inner.fetch_bars(tickers, start, end)


def test_bars_are_fetched_from_a_margin_before_the_range_through_the_last_kept_day(
    make_project, monkeypatch
):
    project = make_project(["AAA"], START, date(2020, 2, 29))
    settings = _settings(project)
    recorded: list[_Recording] = []

    def chain(settings: Settings) -> list[_Recording]:
        recorded[:] = [_Recording(p) for p in build_provider_chain(settings)]
        return recorded

    monkeypatch.setattr(routing, "build_provider_chain", chain)
    ingest_range(settings, ["AAA"], START, END, session=SESSION, ingested_at=STAMP)
    assert recorded[0].calls == [(["AAA"], START - PREVIOUS_CLOSE_MARGIN, SESSION)]
    ingest_range(settings, ["AAA"], START, END, session=None, ingested_at=STAMP)
    assert recorded[0].calls == [(["AAA"], date(2019, 12, 18), date(2020, 2, 29))]
    # A session after the range changes nothing: the range's end still caps.
    ingest_range(settings, ["AAA"], START, END, session=date(2020, 6, 1), ingested_at=STAMP)
    assert recorded[0].calls == [(["AAA"], date(2019, 12, 18), date(2020, 2, 29))]


def test_every_row_names_the_provider_that_served_its_ticker(make_project):
    project = make_project(["AAA", "BBB"], START, date(2020, 2, 29))
    _corrupt(project, "BBB")
    settings = _settings(project, ["synthetic"])
    ingested, metadata = ingest_range(
        settings, ["AAA", "BBB"], START, END, session=None, ingested_at=STAMP
    )
    served = dict(ingested.frame.group_by("ticker").agg(pl.col("provider").unique()).iter_rows())
    assert served == {"AAA": ["files"], "BBB": ["synthetic"]}
    assert (ingested.frame["close"] > 0).all()
    assert metadata["provider_chain"] == "files → synthetic"
    providers = metadata["providers"]
    assert providers["served_by"] == {"AAA": "files", "BBB": "synthetic"}
    assert providers["fallback_tickers"] == ["BBB"]
    rejected = [a for a in providers["attempts"] if a["outcome"] == "rejected"]
    assert [(a["provider"], a["ticker"]) for a in rejected] == [("files", "BBB")]
    assert json.loads(json.dumps(metadata)) == metadata  # plain JSON for the asset


def test_a_chain_that_serves_every_ticker_from_the_primary_still_reports_it(make_project):
    project = make_project(["AAA"], START, date(2020, 2, 29))
    settings = _settings(project, ["synthetic"])
    ingested, metadata = ingest_range(
        settings, ["AAA"], START, END, session=None, ingested_at=STAMP
    )
    assert set(ingested.frame["provider"]) == {"files"}
    assert metadata["providers"]["served_by"] == {"AAA": "files"}
    assert metadata["providers"]["fallback_tickers"] == []


def test_a_ticker_no_provider_can_serve_raises_routing_error_with_every_attempt(make_project):
    project = make_project(["AAA", "ZZZ"], START, date(2020, 1, 31))
    (project.drop / "ZZZ.csv").unlink()
    settings = _settings(project, ["bundled"])  # the bundled data has no ZZZ either
    with pytest.raises(RoutingError) as raised:
        ingest_range(settings, ["AAA", "ZZZ"], START, END, session=None, ingested_at=STAMP)
    message = str(raised.value)
    assert "ZZZ" in message and "files" in message and "bundled" in message
    tried = [(a.provider, a.ticker) for a in raised.value.attempts if a.ticker == "ZZZ"]
    assert tried == [("files", "ZZZ"), ("bundled", "ZZZ")]


def test_rows_are_stamped_with_the_ingestion_time(make_project):
    project = make_project(["AAA"], START, date(2020, 2, 29))
    settings = _settings(project)
    ingested, _ = ingest_range(settings, ["AAA"], START, END, session=None, ingested_at=STAMP)
    assert ingested.frame["ingested_at"].unique().to_list() == [STAMP]
    before = datetime.now(UTC)
    ingested, _ = ingest_range(settings, ["AAA"], START, END, session=None)
    stamped = ingested.frame["ingested_at"].unique().to_list()
    assert len(stamped) == 1 and before <= stamped[0] <= datetime.now(UTC)
