"""The backtest and the paper book are one accounting core: for every shipped strategy config,
the same bars, targets and capital give the same fills, costs and equity in both, every date.

A year of seeded synthetic bars (open, close and volume, some opens and volumes missing, some
bars absent) with a look-back for the impact's windows; targets either seeded random weights
within the strategy's caps or the strategy's own sizing engine on random alpha scores.
"""

from __future__ import annotations

from datetime import date
from pathlib import Path

import numpy as np
import polars as pl
import pytest

from quant_assets.backtest.book import BookResult, BookState, run_book
from quant_assets.execution import PaperBookState, PaperResult, run_paper_book
from quant_assets.risk import PositionState, size_positions
from quant_assets.settings import REPO_ROOT, BacktestSettings, StrategySettings, load_settings
from quant_assets_tests.conftest import weekdays

CONFIG_DIR = REPO_ROOT / "configs"
STRATEGIES = sorted(path.stem for path in Path(CONFIG_DIR, "strategies").glob("*.yaml"))
TICKERS = ["MMM", "AAA", "ZZZ", "BBB", "QQQ", "CCC"]  # unsorted: the books' column order
LOOK_BACK = 70  # sessions before the start: the sizing's 61, the impact's 21
SESSIONS = 252  # about a year
RTOL = 1e-9


DAYS = weekdays(date(2021, 1, 4), LOOK_BACK + SESSIONS)
START = DAYS[LOOK_BACK]


def make_bars(seed: int = 11) -> pl.DataFrame:
    """Random-walk closes, opens gapping from them, volumes of 20k-200k shares; ~3 % of opens
    and 2 % of volumes missing, ~1 % of bars absent (never the first row of a ticker)."""
    rng = np.random.default_rng(seed)
    n = len(DAYS)
    rows = []
    for k, ticker in enumerate(TICKERS):
        close = (30.0 + 10 * k) * np.exp(np.cumsum(rng.normal(0.0002, 0.018, n)))
        opening = close * np.exp(rng.normal(0.0, 0.006, n))
        volume = rng.uniform(2e4, 2e5, n)
        for i, day in enumerate(DAYS):
            if i > 0 and rng.random() < 0.01:
                continue
            rows.append(
                {
                    "date": day,
                    "ticker": ticker,
                    "open": None if rng.random() < 0.03 else float(opening[i]),
                    "close": float(close[i]),
                    "volume": None if rng.random() < 0.02 else float(volume[i]),
                }
            )
    return pl.DataFrame(rows, schema_overrides={"date": pl.Date})


def random_targets(strategy: StrategySettings, seed: int) -> pl.DataFrame:
    """Weights within the strategy's caps on every session: |w| ≤ max_weight (≥ 0 when long
    only), gross ≤ max_gross_leverage; ~10 % null (no order) and ~3 % zero (close)."""
    rng = np.random.default_rng(seed)
    sizing = strategy.sizing
    shape = (SESSIONS, len(TICKERS))
    low = 0.0 if sizing.long_only else -sizing.max_weight
    weights = rng.uniform(low, sizing.max_weight, shape)
    gross = np.abs(weights).sum(axis=1, keepdims=True)
    weights *= np.minimum(1.0, sizing.max_gross_leverage / gross)
    weights[rng.random(shape) < 0.03] = 0.0
    weights[rng.random(shape) < 0.10] = np.nan
    return pl.DataFrame(
        {
            "date": [day for day in DAYS[LOOK_BACK:] for _ in TICKERS],
            "ticker": TICKERS * SESSIONS,
            "target_weight": weights.ravel(),
        },
        schema_overrides={"date": pl.Date},
    ).with_columns(pl.col("target_weight").fill_nan(None))


def sized_targets(strategy: StrategySettings, bars: pl.DataFrame, seed: int) -> pl.DataFrame:
    """The strategy's own sizing engine on seeded random alpha scores in a bull regime."""
    rng = np.random.default_rng(seed)
    keys = bars.filter(pl.col("date") >= START).select("date", "ticker").sort("date", "ticker")
    alpha = keys.with_columns(
        pl.Series("alpha_score", rng.uniform(-1, 1, keys.height)),
        pl.Series("confidence", rng.uniform(0.5, 1, keys.height)),
    )
    regimes = pl.DataFrame(
        {"date": DAYS[LOOK_BACK:], "regime_label": ["bull"] * SESSIONS},
        schema_overrides={"date": pl.Date},
    )
    positions = size_positions(
        alpha,
        bars.select("date", "ticker", "close"),
        regimes,
        strategy,
        start=START,
        state=PositionState(),
        tickers=TICKERS,
    )
    return positions.rows.select("date", "ticker", "target_weight", "reason_codes")


