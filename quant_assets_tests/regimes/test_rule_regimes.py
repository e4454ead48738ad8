"""Specification of the rule-based regimes and of the merge into the stored regime rows."""

from __future__ import annotations

from datetime import date, timedelta

import numpy as np
import polars as pl
import pytest
from polars.testing import assert_frame_equal

from quant_assets.regimes import (
    PROB_COLUMNS,
    REGIME_LABELS,
    bundled_vix,
    combine_regimes,
    rule_lookback_sessions,
    rule_regimes,
)
from quant_assets.settings import RuleRegimeSettings

RULES = RuleRegimeSettings()
START = date(2010, 1, 1)


def benchmark(closes: np.ndarray | list[float], start: date = START) -> pl.DataFrame:
    """One row per calendar day from ``start``: the rules count rows, not calendar days."""
    return pl.DataFrame(
        {
            "date": [start + timedelta(days=i) for i in range(len(closes))],
            "close": np.asarray(closes, dtype=np.float64),
        }
    )


def path(daily_log_returns: np.ndarray, start_level: float = 100.0) -> np.ndarray:
    return start_level * np.exp(np.concatenate([[0.0], np.cumsum(daily_log_returns)]))


def zigzag(sessions: int, drift: float, swing: float) -> np.ndarray:
    """Log returns ``drift ± swing`` alternately: a trend with a fixed daily volatility."""
    return drift + swing * np.where(np.arange(sessions) % 2 == 0, 1.0, -1.0)


def random_walk(sessions: int, seed: int = 3) -> np.ndarray:
    return path(np.random.default_rng(seed).normal(0.0003, 0.012, sessions - 1))


# --- the labels on hand-built markets -------------------------------------------------------


def test_a_steady_rise_is_bull() -> None:
    # +0.1 % a day with ±0.4 % swings: about 13 % annualised volatility.
    labels = rule_regimes(benchmark(path(zigzag(400, 0.001, 0.004))), RULES)

    assert set(labels["rule_label"].tail(150)) == {"bull"}


def test_a_steady_fall_is_bear() -> None:
    labels = rule_regimes(benchmark(path(zigzag(400, -0.001, 0.004))), RULES)

    assert set(labels["rule_label"].tail(150)) == {"bear"}


def test_a_thirty_percent_drop_with_high_volatility_is_crash() -> None:
    drop = zigzag(15, -0.03, 0.045)  # +1.5 % and -7.5 % log returns alternately
    closes = path(np.concatenate([zigzag(300, 0.001, 0.004), drop]))

    labels = rule_regimes(benchmark(closes), RULES)

    assert closes[-1] / closes[-16] - 1 < -0.30
    last_days = labels.tail(5)
    assert set(last_days["rule_label"]) == {"crash"}
    assert (last_days["realized_vol_annualized"] >= RULES.crash_vol_annualized).all()


def test_a_flat_noisy_market_is_choppy() -> None:
    # 100 and 102 alternately: no trend (the averages are exactly equal), ~32 % volatility.
    closes = np.where(np.arange(400) % 2 == 0, 100.0, 102.0)

    labels = rule_regimes(benchmark(closes), RULES)

    assert set(labels["rule_label"].tail(150)) == {"choppy"}
    vol = labels["realized_vol_annualized"].tail(150)
    assert ((vol > RULES.high_vol_annualized) & (vol < RULES.crash_vol_annualized)).all()


def test_rows_without_enough_history_are_choppy_with_null_statistics() -> None:
    labels = rule_regimes(benchmark(path(zigzag(400, 0.001, 0.004))), RULES)
    early = labels.head(RULES.ma_slow - 1)

    assert set(early["rule_label"]) == {"choppy"}
    assert early["ma_slow"].null_count() == early.height
    assert labels["ma_slow"][RULES.ma_slow - 1] is not None
    assert labels["drawdown_252d"].head(251).null_count() == 251


