"""The numba alpha kernel equals combine_signals, cell for cell, for every kind of trial."""

from __future__ import annotations

from datetime import date

import numpy as np
import polars as pl
import pytest

from quant_assets.meta import combine_signals
from quant_assets.meta.alpha_kernel import (
    ALPHA_PARAMETER_COLUMNS,
    AlphaInputs,
    alpha_inputs,
    alpha_parameters,
    alpha_scores,
    alpha_scores_nb,
    alpha_weight_table,
)
from quant_assets.names import REGIME_NAMES, REGIME_PROB_COLUMNS
from quant_assets.settings import ALPHA_COMPONENTS, AlphaSettings, load_settings
from quant_assets_tests.conftest import SHIPPED_CONFIGS, weekdays
from quant_assets_tests.meta.test_alpha import SIGNALS, settings

TICKERS = [f"T{i:02d}" for i in range(9)]
DAYS = weekdays(date(2021, 3, 1), 40)
TOLERANCE = 1e-12
# The (horizon, scale) pairs prepared for the tests: the shipped hybrid's and the varied ones.
VARIANTS = ((5, 0.1), (1, 0.05), (5, 0.3))

SMALL_DAY, EQUAL_DAY, COLD_DAY, EMPTY_DAY = DAYS[3], DAYS[7], DAYS[11], DAYS[15]


def make_frames(seed: int = 5) -> tuple[pl.DataFrame, pl.DataFrame, pl.DataFrame]:
    """Deterministic signals, predictions and regimes with every case the kernel must mirror:
    NaN and null signals, rows still warming up, tickers missing on some dates (odd and even
    cross-sections), a date with two names only (below any min_cross_section), a date whose
    scores are all equal, a date with no warmed-up row, a date without any signals row,
    missing predictions and null prediction confidences, an unknown regime label."""
    rng = np.random.default_rng(seed)
    rows = []
    for day in DAYS:
        if day == EMPTY_DAY:
            continue
        names = TICKERS[:2] if day == SMALL_DAY else TICKERS
        for ticker in names:
            if day != EQUAL_DAY and rng.random() < 0.15:
                continue  # the ticker has no row today
            row: dict[str, object] = {"date": day, "ticker": ticker}
            for signal in SIGNALS:
                value: float | None = float(rng.uniform(-1, 1))
                if day == EQUAL_DAY:
                    value = 0.25
                elif rng.random() < 0.1:
                    value = float("nan")
                elif rng.random() < 0.05:
                    value = None
                row[signal] = value
            row["warmed_up"] = day != COLD_DAY and (day == EQUAL_DAY or rng.random() > 0.1)
            rows.append(row)
    signals = pl.DataFrame(rows, schema_overrides={s: pl.Float64 for s in SIGNALS})

    predictions = []
    for day in DAYS:
        for ticker in TICKERS:
            for horizon in (1, 5):
                if day == EQUAL_DAY or rng.random() < 0.1:
                    continue
                p = rng.dirichlet([2.0, 2.0, 2.0])
                predictions.append(
                    {
                        "date": day,
                        "ticker": ticker,
                        "horizon": horizon,
                        "prob_down": float(p[0]),
                        "prob_flat": float(p[1]),
                        "prob_up": float(p[2]),
                        "prob_pred_state": None if rng.random() < 0.05 else float(p.max()),
                    }
                )
    prediction_frame = pl.DataFrame(predictions)

    regime_rows = []
    for k, day in enumerate(DAYS):
        p = rng.dirichlet([1.0] * len(REGIME_NAMES))
        label = "sideways" if k == 20 else REGIME_NAMES[int(np.argmax(p))]
        regime_rows.append(
            {"date": day, "regime_label": label, **dict(zip(REGIME_PROB_COLUMNS, p, strict=True))}
        )
    return signals, prediction_frame, pl.DataFrame(regime_rows)


@pytest.fixture(scope="module")
def frames() -> tuple[pl.DataFrame, pl.DataFrame, pl.DataFrame]:
    return make_frames()


@pytest.fixture(scope="module")
def inputs(frames: tuple[pl.DataFrame, pl.DataFrame, pl.DataFrame]) -> AlphaInputs:
    signals, predictions, regimes = frames
    return alpha_inputs(
        signals, predictions, regimes, TICKERS, pl.Series(DAYS), prediction_variants=VARIANTS
    )


