"""Signal evaluation: forward returns stored as-of, IC and quantile statistics, the drop report,
the tear sheets, and a cross-check against alphalens-reloaded on the same factor and prices."""

from __future__ import annotations

import math
from datetime import date

import numpy as np
import pandas as pd
import polars as pl
import pytest
from plotly.offline import get_plotlyjs

from quant_assets.research.signal_evaluation import (
    DROP_MISSING_VALUE,
    DROP_NO_CLOSE,
    DROP_NO_FORWARD_RETURN,
    DROP_NO_REGIME,
    DROP_TOO_FEW_NAMES,
    FORWARD_RETURNS,
    SignalEvaluation,
    evaluate_signals,
    forward_returns,
)
from quant_assets.research.tearsheet import (
    CUMULATIVE_IC_TITLE,
    DECAY_TITLE,
    QUANTILE_TITLE,
    REGIME_TITLE,
    tear_sheet_html,
    tear_sheet_markdown,
)

HORIZONS = (1, 5, 21)


def _sessions(n_dates: int) -> pd.DatetimeIndex:
    return pd.bdate_range("2020-01-01", periods=n_dates)


def _dates(index: pd.DatetimeIndex) -> pl.Series:
    return pl.Series("date", [d.date() for d in index], dtype=pl.Date)


def _long(wide: pd.DataFrame, column: str) -> pl.DataFrame:
    """(date, ticker, column) rows of a dates × tickers frame (NaN cells kept as NaN)."""
    stacked = wide.stack(future_stack=True).reset_index()
    stacked.columns = ["date", "ticker", column]
    return pl.DataFrame(
        {
            "date": _dates(pd.DatetimeIndex(stacked["date"])),
            "ticker": stacked["ticker"].astype(str).tolist(),
            column: stacked[column].to_numpy(dtype=float),
        }
    )


def _factors(wide: pd.DataFrame, signal: str) -> pl.DataFrame:
    return _long(wide, "value").with_columns(pl.lit(signal).alias("signal"))


def _one_regime(index: pd.DatetimeIndex) -> pl.DataFrame:
    return pl.DataFrame({"date": _dates(index), "regime_label": ["all"] * len(index)})


def _prices(seed: int, n_tickers: int, n_dates: int) -> pd.DataFrame:
    """Seeded random-walk closes, sessions × tickers, no NaN."""
    rng = np.random.default_rng(seed)
    log_returns = rng.normal(0.0003, 0.015, (n_dates, n_tickers))
    return pd.DataFrame(
        50.0 * np.exp(np.cumsum(log_returns, axis=0)),
        index=_sessions(n_dates),
        columns=[f"T{i:02d}" for i in range(n_tickers)],
    )


def _forward(prices: pd.DataFrame, horizon: int) -> pd.DataFrame:
    return prices.shift(-horizon) / prices - 1.0


# --- (a) forward returns are stored at the session they are realised ---------------------


def test_forward_returns_are_stored_at_their_realisation_session() -> None:
    closes = pl.DataFrame(
        {
            "date": [date(2024, 1, d) for d in (2, 3, 4, 5, 2, 4, 5)],
            "ticker": ["A"] * 4 + ["B"] * 3,
            "close": [100.0, 110.0, 99.0, 121.0, 10.0, 12.0, 9.0],
        }
    )
    table = forward_returns(closes, horizons=(1, 2))

    assert table.columns == [c.name for c in FORWARD_RETURNS]
    a = table.filter(pl.col("ticker") == "A")
    assert a.rows() == [
        ("A", date(2024, 1, 3), 1, date(2024, 1, 2), pytest.approx(0.1)),
        ("A", date(2024, 1, 4), 1, date(2024, 1, 3), pytest.approx(-0.1)),
        ("A", date(2024, 1, 4), 2, date(2024, 1, 2), pytest.approx(-0.01)),
        ("A", date(2024, 1, 5), 1, date(2024, 1, 4), pytest.approx(121 / 99 - 1)),
        ("A", date(2024, 1, 5), 2, date(2024, 1, 3), pytest.approx(0.1)),
    ]
    # B has no bar on the 3rd: its horizons count its own sessions.
    b = table.filter(pl.col("ticker") == "B")
    assert b.select("date", "horizon", "origin_date").rows() == [
        (date(2024, 1, 4), 1, date(2024, 1, 2)),
        (date(2024, 1, 5), 1, date(2024, 1, 4)),
        (date(2024, 1, 5), 2, date(2024, 1, 2)),
    ]
    assert (table["date"] > table["origin_date"]).all()


