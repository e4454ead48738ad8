"""Provider test fixtures: no network, and recorded Yahoo responses replayed through yfinance.

- ``no_network`` (autouse): any socket connection, DNS lookup or curl_cffi request fails with
  :class:`NetworkAccessInTests`, and the test fails at teardown even if some code swallowed
  that error (a fallback chain would otherwise hide it).
- ``yahoo_replay``: answers yfinance's HTTP requests from ``recorded/`` (or frames built in a
  test) at yfinance's transport boundary, so yfinance's own request handling (its re-send
  after an HTTP error, 429 -> ``YFRateLimitError``) and its chart parser run unchanged.
  Use it to run :class:`quant_assets.providers.yahoo.YahooProvider` offline::

      def test_x(yahoo_replay):
          yahoo_replay.serve("AAPL", "AAPL_2024-01-02_2024-01-10.200.json")
          YahooProvider(...).fetch_bars(["AAPL"], ...)

Recorded files are named ``<what>.<HTTP status>.<ext>`` and hold the verbatim body.
"""

from __future__ import annotations

import json
import socket
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any
from urllib.parse import unquote

import pytest

RECORDED = Path(__file__).parent / "recorded"
CHART_PATH = "/v8/finance/chart/"


class NetworkAccessInTests(RuntimeError):
    """A test tried to reach the network. Not an OSError, so no retry logic swallows it."""


@pytest.fixture(autouse=True)
def no_network(monkeypatch: pytest.MonkeyPatch) -> Iterator[list[str]]:
    """Refuse the network; yields the list of refused attempts (a test of the guard may
    clear it after checking it)."""
    attempts: list[str] = []

    def refuse(*args: Any, **kwargs: Any) -> Any:
        shown = ", ".join(repr(a) for a in args[1:3]) or repr(kwargs)[:120]
        attempts.append(shown)
        raise NetworkAccessInTests(f"tests must not touch the network (attempted: {shown})")

    from curl_cffi import requests as curl_requests

    monkeypatch.setattr(socket.socket, "connect", refuse)
    monkeypatch.setattr(socket.socket, "connect_ex", refuse)
    monkeypatch.setattr(socket, "getaddrinfo", refuse)
    monkeypatch.setattr(curl_requests.Session, "request", refuse)
    yield attempts
    if attempts:
        pytest.fail(f"the test tried to reach the network: {attempts}")


@dataclass(frozen=True)
class Recorded:
    """One HTTP response: status and verbatim body."""

    status: int
    body: str

    @classmethod
    def load(cls, name: str) -> Recorded:
        """``recorded/<name>``; the status is the second-to-last dot part of the name."""
        return cls(int(name.rsplit(".", 2)[-2]), (RECORDED / name).read_text())

    @classmethod
    def chart(cls, payload: dict[str, Any], status: int = 200) -> Recorded:
        """A chart-API JSON document built in a test (e.g. a recorded one, altered)."""
        return cls(status, json.dumps(payload))


def load_chart(name: str) -> dict[str, Any]:
    """A recorded chart-API body as a dict, to alter in a test."""
    loaded: dict[str, Any] = json.loads((RECORDED / name).read_text())
    return loaded


def _recorded(response: str | dict[str, Any] | Recorded) -> Recorded:
    if isinstance(response, str):
        return Recorded.load(response)
    if isinstance(response, dict):
        return Recorded.chart(response)
    return response


class FakeResponse:
    """The parts of a curl_cffi response that yfinance reads."""

    def __init__(self, recorded: Recorded, url: str) -> None:
        self.status_code = recorded.status
        self.text = recorded.body
        self.content = recorded.body.encode()
        self.url = url

    def json(self) -> Any:
        return json.loads(self.text)

    def raise_for_status(self) -> None:
        if self.status_code >= 400:
            from yfinance._http import HTTPError

            raise HTTPError(f"HTTP Error {self.status_code}", response=self)