def test_high_short_window_volatility_says_crash_even_without_long_history() -> None:
    closes = path(zigzag(40, -0.02, 0.05))

    labels = rule_regimes(benchmark(closes), RULES)

    assert labels["rule_label"][-1] == "crash"
    assert labels["ma_slow"][-1] is None


def test_the_output_shows_the_inputs_that_decided_each_label() -> None:
    labels = rule_regimes(benchmark(path(zigzag(400, 0.001, 0.004))), RULES)

    assert labels.columns == [
        "date",
        "rule_label",
        "close",
        "ma_fast",
        "ma_slow",
        "realized_vol_annualized",
        "drawdown_252d",
        "vix",
    ]
    assert set(labels["rule_label"]) <= set(REGIME_LABELS)
    last = labels.row(-1, named=True)
    closes = labels["close"].to_numpy()
    assert last["ma_slow"] == pytest.approx(closes[-RULES.ma_slow :].mean(), rel=1e-12)
    assert last["drawdown_252d"] == pytest.approx(1 - closes[-1] / closes[-252:].max())


# --- VIX ------------------------------------------------------------------------------------


@pytest.mark.parametrize(("vix", "label"), [(20.0, "bull"), (35.0, "choppy"), (50.0, "crash")])
def test_the_same_day_vix_flips_a_calm_bull_day(vix: float, label: str) -> None:
    bench = benchmark(path(zigzag(400, 0.001, 0.004)))
    last_day = bench["date"][-1]

    labels = rule_regimes(bench, RULES, pl.DataFrame({"date": [last_day], "vix": [vix]}))

    assert labels["rule_label"][-1] == label
    assert labels["vix"][-1] == vix
    assert labels["vix"].head(labels.height - 1).null_count() == labels.height - 1


def test_a_day_without_vix_skips_the_vix_clauses() -> None:
    bench = benchmark(path(zigzag(400, 0.001, 0.004)))
    day_before = bench["date"][-2]
    vix = pl.DataFrame({"date": [day_before], "vix": [80.0]})

    labels = rule_regimes(bench, RULES, vix)

    assert labels["rule_label"][-2] == "crash"
    assert labels["rule_label"][-1] == "bull"  # yesterday's VIX is not carried forward


def test_the_bundled_vix_is_a_daily_series_without_gaps_in_values() -> None:
    vix = bundled_vix()

    assert vix.schema == pl.Schema({"date": pl.Date, "vix": pl.Float64})
    assert vix["vix"].null_count() == 0 and vix["vix"].is_not_nan().all()
    assert vix["date"].is_sorted() and vix["date"].n_unique() == vix.height
    assert vix["date"].min() >= date(2014, 1, 1) and vix["date"].max() <= date(2019, 12, 31)


# --- no look-ahead, no dependence on the history start --------------------------------------


def test_rows_up_to_d_do_not_change_when_later_rows_change() -> None:
    closes = random_walk(700)
    d = 500
    changed = closes.copy()
    changed[d + 1 :] *= np.linspace(0.5, 1.7, closes.size - d - 1)
    vix = pl.DataFrame(
        {"date": benchmark(closes)["date"], "vix": np.linspace(10.0, 60.0, closes.size)}
    )

    original = rule_regimes(benchmark(closes), RULES, vix).head(d + 1)
    perturbed = rule_regimes(benchmark(changed), RULES, vix).head(d + 1)

    assert_frame_equal(original, perturbed, check_exact=True)


def test_a_row_is_the_same_whatever_earlier_history_is_passed() -> None:
    closes = random_walk(1200)
    lookback = rule_lookback_sessions(RULES)
    full = rule_regimes(benchmark(closes), RULES)
    skip = 437
    late = rule_regimes(benchmark(closes[skip:], START + timedelta(days=skip)), RULES)

    comparable = late.slice(lookback)
    expected = full.filter(pl.col("date") >= comparable["date"][0])
    assert_frame_equal(comparable, expected, check_exact=True)
    assert set(full["rule_label"]) >= {"bull", "bear"}