def test_closes_after_a_date_do_not_change_forward_returns_up_to_it() -> None:
    prices = _prices(seed=3, n_tickers=6, n_dates=60)
    closes = _long(prices, "close")
    cutoff = _dates(prices.index)[39]
    rng = np.random.default_rng(4)
    perturbed = closes.with_columns(
        pl.when(pl.col("date") > cutoff)
        .then(pl.col("close") * pl.Series(rng.uniform(0.5, 1.5, closes.height)))
        .otherwise(pl.col("close"))
        .alias("close")
    )

    before = forward_returns(closes, HORIZONS)
    after = forward_returns(perturbed, HORIZONS)

    up_to_cutoff = pl.col("date") <= cutoff
    assert after.filter(up_to_cutoff).equals(before.filter(up_to_cutoff))
    assert before.filter(up_to_cutoff).height > 0
    assert not after.filter(~up_to_cutoff).equals(before.filter(~up_to_cutoff))


# --- (b) a perfect factor, its negative, and noise ---------------------------------------


@pytest.fixture(scope="module")
def market() -> pd.DataFrame:
    return _prices(seed=11, n_tickers=30, n_dates=160)


def _evaluate(prices: pd.DataFrame, factors: pl.DataFrame, **options: object) -> SignalEvaluation:
    return evaluate_signals(
        factors,
        _long(prices, "close"),
        _one_regime(prices.index),
        **options,  # type: ignore[arg-type]
    )


def test_a_factor_equal_to_the_future_return_has_rank_ic_one_and_monotone_quintiles(
    market: pd.DataFrame,
) -> None:
    future = _forward(market, 5).dropna()
    factors = pl.concat(
        [
            _factors(future, "future_return"),
            _factors(-future, "minus_future_return"),
        ]
    )
    evaluation = _evaluate(market, factors, horizons=(5,))

    ic = evaluation.ic
    perfect = ic.filter(pl.col("signal") == "future_return")["rank_ic"]
    inverse = ic.filter(pl.col("signal") == "minus_future_return")["rank_ic"]
    assert perfect.len() == len(future) and (perfect - 1.0).abs().max() < 1e-12
    assert (inverse + 1.0).abs().max() < 1e-12
    summary = {row["signal"]: row for row in evaluation.summary.iter_rows(named=True)}
    assert summary["future_return"]["rank_ic_hit_rate"] == 1.0
    assert summary["minus_future_return"]["rank_ic_hit_rate"] == 0.0

    quantiles = evaluation.quantile_returns
    rising = quantiles.filter(pl.col("signal") == "future_return").sort("quantile")
    falling = quantiles.filter(pl.col("signal") == "minus_future_return").sort("quantile")
    assert rising["quantile"].to_list() == [1, 2, 3, 4, 5]
    assert (rising["mean_forward_return"].diff().drop_nulls() > 0).all()
    assert (falling["mean_forward_return"].diff().drop_nulls() < 0).all()
    assert summary["future_return"]["mean_top_bottom_spread"] > 0
    assert summary["minus_future_return"]["mean_top_bottom_spread"] == pytest.approx(
        -summary["future_return"]["mean_top_bottom_spread"]
    )


def test_a_noise_factor_has_ic_near_zero(market: pd.DataFrame) -> None:
    rng = np.random.default_rng(12)
    noise = pd.DataFrame(
        rng.normal(size=market.shape), index=market.index, columns=market.columns
    ).iloc[:-21]
    evaluation = _evaluate(market, _factors(noise, "noise"))

    for row in evaluation.summary.iter_rows(named=True):
        assert abs(row["mean_rank_ic"]) < 0.05, row
        assert abs(row["mean_ic"]) < 0.05, row
    one_day = evaluation.summary.filter(pl.col("horizon") == 1).row(0, named=True)
    # Daily ICs of noise are independent across dates: |t| stays small.
    assert abs(one_day["rank_ic_t_stat"]) < 3


