"""A thread-safe token bucket per provider, shared by every call in the process (seed 003 §4.2).

Hand-written on purpose, about forty lines: the maintained libraries do not fit well enough to
be worth a dependency. ``limits`` only *checks* fixed or moving windows (no blocking acquire,
no continuous refill); ``pyrate-limiter`` is a sliding-window log limiter whose API changed
incompatibly across its last majors, and neither is installed. What we need is small and
easy to test exactly: a bucket of ``capacity`` tokens refilled continuously at ``rate``
tokens per second, a blocking :meth:`TokenBucket.acquire`, and an injectable clock and sleep
so tests can drive time without sleeping.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable

Clock = Callable[[], float]
_TOLERANCE = 1e-9
Sleep = Callable[[float], None]


class TokenBucket:
    """``capacity`` tokens, refilled at ``rate_per_second``; each request takes one.

    ``clock`` returns seconds (monotonic); ``sleep`` waits a number of seconds. Both default
    to the real ones. Refuses a non-positive rate or a capacity below one with ValueError.
    """

    def __init__(
        self,
        rate_per_second: float,
        capacity: int,
        *,
        clock: Clock = time.monotonic,
        sleep: Sleep = time.sleep,
    ) -> None:
        if not rate_per_second > 0:
            raise ValueError(f"rate_per_second must be > 0, got {rate_per_second!r}")
        if capacity < 1:
            raise ValueError(f"capacity must be >= 1, got {capacity!r}")
        self.rate_per_second = float(rate_per_second)
        self.capacity = int(capacity)
        self._clock = clock
        self._sleep = sleep
        self._lock = threading.Lock()
        self._tokens = float(capacity)  # a fresh process may send a burst at once
        self._updated = clock()

    def try_acquire(self) -> float:
        """Take a token if one is there and return 0.0; else return the seconds to wait."""
        with self._lock:
            now = self._clock()
            elapsed = max(0.0, now - self._updated)
            self._tokens = min(self.capacity, self._tokens + elapsed * self.rate_per_second)
            self._updated = now
            # The tolerance absorbs float rounding of elapsed * rate: without it a wait of
            # exactly 1/rate can leave 0.999999... tokens and a wait too small to move a clock.
            if self._tokens >= 1.0 - _TOLERANCE:
                self._tokens = max(0.0, self._tokens - 1.0)
                return 0.0
            return (1.0 - self._tokens) / self.rate_per_second

    def acquire(self) -> float:
        """Block until a token is taken; return the total seconds waited."""
        waited = 0.0
        while (wait := self.try_acquire()) > 0:
            # Sleep outside the lock so other threads can refill and race fairly.
            self._sleep(wait)
            waited += wait
        return waited


_SHARED: dict[tuple[str, float, int], TokenBucket] = {}
_SHARED_LOCK = threading.Lock()


def shared_bucket(provider: str, rate_per_second: float, capacity: int) -> TokenBucket:
    """The process-wide bucket of ``provider`` with this rate and capacity (created once).

    Every provider object built with the same settings shares one bucket, so the limit holds
    across assets, threads and repeated builds in one process.
    """
    key = (provider, float(rate_per_second), int(capacity))
    with _SHARED_LOCK:
        bucket = _SHARED.get(key)
        if bucket is None:
            bucket = _SHARED[key] = TokenBucket(rate_per_second, capacity)
        return bucket
