"""The Yahoo Finance provider: daily split/dividend-adjusted OHLCV through ``yfinance`` (network).

- Prices: yfinance's ``auto_adjust=True`` (Yahoo's chart API returns split-adjusted OHLC and a
  split/dividend-adjusted close; yfinance scales open/high/low by adjusted/raw close). Volume
  is Yahoo's (split-adjusted) share volume.
- Dates: the exchange session date (yfinance stamps daily bars at midnight in the exchange's
  time zone; we take that local date, never a UTC-shifted one).
- Symbols: our ticker is mapped to Yahoo's (:func:`yahoo_symbol`: the configured map, then
  :data:`DEFAULT_SYMBOLS`, then ``.`` -> ``-`` for US share classes such as ``BRK.B``); the
  returned ``ticker`` column is always our symbol.
- Retries (tenacity): exponential backoff with jitter, a bounded number of attempts, and only
  for transient failures (:func:`is_transient`: network errors, HTTP 429/5xx, yfinance's
  rate-limit error, an HTML error page instead of JSON). "No such ticker" is never retried.
- Rate limit: one token per request attempt from a process-wide token bucket
  (:func:`quant_assets.providers.ratelimit.shared_bucket`; seed 003: 5/s, burst 5).

Refusals are :class:`ProviderError` naming the provider, our ticker and Yahoo's symbol:
unknown ticker or an empty response, a malformed response (missing columns, NaN-only
prices, prices left unadjusted across a split), retries exhausted.
"""

from __future__ import annotations

import json
import logging
import math
import time
from collections.abc import Mapping, Sequence
from datetime import date, timedelta
from typing import TYPE_CHECKING, Any

import polars as pl
from tenacity import (
    RetryCallState,
    Retrying,
    retry_if_exception,
    stop_after_attempt,
    wait_exponential_jitter,
)

from quant_assets.errors import NoBarsInRangeError, ProviderError
from quant_assets.providers.base import conform_bars, empty_bars
from quant_assets.providers.ratelimit import Sleep, TokenBucket, shared_bucket
from quant_assets.tickers import validate_ticker

if TYPE_CHECKING:
    import pandas as pd

# Our symbol -> Yahoo's, for symbols no rule can derive. ``SP500`` is the benchmark's name in
# universe.yaml; Yahoo calls indices ``^NAME``.
DEFAULT_SYMBOLS: Mapping[str, str] = {
    "SP500": "^GSPC",
    "GSPC": "^GSPC",
    "IXIC": "^IXIC",
    "DJI": "^DJI",
    "RUT": "^RUT",
    "VIX": "^VIX",
}
YAHOO_COLUMNS: tuple[str, ...] = ("Open", "High", "Low", "Close", "Volume")
_LOG = logging.getLogger(__name__)
_HTTP_TOO_MANY_REQUESTS = 429
# yfinance raises this (YFDataException) when Yahoo answers with its maintenance page.
_YAHOO_DOWN = "CURRENTLY DOWN"
# Class names of transient network errors across HTTP backends (yfinance's own list).
_TRANSIENT_NAMES = frozenset(
    {
        "Timeout",
        "TimeoutError",
        "ConnectionError",
        "ConnectTimeout",
        "ReadTimeout",
        "ChunkedEncodingError",
        "RemoteDisconnected",
    }
)


def yahoo_symbol(ticker: str, symbols: Mapping[str, str] | None = None) -> str:
    """Yahoo's symbol for our ``ticker``: the ``symbols`` map, then :data:`DEFAULT_SYMBOLS`,
    then the US share-class rule ``BRK.B`` -> ``BRK-B``. Map a foreign listing explicitly
    (e.g. ``VOD.L: VOD.L``) to keep its dot."""
    if symbols and ticker in symbols:
        return symbols[ticker]
    if ticker in DEFAULT_SYMBOLS:
        return DEFAULT_SYMBOLS[ticker]
    return ticker.replace(".", "-")


def http_status(exc: BaseException) -> int | None:
    """The HTTP status of the response an exception carries, if any."""
    status = getattr(getattr(exc, "response", None), "status_code", None)
    return status if isinstance(status, int) else None


def is_transient(exc: BaseException) -> bool:
    """Whether retrying can help: rate limits, server errors, network errors.

    Never for "no such ticker" (yfinance's ``YFTickerMissingError`` family or an HTTP 4xx
    other than 429) nor for a malformed response (a bug or a data problem, not a hiccup).
    """
    from yfinance.exceptions import YFDataException, YFRateLimitError, YFTickerMissingError

    if isinstance(exc, YFRateLimitError):
        return True
    if isinstance(exc, YFTickerMissingError | ProviderError):
        return False
    status = http_status(exc)
    if status is not None:
        return status == _HTTP_TOO_MANY_REQUESTS or status >= 500
    if isinstance(exc, YFDataException):
        return _YAHOO_DOWN in str(exc)
    if isinstance(exc, json.JSONDecodeError):
        return True  # an HTML error page (a 5xx from a proxy or Yahoo's edge) instead of JSON
    # requests' and curl_cffi's network errors are OSError subclasses.
    return isinstance(exc, OSError) or type(exc).__name__ in _TRANSIENT_NAMES


