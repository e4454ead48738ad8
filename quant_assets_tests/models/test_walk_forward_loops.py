"""The walk over a run's cut-offs, outside Dagster: fit, train, predict.

``predict_walk_forward`` runs against boosters from a fake loader; ``fit_regime_cutoffs`` and
``train_cutoffs`` against a real temporary MLflow store (SQLite), as the registry tests do.
Each ``_former_*`` helper is the loop of the asset body before it moved here (at 51ddda9),
kept as the reference the new functions must match.
"""

from __future__ import annotations

from collections.abc import Callable
from datetime import date, timedelta
from pathlib import Path
from types import SimpleNamespace
from typing import Any

import lightgbm
import numpy as np
import polars as pl
import pytest
from polars.testing import assert_frame_equal

from quant_assets import schemas
from quant_assets.models.next_state import (
    model_input_rows,
    predict_next_state,
    predict_walk_forward,
)
from quant_assets.settings import Settings

INPUTS = ["signal", "noise"]
Q1, Q2, Q3 = date(2020, 1, 1), date(2020, 4, 1), date(2020, 7, 1)
RUN_END = date(2020, 10, 1)


# --- predict_walk_forward -------------------------------------------------------------------


def _booster(seed: int) -> lightgbm.Booster:
    rng = np.random.default_rng(seed)
    x = rng.normal(size=(300, 2))
    y = (x[:, 0] > -0.4).astype(int) + (x[:, 0] > 0.4).astype(int)
    params = {"objective": "multiclass", "num_class": 3, "verbosity": -1, "seed": seed}
    return lightgbm.train(
        params, lightgbm.Dataset(x, y, feature_name=INPUTS), num_boost_round=3 + seed % 5
    )


# Each registered version: one booster per horizon, all different.
BOOSTERS = {
    version: {1: _booster(10 * int(version)), 3: _booster(10 * int(version) + 1)}
    for version in ("1", "2", "3")
}


def _rows(first: date = Q1, last: date = date(2020, 9, 30)) -> pl.DataFrame:
    """Model inputs for two tickers on every calendar day of [first, last]."""
    days = [first + timedelta(days=i) for i in range((last - first).days + 1)]
    rng = np.random.default_rng(0)
    return pl.DataFrame(
        {
            "ticker": ["AAA"] * len(days) + ["BBB"] * len(days),
            "date": days * 2,
            "signal": rng.normal(size=2 * len(days)),
            "noise": rng.normal(size=2 * len(days)),
        }
    )


def _model_rows(champions: dict[date, tuple[str | None, date | None]]) -> pl.DataFrame:
    """next_state_model rows: two horizons per cut-off (the first row's champion is used),
    newest cut-off first."""
    rows = []
    for cutoff, (version, champion_cutoff) in sorted(champions.items(), reverse=True):
        for horizon in (1, 3):
            rows.append(
                {
                    "cutoff": cutoff,
                    "horizon": horizon,
                    "champion_version": version if horizon == 1 else "ignored",
                    "champion_cutoff": champion_cutoff,
                }
            )
    return pl.DataFrame(
        rows,
        schema={
            "cutoff": pl.Date,
            "horizon": pl.Int16,
            "champion_version": pl.Utf8,
            "champion_cutoff": pl.Date,
        },
    )


# Q2's gate refused its model and Q1's champion stayed; nothing served before Q1.
CHAMPIONS = {Q1: ("1", Q1), Q2: ("1", Q1), Q3: ("2", Q3)}


class _Loader:
    """load_boosters that records the versions asked for."""

    def __init__(self) -> None:
        self.loaded: list[Any] = []

    def __call__(self, version: Any) -> dict[int, lightgbm.Booster]:
        self.loaded.append(version)
        return BOOSTERS[version]


def _live(answer: tuple[str, date] | None) -> tuple[Callable[[], Any], list[int]]:
    calls: list[int] = []

    def champion() -> tuple[str, date] | None:
        calls.append(1)
        return answer

    return champion, calls