def test_the_look_back_covers_the_longest_window() -> None:
    assert rule_lookback_sessions(RULES) == 251  # the 252-session high
    longer = RuleRegimeSettings(ma_fast=50, ma_slow=400)
    assert rule_lookback_sessions(longer) == 399


def test_rule_regimes_refuse_duplicate_dates_and_bad_closes() -> None:
    bench = benchmark([100.0, 101.0, 0.0, 99.0])
    with pytest.raises(ValueError, match="2010-01-03"):
        rule_regimes(bench, RULES)
    duplicated = pl.concat([benchmark([100.0, 101.0]), benchmark([102.0])])
    with pytest.raises(ValueError, match=r"duplicate.*2010-01-01"):
        rule_regimes(duplicated, RULES)


# --- the stored rows ------------------------------------------------------------------------


def hmm_rows(dates: list[date], probabilities: list[list[float]]) -> pl.DataFrame:
    array = np.array(probabilities)
    return pl.DataFrame(
        {
            "date": dates,
            **{name: array[:, j] for j, name in enumerate(PROB_COLUMNS)},
            "hmm_label": [REGIME_LABELS[k] for k in array.argmax(axis=1)],
        }
    )


@pytest.fixture(scope="module")
def rules() -> pl.DataFrame:
    return rule_regimes(benchmark(random_walk(400)), RULES)


def test_combined_rows_use_the_hmm_where_it_exists_and_one_hot_rules_elsewhere(
    rules: pl.DataFrame,
) -> None:
    start, end = rules["date"][300], rules["date"][320]
    hmm_dates = rules["date"].slice(310, 15).to_list()  # runs past `end`
    hmm = hmm_rows(hmm_dates, [[0.1, 0.2, 0.3, 0.4]] * 5 + [[0.6, 0.2, 0.1, 0.1]] * 10)

    combined = combine_regimes(hmm, rules, start, end)

    assert combined.columns == [
        "date",
        "regime_label",
        *PROB_COLUMNS,
        "rule_label",
        "regime_source",
    ]
    assert combined["date"].to_list() == rules["date"].slice(300, 20).to_list()
    sums = combined.select(pl.sum_horizontal(PROB_COLUMNS)).to_series()
    np.testing.assert_allclose(sums.to_numpy(), 1.0, rtol=0, atol=1e-12)

    from_rules = combined.filter(pl.col("regime_source") == "rules")
    assert from_rules.height == 10
    assert (from_rules["regime_label"] == from_rules["rule_label"]).all()
    for label, column in zip(REGIME_LABELS, PROB_COLUMNS, strict=True):
        assert (from_rules[column] == (from_rules["rule_label"] == label).cast(float)).all()

    from_hmm = combined.filter(pl.col("regime_source") == "hmm")
    assert from_hmm["regime_label"].to_list() == ["crash"] * 5 + ["bull"] * 5
    assert from_hmm["regime_prob_choppy"].to_list() == [0.3] * 5 + [0.1] * 5


def test_without_an_hmm_every_row_comes_from_the_rules(rules: pl.DataFrame) -> None:
    combined = combine_regimes(None, rules, rules["date"][0], rules["date"][-1])

    assert combined.height == rules.height - 1  # the end date is excluded
    assert set(combined["regime_source"]) == {"rules"}
    assert (combined.select(pl.sum_horizontal(PROB_COLUMNS)).to_series() == 1.0).all()


def test_combine_refuses_an_hmm_date_without_a_rule_row(rules: pl.DataFrame) -> None:
    stray = hmm_rows([rules["date"][5]], [[1.0, 0, 0, 0]])
    gap = rules.filter(pl.col("date") != rules["date"][5])

    with pytest.raises(ValueError, match="no rule regime row"):
        combine_regimes(stray, gap, rules["date"][0], rules["date"][-1])
