"""Specification of the yahoo provider, run offline on recorded Yahoo chart-API responses.

yfinance's own request handling and parser run on the recorded bodies (see conftest.py), so
these tests pin what we make of Yahoo's answers: adjusted bars on session dates, our symbols,
retries only where they can help, and refusals that name the ticker.
"""

from __future__ import annotations

import socket
import threading
from datetime import date
from typing import TYPE_CHECKING, Any

import polars as pl
import pytest

from quant_assets.errors import ProviderError
from quant_assets.providers.base import BAR_SCHEMA
from quant_assets.providers.ratelimit import TokenBucket, shared_bucket
from quant_assets.providers.yahoo import YahooProvider, yahoo_symbol

if TYPE_CHECKING:
    from conftest import YahooReplay  # the fixture's type (tests get it via the fixture)

AAPL = "AAPL_2024-01-02_2024-01-10.200.json"
NVDA = "NVDA_2024-06-05_2024-06-12_split.200.json"
GSPC = "GSPC_2024-01-02_2024-01-04.200.json"
BRK_B = "BRK-B_2024-01-02_2024-01-03.200.json"
RATE_LIMITED = "rate_limited.429.txt"
DOWN = "will_be_right_back.503.html"
NOT_FOUND = "chart_not_found.404.json"
JAN_2, JAN_10 = date(2024, 1, 2), date(2024, 1, 10)


class FakeClock:
    """Monotonic time that only moves when someone sleeps."""

    def __init__(self) -> None:
        self.now = 0.0
        self.sleeps: list[float] = []

    def __call__(self) -> float:
        return self.now

    def sleep(self, seconds: float) -> None:
        self.sleeps.append(seconds)
        self.now += seconds


def provider(waits: list[float] | None = None, **options: Any) -> YahooProvider:
    """A yahoo provider with an unlimited private bucket and recorded (not slept) waits."""
    recorder = waits if waits is not None else []
    defaults: dict[str, Any] = dict(
        backoff_seconds=0.0, bucket=TokenBucket(1000, 1000), sleep=recorder.append
    )
    return YahooProvider(**{**defaults, **options})


def row(frame: pl.DataFrame, day: date) -> dict[str, Any]:
    return frame.filter(pl.col("date") == day).row(0, named=True)


# --- parsing -----------------------------------------------------------------------------------


def test_a_recorded_chart_becomes_adjusted_bars_in_the_bar_schema(
    yahoo_replay: YahooReplay,
) -> None:
    yahoo_replay.serve("AAPL", AAPL)
    bars = provider().fetch_bars(["AAPL"], JAN_2, JAN_10)

    assert bars.schema == BAR_SCHEMA
    assert bars["date"].to_list() == [date(2024, 1, d) for d in (2, 3, 4, 5, 8, 9, 10)]
    assert bars["ticker"].unique().to_list() == ["AAPL"]
    # Yahoo: open 187.15 high 188.44 low 183.89 close 185.64 adjclose 184.7118 (x 0.995).
    # auto_adjust scales open/high/low by adjclose / close and takes adjclose as the close.
    first = row(bars, JAN_2)
    assert first["open"] == pytest.approx(186.21425)
    assert first["high"] == pytest.approx(187.4978)
    assert first["low"] == pytest.approx(182.97055)
    assert first["close"] == pytest.approx(184.7118)
    assert first["volume"] == 82_488_700.0


def test_rows_are_limited_to_the_requested_range(yahoo_replay: YahooReplay) -> None:
    yahoo_replay.serve("AAPL", AAPL)
    bars = provider().fetch_bars(["AAPL"], date(2024, 1, 4), date(2024, 1, 8))
    assert bars["date"].to_list() == [date(2024, 1, 4), date(2024, 1, 5), date(2024, 1, 8)]


