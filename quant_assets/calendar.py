"""Trading sessions from a real exchange calendar (exchange_calendars), never weekdays."""

from __future__ import annotations

from datetime import date
from functools import lru_cache

import exchange_calendars as xcals
import numpy as np
import pandas as pd

from quant_assets.errors import ConfigError

# exchange_calendars builds a calendar lazily over [start, end]; we build one generous
# span once per calendar name and slice it, which costs ~3 s once instead of per call.
_CALENDAR_START = "1980-01-01"


@lru_cache(maxsize=8)
def _calendar(name: str) -> xcals.ExchangeCalendar:
    if name not in xcals.get_calendar_names(include_aliases=True):
        raise ConfigError("universe.yaml", "calendar", f"unknown exchange calendar {name!r}")
    return xcals.get_calendar(name, start=_CALENDAR_START)


@lru_cache(maxsize=64)
def _sessions(name: str, start: date, end: date) -> tuple[date, ...]:
    cal = _calendar(name)
    lo = max(pd.Timestamp(start), cal.first_session)
    hi = min(pd.Timestamp(end), cal.last_session)
    if lo > hi:
        return ()
    return tuple(d.date() for d in cal.sessions_in_range(lo, hi))


def trading_sessions(calendar: str, start: date, end: date) -> list[date]:
    """Return the trading sessions of ``calendar`` in ``[start, end]`` (both inclusive)."""
    return list(_sessions(calendar, start, end))


def trading_sessions_array(calendar: str, start: date, end: date) -> np.ndarray:
    """Same as :func:`trading_sessions` as a ``datetime64[D]`` array."""
    return np.array(_sessions(calendar, start, end), dtype="datetime64[D]")


def last_session_on_or_before(calendar: str, day: date) -> date:
    """Return the latest trading session at or before ``day``."""
    cal = _calendar(calendar)
    ts = pd.Timestamp(day)
    if ts < cal.first_session:
        raise ValueError(f"{day} is before the first session of calendar {calendar}")
    return cal.date_to_session(ts, direction="previous").date()
