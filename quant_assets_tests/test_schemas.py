"""The column schemas: one per stored table, equal to what the domain functions return.

A strategy table's schema must match, name for name, in order and dtype for dtype, the frame
its domain function builds (alpha scores, sized positions, the simulated book, the evaluation
metrics of the report), so the asset can conform to it and the UI shows the real columns.
"""

from __future__ import annotations

from datetime import date, timedelta

import numpy as np
import polars as pl
import pytest
from pydantic import ValidationError

from quant_assets import schemas
from quant_assets.backtest.book import BookState, run_book
from quant_assets.backtest.evaluation import evaluate_strategy
from quant_assets.meta import ALPHA_SCORE_COLUMNS, combine_signals
from quant_assets.names import REGIME_NAMES, REGIME_PROB_COLUMNS, STATE_PROB_COLUMNS
from quant_assets.risk import PositionState, size_positions
from quant_assets.settings import (
    AlphaSettings,
    FeatureSettings,
    RiskSettings,
    StrategySettings,
)
from quant_assets_tests.conftest import weekdays

TICKERS = ["BBB", "AAA", "CCC"]  # unsorted, as a caller may pass them
SIGNAL_NAMES = ("trend_alpha", "mean_rev_alpha", "vol_alpha", "rel_strength_alpha")

SHARED = {
    "bars": schemas.BARS,
    "features": schemas.features_schema(FeatureSettings()),
    "signals": schemas.SIGNALS,
    "labels": schemas.LABELS,
    "regime_model": schemas.REGIME_MODEL,
    "regimes": schemas.REGIMES,
    "next_state_model": schemas.NEXT_STATE_MODEL,
    "predictions": schemas.PREDICTIONS,
}
PER_STRATEGY = {
    "alpha_scores": schemas.ALPHA_SCORES,
    "positions": schemas.POSITIONS,
    "backtest": schemas.BACKTEST,
    "backtest_report": schemas.BACKTEST_REPORT,
    "orders": schemas.ORDERS,
    "paper_book": schemas.PAPER_BOOK,
}


def dtypes(columns: tuple[schemas.Column, ...]) -> dict[str, pl.DataType]:
    return {c.name: c.dtype for c in columns}


def assert_matches(frame: pl.DataFrame, columns: tuple[schemas.Column, ...]) -> None:
    assert frame.columns == [c.name for c in columns]
    assert dict(frame.schema) == dtypes(columns)


DAYS = weekdays(date(2024, 1, 2), 80)
START = DAYS[60]


def strategy(components: tuple[str, ...] = ("trend_alpha",)) -> StrategySettings:
    row = {component: 1.0 for component in components}
    return StrategySettings.model_validate(
        {
            "name": "test",
            "alpha": {"weights": {regime: dict(row) for regime in REGIME_NAMES}},
            "sizing": {"volatility_window": 20},
            "risk": {"var": {"window_sessions": 20}},
            "backtest": {"adv_window": 5, "vol_window": 5},
            "promotion": {"bootstrap_reps": 100, "bootstrap_block": 5},
        }
    )


def bars(seed: int = 1) -> pl.DataFrame:
    """Seeded random-walk bars (date, ticker, open, close, volume) on every day of DAYS."""
    rng = np.random.default_rng(seed)
    n = len(DAYS)
    frames = []
    for ticker in TICKERS:
        close = 50 * np.exp(np.cumsum(rng.normal(0.0005, 0.02, n)))
        frames.append(
            pl.DataFrame(
                {
                    "date": DAYS,
                    "ticker": [ticker] * n,
                    "open": close * np.exp(rng.normal(0, 0.005, n)),
                    "close": close,
                    "volume": rng.uniform(1e4, 1e5, n),
                }
            )
        )
    return pl.concat(frames)


def regimes() -> pl.DataFrame:
    labels = [REGIME_NAMES[i % len(REGIME_NAMES)] for i in range(len(DAYS))]
    return pl.DataFrame(
        {
            "date": DAYS,
            "regime_label": labels,
            **{
                column: [float(label == name) for label in labels]
                for name, column in zip(REGIME_NAMES, REGIME_PROB_COLUMNS, strict=True)
            },
        }
    )


def signals(seed: int = 2) -> pl.DataFrame:
    rng = np.random.default_rng(seed)
    keys = bars().select("date", "ticker")
    return keys.with_columns(
        *(pl.Series(name, rng.uniform(-1, 1, keys.height)) for name in SIGNAL_NAMES),
        pl.Series("warmed_up", rng.random(keys.height) > 0.1),
    )


def predictions(seed: int = 3) -> pl.DataFrame:
    rng = np.random.default_rng(seed)
    keys = bars().select("date", "ticker")
    probs = rng.dirichlet(np.ones(3), keys.height)
    return keys.with_columns(
        pl.lit(5, dtype=pl.Int16).alias("horizon"),
        *(pl.Series(c, probs[:, j]) for j, c in enumerate(STATE_PROB_COLUMNS)),
        pl.Series("prob_pred_state", probs.max(axis=1)),
    )


def alpha_scores(s: StrategySettings) -> pl.DataFrame:
    return combine_signals(signals(), predictions(), regimes(), s.alpha)