def _former_predictions_loop(
    next_state_model: pl.DataFrame,
    rows: pl.DataFrame,
    rect_end: date,
    live_cutoff: str | None,
    registry: Any,
) -> tuple[pl.DataFrame | None, dict[str, str]]:
    """The ``predictions`` asset loop at 51ddda9 (before conform)."""
    parts, used = [], {}
    by_cutoff = (
        next_state_model.group_by("cutoff", maintain_order=True)
        .agg(pl.col("champion_version").first(), pl.col("champion_cutoff").first())
        .sort("cutoff")
    )
    cutoffs = by_cutoff["cutoff"].to_list()
    for index, row in enumerate(by_cutoff.iter_rows(named=True)):
        window_end = cutoffs[index + 1] if index + 1 < len(cutoffs) else rect_end
        version, model_cutoff = row["champion_version"], row["champion_cutoff"]
        if live_cutoff is not None and row["cutoff"].isoformat() == live_cutoff:
            live = registry.champion("name")
            if live is not None:
                version, model_cutoff = live
        window_rows = rows.filter((pl.col("date") >= row["cutoff"]) & (pl.col("date") < window_end))
        if version is None or window_rows.is_empty():
            continue
        model = registry.load_python_model("name", version)
        predicted_rows = predict_next_state(model.boosters, window_rows, INPUTS)
        parts.append(
            predicted_rows.with_columns(
                pl.lit(version).alias("model_version"),
                pl.lit(model_cutoff).alias("model_cutoff"),
            )
        )
        used[row["cutoff"].isoformat()] = f"v{version} (cut-off {model_cutoff})"
    return (pl.concat(parts) if parts else None), used


class _FakeRegistry:
    def __init__(self, live: tuple[str, date] | None) -> None:
        self.live = live

    def champion(self, name: str) -> tuple[str, date] | None:
        return self.live

    def load_python_model(self, name: str, version: str) -> Any:
        return SimpleNamespace(boosters=BOOSTERS[version])


@pytest.mark.parametrize(
    ("live_cutoff", "live"),
    [(Q3, ("3", Q3)), (Q3, None), (None, ("3", Q3)), (Q2, ("3", Q3))],
    ids=["live champion", "no live champion", "no live cut-off", "live cut-off Q2"],
)
@pytest.mark.parametrize(
    "rows",
    [_rows(), _rows(date(2020, 2, 10), date(2020, 5, 20)), _rows(date(2019, 11, 1))],
    ids=["whole run", "two windows", "rows before the first cut-off"],
)
def test_predictions_equal_the_former_asset_loop(live_cutoff, live, rows):
    model_rows = _model_rows(CHAMPIONS)
    expected, expected_used = _former_predictions_loop(
        model_rows,
        rows,
        RUN_END,
        live_cutoff.isoformat() if live_cutoff else None,
        _FakeRegistry(live),
    )
    champion, _ = _live(live)
    predicted, used = predict_walk_forward(
        model_rows, rows, RUN_END, INPUTS, _Loader(), live_cutoff, champion
    )
    assert predicted is not None and expected is not None
    assert_frame_equal(predicted, expected, check_exact=True)
    assert used == expected_used


def test_each_date_is_predicted_by_the_champion_of_its_window():
    rows = _rows()
    predicted, used = predict_walk_forward(
        _model_rows(CHAMPIONS), rows, RUN_END, INPUTS, _Loader(), None, _live(None)[0]
    )
    assert predicted is not None
    assert used == {
        "2020-01-01": "v1 (cut-off 2020-01-01)",
        "2020-04-01": "v1 (cut-off 2020-01-01)",
        "2020-07-01": "v2 (cut-off 2020-07-01)",
    }
    third = rows.filter(pl.col("date") >= Q3)
    assert_frame_equal(
        predicted.filter(pl.col("date") >= Q3).drop("model_version", "model_cutoff"),
        predict_next_state(BOOSTERS["2"], third, INPUTS),
        check_exact=True,
    )
    assert predicted.height == rows.height * 2  # two horizons
    assert predicted.filter(pl.col("date") < Q2)["model_version"].unique().to_list() == ["1"]
    assert predicted.filter(pl.col("date") >= Q3)["model_cutoff"].unique().to_list() == [Q3]