def _before_retry(state: RetryCallState) -> None:
    """Log the retry, and forget yfinance's memoised responses.

    yfinance memoises past-range responses (an lru_cache on ``YfData.cache_get``), error
    pages included: without clearing it a retry would be served the same 5xx page again.
    """
    from yfinance.data import YfData

    error = state.outcome.exception() if state.outcome is not None else None
    wait = state.next_action.sleep if state.next_action is not None else 0.0
    _LOG.warning(
        "yahoo: %s failed (attempt %d: %s: %s); retrying in %.2f s",
        state.args[0] if state.args else "?",
        state.attempt_number,
        type(error).__name__,
        error,
        wait,
    )
    YfData.cache_get.cache_clear()


class YahooProvider:
    """Daily bars from Yahoo Finance through yfinance; see the module docstring.

    ``symbols`` maps our tickers to Yahoo's (merged over :data:`DEFAULT_SYMBOLS`).
    ``max_attempts`` bounds the tries per ticker (1 = no retry); the waits between them grow
    from ``backoff_seconds`` (doubling, plus up to ``backoff_seconds`` of jitter) and are capped
    at ``max_backoff_seconds``. ``bucket`` is the rate limiter (default: the process-wide
    yahoo bucket of ``rate_per_second`` and ``burst``); ``sleep`` waits between retries.
    """

    name = "yahoo"

    def __init__(
        self,
        *,
        symbols: Mapping[str, str] | None = None,
        max_attempts: int = 4,
        backoff_seconds: float = 1.0,
        max_backoff_seconds: float = 30.0,
        timeout_seconds: float = 10.0,
        rate_per_second: float = 5.0,
        burst: int = 5,
        bucket: TokenBucket | None = None,
        sleep: Sleep = time.sleep,
    ) -> None:
        if max_attempts < 1:
            raise ValueError(f"max_attempts must be >= 1, got {max_attempts!r}")
        if backoff_seconds < 0 or max_backoff_seconds < 0:
            raise ValueError("backoff_seconds and max_backoff_seconds must be >= 0")
        self.symbols = dict(symbols or {})
        for ticker in self.symbols:
            validate_ticker(ticker)
        self.max_attempts = max_attempts
        self.backoff_seconds = backoff_seconds
        self.max_backoff_seconds = max_backoff_seconds
        self.timeout_seconds = timeout_seconds
        self.bucket = bucket or shared_bucket(self.name, rate_per_second, burst)
        self._sleep = sleep

    def fetch_bars(self, tickers: Sequence[str], start: date, end: date) -> pl.DataFrame:
        """Return adjusted daily bars for ``tickers`` in ``[start, end]`` (the bar schema).

        One request per ticker (repeated symbols once). Raises :class:`ProviderError` naming
        the ticker for an unknown ticker, an empty or malformed response, or retries exhausted;
        :class:`InvalidTickerError` for an invalid symbol.
        """
        if isinstance(tickers, str):
            raise TypeError(f"tickers must be a sequence of symbols, not the string {tickers!r}")
        requested = list(dict.fromkeys(validate_ticker(t) for t in tickers))
        if not requested or start > end:
            return empty_bars()
        return pl.concat([self.fetch_ticker(t, start, end) for t in requested]).sort(
            ["ticker", "date"]
        )

    def fetch_ticker(self, ticker: str, start: date, end: date) -> pl.DataFrame:
        """One ticker's bars in ``[start, end]``, retried on transient errors; see fetch_bars."""
        symbol = yahoo_symbol(validate_ticker(ticker), self.symbols)
        where = f"yahoo: ticker {ticker} (Yahoo symbol {symbol!r})"
        retrying = Retrying(
            stop=stop_after_attempt(self.max_attempts),
            wait=wait_exponential_jitter(
                initial=self.backoff_seconds,
                max=self.max_backoff_seconds,
                jitter=self.backoff_seconds,
            ),
            retry=retry_if_exception(is_transient),
            before_sleep=_before_retry,
            sleep=self._sleep,
            reraise=True,
        )
        try:
            history = retrying(self._download, symbol, start, end)
        except Exception as exc:
            if is_transient(exc):
                raise ProviderError(
                    f"{where}: gave up after {self.max_attempts} attempt(s): "
                    f"{type(exc).__name__}: {exc}"
                ) from exc
            if _is_missing_ticker(exc):
                raise ProviderError(f"{where}: no such ticker or no data: {exc}") from exc
            if isinstance(exc, KeyError | TypeError | ValueError | IndexError):
                # yfinance's parser met a chart response of an unexpected shape.
                raise ProviderError(
                    f"{where}: malformed response ({type(exc).__name__}: {exc})"
                ) from exc
            if _is_yfinance_error(exc):
                raise ProviderError(f"{where}: yfinance: {type(exc).__name__}: {exc}") from exc
            raise
        return history_to_bars(history, ticker=ticker, symbol=symbol, start=start, end=end)

    def _download(self, symbol: str, start: date, end: date) -> pd.DataFrame:
        import yfinance as yf

        self.bucket.acquire()
        # yfinance's documented switch: raise instead of logging and returning an empty
        # frame, which would make a network error look like "no such ticker".
        yf.config.debug.hide_exceptions = False
        return yf.Ticker(symbol).history(
            start=start.isoformat(),
            end=(end + timedelta(days=1)).isoformat(),  # yfinance's end is exclusive
            interval="1d",
            auto_adjust=True,
            actions=True,
            keepna=True,  # we report NaN-only responses ourselves, with the ticker
            repair=False,  # repair re-fetches finer intervals: many more requests
            timeout=self.timeout_seconds,
        )