def test_summary_statistics_follow_their_definitions(market: pd.DataFrame) -> None:
    rng = np.random.default_rng(13)
    future = _forward(market, 1).dropna()
    signal = future + rng.normal(scale=0.02, size=future.shape)
    evaluation = _evaluate(market, _factors(signal, "weak"), horizons=(1,))

    daily = evaluation.ic["rank_ic"].to_numpy()
    row = evaluation.summary.row(0, named=True)
    n = daily.size
    std = daily.std(ddof=1)
    assert row["n_dates"] == n
    assert row["mean_rank_ic"] == pytest.approx(daily.mean(), abs=1e-14)
    assert row["rank_ic_std"] == pytest.approx(std, rel=1e-12)
    assert row["rank_ic_t_stat"] == pytest.approx(daily.mean() / (std / math.sqrt(n)), rel=1e-12)
    assert row["rank_ic_ir"] == pytest.approx(daily.mean() / std, rel=1e-12)
    assert row["rank_ic_hit_rate"] == pytest.approx((daily > 0).mean())
    # The Pearson IC of a date is numpy's correlation of the values and the returns.
    first = evaluation.ic.row(0, named=True)
    origin = pd.Timestamp(first["date"])
    expected = np.corrcoef(signal.loc[origin], future.loc[origin])[0, 1]
    assert first["ic"] == pytest.approx(expected, abs=1e-12)


def test_ic_decay_peaks_at_the_horizon_the_factor_foresees(market: pd.DataFrame) -> None:
    future = _forward(market, 5).dropna()
    evaluation = _evaluate(market, _factors(future, "five_day"))

    decay = evaluation.decay
    assert decay["horizon"].to_list() == list(range(1, 22))
    assert decay.filter(pl.col("horizon") == 5)["mean_rank_ic"][0] == pytest.approx(1.0)
    assert decay["mean_rank_ic"].arg_max() == 4
    assert decay.filter(pl.col("horizon") == 21)["mean_rank_ic"][0] < 0.7


def test_statistics_are_split_by_the_regime_of_the_origin_date(market: pd.DataFrame) -> None:
    future = _forward(market, 1).dropna()
    calm = np.arange(len(future)) % 2 == 0
    # Right on calm dates, wrong on stressed ones.
    signal = future.mul(np.where(calm, 1.0, -1.0), axis=0)
    regimes = pl.DataFrame(
        {
            "date": _dates(market.index),
            "regime_label": ["calm" if i % 2 == 0 else "stress" for i in range(len(market))],
        }
    )
    evaluation = evaluate_signals(
        _factors(signal, "flip"), _long(market, "close"), regimes, horizons=(1,)
    )

    by_regime = {
        row["regime_label"]: row for row in evaluation.summary_by_regime.iter_rows(named=True)
    }
    assert by_regime["calm"]["mean_rank_ic"] == pytest.approx(1.0)
    assert by_regime["stress"]["mean_rank_ic"] == pytest.approx(-1.0)
    assert by_regime["calm"]["n_dates"] + by_regime["stress"]["n_dates"] == len(future)
    quantiles = evaluation.quantile_returns_by_regime
    calm_top = quantiles.filter((pl.col("regime_label") == "calm") & (pl.col("quantile") == 5))
    stress_top = quantiles.filter((pl.col("regime_label") == "stress") & (pl.col("quantile") == 5))
    assert calm_top["mean_forward_return"][0] > stress_top["mean_forward_return"][0]
    assert set(evaluation.decay_by_regime["regime_label"]) == {"calm", "stress"}


# --- no silent drops ----------------------------------------------------------------------