def test_the_live_cutoff_uses_the_registrys_champion_when_there_is_one():
    champion, calls = _live(("3", Q3))
    loader = _Loader()
    predicted, used = predict_walk_forward(
        _model_rows(CHAMPIONS), _rows(), RUN_END, INPUTS, loader, Q3, champion
    )
    assert predicted is not None
    assert calls == [1]
    assert used["2020-07-01"] == "v3 (cut-off 2020-07-01)"
    assert predicted.filter(pl.col("date") >= Q3)["model_version"].unique().to_list() == ["3"]
    assert "2" not in loader.loaded

    none_live, _ = _live(None)
    _, used = predict_walk_forward(
        _model_rows(CHAMPIONS), _rows(), RUN_END, INPUTS, _Loader(), Q3, none_live
    )
    assert used["2020-07-01"] == "v2 (cut-off 2020-07-01)"


def test_the_registry_is_not_asked_for_a_live_champion_outside_the_live_window():
    champion, calls = _live(("3", Q3))
    predict_walk_forward(
        _model_rows(CHAMPIONS), _rows(), RUN_END, INPUTS, _Loader(), date(2021, 1, 1), champion
    )
    assert calls == []


def test_windows_without_a_champion_or_without_rows_are_skipped():
    loader = _Loader()
    no_champion_yet = {Q1: (None, None), Q2: ("1", Q2), Q3: ("2", Q3)}
    predicted, used = predict_walk_forward(
        _model_rows(no_champion_yet),
        _rows(Q1, date(2020, 5, 31)),  # no rows in Q3's window
        RUN_END,
        INPUTS,
        loader,
        None,
        _live(None)[0],
    )
    assert predicted is not None
    assert used == {"2020-04-01": "v1 (cut-off 2020-04-01)"}
    assert loader.loaded == ["1"]
    assert predicted["date"].min() == Q2


def test_nothing_to_predict_gives_none_and_no_models_used():
    loader = _Loader()
    empty = _rows().clear()
    assert predict_walk_forward(
        _model_rows(CHAMPIONS), empty, RUN_END, INPUTS, loader, Q3, _live(("3", Q3))[0]
    ) == (None, {})
    assert predict_walk_forward(
        _model_rows({}), _rows(), RUN_END, INPUTS, loader, None, _live(None)[0]
    ) == (None, {})
    assert loader.loaded == []


# --- model_input_rows -----------------------------------------------------------------------


def test_model_inputs_join_signals_per_ticker_and_regimes_per_date():
    day1, day2 = date(2020, 1, 2), date(2020, 1, 3)
    features = pl.DataFrame(
        {
            "ticker": ["AAA", "AAA", "BBB"],
            "date": [day1, day2, day1],
            "momentum": [0.1, 0.2, 0.3],
            "warmed_up": [True, True, False],
        }
    )
    signals = pl.DataFrame(
        {"ticker": ["AAA"], "date": [day2], "trend_alpha": [0.5], "warmed_up": [False]}
    )
    regimes = pl.DataFrame({"date": [day1], "regime_prob_bull": [0.9]})
    rows = model_input_rows(
        features, signals, regimes, ["momentum", "trend_alpha", "regime_prob_bull"]
    )
    assert rows.to_dict(as_series=False) == {
        "ticker": ["AAA", "AAA", "BBB"],
        "date": [day1, day2, day1],
        "momentum": [0.1, 0.2, 0.3],
        "trend_alpha": [None, 0.5, None],
        "regime_prob_bull": [0.9, None, 0.9],
    }
    empty = model_input_rows(features.clear(), signals, regimes, ["momentum"])
    assert empty.schema == pl.Schema({"ticker": pl.Utf8, "date": pl.Date})


# --- fit_regime_cutoffs and train_cutoffs (a real MLflow store) -----------------------------


