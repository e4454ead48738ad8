"""Quality suites for derived assets: features (finite after warm-up) and signals (in [-1, 1])."""

from __future__ import annotations

import polars as pl

from quant_assets.features.build import NEEDS_HIGH_LOW, NEEDS_VOLUME
from quant_assets.quality.gx import ValidationReport, validate

RELATIVE_PREFIXES = ("rel_return", "beta")
_FINITE = 1e300  # between(-1e300, 1e300) fails +-inf; NaN and null fail not-null


def _needs(column: str) -> tuple[bool, bool]:
    needs_high_low = any(column.startswith(p) for p in NEEDS_HIGH_LOW)
    needs_volume = any(column.startswith(p) for p in NEEDS_VOLUME)
    return needs_high_low, needs_volume


def validate_features(
    features: pl.DataFrame, feature_names: list[str], available: dict[str, list[str]]
) -> ValidationReport:
    """Every feature is finite on rows after the warm-up whose inputs the ticker has.

    ``available`` maps ticker → optional bar columns it has (see
    :func:`quant_assets.providers.base.available_columns`).
    """
    import great_expectations.expectations as gxe  # lazy: importing GX costs ~7 s

    frame = features.with_columns(
        pl.col("ticker")
        .is_in([t for t, cols in available.items() if {"high", "low"} <= set(cols)])
        .alias("has_high_low"),
        pl.col("ticker")
        .is_in([t for t, cols in available.items() if "volume" in cols])
        .alias("has_volume"),
    )
    expectations: list[object] = []
    for column in feature_names:
        needs_high_low, needs_volume = _needs(column)
        condition = "warmed_up == True"
        if needs_high_low:
            condition += " and has_high_low == True"
        if needs_volume:
            condition += " and has_volume == True"
        if column.startswith(RELATIVE_PREFIXES):
            condition += " and benchmark_complete == True"
        expectations.append(
            gxe.ExpectColumnValuesToNotBeNull(
                column=column, row_condition=condition, condition_parser="pandas"
            )
        )
        expectations.append(
            gxe.ExpectColumnValuesToBeBetween(column=column, min_value=-_FINITE, max_value=_FINITE)
        )
    return validate(frame, "features", expectations)


def validate_signals(signals: pl.DataFrame, signal_names: list[str]) -> ValidationReport:
    """Signals lie in [-1, 1] and are non-null after the warm-up."""
    import great_expectations.expectations as gxe  # lazy: importing GX costs ~7 s

    expectations: list[object] = []
    for column in signal_names:
        expectations.append(
            gxe.ExpectColumnValuesToBeBetween(column=column, min_value=-1, max_value=1)
        )
        expectations.append(
            gxe.ExpectColumnValuesToNotBeNull(
                column=column, row_condition="warmed_up == True", condition_parser="pandas"
            )
        )
    return validate(signals, "signals", expectations)


def _probability_expectations(
    frame: pl.DataFrame, label_column: str, labels: list[str], prob_columns: list[str]
) -> tuple[pl.DataFrame, list[object]]:
    """Labels in the set, each probability in [0, 1], probabilities summing to 1 (1e-9)."""
    import great_expectations.expectations as gxe  # lazy: importing GX costs ~7 s

    checked = frame.with_columns(
        pl.sum_horizontal(prob_columns).sub(1.0).abs().alias("probability_sum_error")
    )
    expectations: list[object] = [
        gxe.ExpectColumnValuesToNotBeNull(column=label_column),
        gxe.ExpectColumnValuesToBeInSet(column=label_column, value_set=labels),
        gxe.ExpectColumnValuesToBeBetween(
            column="probability_sum_error", min_value=0, max_value=1e-9
        ),
    ]
    for column in prob_columns:
        expectations.append(gxe.ExpectColumnValuesToNotBeNull(column=column))
        expectations.append(
            gxe.ExpectColumnValuesToBeBetween(column=column, min_value=0, max_value=1)
        )
    return checked, expectations


def validate_regimes(
    regimes: pl.DataFrame, labels: list[str], prob_columns: list[str]
) -> ValidationReport:
    """``regimes``: one row per date, labels (HMM and rule) in the set, probabilities valid."""
    import great_expectations.expectations as gxe

    frame, expectations = _probability_expectations(regimes, "regime_label", labels, prob_columns)
    expectations += [
        gxe.ExpectColumnValuesToBeInSet(column="rule_label", value_set=labels),
        gxe.ExpectColumnValuesToBeUnique(column="date"),
    ]
    return validate(frame, "regimes", expectations)


def validate_predictions(
    predictions: pl.DataFrame, states: list[str], prob_columns: list[str]
) -> ValidationReport:
    """``predictions``: states in the set, probabilities valid, one row per (ticker, date,
    horizon), a model version on every row."""
    import great_expectations.expectations as gxe

    frame, expectations = _probability_expectations(predictions, "pred_state", states, prob_columns)
    expectations += [
        gxe.ExpectCompoundColumnsToBeUnique(column_list=["ticker", "date", "horizon"]),
        gxe.ExpectColumnValuesToNotBeNull(column="model_version"),
        gxe.ExpectColumnPairValuesAToBeGreaterThanB(
            column_A="date", column_B="model_cutoff", or_equal=True
        ),
    ]
    return validate(frame, "predictions", expectations)
