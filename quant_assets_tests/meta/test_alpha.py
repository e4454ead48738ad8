"""The meta-brain: regime-weighted ensemble, disagreement penalty, robust z-score."""

from __future__ import annotations

import math
from datetime import date

import numpy as np
import polars as pl
import pytest

from quant_assets.meta import combine_signals
from quant_assets.settings import AlphaSettings

DAY = date(2020, 1, 2)
SIGNALS = ("trend_alpha", "mean_rev_alpha", "vol_alpha", "rel_strength_alpha")


def settings(weights: dict[str, float] | None = None, **kwargs) -> AlphaSettings:
    row = weights or {"trend_alpha": 1.0}
    table = {r: dict(row) for r in ("bull", "bear", "choppy", "crash")}
    return AlphaSettings(weights=kwargs.pop("table", table), **kwargs)


def signals(rows: dict[str, list[float | None]], day: date = DAY, warmed=True) -> pl.DataFrame:
    n = len(next(iter(rows.values())))
    frame = {"date": [day] * n, "ticker": [f"T{i}" for i in range(n)], "warmed_up": [warmed] * n}
    for name in SIGNALS:
        frame[name] = rows.get(name, [0.0] * n)
    return pl.DataFrame(frame, schema_overrides={s: pl.Float64 for s in SIGNALS})


def regimes(label: str = "bull", probs: dict[str, float] | None = None, day=DAY) -> pl.DataFrame:
    probs = probs or {r: float(r == label) for r in ("bull", "bear", "choppy", "crash")}
    return pl.DataFrame(
        {
            "date": [day],
            "regime_label": [label],
            **{f"regime_prob_{r}": [p] for r, p in probs.items()},
        }
    )


def test_one_signal_strategy_scores_are_the_squashed_robust_zscore_of_that_signal():
    trend = [0.5, -0.2, 0.1, 0.9]
    out = combine_signals(signals({"trend_alpha": trend}), None, regimes(), settings())
    # median 0.3; |x - median| = 0.2, 0.5, 0.2, 0.6 -> MAD 0.35; z = (x - 0.3) / (1.4826 * 0.35)
    expected = [math.tanh((x - 0.3) / (1.4826 * 0.35) / 2.0) for x in trend]
    np.testing.assert_allclose(out["alpha_score"].to_numpy(), expected, rtol=1e-12)
    assert out["disagreement"].to_list() == [0.0] * 4
    assert out["confidence"].to_list() == [1.0] * 4


def test_disagreement_shrinks_the_ensemble_by_exp_minus_beta_variance():
    strategy = settings({"trend_alpha": 1.0, "mean_rev_alpha": 1.0}, normalization="none")
    out = combine_signals(
        signals({"trend_alpha": [1.0], "mean_rev_alpha": [-0.2]}), None, regimes(), strategy
    )
    # ensemble 0.4; variance 0.5 * 0.6² + 0.5 * 0.6² = 0.36; beta 0.5
    row = out.row(0, named=True)
    assert row["ensemble_score"] == pytest.approx(0.4)
    assert row["disagreement"] == pytest.approx(0.36)
    assert row["alpha_score"] == pytest.approx(0.4 * math.exp(-0.5 * 0.36))
    assert row["confidence"] == pytest.approx(math.exp(-0.5 * 0.36))


def test_regime_probabilities_blend_the_rows_of_the_weighting_table():
    table = {
        "bull": {"trend_alpha": 1.0},
        "bear": {"mean_rev_alpha": 1.0},
        "choppy": {"mean_rev_alpha": 1.0},
        "crash": {"mean_rev_alpha": 1.0},
    }
    frame = signals({"trend_alpha": [1.0], "mean_rev_alpha": [0.0]})
    probs = {"bull": 0.25, "bear": 0.75, "choppy": 0.0, "crash": 0.0}
    blended = combine_signals(
        frame,
        None,
        regimes("bear", probs),
        settings(table=table, normalization="none", disagreement_penalty=0.0),
    )
    # weights 0.25 (trend = 1) and 0.75 (mean reversion = 0): 0.25
    assert blended["alpha_score"][0] == pytest.approx(0.25)
    by_label = combine_signals(
        frame,
        None,
        regimes("bear", probs),
        settings(
            table=table, normalization="none", disagreement_penalty=0.0, regime_weighting="label"
        ),
    )
    assert by_label["alpha_score"][0] == pytest.approx(0.0)


def test_signals_still_warming_up_carry_no_weight_and_give_no_score():
    out = combine_signals(
        signals({"trend_alpha": [0.5, 0.4, 0.3]}, warmed=False), None, regimes(), settings()
    )
    assert out["alpha_score"].null_count() == 3
    assert out["confidence"].to_list() == [0.0] * 3
    assert out["components_used"].to_list() == [0] * 3


def test_the_prediction_component_is_p_up_minus_p_down_of_the_configured_horizon():
    predictions = pl.DataFrame(
        {
            "date": [DAY, DAY],
            "ticker": ["T0", "T0"],
            "horizon": [1, 5],
            "prob_down": [0.5, 0.2],
            "prob_up": [0.2, 0.5],
            "prob_pred_state": [0.5, 0.5],
        }
    )
    strategy = settings({"prediction": 1.0}, normalization="none", prediction_horizon=5)
    out = combine_signals(signals({"trend_alpha": [0.0]}), predictions, regimes(), strategy)
    assert out["prediction_alpha"][0] == pytest.approx(math.tanh(0.3 / 0.1))
    assert out["alpha_score"][0] == pytest.approx(math.tanh(0.3 / 0.1))
    assert out["confidence"][0] == pytest.approx(0.5)


def test_scores_stay_in_the_unit_interval_and_depend_only_on_their_own_date():
    rng = np.random.default_rng(3)
    days = [date(2020, 1, d) for d in (2, 3, 6)]
    frames = [signals({s: list(rng.uniform(-1, 1, 30)) for s in SIGNALS}, day=d) for d in days]
    regime_rows = pl.concat([regimes("choppy", day=d) for d in days])
    strategy = settings({s: 1.0 for s in SIGNALS})
    out = combine_signals(pl.concat(frames), None, regime_rows, strategy)
    assert out["alpha_score"].is_between(-1, 1).all()
    assert out["confidence"].is_between(0, 1).all()
    alone = combine_signals(frames[0], None, regime_rows, strategy)
    assert out.filter(pl.col("date") == days[0]).equals(alone)


def test_a_cross_section_smaller_than_the_minimum_scores_zero():
    out = combine_signals(
        signals({"trend_alpha": [0.9, -0.9]}), None, regimes(), settings(min_cross_section=3)
    )
    assert out["alpha_score"].to_list() == [0.0, 0.0]


def test_bad_inputs_are_refused_naming_what_and_where():
    frame = signals({"trend_alpha": [0.1, 0.2]})
    with pytest.raises(ValueError, match="duplicate row for T0 on 2020-01-02"):
        combine_signals(pl.concat([frame, frame.head(1)]), None, regimes(), settings())
    with pytest.raises(ValueError, match="no regime row for 2020-01-02"):
        combine_signals(frame, None, regimes(day=date(2020, 1, 3)), settings())
    with pytest.raises(ValueError, match="lacks column"):
        combine_signals(frame.drop("trend_alpha"), None, regimes(), settings())
    with pytest.raises(ValueError, match="no predictions"):
        combine_signals(frame, None, regimes(), settings({"prediction": 1.0}))