def run_both(
    bars: pl.DataFrame, targets: pl.DataFrame, settings: BacktestSettings
) -> tuple[BookResult, PaperResult]:
    capital = settings.initial_capital
    backtest = run_book(
        bars, targets, settings, start=START, state=BookState.initial(capital), tickers=TICKERS
    )
    paper = run_paper_book(
        bars,
        targets,
        settings,
        start=START,
        state=PaperBookState.initial(capital),
        tickers=TICKERS,
        strategy="agree",
    )
    return backtest, paper


def _values(frame: pl.DataFrame, column: str) -> np.ndarray:
    return frame[column].cast(pl.Float64).fill_null(np.nan).to_numpy()


def assert_books_agree(backtest: BookResult, paper: PaperResult) -> None:
    """Fills, costs, holdings, cash and equity of every (date, ticker), and every trade."""
    joined = backtest.book.join(paper.book, on=["date", "ticker"], suffix="_paper")
    assert joined.height == backtest.book.height == paper.book.height
    pairs = {
        "trade_quantity": "filled_quantity",
        "fill_price": "fill_price_paper",
        "commission": "commission_paper",
        "shares": "shares_paper",
        "mark_price": "mark_price_paper",
        "cash": "cash_paper",
        "equity": "equity_paper",
    }
    for ours, theirs in pairs.items():
        np.testing.assert_allclose(
            _values(joined, theirs), _values(joined, ours), rtol=RTOL, atol=0, err_msg=ours
        )
    # The stored paper book has one slippage column: the fill's whole concession (s + m).
    np.testing.assert_allclose(
        _values(joined, "slippage_cost_paper"),
        _values(joined, "slippage_cost") + _values(joined, "impact_cost"),
        rtol=RTOL,
        atol=0,
    )
    # Its trade records keep them apart, as the backtest's do.
    assert paper.trades.columns == backtest.trades.columns
    assert paper.trades.height == backtest.trades.height
    for column in ("date", "ticker", "side"):
        assert paper.trades[column].equals(backtest.trades[column])
    for column in ("quantity", "reference_price", "fill_price", "commission"):
        np.testing.assert_allclose(
            _values(paper.trades, column), _values(backtest.trades, column), rtol=RTOL, atol=0
        )
    for column in ("slippage_cost", "impact_cost"):
        np.testing.assert_allclose(
            _values(paper.trades, column), _values(backtest.trades, column), rtol=RTOL, atol=0
        )


def _assert_a_real_test(backtest: BookResult) -> None:
    """The books must trade, both ways, and pay impact: agreement on an idle book proves
    nothing."""
    trades = backtest.trades
    assert trades.height > 100
    assert set(trades["side"]) == {"buy", "sell"}
    assert trades["impact_cost"].sum() > 0
    assert trades["slippage_cost"].sum() > 0


@pytest.mark.parametrize("source", ["random", "sized"])
@pytest.mark.parametrize("name", STRATEGIES)
def test_paper_book_and_backtest_agree_on_every_fill_cost_and_equity(
    name: str, source: str
) -> None:
    strategy = load_settings(CONFIG_DIR).strategies[name]
    bars = make_bars()
    seed = STRATEGIES.index(name)
    if source == "random":
        targets = random_targets(strategy, seed)
    else:
        targets = sized_targets(strategy, bars, seed)
    backtest, paper = run_both(bars, targets, strategy.backtest)
    if source == "random":
        _assert_a_real_test(backtest)
    else:
        assert backtest.trades.height > 0
    assert_books_agree(backtest, paper)


@pytest.mark.parametrize(
    "update",
    [
        {"fill": "next_close"},
        {"lot_size": 0.0},  # fractional shares, in 1e-4 steps
        {"lot_size": 10.0, "commission_bps": 5.0, "slippage_bps": 10.0},
        {"allow_borrowing": True, "impact_coefficient": 1.0},
    ],
    ids=["next_close", "fractional", "lots_of_10", "borrowing"],
)
def test_the_books_agree_under_other_execution_settings(update: dict) -> None:
    strategy = load_settings(CONFIG_DIR).strategies[STRATEGIES[0]]
    settings = strategy.backtest.model_copy(update=update)
    # Gross up to 1.3 of equity: without borrowing the buys are often scaled to the cash.
    wide = strategy.model_copy(
        update={
            "sizing": strategy.sizing.model_copy(
                update={"max_weight": 0.3, "max_gross_leverage": 1.3}
            )
        }
    )
    backtest, paper = run_both(make_bars(), random_targets(wide, 5), settings)
    _assert_a_real_test(backtest)
    scaled = paper.book.filter(
        (pl.col("order_quantity") > 0)
        & pl.col("fill_reference_price").is_not_null()
        & (pl.col("filled_quantity") < pl.col("order_quantity"))
    )
    if settings.allow_borrowing:
        assert backtest.book["cash"].min() < 0  # the buys were not scaled: cash went negative
    else:
        assert scaled.height > 0  # the cash constraint bound, and both books scaled alike
    assert_books_agree(backtest, paper)