def test_every_row_left_out_is_counted_with_its_reason(market: pd.DataFrame) -> None:
    rng = np.random.default_rng(14)
    values = pd.DataFrame(rng.normal(size=market.shape), index=market.index, columns=market.columns)
    values.iloc[0, :] = np.nan  # the whole first date missing (a warm-up)
    values.iloc[3, 4:] = np.nan  # the fourth date keeps only 4 names
    factors = _factors(values, "s").vstack(
        pl.DataFrame(
            {"date": [date(2020, 1, 1)], "ticker": ["UNKNOWN"], "value": [1.0], "signal": ["s"]}
        ).with_columns(pl.col("date").cast(pl.Date))
    )
    # No regime for the fifth session.
    regimes = _one_regime(market.index).filter(pl.col("date") != _dates(market.index)[4])
    evaluation = evaluate_signals(factors, _long(market, "close"), regimes, horizons=(1, 5))

    dropped = {(row["horizon"], row["reason"]): row for row in evaluation.dropped.to_dicts()}
    n_tickers = market.shape[1]
    assert dropped[(None, DROP_MISSING_VALUE)]["n_rows"] == n_tickers + (n_tickers - 4)
    assert dropped[(None, DROP_NO_CLOSE)]["n_rows"] == 1
    assert dropped[(None, DROP_TOO_FEW_NAMES)] == {
        "signal": "s",
        "horizon": None,
        "reason": DROP_TOO_FEW_NAMES,
        "n_rows": 4,
        "n_dates": 1,
    }
    assert dropped[(1, DROP_TOO_FEW_NAMES)]["n_dates"] == 1
    assert dropped[(5, DROP_NO_FORWARD_RETURN)]["n_rows"] == 5 * n_tickers
    assert dropped[(5, DROP_NO_FORWARD_RETURN)]["n_dates"] == 5
    assert dropped[(1, DROP_NO_REGIME)]["n_dates"] == 1
    assert dropped[(None, DROP_NO_REGIME)]["n_dates"] == 1  # the turnover table's date
    fourth = _dates(market.index)[3]
    assert evaluation.ic.filter(pl.col("date") == fourth).height == 0
    assert evaluation.turnover.filter(pl.col("date") == fourth).height == 0
    # The fifth session follows a date left out: no turnover against it.
    fifth = evaluation.turnover.filter(pl.col("date") == _dates(market.index)[4])
    assert fifth["top_turnover"][0] is None and fifth["rank_autocorrelation"][0] is None


def test_a_constant_cross_section_has_no_ic_and_is_counted(market: pd.DataFrame) -> None:
    values = pd.DataFrame(1.0, index=market.index[:-21], columns=market.columns)
    evaluation = _evaluate(market, _factors(values, "flat"), horizons=(1,))

    assert evaluation.ic["rank_ic"].null_count() == evaluation.ic.height
    assert evaluation.summary["n_dates"][0] == 0
    constant = evaluation.dropped.filter(pl.col("reason") == "constant_cross_section")
    assert constant["n_dates"][0] == evaluation.ic.height
    # Ties share one quantile: all names land in the bottom one, none in the top.
    assert evaluation.quantile_returns["quantile"].to_list() == [1]


# --- (d) bad input is refused, naming what is wrong --------------------------------------


def _small_closes() -> pl.DataFrame:
    return pl.DataFrame(
        {
            "date": [date(2024, 1, 2), date(2024, 1, 3), date(2024, 1, 2), date(2024, 1, 3)],
            "ticker": ["A", "A", "B", "B"],
            "close": [10.0, 11.0, 20.0, 21.0],
        }
    )


@pytest.mark.parametrize("bad_close", [0.0, -1.0, float("nan"), None])
def test_non_positive_or_missing_closes_are_refused_naming_ticker_and_date(
    bad_close: float | None,
) -> None:
    closes = _small_closes().with_columns(
        pl.when((pl.col("ticker") == "B") & (pl.col("date") == date(2024, 1, 3)))
        .then(pl.lit(bad_close, dtype=pl.Float64))
        .otherwise(pl.col("close"))
        .alias("close")
    )
    with pytest.raises(ValueError, match=r"B on 2024-01-03"):
        forward_returns(closes)


def test_duplicate_closes_are_refused_naming_ticker_and_date() -> None:
    closes = pl.concat([_small_closes(), _small_closes().tail(1)])
    with pytest.raises(ValueError, match=r"duplicate close for B on 2024-01-03"):
        forward_returns(closes)