def test_bars_carry_the_exchange_session_date_not_the_utc_date(yahoo_replay: YahooReplay) -> None:
    # A Sydney session opens at 10:00 local = 23:00 UTC the day before: the bar belongs to the
    # local day. (Same prices, re-stamped as an ASX listing.)
    chart = yahoo_replay.chart(AAPL)
    result = chart["chart"]["result"][0]
    result["meta"].update(exchangeTimezoneName="Australia/Sydney", timezone="AEDT")
    # Recorded stamps are 09:30 New York (14:30 UTC); 10:00 Sydney (AEDT) is 23:00 UTC the
    # day before, 15.5 hours earlier.
    result["timestamp"] = [t - int(15.5 * 3600) for t in result["timestamp"]]
    yahoo_replay.serve("BHP.AX", chart)

    bars = provider(symbols={"BHP.AX": "BHP.AX"}).fetch_bars(["BHP.AX"], JAN_2, JAN_10)
    assert bars["date"].to_list() == [date(2024, 1, d) for d in (2, 3, 4, 5, 8, 9, 10)]


def test_a_split_inside_the_range_leaves_one_continuous_adjusted_series(
    yahoo_replay: YahooReplay,
) -> None:
    # NVDA split 10:1 on 2024-06-10 and paid $0.01 (ex 2024-06-11). Yahoo's OHLC is already
    # split-adjusted; the dividend comes off the closes before the ex-date.
    yahoo_replay.serve("NVDA", NVDA)
    bars = provider().fetch_bars(["NVDA"], date(2024, 6, 5), date(2024, 6, 12))

    assert bars.height == 6  # one bar on the split day, none duplicated by the events
    assert row(bars, date(2024, 6, 7))["close"] == pytest.approx(120.89 * (121.78 / 121.79))
    assert row(bars, date(2024, 6, 10))["close"] == pytest.approx(121.78)  # 121.79 - 0.01
    assert row(bars, date(2024, 6, 11))["close"] == pytest.approx(120.91)
    returns = bars["close"].pct_change().drop_nulls().abs()
    assert returns.max() < 0.05  # no 10x jump across the split


def test_prices_left_unadjusted_across_a_split_are_refused(yahoo_replay: YahooReplay) -> None:
    chart = yahoo_replay.chart(NVDA)
    result = chart["chart"]["result"][0]
    quote, adjclose = result["indicators"]["quote"][0], result["indicators"]["adjclose"][0]
    for i in range(3):  # the three sessions before the split, in pre-split dollars
        for field in ("open", "high", "low", "close"):
            quote[field][i] *= 10
        adjclose["adjclose"][i] *= 10
    yahoo_replay.serve("NVDA", chart)

    with pytest.raises(ProviderError, match=r"yahoo.*NVDA.*unadjusted.*10:1 split on 2024-06-10"):
        provider().fetch_bars(["NVDA"], date(2024, 6, 5), date(2024, 6, 12))


# --- symbols -----------------------------------------------------------------------------------


def test_our_symbols_map_to_yahoo_symbols() -> None:
    assert yahoo_symbol("AAPL") == "AAPL"
    assert yahoo_symbol("SP500") == "^GSPC"
    assert yahoo_symbol("BRK.B") == "BRK-B"
    assert yahoo_symbol("VOD.L", {"VOD.L": "VOD.L"}) == "VOD.L"
    assert yahoo_symbol("SP500", {"SP500": "SPY"}) == "SPY"  # the configured map wins


def test_returned_bars_carry_our_symbol_not_yahoos(yahoo_replay: YahooReplay) -> None:
    yahoo_replay.serve("^GSPC", GSPC)
    yahoo_replay.serve("BRK-B", BRK_B)
    bars = provider().fetch_bars(["SP500", "BRK.B"], JAN_2, JAN_10)

    assert sorted(bars["ticker"].unique().to_list()) == ["BRK.B", "SP500"]
    assert row(bars.filter(pl.col("ticker") == "SP500"), JAN_2)["close"] == 4742.83
    assert len(yahoo_replay.price_requests("^GSPC")) == 1
    assert len(yahoo_replay.price_requests("BRK-B")) == 1


