"""Sizing: Kelly, volatility target, caps, overlays, breakers, turnover, exact continuation."""

from __future__ import annotations

import json
import math
from datetime import date, timedelta

import numpy as np
import polars as pl
import pytest

from quant_assets.risk import BreakerState, PositionState, advance_breaker, size_positions
from quant_assets.settings import RiskSettings, StrategySettings

START = date(2021, 1, 4)


def strategy(sizing: dict | None = None, risk: dict | None = None) -> StrategySettings:
    return StrategySettings.model_validate(
        {
            "name": "test",
            "alpha": {
                "weights": {r: {"trend_alpha": 1.0} for r in ("bull", "bear", "choppy", "crash")}
            },
            "sizing": sizing or {},
            "risk": risk or {},
        }
    )


def market(n_tickers: int = 5, n_days: int = 400, seed: int = 0, vol: float = 0.01):
    """Closes (random walks), random alpha scores and a bull regime, business days."""
    rng = np.random.default_rng(seed)
    days = [date(2020, 1, 1) + timedelta(days=i) for i in range(n_days * 7 // 5 + 10)]
    days = [d for d in days if d.weekday() < 5][:n_days]
    tickers = [f"T{i}" for i in range(n_tickers)]
    returns = rng.normal(0.0003, vol, size=(n_days, n_tickers))
    closes = 100 * np.exp(np.cumsum(returns, axis=0))
    close_rows = pl.DataFrame(
        {
            "date": [d for d in days for _ in tickers],
            "ticker": tickers * n_days,
            "close": closes.ravel(),
        }
    )
    alpha = close_rows.select("date", "ticker").with_columns(
        pl.Series("alpha_score", rng.uniform(-1, 1, close_rows.height)),
        pl.lit(1.0).alias("confidence"),
    )
    regimes = pl.DataFrame({"date": days, "regime_label": ["bull"] * n_days})
    return close_rows, alpha, regimes, tickers, days


def run(s: StrategySettings, closes, alpha, regimes, tickers, start, state=None):
    return size_positions(
        alpha, closes, regimes, s, start=start, state=state or PositionState(), tickers=tickers
    )


def test_caps_hold_on_every_row_long_only_and_long_short():
    closes, alpha, regimes, tickers, days = market(n_tickers=12)
    for long_only in (True, False):
        s = strategy({"long_only": long_only, "max_weight": 0.15, "max_gross_leverage": 0.8})
        rows = run(s, closes, alpha, regimes, tickers, days[300]).rows
        assert rows["target_weight"].abs().max() <= 0.15 + 1e-12
        gross = rows.group_by("date").agg(pl.col("target_weight").abs().sum())
        assert gross["target_weight"].max() <= 0.8 + 1e-12
        assert (rows["target_weight"].min() >= 0) == long_only
        assert set(rows["decision"]) <= {"EXECUTE_BUY", "EXECUTE_SELL", "HOLD", "REJECT"}
        assert all(isinstance(json.loads(c), list) for c in rows["reason_codes"])


def test_kelly_weight_is_gamma_times_excess_return_over_variance():
    closes, alpha, regimes, tickers, days = market(n_tickers=1)
    s = strategy({"max_weight": 1.0, "target_volatility": 2.0, "max_turnover": None})
    rows = run(s, closes, alpha, regimes, tickers, days[300]).rows
    row = rows.filter(pl.col("alpha_score") > 0.5).row(0, named=True)
    window = closes.filter(pl.col("date") <= row["date"]).tail(61)["close"].to_numpy()
    sigma = np.std(window[1:] / window[:-1] - 1, ddof=1)
    mu = 0.05 * row["alpha_score"] * sigma
    assert row["volatility_daily"] == pytest.approx(sigma, rel=1e-12)
    assert row["kelly_weight"] == pytest.approx(0.3 * (mu - 0.02 / 252) / sigma**2, rel=1e-9)
    assert row["reason_codes"].startswith('["KELLY:')


def test_a_crash_regime_multiplier_of_zero_flattens_the_book_and_says_why():
    closes, alpha, regimes, tickers, days = market()
    crash = regimes.with_columns(
        pl.when(pl.col("date") >= days[320])
        .then(pl.lit("crash"))
        .otherwise(pl.lit("bull"))
        .alias("regime_label")
    )
    rows = run(strategy({"max_turnover": None}), closes, alpha, crash, tickers, days[300]).rows
    late = rows.filter(pl.col("date") >= days[320])
    assert (late["target_weight"] == 0).all()
    assert late["reason_codes"].str.contains("REGIME_CRASH:x0.0000").all()


def test_the_turnover_limit_slows_a_rebalance_but_never_a_risk_cut():
    closes, alpha, regimes, tickers, days = market()
    s = strategy({"max_turnover": 0.05})
    rows = run(s, closes, alpha, regimes, tickers, days[300]).rows
    per_date = rows.group_by("date").agg(pl.col("turnover").first(), pl.col("reason_codes").first())
    limited = per_date.filter(pl.col("reason_codes").str.contains("TURNOVER_LIMIT"))
    assert limited.height > 0 and (limited["turnover"] <= 0.05 + 1e-12).all()
    crash = regimes.with_columns(
        pl.when(pl.col("date") == days[350])
        .then(pl.lit("crash"))
        .otherwise(pl.lit("bull"))
        .alias("regime_label")
    )
    cut = run(s, closes, alpha, crash, tickers, days[300]).rows.filter(pl.col("date") == days[350])
    assert (cut["target_weight"] == 0).all()
    assert cut["reason_codes"][0].count("TURNOVER_WAIVED") == 1


def test_a_range_split_in_two_continues_exactly_from_the_stored_state():
    closes, alpha, regimes, tickers, days = market(n_tickers=6)
    s = strategy()
    whole = run(s, closes, alpha, regimes, tickers, days[300]).rows
    first = whole.filter(pl.col("date") < days[350])
    state = PositionState.from_rows(first.filter(pl.col("date") >= days[330]))
    second = run(s, closes, alpha, regimes, tickers, days[350], state).rows
    assert second.equals(whole.filter(pl.col("date") >= days[350]))


def test_future_prices_and_alphas_do_not_change_past_positions():
    closes, alpha, regimes, tickers, days = market(n_tickers=6)
    s = strategy()
    before = run(s, closes, alpha, regimes, tickers, days[300]).rows
    cut = days[340]
    future = pl.col("date") > cut
    shocked = closes.with_columns(
        pl.when(future).then(pl.col("close") * 3).otherwise(pl.col("close"))
    )
    flipped = alpha.with_columns(
        pl.when(future).then(-pl.col("alpha_score")).otherwise(pl.col("alpha_score"))
    )
    after = run(s, shocked, flipped, regimes, tickers, days[300]).rows
    past = pl.col("date") <= cut
    assert after.filter(past).equals(before.filter(past))
    assert not after.filter(~past).equals(before.filter(~past))


def test_bad_inputs_are_refused_naming_ticker_and_date():
    closes, alpha, regimes, tickers, days = market(n_tickers=2, n_days=100)
    s = strategy()
    negative = closes.with_columns(
        pl.when((pl.col("ticker") == "T1") & (pl.col("date") == days[50]))
        .then(-1.0)
        .otherwise(pl.col("close"))
        .alias("close")
    )
    with pytest.raises(ValueError, match=f"non-positive close for T1 on {days[50]}"):
        run(s, negative, alpha, regimes, tickers, days[80])
    with pytest.raises(ValueError, match="duplicate row for T0"):
        run(s, closes, pl.concat([alpha, alpha.head(1)]), regimes, tickers, days[0])
    with pytest.raises(ValueError, match=f"no regime row for {days[90]}"):
        run(s, closes, alpha, regimes.filter(pl.col("date") != days[90]), tickers, days[80])


RISK = RiskSettings()


def step(state, drawdown=0.0, vol=0.05, var=0.01):
    return advance_breaker(
        state, drawdown=drawdown, vol=vol, var=var, risk=RISK, target_volatility=0.10
    )


def test_breaker_tiers_defensive_then_freeze_cooldown_and_staged_recovery():
    state, scale, codes = step(BreakerState(), var=0.07)  # VaR > 1.5 × 4%
    assert (state.state, scale) == ("defensive", 0.25) and codes[0].startswith("BREAKER_DEFENSIVE")
    state, scale, _ = step(state, vol=0.25)  # vol > 2 × target
    assert (state.state, state.sessions, scale) == ("defensive", 2, 0.25)
    state, scale, codes = step(state, drawdown=0.19, vol=0.16)  # dd > 18%, vol > 1.5 × target
    assert (state.state, scale) == ("frozen", 0.0) and codes[0].startswith("BREAKER_FREEZE")
    for _ in range(9):  # 10-session cooldown, flat throughout
        state, scale, _ = step(state, drawdown=0.19, vol=0.05)
        assert (state.state, scale) == ("frozen", 0.0)
    scales = []
    for _ in range(30):
        state, scale, _ = step(state, drawdown=0.19, vol=0.05)
        scales.append(scale)
    # 20% -> 40% -> 60% -> 80%, five calm sessions each, then back to normal.
    assert scales[:20] == [0.2] * 5 + [0.4] * 5 + [0.6] * 5 + [0.8] * 5
    assert scales[20:] == [1.0] * 10 and state.state == "normal"


def test_recovery_waits_while_volatility_stays_high():
    state = BreakerState("frozen", 10, 0)
    state, scale, _ = step(state, drawdown=0.15, vol=0.20)  # vol > 1.5 × target
    assert (state.state, scale) == ("frozen", 0.0)
    state, scale, _ = step(state, drawdown=0.15, vol=0.05)
    assert (state.state, scale) == ("recovery", 0.2)


def test_the_kill_switch_flattens_for_good():
    state, scale, codes = step(BreakerState(), drawdown=0.26)
    assert (state.state, scale) == ("killed", 0.0) and codes[0].startswith("KILL_SWITCH")
    state, scale, _ = step(state, drawdown=0.0, vol=0.01)
    assert (state.state, scale) == ("killed", 0.0)


def test_drawdown_guard_scales_linearly_between_its_start_and_the_max_drawdown():
    closes, alpha, regimes, tickers, days = market(n_tickers=1, vol=0.03, seed=4)
    s = strategy(
        {"max_weight": 1.0, "target_volatility": 2.0, "max_turnover": None},
        {"drawdown": {"kill_switch": None}, "var": {"limit": 1.0, "cvar_limit": 1.0}},
    )
    always_long = alpha.with_columns(pl.lit(1.0).alias("alpha_score"))
    rows = run(s, closes, always_long, regimes, tickers, days[260]).rows
    guarded = rows.filter((pl.col("paper_drawdown") > 0.10) & (pl.col("paper_drawdown") < 0.18))
    assert guarded.height > 0
    expected = 1 - (guarded["paper_drawdown"] - 0.10) / 0.08 * 0.75
    np.testing.assert_allclose(guarded["drawdown_scale"].to_numpy(), expected.to_numpy())
    assert guarded["reason_codes"].str.contains("DRAWDOWN_GUARD").all()
    assert math.isclose(rows["paper_equity"][0], 1.0 + rows["paper_return"][0])


@pytest.mark.parametrize("allocator", ["mean_variance", "risk_parity"])
@pytest.mark.parametrize("long_only", [True, False])
def test_an_skfolio_allocator_replaces_kelly_within_the_same_caps(allocator, long_only):
    closes, alpha, regimes, tickers, days = market(n_tickers=6, n_days=300)
    s = strategy(
        {
            "allocator": allocator,
            "long_only": long_only,
            "max_weight": 0.3,
            "max_gross_leverage": 1.0,
            "target_volatility": 2.0,
        }
    )
    rows = run(s, closes, alpha, regimes, tickers, days[280]).rows
    assert rows["reason_codes"].str.contains(allocator.upper() + ":").any()
    assert rows["target_weight"].abs().max() <= 0.3 + 1e-9
    gross = rows.group_by("date").agg(pl.col("target_weight").abs().sum())
    assert gross["target_weight"].max() <= 1.0 + 1e-9
    if long_only:
        assert rows["target_weight"].min() >= 0
    assert gross["target_weight"].max() > 0.05  # it invests


def test_the_sizing_paper_equity_is_close_to_close_before_costs():
    # By design (see risk.positions._Book) not a book of fills: each date's paper return is
    # the previous date's target weights times the close-to-close returns, no costs, no lots,
    # and the realised volatility annualises it with names.SESSIONS_PER_YEAR.
    from quant_assets.names import SESSIONS_PER_YEAR

    closes, alpha, regimes, tickers, days = market(n_tickers=4)
    s = strategy(risk={"circuit_breakers": {"realized_vol_window": 5}})
    rows = run(s, closes, alpha, regimes, tickers, days[100]).rows.sort("date", "ticker")
    close = closes.pivot(on="ticker", index="date", values="close").sort("date")
    returns = close.select(tickers).to_numpy()
    returns = returns[1:] / returns[:-1] - 1.0
    per_date = rows.group_by("date", maintain_order=True).agg(
        pl.col("previous_weight"),
        pl.col("paper_return").first(),
        pl.col("paper_equity").first(),
        pl.col("paper_vol_annualized").first(),
    )
    equity = 1.0
    recent: list[float] = []
    for k, row in enumerate(per_date.iter_rows(named=True)):
        index = days.index(row["date"])
        expected = float(np.dot(row["previous_weight"], returns[index - 1]))
        assert row["paper_return"] == pytest.approx(expected, rel=1e-12, abs=1e-15)
        equity *= 1.0 + expected
        assert row["paper_equity"] == pytest.approx(equity, rel=1e-12)
        recent = [*recent, expected][-5:]
        if k >= 4:
            vol = float(np.std(recent, ddof=1)) * math.sqrt(SESSIONS_PER_YEAR)
            assert row["paper_vol_annualized"] == pytest.approx(vol, rel=1e-9)
    assert per_date["paper_return"].abs().max() > 0