def expected_grids(
    frames: tuple[pl.DataFrame, pl.DataFrame, pl.DataFrame], strategy: AlphaSettings
) -> tuple[np.ndarray, np.ndarray]:
    """combine_signals' alpha_score and confidence on the (DAYS, TICKERS) grid, NaN for null
    and for cells without a row."""
    signals, predictions, regimes = frames
    out = combine_signals(signals, predictions, regimes, strategy)
    cell = out.select(
        (
            pl.col("date").replace_strict(DAYS, list(range(len(DAYS)))) * len(TICKERS)
            + pl.col("ticker").replace_strict(TICKERS, list(range(len(TICKERS))))
        ).alias("cell"),
        "alpha_score",
        "confidence",
    )
    grids = []
    for column in ("alpha_score", "confidence"):
        grid = np.full(len(DAYS) * len(TICKERS), np.nan)
        grid[cell["cell"].to_numpy()] = cell[column].fill_null(np.nan).to_numpy()
        grids.append(grid.reshape(len(DAYS), len(TICKERS)))
    return grids[0], grids[1]


def assert_kernel_matches(
    frames: tuple[pl.DataFrame, pl.DataFrame, pl.DataFrame],
    inputs: AlphaInputs,
    strategy: AlphaSettings,
) -> None:
    expected_alpha, expected_confidence = expected_grids(frames, strategy)
    # Dirty buffers: the kernel must overwrite every cell.
    alpha, confidence = np.full((2, len(DAYS), len(TICKERS)), 7.0)
    alpha_scores(inputs, strategy, alpha, confidence)
    for name, got, expected in (
        ("alpha_score", alpha, expected_alpha),
        ("confidence", confidence, expected_confidence),
    ):
        np.testing.assert_array_equal(np.isnan(got), np.isnan(expected), err_msg=name)
        np.testing.assert_allclose(got, expected, rtol=0, atol=TOLERANCE, err_msg=name)


SHIPPED = load_settings(SHIPPED_CONFIGS).strategies


@pytest.mark.parametrize("name", sorted(SHIPPED))
def test_the_kernel_equals_combine_signals_for_the_shipped_strategies(
    frames: tuple[pl.DataFrame, pl.DataFrame, pl.DataFrame], inputs: AlphaInputs, name: str
) -> None:
    assert_kernel_matches(frames, inputs, SHIPPED[name].alpha)


