"""Walk-forward cut-off windows: which model serves which dates.

A model fitted at cut-off ``c`` (on data strictly before ``c``) serves the dates of its window
``[c, next cut-off)``; the newest cut-off serves up to the end of the run. The ``regimes`` and
``predictions`` assets both walk these windows, clipped to the dates they compute.

Pure: no Dagster, no MLflow.
"""

from __future__ import annotations

import itertools
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import date, timedelta

# Calendar days that surely hold N sessions (252 sessions ≈ 365 days; holidays, closures).
_DAYS_PER_SESSION = 1.6
_MARGIN_DAYS = 30


def days_for_sessions(sessions: int) -> timedelta:
    """Calendar days that surely hold ``sessions`` exchange sessions (for explicit reads).

    ``int(sessions × 1.6) + 30`` days. The same arithmetic as
    ``quant_assets.defs.partitions.days_for_sessions``, here so domain code can size a read
    without importing Dagster.
    """
    return timedelta(days=int(sessions * _DAYS_PER_SESSION) + _MARGIN_DAYS)


@dataclass(frozen=True)
class CutoffWindow:
    """The dates ``[start, end)`` served by the model of ``cutoff``, clipped to a run.

    ``cutoff <= start < end``; ``start`` is later than ``cutoff`` only when the run starts
    inside the window.
    """

    cutoff: date
    start: date
    end: date  # exclusive


def cutoff_windows(cutoffs: Sequence[date], start: date, end: date) -> list[CutoffWindow]:
    """The non-empty windows of ``cutoffs`` clipped to the run ``[start, end)``, in order.

    Cut-off ``i`` serves ``[cutoffs[i], cutoffs[i + 1])``; the last one serves up to ``end``.
    Each window is clipped to ``[max(start, cutoff), min(end, window end))`` and dropped when
    that is empty (a cut-off at or after ``end``, or a window that ends on or before
    ``start``). Dates before the first cut-off belong to no window.

    ``cutoffs`` must be non-decreasing: an out-of-order pair raises ValueError naming it
    (callers sort; sorting silently here would hide a caller that pairs windows with rows by
    position). A repeated cut-off is allowed: its earlier copies get empty windows and are
    dropped, so the last copy serves the window.
    """
    for previous, current in itertools.pairwise(cutoffs):
        if current < previous:
            raise ValueError(f"cut-offs must be sorted: {current} comes after {previous}")
    windows = []
    for index, cutoff in enumerate(cutoffs):
        window_end = cutoffs[index + 1] if index + 1 < len(cutoffs) else end
        window_start, window_stop = max(start, cutoff), min(end, window_end)
        if window_start >= window_stop:
            continue
        windows.append(CutoffWindow(cutoff=cutoff, start=window_start, end=window_stop))
    return windows
