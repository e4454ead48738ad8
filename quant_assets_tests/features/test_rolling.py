"""Specification of the window-exact rolling statistics in ``quant_assets.features.rolling``.

Every function takes a float64 array of a frame sorted by (ticker, date) and the per-row
position inside its ticker, and returns NaN where the window is not full (or crosses into the
previous ticker's rows) or holds a NaN. The value of a full window depends only on the values
inside it: bit-identical wherever the series happens to start.
"""

from __future__ import annotations

import numpy as np
import pytest

from quant_assets.features import rolling
from quant_assets.features.rolling import rolling_cov, rolling_mean, rolling_std, rolling_sum

# Three tickers of different lengths; the middle one is shorter than some windows below.
LENGTHS = (40, 4, 57)
POSITION = np.concatenate([np.arange(n) for n in LENGTHS])
RNG = np.random.default_rng(20240611)
# Mixed magnitudes make floating-point residue from a running sum visible.
VALUES = RNG.lognormal(mean=0.0, sigma=2.0, size=POSITION.size) * RNG.choice(
    [1e-3, 1.0, 1e4], POSITION.size
)
OTHER = VALUES * 0.5 + RNG.normal(0.0, 3.0, POSITION.size)
WINDOWS = (1, 2, 3, 5, 20)


def naive(values: np.ndarray, position: np.ndarray, window: int, stat) -> np.ndarray:
    """Reference: loop over rows, take the window ending at each row, apply ``stat``."""
    out = np.full(values.size, np.nan)
    for i in range(values.size):
        if position[i] >= window - 1:
            out[i] = stat(values[i - window + 1 : i + 1])
    return out


def naive_cov(left: np.ndarray, right: np.ndarray, position: np.ndarray, window: int):
    out = np.full(left.size, np.nan)
    for i in range(left.size):
        if position[i] >= window - 1:
            lo = i - window + 1
            out[i] = np.cov(left[lo : i + 1], right[lo : i + 1], ddof=1)[0, 1]
    return out


def assert_same_nan_pattern_and_close(actual: np.ndarray, expected: np.ndarray) -> None:
    np.testing.assert_array_equal(np.isnan(actual), np.isnan(expected))
    np.testing.assert_allclose(actual, expected, rtol=1e-12, atol=0.0, equal_nan=True)


# --- each statistic against a naive per-window loop -------------------------------------------


@pytest.mark.parametrize("window", WINDOWS)
def test_rolling_sum_matches_a_naive_per_window_sum(window):
    expected = naive(VALUES, POSITION, window, np.sum)
    assert_same_nan_pattern_and_close(rolling_sum(VALUES, POSITION, window), expected)


@pytest.mark.parametrize("window", WINDOWS)
def test_rolling_mean_matches_a_naive_per_window_mean(window):
    expected = naive(VALUES, POSITION, window, np.mean)
    assert_same_nan_pattern_and_close(rolling_mean(VALUES, POSITION, window), expected)


@pytest.mark.parametrize("ddof", [0, 1])
@pytest.mark.parametrize("window", [2, 3, 5, 20])
def test_rolling_std_matches_numpy_std_of_each_window(window, ddof):
    expected = naive(VALUES, POSITION, window, lambda w: np.std(w, ddof=ddof))
    assert_same_nan_pattern_and_close(rolling_std(VALUES, POSITION, window, ddof=ddof), expected)


@pytest.mark.parametrize("window", [2, 3, 5, 20])
def test_rolling_cov_matches_numpy_sample_covariance_of_each_window(window):
    expected = naive_cov(VALUES, OTHER, POSITION, window)
    assert_same_nan_pattern_and_close(rolling_cov(VALUES, OTHER, POSITION, window), expected)


def test_moving_average_matches_hand_computed_mean():
    values = np.array([1.0, 2.0, 4.0, 8.0, 16.0])
    position = np.arange(5)
    mean = rolling_mean(values, position, 3)
    assert np.isnan(mean[0]) and np.isnan(mean[1])
    assert mean[2] == pytest.approx((1 + 2 + 4) / 3)
    assert mean[3] == pytest.approx((2 + 4 + 8) / 3)
    assert mean[4] == pytest.approx((4 + 8 + 16) / 3)
    assert rolling_sum(values, position, 2)[4] == 24.0