def _settings(tmp_path: Path) -> Settings:
    return Settings.model_validate(
        {
            "config_dir": tmp_path,
            "universe": {"tickers": ["T0"], "benchmark": "SP500", "start": "1990-01-02"},
            "providers": {"provider": "synthetic"},
            "regimes": {
                "restarts": 2,
                "n_iter": 60,
                "covariance_type": "diag",  # the quickest fit that converges on this data
                "min_train_sessions": 300,
                "rules": {"vix_source": "none"},
            },
            "models": {
                "labels": {"horizons": [1, 3]},
                "split": {
                    "validation_sessions": 40,
                    "test_sessions": 40,
                    "embargo_sessions": 3,
                    "min_train_rows": 300,
                },
                "lightgbm": {
                    "n_estimators": 20,
                    "num_leaves": 7,
                    "min_child_samples": 20,
                    "num_threads": 1,
                },
                "promotion": {"min_improvement": 0.0},
                "mlflow": {"experiment": "loops"},
            },
        }
    )


@pytest.fixture
def new_registry(tmp_path, monkeypatch):
    """A fresh store per call. MLflow's tracking URI is process-global: use one registry at a
    time, in the order they are made."""
    from quant_assets.models.registry import ModelRegistry

    monkeypatch.delenv("MLFLOW_TRACKING_URI", raising=False)
    counter = iter(range(10))

    def make(settings: Settings, model: str) -> ModelRegistry:
        mlflow = settings.models.mlflow
        home = tmp_path / f"store{next(counter)}"
        return ModelRegistry(mlflow, home, experiment=f"{mlflow.experiment}/{model}")

    return make


@pytest.fixture(scope="module")
def regime_inputs_frame() -> pl.DataFrame:
    from quant_assets.providers.synthetic import SyntheticProvider
    from quant_assets.regimes import regime_inputs

    provider = SyntheticProvider(seed=5, origin=date(1990, 1, 2), benchmark="SP500")
    closes = provider.fetch_bars(["SP500"], date(1990, 1, 2), date(1991, 12, 31))
    return regime_inputs(closes.select("date", "close"), 20)


def _former_regime_model_loop(registry, settings, inputs, cutoffs, version) -> pl.DataFrame:
    """The ``regime_model`` asset loop at 51ddda9."""
    from quant_assets.models.walk_forward import log_regime_fit
    from quant_assets.regimes import fit_regime_model

    rows = []
    for cutoff in cutoffs:
        fit = fit_regime_model(inputs, cutoff, settings.regimes)
        record = log_regime_fit(registry, settings, fit, version)
        rows.append(
            {
                "cutoff": cutoff,
                "status": fit.status,
                "reason": fit.reason,
                "n_obs": fit.n_obs,
                "train_start": fit.train_start,
                "train_end": fit.train_end,
                "log_likelihood": fit.log_likelihood,
                "fit_json": fit.to_json(),
                "mlflow_version": record.version if record else None,
                "mlflow_run_id": record.run_id if record else None,
                "_url": record.version_url if record else None,
            }
        )
    return pl.from_dicts(
        rows, schema={**{c.name: c.dtype for c in schemas.REGIME_MODEL}, "_url": pl.Utf8}
    )


def test_regime_fits_give_one_row_per_cutoff_a_fallback_with_its_reason(
    tmp_path, new_registry, regime_inputs_frame
):
    from quant_assets.models.walk_forward import fit_regime_cutoffs

    settings = _settings(tmp_path)
    cutoffs = [date(1991, 1, 1), date(1992, 1, 1)]  # one year of history is too little
    expected = _former_regime_model_loop(
        new_registry(settings, "regime_hmm"), settings, regime_inputs_frame, cutoffs, "cfg"
    )
    registry = new_registry(settings, "regime_hmm")
    frame = fit_regime_cutoffs(registry, settings, regime_inputs_frame, cutoffs, "cfg")

    assert frame.schema == pl.Schema(
        {**{c.name: c.dtype for c in schemas.REGIME_MODEL}, "_url": pl.Utf8}
    )
    fallback, fitted = frame.rows(named=True)
    assert (fallback["cutoff"], fallback["status"]) == (date(1991, 1, 1), "fallback")
    assert fallback["reason"] and fallback["mlflow_version"] is None and fallback["_url"] is None
    assert (fitted["cutoff"], fitted["status"], fitted["reason"]) == (
        date(1992, 1, 1),
        "fitted",
        None,
    )
    name = settings.models.mlflow.regime_registered_model
    assert fitted["_url"] == registry.version_url(name, fitted["mlflow_version"])
    # Another store: other run ids, everything else identical.
    assert_frame_equal(
        frame.drop("mlflow_run_id"), expected.drop("mlflow_run_id"), check_exact=True
    )


