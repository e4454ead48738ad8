"""Rolling-window statistics whose value depends only on the rows inside the window.

Why not ``pl.Expr.rolling_mean``: polars (like pandas) updates a running sum as the window
slides, so the value at row t carries floating-point residue from every row since the series
began. Measured here: the same 200-day mean computed from two different history starts differs
by ~6e-14. That breaks a promise we test: a feature at date D is bit-identical whether the run
loaded 13 months of look-back or 33 years, and whatever happens after D. Here each window is
summed on its own (NumPy's pairwise sum over a strided window view), so the result is a pure
function of the window's values. Cost is O(n * window) instead of O(n), measured ~0.1 s for
all features on the full bundled history.

All functions take a float64 array of a frame sorted by (ticker, date) and the per-row
position inside its ticker (0 for the ticker's first row), and return a float64 array of the
same length with NaN where the window is not yet full or holds a NaN.
"""

from __future__ import annotations

from collections.abc import Callable

import numpy as np
from numpy.lib.stride_tricks import sliding_window_view

_BLOCK_ROWS = 32_768  # bounds temporaries to block x window x 8 bytes (~66 MB at 252)


def _windowed(
    values: np.ndarray,
    position: np.ndarray,
    window: int,
    reduce: Callable[[np.ndarray], np.ndarray],
) -> np.ndarray:
    if values.ndim != 1 or position.shape != values.shape:
        raise ValueError("values and position must be 1-D arrays of the same length")
    if window < 1:
        raise ValueError(f"window must be >= 1, got {window}")
    n = values.shape[0]
    out = np.full(n, np.nan)
    if n < window:
        return out
    values = np.ascontiguousarray(values, dtype=np.float64)
    view = sliding_window_view(values, window)  # row i covers values[i : i + window]
    for lo in range(0, view.shape[0], _BLOCK_ROWS):
        hi = min(lo + _BLOCK_ROWS, view.shape[0])
        out[lo + window - 1 : hi + window - 1] = reduce(view[lo:hi])
    # A window that starts in the previous ticker's rows is not a window of this ticker.
    out[position < window - 1] = np.nan
    return out


def rolling_sum(values: np.ndarray, position: np.ndarray, window: int) -> np.ndarray:
    """Sum of the last ``window`` values (inclusive of the current row)."""
    return _windowed(values, position, window, lambda block: block.sum(axis=1))


def rolling_mean(values: np.ndarray, position: np.ndarray, window: int) -> np.ndarray:
    """Mean of the last ``window`` values."""
    return _windowed(values, position, window, lambda block: block.sum(axis=1) / window)


def rolling_std(values: np.ndarray, position: np.ndarray, window: int, ddof: int = 1) -> np.ndarray:
    """Standard deviation of the last ``window`` values (two-pass, ``ddof`` as in NumPy)."""
    if window - ddof < 1:
        raise ValueError(f"window {window} too short for ddof={ddof}")

    def reduce(block: np.ndarray) -> np.ndarray:
        mean = block.sum(axis=1, keepdims=True) / window
        return np.sqrt(((block - mean) ** 2).sum(axis=1) / (window - ddof))

    return _windowed(values, position, window, reduce)


def rolling_cov(
    left: np.ndarray, right: np.ndarray, position: np.ndarray, window: int
) -> np.ndarray:
    """Sample covariance (ddof=1) of two aligned series over the last ``window`` rows."""
    if left.ndim != 1 or left.shape != right.shape or position.shape != left.shape:
        raise ValueError("left, right and position must be 1-D arrays of the same length")
    if window < 2:
        raise ValueError("covariance needs a window of at least 2")
    n = left.shape[0]
    out = np.full(n, np.nan)
    if n < window:
        return out
    left_view = sliding_window_view(np.ascontiguousarray(left, dtype=np.float64), window)
    right_view = sliding_window_view(np.ascontiguousarray(right, dtype=np.float64), window)
    for lo in range(0, left_view.shape[0], _BLOCK_ROWS):
        hi = min(lo + _BLOCK_ROWS, left_view.shape[0])
        a, b = left_view[lo:hi], right_view[lo:hi]
        a_dev = a - a.sum(axis=1, keepdims=True) / window
        b_dev = b - b.sum(axis=1, keepdims=True) / window
        out[lo + window - 1 : hi + window - 1] = (a_dev * b_dev).sum(axis=1) / (window - 1)
    out[position < window - 1] = np.nan
    return out
