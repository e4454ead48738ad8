"""The synthetic provider: seeded, regime-switching daily OHLCV for any tickers and years.

Offline, reproducible bars with the stylised facts a research pipeline should be tested on:

- a hidden market regime (a Markov chain over ``bull``/``bear``/``choppy``/``crash``) that sets
  the market's daily drift and volatility; :meth:`SyntheticProvider.regimes` reveals it so
  regime detectors can be scored against the truth;
- volatility clustering (a unit-mean GARCH(1,1) multiplier on top of the regime volatility) and
  fat tails (Student-t innovations with 4 degrees of freedom, scaled to unit variance);
- per-ticker market beta plus idiosyncratic GARCH noise, so tickers co-move but not perfectly;
- consistent bars: the open gaps from the previous close by a small overnight return, high and
  low extend beyond the open/close body, and volume rises with the size of the move.

Determinism: every path is generated from a fixed origin (the first session on or after
``origin``) through the generation end on the exchange calendar, then sliced to the request.
A ticker's random streams are seeded from ``(seed, ticker)`` by SHA-256 and the market's from
``(seed, "__market__")``, so a ticker's bars depend on neither the other tickers requested nor
the requested dates. Each random component has its own stream drawn one session after another,
so moving the generation end only appends sessions and leaves earlier ones unchanged.
"""

from __future__ import annotations

import bisect
import hashlib
import math
import operator
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import date
from functools import cached_property

import numpy as np
import polars as pl
from scipy.signal import lfilter

from quant_assets.calendar import trading_sessions_array
from quant_assets.providers.base import conform_bars, empty_bars
from quant_assets.tickers import validate_ticker


@dataclass(frozen=True)
class RegimeSpec:
    """One hidden market regime; returns are daily log returns, volatilities daily std devs."""

    name: str
    market_drift: float
    market_vol: float
    # Idiosyncratic risk rises in stress too, so dispersion is not only a market effect.
    idio_vol_scale: float


REGIMES: tuple[RegimeSpec, ...] = (
    RegimeSpec("bull", market_drift=0.0009, market_vol=0.0075, idio_vol_scale=0.9),
    RegimeSpec("bear", market_drift=-0.0006, market_vol=0.015, idio_vol_scale=1.2),
    RegimeSpec("choppy", market_drift=0.0001, market_vol=0.011, idio_vol_scale=1.0),
    RegimeSpec("crash", market_drift=-0.012, market_vol=0.035, idio_vol_scale=2.0),
)
REGIME_NAMES: tuple[str, ...] = tuple(regime.name for regime in REGIMES)

# Daily transition probabilities, rows = today's regime, columns = tomorrow's, both in the
# order of REGIMES. Expected stays: bull ~220 sessions, bear ~85, choppy ~90, crash ~10.
# Crashes are rare (two or three a decade), mostly break out of bear markets, and end in a bear
# or choppy market more often than straight back in a bull.
REGIME_TRANSITIONS = np.array(
    [
        [0.9955, 0.0015, 0.0025, 0.0005],
        [0.0040, 0.9880, 0.0050, 0.0030],
        [0.0060, 0.0040, 0.9890, 0.0010],
        [0.0100, 0.0600, 0.0300, 0.9000],
    ]
)
INITIAL_REGIME = 0  # the path starts in a bull market

# Student-t with 4 degrees of freedom has variance 4 / (4 - 2); scaling by sqrt(2/4) gives unit
# variance so the regime/GARCH volatilities keep their meaning. The clip keeps any one shock
# within 12 standard deviations, so no single day is absurd; it touches ~1 draw in 14,000.
STUDENT_T_DOF = 4.0
STUDENT_T_UNIT_SCALE = math.sqrt((STUDENT_T_DOF - 2.0) / STUDENT_T_DOF)
SHOCK_CLIP = 12.0

# GARCH(1,1) on a unit-mean variance multiplier h: h_t = (1 - a - b) + (a z_{t-1}^2 + b) h_{t-1}.
# The cap stops one extreme shock from leaving volatility absurd for weeks.
MARKET_GARCH = (0.08, 0.90)
IDIO_GARCH = (0.05, 0.90)
GARCH_CAP = 25.0

# Per-ticker parameters, drawn from the ticker's own stream.
BETA_RANGE = (0.5, 1.6)
IDIO_VOL_RANGE = (0.008, 0.022)  # daily std of the idiosyncratic return, before GARCH
ALPHA_STD = 0.0001  # daily log-return drift beyond beta * market
START_PRICE_RANGE = (10.0, 200.0)
BASE_VOLUME_RANGE = (2e5, 2e7)  # shares on an ordinary day