def test_rolling_std_matches_hand_computed_sample_std():
    values = np.array([2.0, 4.0, 4.0, 4.0, 5.0, 5.0, 7.0, 9.0])
    position = np.arange(8)
    # window of all 8: mean 5, squared deviations sum to 32
    assert rolling_std(values, position, 8, ddof=0)[7] == pytest.approx(2.0)
    assert rolling_std(values, position, 8, ddof=1)[7] == pytest.approx(np.sqrt(32 / 7))
    assert rolling_std(values, position, 2, ddof=1)[1] == pytest.approx(np.sqrt(2.0))


def test_rolling_cov_of_a_series_with_itself_is_its_variance():
    cov = rolling_cov(VALUES, VALUES, POSITION, 5)
    var = rolling_std(VALUES, POSITION, 5) ** 2
    np.testing.assert_allclose(cov, var, rtol=1e-10, equal_nan=True)


def test_rolling_cov_matches_hand_computed_covariance():
    x = np.array([1.0, 2.0, 3.0])
    y = np.array([2.0, 4.0, 9.0])
    # means 2 and 5: deviations (-1, 0, 1) and (-3, -1, 4) -> (3 + 0 + 4) / 2
    assert rolling_cov(x, y, np.arange(3), 3)[2] == pytest.approx(3.5)


# --- NaN before the window is full, across ticker boundaries, and inside the window -----------


@pytest.mark.parametrize("func", [rolling_sum, rolling_mean, rolling_std])
@pytest.mark.parametrize("window", [2, 5, 20])
def test_nan_until_the_window_is_full_in_every_ticker(func, window):
    position = POSITION
    out = func(VALUES, position, window)
    np.testing.assert_array_equal(np.isnan(out), position < window - 1)


def test_rolling_cov_is_nan_until_the_window_is_full_in_every_ticker():
    out = rolling_cov(VALUES, OTHER, POSITION, 5)
    np.testing.assert_array_equal(np.isnan(out), POSITION < 4)


def test_a_window_never_reaches_into_the_previous_tickers_rows():
    # Ticker A ends with huge values; ticker B's first full window must not see them.
    values = np.array([1e9, 1e9, 1e9, 1.0, 2.0, 3.0])
    position = np.array([0, 1, 2, 0, 1, 2])
    mean = rolling_mean(values, position, 3)
    assert np.isnan(mean[3]) and np.isnan(mean[4])
    assert mean[5] == pytest.approx(2.0)
    assert rolling_sum(values, position, 2)[4] == 3.0


def test_a_ticker_shorter_than_the_window_is_all_nan():
    out = rolling_mean(VALUES, POSITION, 5)
    short = slice(LENGTHS[0], LENGTHS[0] + LENGTHS[1])  # the 4-row ticker
    assert np.isnan(out[short]).all()
    assert not np.isnan(out[LENGTHS[0] + LENGTHS[1] + 4 :]).any()  # next ticker restarts


def test_a_series_shorter_than_the_window_is_all_nan():
    for func in (rolling_sum, rolling_mean, rolling_std):
        assert np.isnan(func(np.arange(3.0), np.arange(3), 4)).all()
    assert np.isnan(rolling_cov(np.arange(3.0), np.arange(3.0), np.arange(3), 4)).all()


def test_a_nan_value_poisons_exactly_the_windows_that_contain_it():
    values = np.arange(10.0)
    values[4] = np.nan
    position = np.arange(10)
    for func in (rolling_sum, rolling_mean, rolling_std):
        out = func(values, position, 3)
        expected_nan = [True, True, False, False, True, True, True, False, False, False]
        np.testing.assert_array_equal(np.isnan(out), expected_nan)
    cov = rolling_cov(values, np.arange(10.0), position, 3)
    np.testing.assert_array_equal(np.isnan(cov), expected_nan)


def test_output_is_float64_of_the_input_length():
    out = rolling_mean(np.arange(6, dtype=np.int64), np.arange(6), 2)
    assert out.dtype == np.float64 and out.shape == (6,)
    assert out[5] == 4.5


# --- window-exactness: the whole reason the module exists --------------------------------------


