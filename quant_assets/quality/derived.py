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