def test_missing_columns_are_refused_naming_them() -> None:
    with pytest.raises(ValueError, match=r"closes lacks column\(s\) \['close'\]"):
        forward_returns(_small_closes().drop("close"))
    factors = pl.DataFrame({"date": [date(2024, 1, 2)], "ticker": ["A"], "value": [1.0]})
    regimes = pl.DataFrame({"date": [date(2024, 1, 2)], "regime_label": ["calm"]})
    with pytest.raises(ValueError, match=r"factors lacks column\(s\) \['signal'\]"):
        evaluate_signals(factors, _small_closes(), regimes)
    with pytest.raises(ValueError, match=r"regimes lacks column\(s\) \['regime_label'\]"):
        evaluate_signals(
            factors.with_columns(pl.lit("s").alias("signal")),
            _small_closes(),
            regimes.drop("regime_label"),
        )


def test_bad_factor_rows_and_regimes_are_refused_naming_them() -> None:
    factors = pl.DataFrame(
        {
            "date": [date(2024, 1, 2), date(2024, 1, 2)],
            "ticker": ["A", "A"],
            "signal": ["trend", "trend"],
            "value": [1.0, 2.0],
        }
    )
    regimes = pl.DataFrame({"date": [date(2024, 1, 2)], "regime_label": ["calm"]})
    with pytest.raises(ValueError, match=r"signal trend for A on 2024-01-02"):
        evaluate_signals(factors, _small_closes(), regimes)
    infinite = factors.head(1).with_columns(pl.lit(float("inf")).alias("value"))
    with pytest.raises(ValueError, match=r"signal trend for A on 2024-01-02 has value inf"):
        evaluate_signals(infinite, _small_closes(), regimes)
    with pytest.raises(ValueError, match=r"regimes has more than one row for 2024-01-02"):
        evaluate_signals(factors.head(1), _small_closes(), pl.concat([regimes, regimes]))
    with pytest.raises(ValueError, match=r"horizons must be positive"):
        evaluate_signals(factors.head(1), _small_closes(), regimes, horizons=(0, 5))


# --- (c) cross-check against alphalens-reloaded ------------------------------------------
#
# alphalens computes forward returns by origin date from a dates × assets price frame
# (``prices.pct_change(h).shift(-h)``), i.e. our close[t+h] / close[t] - 1 when every ticker
# trades every session. The factor covers sessions 0..n-22 so that every (date, asset) has all
# three forward returns: alphalens then drops nothing (it drops a row missing any horizon's
# return) and runs with max_loss=0. Its default filter_zscore=20 removes nothing here.


@pytest.fixture(scope="module")
def cross_check() -> tuple[pd.DataFrame, SignalEvaluation, pd.Series]:
    utils = pytest.importorskip("alphalens.utils")
    prices = _prices(seed=7, n_tickers=30, n_dates=300)
    rng = np.random.default_rng(8)
    # Half signal (the 5-session future return), half noise; sessions 0..278.
    future = _forward(prices, 5).iloc[:-21]
    values = 0.5 * future / 0.03 + rng.normal(size=future.shape)
    factor = values.stack()
    factor.index.names = ["date", "asset"]
    factor_data = utils.get_clean_factor_and_forward_returns(
        factor, prices, periods=HORIZONS, quantiles=5, max_loss=0
    )
    evaluation = evaluate_signals(
        _factors(values, "mixed"), _long(prices, "close"), _one_regime(prices.index)
    )
    return factor_data, evaluation, factor


def test_alphalens_drops_nothing_from_the_cross_check_data(
    cross_check: tuple[pd.DataFrame, SignalEvaluation, pd.Series],
) -> None:
    factor_data, evaluation, factor = cross_check
    assert len(factor_data) == len(factor) == 279 * 30
    assert list(factor_data.columns[:3]) == ["1D", "5D", "21D"]
    # Nothing is left out on our side either (every origin has all 21 decay horizons).
    assert evaluation.dropped.height == 0
    assert evaluation.ic.height == 279 * 3