# --- retries -----------------------------------------------------------------------------------


def test_a_rate_limit_is_retried_then_the_bars_arrive(yahoo_replay: YahooReplay) -> None:
    # yfinance re-sends once after an HTTP error: two 429s are one failed attempt.
    yahoo_replay.serve("AAPL", RATE_LIMITED, RATE_LIMITED, AAPL)
    waits: list[float] = []
    bars = provider(waits).fetch_bars(["AAPL"], JAN_2, JAN_10)

    assert bars.height == 7
    assert len(waits) == 1  # one retry
    assert len(yahoo_replay.price_requests("AAPL")) == 3


def test_a_server_error_page_is_retried_with_a_fresh_request(yahoo_replay: YahooReplay) -> None:
    # yfinance memoises past-range responses, error pages included; the retry must not be
    # answered from that memo.
    yahoo_replay.serve("AAPL", DOWN, DOWN, AAPL)
    waits: list[float] = []
    bars = provider(waits).fetch_bars(["AAPL"], JAN_2, JAN_10)

    assert bars.height == 7
    assert len(waits) == 1


def test_an_unknown_ticker_is_not_retried(yahoo_replay: YahooReplay) -> None:
    yahoo_replay.serve("NOPE", NOT_FOUND)
    waits: list[float] = []
    with pytest.raises(ProviderError, match=r"yahoo: ticker NOPE .*no such ticker"):
        provider(waits).fetch_bars(["NOPE"], JAN_2, JAN_10)
    assert waits == []


def test_a_404_on_the_price_request_is_not_retried(yahoo_replay: YahooReplay) -> None:
    # The timezone look-up succeeds (AAPL's meta), then the price request gets a 404 twice
    # (yfinance's re-send): a retry would have been answered with the good recording.
    yahoo_replay.serve("AAPL", NOT_FOUND, NOT_FOUND, AAPL)
    waits: list[float] = []
    with pytest.raises(ProviderError, match=r"yahoo: ticker AAPL .*No data found"):
        provider(waits).fetch_bars(["AAPL"], JAN_2, JAN_10)
    assert waits == []
    assert len(yahoo_replay.price_requests("AAPL")) == 2


def test_exhausted_retries_raise_a_provider_error_naming_the_ticker(
    yahoo_replay: YahooReplay,
) -> None:
    yahoo_replay.serve("AAPL", RATE_LIMITED)
    waits: list[float] = []
    with pytest.raises(ProviderError, match=r"yahoo: ticker AAPL .*gave up after 3 attempt"):
        provider(waits, max_attempts=3).fetch_bars(["AAPL"], JAN_2, JAN_10)
    assert len(waits) == 2
    # 3 attempts, each stopped at its first (timezone) request and re-sent once by yfinance.
    assert len(yahoo_replay.requests) == 6


def test_backoff_grows_exponentially_with_bounded_jitter(yahoo_replay: YahooReplay) -> None:
    yahoo_replay.serve("AAPL", RATE_LIMITED)
    waits: list[float] = []
    options = dict(backoff_seconds=1.0, max_backoff_seconds=3.0, max_attempts=4)
    with pytest.raises(ProviderError):
        provider(waits, **options).fetch_bars(["AAPL"], JAN_2, JAN_10)
    first, second, third = waits
    assert 1.0 <= first <= 2.0
    assert 2.0 <= second <= 3.0
    assert third == 3.0  # capped


# --- malformed responses -----------------------------------------------------------------------


def test_a_response_missing_a_price_column_is_refused(yahoo_replay: YahooReplay) -> None:
    chart = yahoo_replay.chart(AAPL)
    del chart["chart"]["result"][0]["indicators"]["quote"][0]["high"]
    yahoo_replay.serve("AAPL", chart)
    with pytest.raises(ProviderError, match=r"AAPL.*malformed response.*high"):
        provider().fetch_bars(["AAPL"], JAN_2, JAN_10)