@pytest.mark.parametrize("offset", [1, 7, 123, 1234])
@pytest.mark.parametrize("window", [20, 200])
def test_values_are_bit_identical_when_the_series_starts_at_a_different_offset(offset, window):
    rng = np.random.default_rng(offset)
    x = rng.lognormal(sigma=2.0, size=3000) * 100
    y = x * 0.3 + rng.normal(0.0, 50.0, x.size)
    n = x.size
    full_pos, late_pos = np.arange(n), np.arange(n - offset)
    pairs = [
        (rolling_sum(x, full_pos, window), rolling_sum(x[offset:], late_pos, window)),
        (rolling_mean(x, full_pos, window), rolling_mean(x[offset:], late_pos, window)),
        (rolling_std(x, full_pos, window), rolling_std(x[offset:], late_pos, window)),
        (
            rolling_cov(x, y, full_pos, window),
            rolling_cov(x[offset:], y[offset:], late_pos, window),
        ),
    ]
    for full, late in pairs:
        # compared wherever the later start has a full window; NaN positions included
        assert np.array_equal(full[offset + window - 1 :], late[window - 1 :])
        assert not np.isnan(late[window - 1 :]).any()


def test_a_ticker_gives_bit_identical_values_alone_or_after_another_ticker():
    rng = np.random.default_rng(3)
    a = rng.lognormal(sigma=3.0, size=777) * 1e3
    b = rng.lognormal(sigma=3.0, size=500)
    both = np.concatenate([a, b])
    position = np.concatenate([np.arange(a.size), np.arange(b.size)])
    for window in (3, 60):
        alone = rolling_mean(b, np.arange(b.size), window)
        assert np.array_equal(rolling_mean(both, position, window)[a.size :], alone, equal_nan=True)
        alone_std = rolling_std(b, np.arange(b.size), window)
        assert np.array_equal(
            rolling_std(both, position, window)[a.size :], alone_std, equal_nan=True
        )


def test_processing_in_blocks_does_not_change_any_value(monkeypatch):
    x = np.random.default_rng(11).normal(size=500) * 1e3
    y = x**2
    position = np.concatenate([np.arange(230), np.arange(270)])
    before = [
        rolling_sum(x, position, 9),
        rolling_mean(x, position, 9),
        rolling_std(x, position, 9),
        rolling_cov(x, y, position, 9),
    ]
    monkeypatch.setattr(rolling, "_BLOCK_ROWS", 7)  # many tiny blocks, uneven last block
    after = [
        rolling_sum(x, position, 9),
        rolling_mean(x, position, 9),
        rolling_std(x, position, 9),
        rolling_cov(x, y, position, 9),
    ]
    for b, a in zip(before, after, strict=True):
        assert np.array_equal(a, b, equal_nan=True)


# --- bad arguments -----------------------------------------------------------------------------


@pytest.mark.parametrize("func", [rolling_sum, rolling_mean, rolling_std])
@pytest.mark.parametrize("window", [0, -1])
def test_a_window_below_one_is_refused(func, window):
    with pytest.raises(ValueError):
        func(np.arange(5.0), np.arange(5), window)


@pytest.mark.parametrize("func", [rolling_sum, rolling_mean, rolling_std])
def test_position_of_a_different_length_is_refused(func):
    with pytest.raises(ValueError):
        func(np.arange(5.0), np.arange(4), 2)
    with pytest.raises(ValueError):  # also when the series is shorter than the window
        func(np.arange(2.0), np.arange(3), 3)


@pytest.mark.parametrize("func", [rolling_sum, rolling_mean, rolling_std])
def test_two_dimensional_values_are_refused(func):
    with pytest.raises(ValueError):
        func(np.ones((4, 2)), np.ones((4, 2), dtype=int), 2)


@pytest.mark.parametrize(("window", "ddof"), [(1, 1), (2, 2), (0, 0)])
def test_rolling_std_refuses_a_window_too_short_for_ddof(window, ddof):
    with pytest.raises(ValueError):
        rolling_std(np.arange(5.0), np.arange(5), window, ddof=ddof)


@pytest.mark.parametrize("window", [1, 0, -3])
def test_rolling_cov_refuses_a_window_below_two(window):
    with pytest.raises(ValueError):
        rolling_cov(np.arange(5.0), np.arange(5.0), np.arange(5), window)


def test_rolling_cov_refuses_left_and_right_of_different_shapes():
    with pytest.raises(ValueError):
        rolling_cov(np.arange(5.0), np.arange(4.0), np.arange(5), 2)


def test_rolling_cov_refuses_position_of_a_different_length():
    with pytest.raises(ValueError):
        rolling_cov(np.arange(5.0), np.arange(5.0), np.arange(4), 2)
    with pytest.raises(ValueError):
        rolling_cov(np.arange(2.0), np.arange(2.0), np.arange(3), 3)


def test_rolling_cov_refuses_two_dimensional_series():
    with pytest.raises(ValueError):
        rolling_cov(np.ones((4, 2)), np.ones((4, 2)), np.ones((4, 2), dtype=int), 2)