def test_rank_ic_equals_alphalens_factor_information_coefficient(
    cross_check: tuple[pd.DataFrame, SignalEvaluation, pd.Series],
) -> None:
    performance = pytest.importorskip("alphalens.performance")
    factor_data, evaluation, _ = cross_check
    expected = performance.factor_information_coefficient(factor_data)
    for horizon, column in zip(HORIZONS, expected.columns, strict=True):
        ours = evaluation.ic.filter(pl.col("horizon") == horizon).sort("date")
        assert ours["date"].to_list() == [d.date() for d in expected.index]
        np.testing.assert_allclose(ours["rank_ic"].to_numpy(), expected[column], rtol=0, atol=1e-10)


def test_quantile_mean_returns_equal_alphalens_mean_return_by_quantile(
    cross_check: tuple[pd.DataFrame, SignalEvaluation, pd.Series],
) -> None:
    performance = pytest.importorskip("alphalens.performance")
    factor_data, evaluation, _ = cross_check
    demeaned, _ = performance.mean_return_by_quantile(factor_data, demeaned=True)
    raw, _ = performance.mean_return_by_quantile(factor_data, demeaned=False)
    for horizon, column in zip(HORIZONS, demeaned.columns, strict=True):
        ours = evaluation.quantile_returns.filter(pl.col("horizon") == horizon).sort("quantile")
        assert ours["quantile"].to_list() == list(demeaned.index) == [1, 2, 3, 4, 5]
        np.testing.assert_allclose(
            ours["mean_excess_return"].to_numpy(), demeaned[column], rtol=0, atol=1e-10
        )
        np.testing.assert_allclose(
            ours["mean_forward_return"].to_numpy(), raw[column], rtol=0, atol=1e-10
        )


def test_top_bottom_spread_is_twice_alphalens_half_gross_spread(
    cross_check: tuple[pd.DataFrame, SignalEvaluation, pd.Series],
) -> None:
    # alphalens >= 0.5 reports (top - bottom) / 2 (a 50 % long / 50 % short book); ours is the
    # plain difference (100 % long / 100 % short).
    performance = pytest.importorskip("alphalens.performance")
    factor_data, evaluation, _ = cross_check
    by_date, _ = performance.mean_return_by_quantile(factor_data, by_date=True)
    half_spread, _ = performance.compute_mean_returns_spread(by_date, 5, 1)
    for horizon, column in zip(HORIZONS, by_date.columns, strict=True):
        ours = evaluation.ic.filter(pl.col("horizon") == horizon).sort("date")
        np.testing.assert_allclose(
            ours["top_bottom_spread"].to_numpy(), 2 * half_spread[column], rtol=0, atol=1e-10
        )


def test_rank_autocorrelation_equals_alphalens_factor_rank_autocorrelation(
    cross_check: tuple[pd.DataFrame, SignalEvaluation, pd.Series],
) -> None:
    performance = pytest.importorskip("alphalens.performance")
    factor_data, evaluation, _ = cross_check
    expected = performance.factor_rank_autocorrelation(factor_data, period=1)
    ours = evaluation.turnover.sort("date")
    assert ours["date"].to_list() == [d.date() for d in expected.index]
    # The first date has no previous session: null here, NaN there.
    assert ours["rank_autocorrelation"][0] is None and np.isnan(expected.iloc[0])
    np.testing.assert_allclose(
        ours["rank_autocorrelation"].to_numpy()[1:], expected.to_numpy()[1:], rtol=0, atol=1e-10
    )


def test_top_and_bottom_turnover_equal_alphalens_quantile_turnover(
    cross_check: tuple[pd.DataFrame, SignalEvaluation, pd.Series],
) -> None:
    performance = pytest.importorskip("alphalens.performance")
    factor_data, evaluation, _ = cross_check
    ours = evaluation.turnover.sort("date")
    for column, quantile in (("top_turnover", 5), ("bottom_turnover", 1)):
        expected = performance.quantile_turnover(factor_data["factor_quantile"], quantile, 1)
        assert ours[column][0] is None and np.isnan(expected.iloc[0])
        np.testing.assert_allclose(
            ours[column].to_numpy()[1:], expected.to_numpy()[1:], rtol=0, atol=1e-10
        )


