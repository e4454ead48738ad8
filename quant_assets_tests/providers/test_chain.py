"""Specification of the provider fallback chain and its configuration.

Per ticker, the first provider whose bars arrive and pass the blocking checks serves it; every
try is logged; a ticker nobody can serve is an error naming every provider's reason.
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from datetime import date
from pathlib import Path
from typing import TYPE_CHECKING

import polars as pl
import pytest

from quant_assets.calendar import trading_sessions_array
from quant_assets.errors import ConfigError, NoBarsInRangeError, ProviderError
from quant_assets.providers.base import BAR_SCHEMA, conform_bars, empty_bars
from quant_assets.providers.bundled import BundledProvider
from quant_assets.providers.chain import ATTEMPT_SCHEMA, RoutingError, route_bars
from quant_assets.providers.files import FilesProvider
from quant_assets.providers.registry import build_provider, build_provider_chain
from quant_assets.providers.yahoo import YahooProvider
from quant_assets.quality.gx import ExpectationOutcome, ValidationReport
from quant_assets.settings import CONFIG_ENV, QualitySettings, load_settings

if TYPE_CHECKING:
    from conftest import YahooReplay  # the fixture's type (tests get it via the fixture)

START, END = date(2024, 1, 2), date(2024, 2, 29)
QUALITY = QualitySettings()  # min_quality_score 0.6, spike threshold 0.40


def session_bars(
    ticker: str, start: date = START, end: date = END, *, every: int = 1
) -> pl.DataFrame:
    """Clean bars on every ``every``-th XNYS session: close 100, 101, ...; OHLC consistent."""
    sessions = trading_sessions_array("XNYS", start, end)[::every]
    close = [100.0 + i for i in range(len(sessions))]
    return conform_bars(
        pl.DataFrame(
            {
                "date": sessions,
                "ticker": ticker,
                "open": close,
                "high": [c + 1 for c in close],
                "low": [c - 1 for c in close],
                "close": close,
                "volume": 1e6,
            }
        ).with_columns(pl.col("date").cast(pl.Date))
    )


class StubProvider:
    """Answers from a dict: a frame (rows in range returned) or an exception to raise."""

    def __init__(self, name: str, answers: dict[str, pl.DataFrame | Exception]) -> None:
        self.name = name
        self.answers = answers
        self.calls: list[str] = []

    def fetch_bars(self, tickers: Sequence[str], start: date, end: date) -> pl.DataFrame:
        frames = []
        for ticker in tickers:
            self.calls.append(ticker)
            answer = self.answers.get(ticker, ProviderError(f"{self.name} has no {ticker}"))
            if isinstance(answer, Exception):
                raise answer
            frames.append(answer.filter(pl.col("date").is_between(start, end)))
        return pl.concat(frames) if frames else empty_bars()


def positive_close(frame: pl.DataFrame) -> ValidationReport:
    """A fast stand-in for the GX row suite (importing GX takes seconds): close > 0."""
    bad = frame.filter(pl.col("close") <= 0)
    outcome = ExpectationOutcome(
        rule="expect_column_values_to_be_between",
        column="close",
        success=bad.is_empty(),
        unexpected_count=bad.height,
        examples=tuple(bad.select("ticker", "date").head(5).to_dicts()),
    )
    return ValidationReport(suite="stand_in", row_count=frame.height, outcomes=(outcome,))


def route(chain: Sequence[StubProvider], tickers: Sequence[str], **options: object):  # type: ignore[no-untyped-def]
    kwargs: dict[str, object] = dict(
        calendar="XNYS", grain="month", quality=QUALITY, row_check=positive_close
    )
    return route_bars(chain, tickers, START, END, **{**kwargs, **options})  # type: ignore[arg-type]


def outcomes(routed_attempts: Sequence[object]) -> list[tuple[str, str, str]]:
    return [(a.provider, a.ticker, a.outcome) for a in routed_attempts]  # type: ignore[attr-defined]


# --- routing -----------------------------------------------------------------------------------


def test_the_primary_serves_every_ticker_whose_bars_pass() -> None:
    primary = StubProvider("primary", {"AAA": session_bars("AAA"), "BBB": session_bars("BBB")})
    fallback = StubProvider("fallback", {})
    routed = route([primary, fallback], ["AAA", "BBB"])

    assert routed.served_by == {"AAA": "primary", "BBB": "primary"}
    assert fallback.calls == []
    assert routed.frame.schema == BAR_SCHEMA
    assert routed.frame.equals(pl.concat([session_bars("AAA"), session_bars("BBB")]))
    assert [a.quality_score for a in routed.attempts] == [1.0, 1.0]


def test_a_ticker_falls_back_to_the_next_provider_when_the_primary_errors() -> None:
    primary = StubProvider(
        "primary", {"AAA": session_bars("AAA"), "BBB": ProviderError("primary: BBB unknown")}
    )
    fallback = StubProvider("fallback", {"BBB": session_bars("BBB")})
    routed = route([primary, fallback], ["AAA", "BBB"])

    assert routed.served_by == {"AAA": "primary", "BBB": "fallback"}
    assert fallback.calls == ["BBB"]  # only the ticker that needed it
    assert outcomes(routed.attempts) == [
        ("primary", "AAA", "ok"),
        ("primary", "BBB", "error"),
        ("fallback", "BBB", "ok"),
    ]
    assert routed.attempts[1].reason == "primary: BBB unknown"


def test_a_network_error_left_after_retries_falls_back_too() -> None:
    primary = StubProvider("primary", {"AAA": ConnectionError("connection reset by peer")})
    fallback = StubProvider("fallback", {"AAA": session_bars("AAA")})
    routed = route([primary, fallback], ["AAA"])

    assert routed.served_by == {"AAA": "fallback"}
    assert routed.attempts[0].reason == "ConnectionError: connection reset by peer"


def test_a_bug_in_a_provider_is_not_mistaken_for_a_provider_failure() -> None:
    primary = StubProvider("primary", {"AAA": ZeroDivisionError("oops")})
    with pytest.raises(ZeroDivisionError):
        route([primary, StubProvider("fallback", {"AAA": session_bars("AAA")})], ["AAA"])


def test_bars_with_negative_prices_fall_back_under_the_real_row_suite() -> None:
    broken = session_bars("AAA").with_columns(
        pl.when(pl.col("date") == date(2024, 1, 10))
        .then(-5.0)
        .otherwise(pl.col("close"))
        .alias("close")
    )
    primary = StubProvider("primary", {"AAA": broken, "BBB": session_bars("BBB")})
    fallback = StubProvider("fallback", {"AAA": session_bars("AAA")})
    routed = route([primary, fallback], ["AAA", "BBB"], row_check=None)  # the default: GX

    assert routed.served_by == {"AAA": "fallback", "BBB": "primary"}
    rejected = routed.attempts[0]
    assert (rejected.provider, rejected.ticker, rejected.outcome) == ("primary", "AAA", "rejected")
    assert "row checks failed" in rejected.reason and "close" in rejected.reason
    assert "2024-01-10" in rejected.reason
    assert routed.frame.filter(pl.col("ticker") == "AAA")["close"].min() > 0


def test_bars_below_the_minimum_quality_score_fall_back() -> None:
    # Every other session missing: missing_dates_pct ~0.5, score ~1 - 0.3 * 0.5 = 0.85.
    gappy = session_bars("AAA", every=2)
    primary = StubProvider("primary", {"AAA": gappy})
    fallback = StubProvider("fallback", {"AAA": session_bars("AAA")})
    strict = QualitySettings(min_quality_score=0.9)
    routed = route([primary, fallback], ["AAA"], quality=strict)

    assert routed.served_by == {"AAA": "fallback"}
    rejected = routed.attempts[0]
    assert rejected.outcome == "rejected"
    assert rejected.quality_score == pytest.approx(0.85, abs=0.01)
    assert "quality score 0.85" in rejected.reason and "min_quality_score 0.9" in rejected.reason
    assert routed.attempts[1].quality_score == 1.0


def test_every_provider_failing_names_the_ticker_and_each_providers_reason() -> None:
    negative = session_bars("AAA").with_columns(pl.lit(-1.0).alias("close"))
    chain = [
        StubProvider(
            "yahoo", {"AAA": ProviderError("yahoo: ticker AAA: gave up after 4 attempt(s)")}
        ),
        StubProvider("files", {"AAA": negative}),
        StubProvider("bundled", {"AAA": ProviderError("bundled provider has no ticker 'AAA'")}),
    ]
    with pytest.raises(RoutingError) as raised:
        route(chain, ["AAA", "BBB"])

    message = str(raised.value)
    assert isinstance(raised.value, ProviderError)
    assert "no provider could serve AAA, BBB" in message
    assert "AAA from yahoo: error: yahoo: ticker AAA: gave up after 4 attempt(s)" in message
    assert "AAA from files: rejected: row checks failed" in message
    assert "AAA from bundled: error: bundled provider has no ticker 'AAA'" in message
    assert "BBB from bundled: error: bundled has no BBB" in message
    assert len(raised.value.attempts) == 6


def test_the_attempt_log_is_a_frame_and_plain_json_metadata() -> None:
    primary = StubProvider("primary", {"AAA": ProviderError("down")})
    fallback = StubProvider("fallback", {"AAA": session_bars("AAA")})
    routed = route([primary, fallback], ["AAA"])

    log = routed.attempt_log()
    assert log.schema == pl.Schema(ATTEMPT_SCHEMA)
    assert log.rows() == [
        ("primary", "AAA", "error", "down", None, 0),
        ("fallback", "AAA", "ok", "", 1.0, session_bars("AAA").height),
    ]
    metadata = routed.as_metadata()
    assert json.loads(json.dumps(metadata)) == metadata
    assert metadata["served_by"] == {"AAA": "fallback"}
    assert metadata["fallback_tickers"] == ["AAA"]
    assert routed.providers_used == ["fallback"]


def test_a_ticker_no_provider_has_bars_for_contributes_no_rows() -> None:
    # Before a listing, every provider answers with no rows: not an error, as with one provider.
    later = session_bars("NEW", date(2025, 1, 2), date(2025, 1, 31))
    chain = [StubProvider("a", {"NEW": later}), StubProvider("b", {"NEW": later})]
    routed = route(chain, ["NEW"])

    assert routed.frame.is_empty()
    assert routed.served_by == {}
    assert outcomes(routed.attempts) == [("a", "NEW", "empty"), ("b", "NEW", "empty")]


def test_a_provider_saying_no_bars_in_range_counts_as_empty_not_as_a_failure() -> None:
    # Yahoo raises for an empty range (e.g. before a listing); the chain treats it as no rows.
    later = session_bars("NEW", date(2025, 1, 2), date(2025, 1, 31))
    chain = [
        StubProvider("yahoo", {"NEW": NoBarsInRangeError("yahoo NEW: empty response")}),
        StubProvider("b", {"NEW": later}),
    ]
    routed = route(chain, ["NEW"])

    assert routed.frame.is_empty()
    assert outcomes(routed.attempts) == [("yahoo", "NEW", "empty"), ("b", "NEW", "empty")]


def test_an_empty_chain_is_refused() -> None:
    with pytest.raises(ValueError, match="empty"):
        route([], ["AAA"])


# --- configuration -----------------------------------------------------------------------------

UNIVERSE = "tickers: [AAPL, NOPE]\nbenchmark: SP500\nstart: 2024-01-02\nend: 2024-01-31\n"


@pytest.fixture
def config_dir(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    monkeypatch.delenv(CONFIG_ENV, raising=False)
    folder = tmp_path / "configs"
    folder.mkdir()
    (folder / "universe.yaml").write_text(UNIVERSE)
    return folder


def config_error(config_dir: Path, providers: str) -> ConfigError:
    (config_dir / "providers.yaml").write_text(providers)
    with pytest.raises(ConfigError) as raised:
        load_settings(config_dir)
    return raised.value


@pytest.mark.parametrize(
    ("providers", "key", "words"),
    [
        ("fallback: [polygon]\n", "fallback.0", ["'bundled'", "'yahoo'"]),
        ("fallback: [yahoo, files, yahoo]\nfiles: {path: d}\n", "fallback", ["duplicate", "yahoo"]),
        ("provider: yahoo\nfallback: [yahoo]\n", "(top level)", ["repeats the primary", "yahoo"]),
        ("fallback: [files]\n", "(top level)", ["fallback 'files'", "path"]),
        ("provider: yahoo\nyahoo: {max_attempts: 0}\n", "yahoo.max_attempts", ["greater than"]),
        ("yahoo: {symbols: {SP500: 'not a symbol'}}\n", "yahoo.symbols.SP500", ["pattern"]),
        ("yahoo: {symbols: {'bad ticker': SPY}}\n", "yahoo.symbols", ["invalid ticker"]),
        ("yahoo: {retries: 3}\n", "yahoo.retries", ["unknown key"]),
    ],
    ids=[
        "unknown fallback",
        "duplicate fallback",
        "primary again",
        "files fallback without path",
        "zero attempts",
        "bad yahoo symbol",
        "bad ticker in symbols",
        "unknown yahoo key",
    ],
)
def test_invalid_provider_chains_are_config_errors_naming_file_and_key(
    config_dir: Path, providers: str, key: str, words: list[str]
) -> None:
    error = config_error(config_dir, providers)
    assert error.file.endswith("providers.yaml")
    assert error.key.startswith(key)
    for word in words:
        assert word in str(error)


def test_the_default_config_keeps_the_offline_bundled_provider_alone() -> None:
    settings = load_settings()
    assert settings.providers.chain == ["bundled"]
    assert [type(p) for p in build_provider_chain(settings)] == [BundledProvider]


def test_the_chain_is_built_in_order_from_providers_yaml(config_dir: Path) -> None:
    (config_dir / "providers.yaml").write_text(
        "provider: yahoo\nfallback: [files, bundled]\nfiles: {path: drop}\n"
        "yahoo: {max_attempts: 2, backoff_seconds: 0.5, symbols: {SPX: ^GSPC}}\n"
    )
    settings = load_settings(config_dir)
    chain = build_provider_chain(settings)

    assert [p.name for p in chain] == ["yahoo", "files", "bundled"]
    yahoo, files = chain[0], chain[1]
    assert isinstance(yahoo, YahooProvider) and isinstance(files, FilesProvider)
    assert (yahoo.max_attempts, yahoo.backoff_seconds) == (2, 0.5)
    assert yahoo.symbols == {"SPX": "^GSPC"}
    assert files.folder == config_dir / "drop"
    assert isinstance(build_provider(settings), YahooProvider)  # the primary, as before


def test_yahoo_falls_back_to_the_drop_folder_end_to_end(
    config_dir: Path, yahoo_replay: YahooReplay
) -> None:
    drop = config_dir / "drop"
    drop.mkdir()
    session_bars("NOPE", START, date(2024, 1, 31)).drop("ticker").write_csv(drop / "NOPE.csv")
    (config_dir / "providers.yaml").write_text(
        "provider: yahoo\nfallback: [files]\nfiles: {path: drop}\n"
        "yahoo: {max_attempts: 2, backoff_seconds: 0}\n"
    )
    yahoo_replay.serve("AAPL", "AAPL_2024-01-02_2024-01-10.200.json")  # NOPE: Yahoo's 404
    settings = load_settings(config_dir)

    routed = route_bars(
        build_provider_chain(settings),
        ["AAPL", "NOPE"],
        START,
        date(2024, 1, 10),
        calendar=settings.universe.calendar,
        grain=settings.universe.partition_grain,
        quality=settings.quality,
        row_check=positive_close,
    )
    assert routed.served_by == {"AAPL": "yahoo", "NOPE": "files"}
    assert outcomes(routed.attempts) == [
        ("yahoo", "AAPL", "ok"),
        ("yahoo", "NOPE", "error"),
        ("files", "NOPE", "ok"),
    ]
    assert "no such ticker" in routed.attempts[1].reason
    assert routed.frame.group_by("ticker").len().sort("ticker").rows() == [("AAPL", 7), ("NOPE", 7)]