BENCHMARK_START_LEVEL = 1000.0
BENCHMARK_BASE_VOLUME = 2e9
# The market's long-run daily volatility, used to judge how unusual a day's move is for volume.
TYPICAL_MARKET_VOL = 0.011

# Bar shape. The overnight gap carries a share of the day's return plus its own noise; the high
# and low reach beyond the open/close body by a half-normal multiple of the day's volatility.
OVERNIGHT_SHARE = 0.2
OVERNIGHT_NOISE = 0.2
RANGE_SCALE = 0.5
# log volume = log base + sensitivity * (|r| / typical vol) + AR(1) shock: big moves and their
# aftermath trade more; the AR(1) gives volume its own persistent surges.
VOLUME_MOVE_SENSITIVITY = 0.35
VOLUME_MOVE_CAP = 12.0
VOLUME_SHOCK_PERSISTENCE = 0.6
VOLUME_SHOCK_STD = 0.25

MARKET_KEY = "__market__"  # not a valid ticker, so it can never collide with one
# Independent random streams per path. Append new components at the end: reordering would
# change every existing stream and so every generated series.
_MARKET_STREAMS = ("regime", "shock", "overnight", "range", "volume")
_TICKER_STREAMS = ("params", "shock", "overnight", "range", "volume")
# Tickers are generated in blocks so the day-by-day GARCH loop runs over many tickers at once
# while the (sessions x block) work arrays stay around 10 MB each.
_TICKER_BLOCK = 128


def _random_streams(seed: int, key: str, names: Sequence[str]) -> dict[str, np.random.Generator]:
    # SHA-256 rather than hash(): Python salts str hashes per process, which would break
    # reproducibility across runs. The ':' separator cannot appear in a ticker or MARKET_KEY.
    digest = hashlib.sha256(f"{seed}:{key}".encode()).digest()
    root = np.random.SeedSequence(int.from_bytes(digest[:16], "little"))
    return {
        name: np.random.Generator(np.random.PCG64(child))
        for name, child in zip(names, root.spawn(len(names)), strict=True)
    }


def _unit_student_t(rng: np.random.Generator, size: int) -> np.ndarray:
    shocks = rng.standard_t(STUDENT_T_DOF, size=size) * STUDENT_T_UNIT_SCALE
    return np.clip(shocks, -SHOCK_CLIP, SHOCK_CLIP)


def _ohlcv_from_returns(
    log_returns: np.ndarray,
    daily_vol: np.ndarray,
    typical_vol: float,
    start_price: float,
    base_volume: float,
    streams: dict[str, np.random.Generator],
) -> dict[str, np.ndarray]:
    """Turn one path's daily close-to-close log returns into open/high/low/close/volume.

    ``log_returns`` and ``daily_vol`` (the day's conditional std of the log return) have one
    entry per session; ``start_price`` is the close the day before the first session. The close
    path is exactly ``start_price * exp(cumsum(log_returns))``; open, high, low and volume only
    decorate it, so they cannot change the return statistics.
    """
    sessions = len(log_returns)
    log_close = math.log(start_price) + np.cumsum(log_returns)
    log_previous_close = np.concatenate(([math.log(start_price)], log_close[:-1]))
    overnight = OVERNIGHT_SHARE * log_returns + OVERNIGHT_NOISE * daily_vol * streams[
        "overnight"
    ].standard_normal(sessions)
    open_ = np.exp(log_previous_close + overnight)
    close = np.exp(log_close)
    # Shape (sessions, 2), filled day by day, so a longer path keeps the same earlier draws.
    extensions = (
        RANGE_SCALE * daily_vol[:, None] * np.abs(streams["range"].standard_normal((sessions, 2)))
    )
    high = np.maximum(open_, close) * np.exp(extensions[:, 0])
    low = np.minimum(open_, close) * np.exp(-extensions[:, 1])
    move = np.minimum(np.abs(log_returns) / typical_vol, VOLUME_MOVE_CAP)
    shock = lfilter(
        [VOLUME_SHOCK_STD],
        [1.0, -VOLUME_SHOCK_PERSISTENCE],
        streams["volume"].standard_normal(sessions),
    )
    log_volume = math.log(base_volume) + VOLUME_MOVE_SENSITIVITY * move + shock
    # Whole shares; never below one, so volume is strictly positive.
    volume = np.maximum(np.rint(np.exp(log_volume)), 1.0)
    return {"open": open_, "high": high, "low": low, "close": close, "volume": volume}