def varied_strategies() -> list[AlphaSettings]:
    """Random tables (zeros, components absent from whole rows, prediction or not) crossed
    with both weighting modes and both normalisations, and varied scalars."""
    rng = np.random.default_rng(11)
    strategies = []
    for k in range(12):
        table = {}
        for regime in REGIME_NAMES:
            row = {c: float(rng.uniform(0, 1)) for c in ALPHA_COMPONENTS if rng.random() < 0.6}
            if k % 3 == 0:
                row.pop("prediction", None)
            table[regime] = row or {"vol_alpha": 0.5}
        horizon, scale = VARIANTS[k % len(VARIANTS)]
        strategies.append(
            settings(
                table=table,
                regime_weighting=("probability", "label")[k % 2],
                normalization=("robust_zscore", "none")[(k // 2) % 2],
                disagreement_penalty=float(rng.choice([0.0, 0.5, 3.0])),
                zscore_scale=float(rng.choice([0.5, 2.0])),
                min_cross_section=int(rng.choice([2, 3, 8])),
                prediction_horizon=horizon,
                prediction_scale=scale,
            )
        )
    return strategies


@pytest.mark.parametrize("strategy", varied_strategies())
def test_the_kernel_equals_combine_signals_for_varied_trials(
    frames: tuple[pl.DataFrame, pl.DataFrame, pl.DataFrame],
    inputs: AlphaInputs,
    strategy: AlphaSettings,
) -> None:
    assert_kernel_matches(frames, inputs, strategy)


def test_the_edge_dates_score_as_combine_signals_says(inputs: AlphaInputs) -> None:
    strategy = settings({s: 1.0 for s in SIGNALS}, min_cross_section=3)
    alpha, confidence = alpha_scores(inputs, strategy)
    row = {day: k for k, day in enumerate(DAYS)}
    assert np.all(alpha[row[SMALL_DAY], :2] == 0.0)  # two names < min_cross_section
    assert np.all(alpha[row[EQUAL_DAY]] == 0.0)  # all equal: zero MAD
    assert np.isnan(alpha[row[COLD_DAY]]).all()  # nothing warmed up: null
    assert np.all(confidence[row[COLD_DAY]][~np.isnan(confidence[row[COLD_DAY]])] == 0.0)
    assert np.isnan(alpha[row[EMPTY_DAY]]).all() and np.isnan(confidence[row[EMPTY_DAY]]).all()


def test_parameter_rows_follow_the_documented_columns() -> None:
    strategy = settings(
        {"trend_alpha": 1.0, "prediction": 2.0},
        regime_weighting="label",
        normalization="none",
        disagreement_penalty=0.7,
        zscore_scale=1.5,
        min_cross_section=4,
        prediction_horizon=3,
        prediction_scale=0.2,
    )
    row = dict(zip(ALPHA_PARAMETER_COLUMNS, alpha_parameters(strategy).tolist(), strict=True))
    assert row == {
        "regime_weighting": 1.0,
        "disagreement_penalty": 0.7,
        "normalization": 1.0,
        "zscore_scale": 1.5,
        "min_cross_section": 4.0,
        "prediction_horizon": 3.0,
        "prediction_scale": 0.2,
    }
    table = alpha_weight_table(strategy)
    assert table.shape == (len(REGIME_NAMES), len(ALPHA_COMPONENTS))
    assert table[:, ALPHA_COMPONENTS.index("prediction")].tolist() == [2.0] * 4
    assert table[:, ALPHA_COMPONENTS.index("vol_alpha")].tolist() == [0.0] * 4


def test_a_prediction_variant_that_was_not_prepared_is_named(inputs: AlphaInputs) -> None:
    with pytest.raises(KeyError, match=r"horizon 2, scale 0\.1"):
        alpha_scores(inputs, settings({"prediction": 1.0}, prediction_horizon=2))


def test_bad_inputs_are_refused_naming_what_and_where(
    frames: tuple[pl.DataFrame, pl.DataFrame, pl.DataFrame], inputs: AlphaInputs
) -> None:
    signals, _, regimes = frames
    with pytest.raises(ValueError, match="signals: duplicate row for date"):
        alpha_inputs(pl.concat([signals, signals.head(1)]), None, regimes, TICKERS, DAYS)
    with pytest.raises(ValueError, match=f"no regime row for {DAYS[0]}"):
        alpha_inputs(signals, None, regimes.filter(pl.col("date") != DAYS[0]), TICKERS, DAYS)
    with pytest.raises(ValueError, match="regimes lacks column"):
        alpha_inputs(signals, None, regimes.drop("regime_label"), TICKERS, DAYS)
    infinite = signals.with_columns(pl.lit(float("inf")).alias("trend_alpha"))
    with pytest.raises(ValueError, match="infinite trend_alpha"):
        alpha_inputs(infinite, None, regimes, TICKERS, DAYS)

    strategy = settings({"trend_alpha": 1.0})
    buffers = np.empty((2, len(DAYS), len(TICKERS)))
    arguments = [
        inputs.signal_value,
        inputs.signal_confidence,
        inputs.prediction_value[0],
        inputs.prediction_confidence[0],
        inputs.regime_label,
        inputs.regime_probability,
        alpha_weight_table(strategy),
        alpha_parameters(strategy),
        buffers[0],
        buffers[1],
    ]
    with pytest.raises(ValueError, match="weights must have shape"):
        alpha_scores_nb(*arguments[:6], np.ones((4, 4)), *arguments[7:])
    negative = alpha_parameters(strategy)
    negative[3] = -1.0
    with pytest.raises(ValueError, match="zscore_scale must be finite and > 0"):
        alpha_scores_nb(*arguments[:7], negative, *arguments[8:])
    with pytest.raises(ValueError, match="alpha_score and confidence must have shape"):
        alpha_scores_nb(*arguments[:8], buffers[0][1:], buffers[1])