def _is_yfinance_error(exc: BaseException) -> bool:
    from yfinance.exceptions import YFException

    return isinstance(exc, YFException)


def _is_missing_ticker(exc: BaseException) -> bool:
    from yfinance.exceptions import YFTickerMissingError

    status = http_status(exc)
    return isinstance(exc, YFTickerMissingError) or (status is not None and 400 <= status < 500)


def history_to_bars(
    history: pd.DataFrame, *, ticker: str, symbol: str, start: date, end: date
) -> pl.DataFrame:
    """yfinance's adjusted daily ``history`` frame as bars of ``ticker`` in ``[start, end]``.

    Rows whose four prices are all missing (Yahoo's placeholder rows) are dropped; other
    missing values stay null for the quality suite to report. Raises :class:`ProviderError`
    for an empty frame, missing columns, NaN-only prices, or prices left unadjusted across
    a stock split.
    """
    import pandas as pd

    where = f"yahoo: ticker {ticker} (Yahoo symbol {symbol!r})"
    if history is None or history.empty:
        raise NoBarsInRangeError(f"{where}: empty response, no bars in [{start}, {end}]")
    missing = [c for c in YAHOO_COLUMNS if c not in history.columns]
    if missing:
        raise ProviderError(
            f"{where}: malformed response, missing column(s) {', '.join(missing)} "
            f"(columns found: {', '.join(map(str, history.columns))})"
        )
    if not isinstance(history.index, pd.DatetimeIndex):
        raise ProviderError(f"{where}: malformed response, the index holds no dates")
    # Midnight in the exchange's time zone: its local date is the session date.
    sessions = [stamp.date() for stamp in history.index]
    numbers: dict[str, Any] = {
        name.lower(): pd.to_numeric(history[name], errors="coerce").to_numpy(dtype="float64")
        for name in YAHOO_COLUMNS
    }
    frame = pl.DataFrame({"date": sessions, **numbers}, schema_overrides={"date": pl.Date})
    prices = ["open", "high", "low", "close"]
    frame = frame.with_columns(pl.col([*prices, "volume"]).fill_nan(None))
    rows = frame.height
    frame = frame.filter(~pl.all_horizontal(pl.col(prices).is_null()))
    if frame.is_empty():
        raise ProviderError(f"{where}: malformed response, all {rows} row(s) have NaN-only prices")
    if frame["close"].null_count() == frame.height:
        raise ProviderError(f"{where}: malformed response, no close price in {rows} row(s)")
    _refuse_unadjusted_splits(history, where)
    bars = conform_bars(frame.with_columns(pl.lit(ticker).alias("ticker")))
    bars = bars.filter(pl.col("date").is_between(start, end))
    if bars.is_empty():
        raise NoBarsInRangeError(f"{where}: empty response, no bars in [{start}, {end}]")
    return bars


def _refuse_unadjusted_splits(history: pd.DataFrame, where: str) -> None:
    """Yahoo adjusts prices for splits; a close that jumps by the split ratio on the split
    day means it did not, and every return across that day would be wrong."""
    if "Stock Splits" not in history.columns:
        return
    close = history["Close"].to_numpy(dtype="float64")
    splits = history["Stock Splits"].to_numpy(dtype="float64")
    for row in range(1, len(history)):
        ratio = splits[row]
        if not (ratio > 0) or abs(math.log(ratio)) < math.log(1.5):
            continue
        before, after = close[row - 1], close[row]
        if not (before > 0 and after > 0):
            continue
        jump = math.log(before / after)
        if abs(jump - math.log(ratio)) < abs(math.log(ratio)) / 2:
            raise ProviderError(
                f"{where}: malformed response, prices look unadjusted for the "
                f"{ratio:g}:1 split on {history.index[row].date()} "
                f"(close {before:g} -> {after:g})"
            )