def positions(s: StrategySettings, start: date = START) -> pl.DataFrame:
    closes = bars().select("date", "ticker", "close")
    result = size_positions(
        alpha_scores(s), closes, regimes(), s, start=start, state=PositionState(), tickers=TICKERS
    )
    return result.rows


def book(s: StrategySettings) -> pl.DataFrame:
    targets = positions(s).select("date", "ticker", "target_weight")
    state = BookState.initial(s.backtest.initial_capital)
    return run_book(bars(), targets, s.backtest, start=START, state=state, tickers=TICKERS).book


# --- every schema ------------------------------------------------------------------------------


@pytest.mark.parametrize("table", [*SHARED, *PER_STRATEGY])
def test_every_schema_names_each_column_once_with_a_dtype_and_a_description(table: str):
    columns = {**SHARED, **PER_STRATEGY}[table]
    names = [c.name for c in columns]
    assert len(names) == len(set(names)), f"{table}: duplicated column"
    assert all(name.isidentifier() and name == name.lower() for name in names)
    assert all(isinstance(c.dtype, pl.DataType) and c.description.strip() for c in columns)


def test_rows_are_read_by_ticker_then_cut_off_then_date_then_horizon():
    expected = {
        "bars": ("ticker", "date"),
        "features": ("ticker", "date"),
        "signals": ("ticker", "date"),
        "labels": ("ticker", "date", "horizon"),
        "regime_model": ("cutoff",),
        "regimes": ("date",),
        "next_state_model": ("cutoff", "horizon"),
        "predictions": ("ticker", "date", "horizon"),
        "alpha_scores": ("ticker", "date"),
        "positions": ("ticker", "date"),
        "backtest": ("ticker", "date"),
        "backtest_report": (),
        "orders": ("ticker", "date"),
        "paper_book": ("ticker", "date"),
    }
    assert {t: schemas.sort_columns(c) for t, c in {**SHARED, **PER_STRATEGY}.items()} == expected


def test_the_shared_names_are_the_ones_of_the_names_module():
    regimes_schema = [c.name for c in schemas.REGIMES]
    assert [c for c in regimes_schema if c.startswith("regime_prob_")] == list(REGIME_PROB_COLUMNS)
    predicted = [c.name for c in schemas.PREDICTIONS if c.name in STATE_PROB_COLUMNS]
    assert predicted == list(STATE_PROB_COLUMNS)


# --- each strategy table equals what its domain function returns -------------------------------


@pytest.mark.parametrize(
    "components",
    [("trend_alpha",), (*SIGNAL_NAMES, "prediction")],
    ids=["one-signal", "signals-and-prediction"],
)
def test_alpha_scores_schema_is_what_combine_signals_returns(components: tuple[str, ...]):
    scores = alpha_scores(strategy(components))
    assert scores.height == len(DAYS) * len(TICKERS)
    assert_matches(scores, schemas.ALPHA_SCORES)
    assert list(ALPHA_SCORE_COLUMNS) == [c.name for c in schemas.ALPHA_SCORES][2:]


def test_positions_schema_is_what_size_positions_returns():
    rows = positions(strategy())
    assert rows.height == (len(DAYS) - 60) * len(TICKERS)
    assert_matches(rows, schemas.POSITIONS)
    # ... and when no date is left to size, an empty frame of the same columns
    assert_matches(positions(strategy(), start=DAYS[-1] + timedelta(days=1)), schemas.POSITIONS)


def test_backtest_schema_is_what_run_book_returns():
    frame = book(strategy())
    assert frame.height == (len(DAYS) - 60) * len(TICKERS)
    assert_matches(frame, schemas.BACKTEST)


def test_backtest_report_metrics_are_the_ones_evaluate_strategy_computes():
    s = strategy()
    frame = book(s)
    evaluation = evaluate_strategy(
        s,
        frame,
        alpha_scores(s).select("date", "ticker", "alpha_score"),
        regimes(),
        bars().filter(pl.col("ticker") == "AAA").select("date", "close"),
        {},
        ["test"],
    )
    metrics = list(evaluation.metrics)
    # The report row: the strategy and its period, the metrics as floats, then the gate.
    assert [c.name for c in schemas.BACKTEST_REPORT] == [
        "strategy",
        "period_start",
        "period_end",
        *metrics,
        "promoted",
        "promotion_reason",
        "compared_strategies",
        "report_path",
        "mlflow_run_id",
    ]
    assert {dtypes(schemas.BACKTEST_REPORT)[m] for m in metrics} == {pl.Float64()}


# --- settings validate against the names module -----------------------------------------------


def test_a_regime_weights_table_without_crash_is_refused():
    table = {regime: {"trend_alpha": 1.0} for regime in REGIME_NAMES if regime != "crash"}
    with pytest.raises(ValidationError, match="missing: crash"):
        AlphaSettings(weights=table)


def test_regime_multipliers_must_name_exactly_the_regimes():
    with pytest.raises(ValidationError, match="missing: crash"):
        RiskSettings(regime_multipliers={r: 1.0 for r in REGIME_NAMES if r != "crash"})
    with pytest.raises(ValidationError, match="unknown: euphoria"):
        RiskSettings(regime_multipliers={**{r: 1.0 for r in REGIME_NAMES}, "euphoria": 1.0})
    assert set(RiskSettings().regime_multipliers) == set(REGIME_NAMES)