def _panel(days: int = 760, tickers: int = 4) -> pl.DataFrame:
    """A training frame (as training_frame builds it) with a planted signal, from 2019-01-01;
    outcome of horizon h known h calendar days later."""
    rng = np.random.default_rng(3)
    origin = [date(2019, 1, 1) + timedelta(days=i) for i in range(days)]
    parts = []
    for t in range(tickers):
        signal = rng.normal(size=days)
        frame: dict[str, object] = {
            "ticker": [f"T{t}"] * days,
            "date": origin,
            "signal": signal,
            "noise": rng.normal(size=days),
        }
        for h in (1, 3):
            forward = 0.8 * signal + rng.normal(size=days)
            frame[f"label_h{h}"] = np.digitize(forward, [-0.5, 0.5])
            frame[f"label_date_h{h}"] = [d + timedelta(days=h) for d in origin]
            frame[f"forward_log_return_h{h}"] = forward
        parts.append(pl.DataFrame(frame))
    return pl.concat(parts).with_columns(pl.col("^label_h.*$").cast(pl.Int8)).sort("ticker", "date")


def _former_next_state_loop(log, registry, settings, frame, cutoffs, champion, version):
    """The ``next_state_model`` asset loop at 51ddda9."""
    from quant_assets.models.walk_forward import train_cutoff

    rows: list[dict] = []
    for cutoff in cutoffs:
        trained, champion = train_cutoff(
            log, registry, settings, frame, cutoff, INPUTS, champion, version
        )
        rows.extend(trained)
    return pl.from_dicts(rows, schema={c.name: c.dtype for c in schemas.NEXT_STATE_MODEL})


def test_training_walks_the_cutoffs_carrying_the_champion_through_each_gate(tmp_path, new_registry):
    from quant_assets.models.walk_forward import train_cutoffs

    settings = _settings(tmp_path)
    frame = _panel()
    # Too little history at the first cut-off: skipped, the given champion kept.
    cutoffs = [date(2019, 3, 1), date(2020, 7, 1), date(2021, 1, 1)]
    before = ("7", date(2018, 1, 1))
    expected_log: list[str] = []
    expected = _former_next_state_loop(
        expected_log.append,
        new_registry(settings, "next_state"),
        settings,
        frame,
        cutoffs[:1],
        before,
        "cfg",
    )
    log: list[str] = []
    out = train_cutoffs(
        log.append,
        new_registry(settings, "next_state"),
        settings,
        frame,
        cutoffs[:1],
        INPUTS,
        before,
        "cfg",
    )
    assert_frame_equal(out, expected, check_exact=True)
    assert log == expected_log
    assert out["gate_decision"].to_list() == ["skipped", "skipped"]
    assert out["champion_version"].to_list() == ["7", "7"]

    expected_log.clear()
    expected = _former_next_state_loop(
        expected_log.append,
        new_registry(settings, "next_state"),
        settings,
        frame,
        cutoffs,
        None,
        "cfg",
    )
    log.clear()
    out = train_cutoffs(
        log.append,
        new_registry(settings, "next_state"),
        settings,
        frame,
        cutoffs,
        INPUTS,
        None,
        "cfg",
    )
    assert out.schema == pl.Schema({c.name: c.dtype for c in schemas.NEXT_STATE_MODEL})
    assert_frame_equal(out.drop("run_id"), expected.drop("run_id"), check_exact=True)
    assert log == expected_log
    by_cutoff = out.group_by("cutoff", maintain_order=True).first()
    assert by_cutoff["cutoff"].to_list() == cutoffs
    assert by_cutoff["gate_decision"].to_list()[:2] == ["skipped", "promoted"]
    second = by_cutoff.row(1, named=True)
    assert (second["champion_version"], second["champion_cutoff"]) == (
        second["version"],
        date(2020, 7, 1),
    )
    third = by_cutoff.row(2, named=True)
    if third["gate_decision"] == "refused":
        assert third["champion_version"] == second["version"]
    else:
        assert third["champion_version"] == third["version"]