@dataclass(frozen=True)
class _MarketPath:
    sessions: np.ndarray  # datetime64[D], every generated session
    regimes: np.ndarray  # int8 index into REGIMES, per session
    log_returns: np.ndarray  # market factor daily log return
    daily_vol: np.ndarray  # conditional std of the market log return
    bars: dict[str, np.ndarray]  # benchmark open/high/low/close/volume


class SyntheticProvider:
    """Deterministic synthetic daily bars; see the module docstring for the model.

    ``seed`` selects the universe of paths. Paths start at the first ``calendar`` session on or
    after ``origin`` and end at the last session on or before ``end`` (today if ``None``,
    fixed when the provider is built). ``benchmark`` is the symbol that returns the market
    index itself (starting near 1000). Every valid ticker symbol has bars over the whole span.
    Raises :class:`InvalidTickerError` for an invalid ``benchmark`` and
    :class:`ConfigError` (on first use) for an unknown calendar.
    """

    name = "synthetic"

    def __init__(
        self,
        *,
        seed: int = 7,
        calendar: str = "XNYS",
        origin: date = date(1990, 1, 2),
        benchmark: str = "SYNTH",
        end: date | None = None,
    ) -> None:
        self.seed = operator.index(seed)  # refuses floats: 7.0 and 7.5 must not mean the same
        self.calendar = calendar
        self.origin = origin
        self.benchmark = validate_ticker(benchmark)
        self.end = end if end is not None else date.today()

    def fetch_bars(self, tickers: Sequence[str], start: date, end: date) -> pl.DataFrame:
        """Return bars for ``tickers`` in ``[start, end]`` as the frame of ``BAR_COLUMNS``.

        One row per ticker and calendar session in both the request and the generated span,
        sorted by ``(ticker, date)``; prices are positive with low <= open, close <= high, and
        volume is a positive whole number of shares. Repeated symbols are returned once.
        ``start > end`` gives an empty frame. Raises :class:`InvalidTickerError` for an
        invalid symbol and ``TypeError`` for a bare string (a likely slip for ``[ticker]``).
        """
        if isinstance(tickers, str):
            raise TypeError(f"tickers must be a sequence of symbols, not the string {tickers!r}")
        requested = list(dict.fromkeys(validate_ticker(ticker) for ticker in tickers))
        market = self._market
        first, last = self._slice(market.sessions, start, end)
        if not requested or first >= last:
            return empty_bars()
        bars_by_ticker: dict[str, dict[str, np.ndarray]] = {}
        if self.benchmark in requested:
            bars_by_ticker[self.benchmark] = market.bars
        others = [ticker for ticker in requested if ticker != self.benchmark]
        for block_start in range(0, len(others), _TICKER_BLOCK):
            block = others[block_start : block_start + _TICKER_BLOCK]
            bars_by_ticker.update(self._ticker_bars(block, market))
        # Rows laid out already in (ticker, date) order, so the sort in conform_bars is cheap.
        ordered = sorted(bars_by_ticker)
        length = last - first
        columns: dict[str, pl.Series | np.ndarray] = {
            "date": pl.Series(np.tile(market.sessions[first:last], len(ordered))),
            # Gathering from a short Series avoids building millions of Python strings.
            "ticker": pl.Series(ordered).gather(
                np.repeat(np.arange(len(ordered), dtype=np.uint32), length)
            ),
        }
        for field in ("open", "high", "low", "close", "volume"):
            columns[field] = np.concatenate(
                [bars_by_ticker[ticker][field][first:last] for ticker in ordered]
            )
        return conform_bars(pl.DataFrame(columns))

    def regimes(self, start: date, end: date) -> pl.DataFrame:
        """Return the hidden market regime per session in ``[start, end]``.

        Columns ``date`` (``pl.Date``) and ``regime`` (``pl.Utf8``, one of ``REGIME_NAMES``),
        sorted by date; empty if ``start > end`` or the range misses the generated span.
        """
        market = self._market
        first, last = self._slice(market.sessions, start, end)
        names = np.array(REGIME_NAMES, dtype=object)[market.regimes[first:last]]
        return pl.DataFrame(
            {"date": market.sessions[first:last], "regime": list(names)},
            schema={"date": pl.Date, "regime": pl.Utf8},
        )

    @staticmethod
    def _slice(sessions: np.ndarray, start: date, end: date) -> tuple[int, int]:
        first = int(np.searchsorted(sessions, np.datetime64(start, "D"), side="left"))
        last = int(np.searchsorted(sessions, np.datetime64(end, "D"), side="right"))
        return first, max(first, last)

    @cached_property
    def _market(self) -> _MarketPath:
        # Built once per provider: every fetch needs the market factor and the regimes.
        sessions = trading_sessions_array(self.calendar, self.origin, self.end)
        count = len(sessions)
        streams = _random_streams(self.seed, MARKET_KEY, _MARKET_STREAMS)
        uniforms = streams["regime"].random(count).tolist()
        shocks = _unit_student_t(streams["shock"], count).tolist()
        cumulative = np.cumsum(REGIME_TRANSITIONS, axis=1)
        cumulative[:, -1] = 1.0  # rounding must never leave a uniform draw with no next state
        cumulative_rows = [row.tolist() for row in cumulative]
        drifts = [regime.market_drift for regime in REGIMES]
        vols = [regime.market_vol for regime in REGIMES]
        garch_a, garch_b = MARKET_GARCH
        regimes = np.empty(count, dtype=np.int8)
        log_returns = np.empty(count)
        daily_vol = np.empty(count)
        # Plain Python floats: a sequential recursion over ~10k sessions is faster this way
        # than through numpy scalars.
        state, variance_multiplier, previous_shock = INITIAL_REGIME, 1.0, 0.0
        for day in range(count):
            if day > 0:
                state = bisect.bisect_right(cumulative_rows[state], uniforms[day])
                variance_multiplier = min(
                    (1.0 - garch_a - garch_b)
                    + (garch_a * previous_shock * previous_shock + garch_b) * variance_multiplier,
                    GARCH_CAP,
                )
            vol = vols[state] * math.sqrt(variance_multiplier)
            regimes[day] = state
            daily_vol[day] = vol
            log_returns[day] = drifts[state] + vol * shocks[day]
            previous_shock = shocks[day]
        bars = (
            _ohlcv_from_returns(
                log_returns,
                daily_vol,
                TYPICAL_MARKET_VOL,
                BENCHMARK_START_LEVEL,
                BENCHMARK_BASE_VOLUME,
                streams,
            )
            if count
            else {}
        )
        return _MarketPath(sessions, regimes, log_returns, daily_vol, bars)

    def _ticker_bars(
        self, tickers: Sequence[str], market: _MarketPath
    ) -> dict[str, dict[str, np.ndarray]]:
        count = len(market.sessions)
        if count == 0:
            return {}
        streams = [_random_streams(self.seed, ticker, _TICKER_STREAMS) for ticker in tickers]
        # Parameters in a fixed draw order from each ticker's own "params" stream.
        params = []
        for ticker_streams in streams:
            rng = ticker_streams["params"]
            params.append(
                {
                    "beta": rng.uniform(*BETA_RANGE),
                    "idio_vol": rng.uniform(*IDIO_VOL_RANGE),
                    "alpha": rng.normal(0.0, ALPHA_STD),
                    "start_price": math.exp(rng.uniform(*np.log(START_PRICE_RANGE))),
                    "base_volume": math.exp(rng.uniform(*np.log(BASE_VOLUME_RANGE))),
                }
            )
        # (sessions, tickers): each column is one ticker's own stream, so a ticker's values do
        # not depend on its neighbours; the recursion below uses only +, * and min, which are
        # exact per element, so the column layout cannot change a result either.
        shocks = np.column_stack([_unit_student_t(s["shock"], count) for s in streams])
        garch_a, garch_b = IDIO_GARCH
        persistence = garch_a * shocks * shocks + garch_b
        variance_multiplier = np.empty_like(shocks)
        variance_multiplier[0] = 1.0
        for day in range(1, count):
            np.minimum(
                (1.0 - garch_a - garch_b) + persistence[day - 1] * variance_multiplier[day - 1],
                GARCH_CAP,
                out=variance_multiplier[day],
            )
        idio_scale = np.array([regime.idio_vol_scale for regime in REGIMES])[market.regimes]
        out: dict[str, dict[str, np.ndarray]] = {}
        for column, (ticker, p) in enumerate(zip(tickers, params, strict=True)):
            idio_vol = p["idio_vol"] * idio_scale * np.sqrt(variance_multiplier[:, column])
            log_returns = p["alpha"] + p["beta"] * market.log_returns + idio_vol * shocks[:, column]
            daily_vol = np.sqrt((p["beta"] * market.daily_vol) ** 2 + idio_vol**2)
            typical_vol = math.hypot(p["beta"] * TYPICAL_MARKET_VOL, p["idio_vol"])
            out[ticker] = _ohlcv_from_returns(
                log_returns,
                daily_vol,
                typical_vol,
                p["start_price"],
                p["base_volume"],
                streams[column],
            )
        return out