def test_a_nan_only_response_is_refused(yahoo_replay: YahooReplay) -> None:
    chart = yahoo_replay.chart(AAPL)
    quote = chart["chart"]["result"][0]["indicators"]["quote"][0]
    for field in quote:
        quote[field] = [None] * len(quote[field])
    chart["chart"]["result"][0]["indicators"]["adjclose"][0]["adjclose"] = [None] * 7
    yahoo_replay.serve("AAPL", chart)
    with pytest.raises(ProviderError, match=r"AAPL.*all 7 row\(s\) have NaN-only prices"):
        provider().fetch_bars(["AAPL"], JAN_2, JAN_10)


def test_an_empty_response_is_refused(yahoo_replay: YahooReplay) -> None:
    chart = yahoo_replay.chart(AAPL)
    result = chart["chart"]["result"][0]
    del result["timestamp"]
    result["indicators"] = {"quote": [{}], "adjclose": [{}]}
    yahoo_replay.serve("AAPL", chart)
    with pytest.raises(ProviderError, match=r"yahoo: ticker AAPL"):
        provider().fetch_bars(["AAPL"], JAN_2, JAN_10)


# --- rate limit --------------------------------------------------------------------------------


def test_the_token_bucket_allows_a_burst_then_the_rate() -> None:
    clock = FakeClock()
    bucket = TokenBucket(5, 5, clock=clock, sleep=clock.sleep)
    for _ in range(15):
        bucket.acquire()
    # 5 at once, then 10 more at 5 per second: 2 seconds of waiting, never sleeping for real.
    assert clock.now == pytest.approx(2.0)
    assert clock.sleeps[0] == pytest.approx(0.2)


def test_the_token_bucket_never_hands_out_more_than_its_capacity_across_threads() -> None:
    clock = FakeClock()  # time stands still: only the initial tokens exist
    bucket = TokenBucket(1, 100, clock=clock, sleep=clock.sleep)
    granted: list[bool] = []
    lock = threading.Lock()

    def grab() -> None:
        for _ in range(50):
            ok = bucket.try_acquire() == 0.0
            with lock:
                granted.append(ok)

    threads = [threading.Thread(target=grab) for _ in range(8)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert sum(granted) == 100


def test_every_request_attempt_takes_a_token(yahoo_replay: YahooReplay) -> None:
    clock = FakeClock()
    yahoo_replay.serve("AAPL", AAPL)
    yahoo_replay.serve("^GSPC", GSPC)
    yahoo_replay.serve("BRK-B", BRK_B)
    bucket = TokenBucket(2, 1, clock=clock, sleep=clock.sleep)
    provider(bucket=bucket).fetch_bars(["AAPL", "SP500", "BRK.B"], JAN_2, JAN_10)
    assert clock.sleeps == [pytest.approx(0.5), pytest.approx(0.5)]


def test_providers_built_alike_share_one_bucket_per_process() -> None:
    assert shared_bucket("yahoo", 5, 5) is shared_bucket("yahoo", 5, 5)
    assert YahooProvider().bucket is YahooProvider().bucket
    assert shared_bucket("yahoo", 5, 5) is not shared_bucket("other", 5, 5)


# --- the network guard -------------------------------------------------------------------------


def test_reaching_the_network_in_a_test_fails_loudly(no_network: list[str]) -> None:
    with pytest.raises(RuntimeError, match="must not touch the network"):
        socket.create_connection(("127.0.0.1", 9), timeout=0.1)
    from curl_cffi import requests as curl_requests

    with pytest.raises(RuntimeError, match="must not touch the network"):
        curl_requests.Session().get("https://query2.finance.yahoo.com/")
    assert len(no_network) == 2
    no_network.clear()  # recorded as expected; otherwise teardown fails the test
