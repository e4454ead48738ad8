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


def validate_alpha_scores(alpha: pl.DataFrame) -> ValidationReport:
    """``alpha_scores``: one row per (ticker, date), score in [-1, 1], confidence in [0, 1]."""
    import great_expectations.expectations as gxe

    expectations: list[object] = [
        gxe.ExpectCompoundColumnsToBeUnique(column_list=["ticker", "date"]),
        gxe.ExpectColumnValuesToBeBetween(column="alpha_score", min_value=-1, max_value=1),
        gxe.ExpectColumnValuesToNotBeNull(column="confidence"),
        gxe.ExpectColumnValuesToBeBetween(column="confidence", min_value=0, max_value=1),
        gxe.ExpectColumnValuesToBeBetween(column="disagreement", min_value=0, max_value=_FINITE),
    ]
    return validate(alpha, "alpha_scores", expectations)


def validate_positions(
    positions: pl.DataFrame, max_weight: float, max_gross_leverage: float, long_only: bool
) -> ValidationReport:
    """``positions``: every weight within the per-name cap (and >= 0 long-only), every date's
    gross exposure within the leverage cap, a decision and reason codes on every row."""
    import great_expectations.expectations as gxe

    tolerance = 1e-9  # caps are applied by scaling in floating point
    frame = positions.with_columns(
        pl.col("target_weight").abs().sum().over("date").alias("gross_from_rows")
    )
    expectations: list[object] = [
        gxe.ExpectCompoundColumnsToBeUnique(column_list=["ticker", "date"]),
        gxe.ExpectColumnValuesToNotBeNull(column="target_weight"),
        gxe.ExpectColumnValuesToBeBetween(
            column="target_weight",
            min_value=0.0 if long_only else -max_weight - tolerance,
            max_value=max_weight + tolerance,
        ),
        gxe.ExpectColumnValuesToBeBetween(
            column="gross_from_rows", min_value=0, max_value=max_gross_leverage + tolerance
        ),
        gxe.ExpectColumnValuesToBeInSet(
            column="decision", value_set=["EXECUTE_BUY", "EXECUTE_SELL", "HOLD", "REJECT"]
        ),
        gxe.ExpectColumnValuesToNotBeNull(column="reason_codes"),
    ]
    return validate(frame, "positions", expectations)


def validate_backtest(book: pl.DataFrame) -> ValidationReport:
    """``backtest``: equity = cash + Σ shares × mark every date (1e-9 relative), equity finite
    and never null, one row per (ticker, date)."""
    import great_expectations.expectations as gxe

    holdings = (pl.col("shares") * pl.col("mark_price")).fill_nan(0.0).fill_null(0.0)
    frame = book.with_columns(
        (
            (pl.col("cash") + holdings.sum().over("date") - pl.col("equity")).abs()
            / pl.col("equity").abs().clip(lower_bound=1.0)
        ).alias("accounting_error")
    )
    expectations: list[object] = [
        gxe.ExpectCompoundColumnsToBeUnique(column_list=["ticker", "date"]),
        gxe.ExpectColumnValuesToNotBeNull(column="equity"),
        gxe.ExpectColumnValuesToBeBetween(column="equity", min_value=-_FINITE, max_value=_FINITE),
        gxe.ExpectColumnValuesToNotBeNull(column="accounting_error"),
        gxe.ExpectColumnValuesToBeBetween(column="accounting_error", min_value=0, max_value=1e-9),
    ]
    return validate(frame, "backtest", expectations)


def validate_orders(orders: pl.DataFrame, book: pl.DataFrame, lot_size: float) -> ValidationReport:
    """``orders`` and the paper ``book`` behind them (:data:`quant_assets.schemas.ORDERS`,
    :data:`quant_assets.schemas.PAPER_BOOK`). Orders: side BUY or SELL, quantity > 0 and a
    multiple of the lot (``lot_size`` 0: fractional), reference price > 0, one order per
    (ticker, date), reason codes on every order, and under the kill switch every order
    reduces |shares|. Book: one row per (ticker, date), equity finite, equity = cash +
    Σ shares × mark_price every date and cash − previous cash = Σ cash_flow from the second
    date of the frame on (both 1e-9 relative to equity)."""
    import great_expectations.expectations as gxe

    lot_error = (
        ((pl.col("quantity") / lot_size) - (pl.col("quantity") / lot_size).round()).abs()
        if lot_size > 0
        else pl.lit(0.0)
    )
    order_frame = orders.with_columns(
        lot_error.alias("lot_error"),
        (
            ~pl.col("kill_switch")
            | (pl.col("target_shares").abs() < pl.col("current_shares").abs())
        ).alias("reduces_or_no_kill_switch"),
    )
    order_expectations: list[object] = [
        gxe.ExpectCompoundColumnsToBeUnique(column_list=["ticker", "date"]),
        gxe.ExpectColumnValuesToBeInSet(column="side", value_set=["BUY", "SELL"]),
        gxe.ExpectColumnValuesToNotBeNull(column="quantity"),
        gxe.ExpectColumnValuesToBeBetween(
            column="quantity", min_value=0, max_value=_FINITE, strict_min=True
        ),
        gxe.ExpectColumnValuesToBeBetween(column="lot_error", min_value=0, max_value=1e-6),
        gxe.ExpectColumnValuesToNotBeNull(column="reference_price"),
        gxe.ExpectColumnValuesToBeBetween(
            column="reference_price", min_value=0, max_value=_FINITE, strict_min=True
        ),
        gxe.ExpectColumnValuesToNotBeNull(column="reason_codes"),
        gxe.ExpectColumnValuesToBeInSet(column="reduces_or_no_kill_switch", value_set=[True]),
    ]
    scale = pl.col("equity").abs().clip(lower_bound=1.0)
    holdings = (pl.col("shares") * pl.col("mark_price")).fill_nan(0.0).fill_null(0.0)
    daily = (
        book.group_by("date")
        .agg(pl.col("cash").first(), pl.col("equity").first(), pl.col("cash_flow").sum())
        .sort("date")
        .select(
            "date",
            ((pl.col("cash").diff() - pl.col("cash_flow")).abs() / scale)
            .fill_null(0.0)
            .alias("cash_flow_error"),
        )
    )
    book_frame = book.with_columns(
        ((pl.col("cash") + holdings.sum().over("date") - pl.col("equity")).abs() / scale).alias(
            "accounting_error"
        )
    ).join(daily, on="date", how="left")
    book_expectations: list[object] = [
        gxe.ExpectCompoundColumnsToBeUnique(column_list=["ticker", "date"]),
        gxe.ExpectColumnValuesToNotBeNull(column="equity"),
        gxe.ExpectColumnValuesToBeBetween(column="equity", min_value=-_FINITE, max_value=_FINITE),
        gxe.ExpectColumnValuesToNotBeNull(column="accounting_error"),
        gxe.ExpectColumnValuesToBeBetween(column="accounting_error", min_value=0, max_value=1e-9),
        gxe.ExpectColumnValuesToBeBetween(column="cash_flow_error", min_value=0, max_value=1e-9),
    ]
    order_report = validate(order_frame, "orders", order_expectations)
    book_report = validate(book_frame, "paper_book", book_expectations)
    return ValidationReport(
        suite="orders",
        row_count=orders.height + book.height,
        outcomes=order_report.outcomes + book_report.outcomes,
    )