def test_tied_values_share_the_quantile_pandas_qcut_gives_them() -> None:
    utils = pytest.importorskip("alphalens.utils")
    performance = pytest.importorskip("alphalens.performance")
    prices = _prices(seed=9, n_tickers=30, n_dates=80)
    rng = np.random.default_rng(10)
    # One decimal: many ties within a date, but distinct quintile edges (qcut does not raise).
    values = pd.DataFrame(
        np.round(rng.normal(size=prices.shape), 1), index=prices.index, columns=prices.columns
    ).iloc[:-5]
    factor = values.stack()
    factor.index.names = ["date", "asset"]
    factor_data = utils.get_clean_factor_and_forward_returns(
        factor, prices, periods=(1, 5), quantiles=5, max_loss=0
    )
    evaluation = evaluate_signals(
        _factors(values, "tied"),
        _long(prices, "close"),
        _one_regime(prices.index),
        horizons=(1, 5),
        decay_horizons=(1, 5),
    )

    expected_ic = performance.factor_information_coefficient(factor_data)["1D"].to_numpy()
    np.testing.assert_allclose(
        evaluation.ic.filter(pl.col("horizon") == 1)["rank_ic"].to_numpy(),
        expected_ic,
        rtol=0,
        atol=1e-10,
    )
    mean_by_quantile, _ = performance.mean_return_by_quantile(factor_data, demeaned=False)
    np.testing.assert_allclose(
        evaluation.quantile_returns.filter(pl.col("horizon") == 1)["mean_forward_return"],
        mean_by_quantile["1D"],
        rtol=0,
        atol=1e-10,
    )


# --- (e) tear sheets ----------------------------------------------------------------------


def test_the_html_tear_sheet_holds_the_plots_and_the_summary(
    cross_check: tuple[pd.DataFrame, SignalEvaluation, pd.Series],
) -> None:
    _, evaluation, _ = cross_check
    page = tear_sheet_html(evaluation, "Signals <momentum & co>")

    assert page.startswith("<!DOCTYPE html>")
    assert "Signals &lt;momentum &amp; co&gt;" in page
    for title in (CUMULATIVE_IC_TITLE, DECAY_TITLE, QUANTILE_TITLE, REGIME_TITLE):
        assert f"<h2>{title}</h2>" in page
    assert page.count('class="plotly-graph-div"') == 4
    # Self-contained: the plotly.js bundle is inline, no script is fetched.
    assert "<script src=" not in page and get_plotlyjs() in page
    assert "mean rank IC" in page and "mixed" in page
    assert "<h2>Left out of the evaluation</h2>" in page


def test_the_markdown_tear_sheet_is_a_signal_by_horizon_table(
    cross_check: tuple[pd.DataFrame, SignalEvaluation, pd.Series],
) -> None:
    _, evaluation, _ = cross_check
    text = tear_sheet_markdown(evaluation)

    lines = text.splitlines()
    header = next(line for line in lines if line.startswith("| signal"))
    assert header == (
        "| signal | horizon | mean IC | rank IC | t-stat | IC IR | hit rate | top−bottom (bps) |"
    )
    rows = [line for line in lines if line.startswith("| mixed |")]
    assert [row.split(" | ")[1] for row in rows] == ["1", "5", "21"]
    five = evaluation.summary.filter(pl.col("horizon") == 5).row(0, named=True)
    assert f"{five['mean_rank_ic']:.4f}" in rows[1]
    assert "Nothing was left out." in text


def test_no_factor_rows_give_empty_tables_not_an_error() -> None:
    factors = pl.DataFrame(
        schema={"date": pl.Date, "ticker": pl.Utf8, "signal": pl.Utf8, "value": pl.Float64}
    )
    regimes = pl.DataFrame(schema={"date": pl.Date, "regime_label": pl.Utf8})
    evaluation = evaluate_signals(factors, _small_closes(), regimes)

    assert evaluation.ic.height == evaluation.summary.height == evaluation.dropped.height == 0
    assert "ic" in evaluation.ic.columns and "mean_rank_ic" in evaluation.summary.columns
    assert "Nothing was left out." in tear_sheet_markdown(evaluation)
    assert tear_sheet_html(evaluation, "empty").count("no data") == 4