@dataclass
class YahooReplay:
    """Scripted answers per Yahoo symbol, and a log of every request yfinance made."""

    answers: dict[str, list[Recorded]] = field(default_factory=dict)
    requests: list[tuple[str, dict[str, Any]]] = field(default_factory=list)
    _served: dict[str, int] = field(default_factory=dict)

    def serve(self, symbol: str, *responses: str | dict[str, Any] | Recorded) -> None:
        """Answer price requests for ``symbol`` with ``responses`` in turn (the last repeats).

        A response is a file name in ``recorded/`` or a chart-API body (a dict, served with
        status 200; see :meth:`chart`). yfinance re-sends a request once after any HTTP error
        (switching its cookie strategy), so a rate limit that holds costs two responses:
        ``serve(s, "x.429.txt", "x.429.txt", "ok.200.json")`` is one failed attempt, then a
        good one. Timezone look-ups (``range`` requests) get the first 200 response (its
        ``meta``), else the first response.
        """
        self.answers[symbol] = [_recorded(r) for r in responses]

    @staticmethod
    def chart(name: str) -> dict[str, Any]:
        """A recorded chart-API body as a fresh dict, for a test to alter and serve."""
        return load_chart(name)

    def price_requests(self, symbol: str) -> list[dict[str, Any]]:
        """The params of every price-history request (``period1``/``period2``) for ``symbol``."""
        return [
            params
            for url, params in self.requests
            if url.endswith(CHART_PATH + symbol) and "period1" in params
        ]

    def answer(self, url: str, params: dict[str, Any]) -> FakeResponse:
        self.requests.append((url, dict(params)))
        if CHART_PATH not in url:  # quoteSummary / quote: yfinance's fallback timezone lookup
            return FakeResponse(Recorded.load("quote_summary_not_found.404.json"), url)
        symbol = unquote(url.rsplit(CHART_PATH, 1)[1])
        script = self.answers.get(symbol) or [Recorded.load("chart_not_found.404.json")]
        if "period1" not in params:  # the timezone look-up
            ok = [r for r in script if r.status == 200]
            return FakeResponse((ok or script)[0], url)
        served = self._served.get(symbol, 0)
        self._served[symbol] = served + 1
        return FakeResponse(script[min(served, len(script) - 1)], url)


class FakeSession:
    """Stands in for yfinance's curl_cffi session: every request goes to the replay."""

    def __init__(self, replay: YahooReplay) -> None:
        self.replay = replay
        self.cookies: dict[str, str] = {}
        self.proxies: dict[str, str] = {}

    def get(self, url: str, params: dict[str, Any] | None = None, **_: Any) -> FakeResponse:
        return self.replay.answer(url, params or {})

    def post(self, url: str, params: dict[str, Any] | None = None, **_: Any) -> FakeResponse:
        return self.replay.answer(url, params or {})


@pytest.fixture
def yahoo_replay(monkeypatch: pytest.MonkeyPatch) -> Iterator[YahooReplay]:
    """Install the replay in yfinance for one test; see the module docstring."""
    import yfinance as yf
    import yfinance.base
    import yfinance.cache
    from yfinance.data import YfData

    replay = YahooReplay()
    data = YfData()  # the process-wide singleton every Ticker uses
    monkeypatch.setattr(data, "_session", FakeSession(replay))
    monkeypatch.setattr(data, "_cookie_strategy", "basic")
    # No cookie/crumb round-trip (the chart API does not need one), no on-disk timezone cache
    # (it would outlive the test and skip the look-up), a fresh fallback-lookup budget.
    monkeypatch.setattr(YfData, "_get_cookie_and_crumb", lambda self, timeout=30: (None, "basic"))
    monkeypatch.setattr(yfinance.cache._TzCacheManager, "_tz_cache", yfinance.cache._TzCacheDummy())
    monkeypatch.setattr(yfinance.base, "_tz_info_fetch_ctr", 0)
    hide_exceptions = yf.config.debug.hide_exceptions  # the provider switches it off
    YfData.cache_get.cache_clear()  # yfinance memoises responses per URL in the process
    yield replay
    YfData.cache_get.cache_clear()
    yf.config.debug.hide_exceptions = hide_exceptions
