"""One walk-forward step per cut-off, with MLflow: train, log, register, gate.

Used by the ``regime_model`` and ``next_state_model`` assets; knows nothing of Dagster (the
asset passes a ``log`` function and stores the rows returned here). :func:`fit_regime_cutoffs`
and :func:`train_cutoffs` run the steps over a run's cut-offs, oldest first.
"""

from __future__ import annotations

import json
from collections.abc import Callable, Sequence
from datetime import date

import polars as pl

from quant_assets import schemas
from quant_assets.models.registry import ModelRecord, ModelRegistry
from quant_assets.regimes.hmm import RegimeFit
from quant_assets.settings import Settings

TEST_METRICS = ("log_loss", "accuracy", "balanced_accuracy", "information_coefficient")


def log_regime_fit(
    registry: ModelRegistry, settings: Settings, fit: RegimeFit, config_hash: str
) -> ModelRecord | None:
    """One MLflow run per cut-off; a fitted HMM is registered (a fallback only logged)."""
    import mlflow
    import pandas as pd

    from quant_assets.models.pyfunc import RegimeHmmModel
    from quant_assets.models.registry import content_hash, pip_requirements
    from quant_assets.regimes import PROB_COLUMNS

    params = {
        "cutoff": fit.cutoff.isoformat(),
        "config_hash": config_hash,
        **{k: v for k, v in settings.regimes.model_dump().items() if k != "rules"},
    }
    metrics: dict[str, float] = {"n_obs": fit.n_obs, "converged_restarts": fit.converged_restarts}
    if fit.log_likelihood is not None:
        metrics["log_likelihood"] = fit.log_likelihood
    tags = {
        "model": "regime_hmm",
        "status": fit.status,
        "data_window": f"{fit.train_start}..{fit.train_end}",
    }
    name = settings.models.mlflow.regime_registered_model
    if fit.status != "fitted":
        with mlflow.start_run(
            experiment_id=registry.experiment_id,
            run_name=f"regime_hmm {fit.cutoff}",
            tags={**tags, "cutoff": fit.cutoff.isoformat(), "reason": fit.reason or ""},
        ):
            mlflow.log_params({k: str(v) for k, v in params.items()})
            mlflow.log_metrics(metrics)
        return None
    example = pd.DataFrame({"log_return": [0.001, -0.002], "realized_vol": [0.15, 0.2]})
    text = fit.to_json()
    return registry.log_and_register(
        name=name,
        cutoff=fit.cutoff,
        run_name=f"regime_hmm {fit.cutoff}",
        python_model=RegimeHmmModel(),
        artifacts={"fit": text},
        signature_input=example,
        signature_output=pd.DataFrame([[0.25] * 4], columns=list(PROB_COLUMNS)),
        params=params,
        metrics=metrics,
        tags={**tags, "state_labels": ",".join(json.loads(text)["params"]["state_labels"])},
        pip_requirements=pip_requirements("hmmlearn", "scipy", "numpy", "pandas", "polars"),
        sha=content_hash(text),
    )


def train_cutoff(
    log: Callable[[str], None],
    registry: ModelRegistry,
    settings: Settings,
    frame: pl.DataFrame,
    cutoff: date,
    input_columns: list[str],
    champion: tuple | None,
    config_hash: str,
    trained: dict | Exception | None = None,
) -> tuple[list[dict], tuple | None]:
    """Train every horizon at ``cutoff`` (or take ``trained``: the models, or the
    InsufficientTrainingData, of :func:`quant_assets.models.next_state.train_walk_forward`),
    log + register, run the gate; the stored rows and the champion after this cut-off."""
    import pandas as pd

    from quant_assets.models.labels import STATES
    from quant_assets.models.next_state import (
        InsufficientTrainingData,
        evaluate,
        train_next_state,
        walk_forward_split,
    )
    from quant_assets.models.pyfunc import NextStateModel
    from quant_assets.models.registry import content_hash, pip_requirements, promotion_decision

    models_cfg = settings.models
    horizons = models_cfg.labels.horizons
    name = models_cfg.mlflow.registered_model
    metric = models_cfg.promotion.metric
    if trained is None:
        try:
            trained = train_next_state(frame, cutoff, input_columns, models_cfg)
        except InsufficientTrainingData as refused:
            trained = refused
    if isinstance(trained, Exception):
        reason = str(trained)
        log(f"{cutoff}: {reason}")
        return [
            {
                "cutoff": cutoff,
                "horizon": h,
                "gate_decision": "skipped",
                "gate_reason": reason,
                "champion_version": champion[0] if champion else None,
                "champion_cutoff": champion[1] if champion else None,
            }
            for h in horizons
        ], champion
    boosters = {h: m.booster.model_to_string() for h, m in trained.items()}
    metrics: dict[str, float] = {}
    for h, m in trained.items():
        metrics[f"h{h}_best_iteration"] = m.best_iteration
        metrics[f"h{h}_train_rows"] = m.windows.train_rows
        metrics[f"h{h}_validation_rows"] = m.windows.validation_rows
        metrics[f"h{h}_test_rows"] = m.windows.test_rows
        for split_name, values in (("validation", m.validation_metrics), ("test", m.test_metrics)):
            for key, value in values.items():
                metrics[f"h{h}_{split_name}_{key}"] = value
    new_score = sum(m.test_metrics[metric] for m in trained.values()) / len(trained)
    metrics[f"test_{metric}_mean"] = new_score
    importance = pd.DataFrame(
        {"feature": input_columns}
        | {
            f"gain_h{h}": [m.feature_importance.get(c, 0.0) for c in input_columns]
            for h, m in trained.items()
        }
    ).sort_values(f"gain_h{horizons[0]}", ascending=False)
    first = trained[horizons[0]].windows
    example = frame.select(input_columns).head(5).to_pandas()
    record = registry.log_and_register(
        name=name,
        cutoff=cutoff,
        run_name=f"next_state {cutoff}",
        python_model=NextStateModel(horizons, input_columns),
        artifacts={NextStateModel.artifact_key(h): text for h, text in boosters.items()},
        signature_input=example,
        signature_output=pd.DataFrame(
            {f"h{h}_prob_{s}": [1 / 3] * len(example) for h in horizons for s in STATES}
        ),
        params={
            "cutoff": cutoff.isoformat(),
            "config_hash": config_hash,
            "horizons": horizons,
            "input_columns": len(input_columns),
            **{f"lightgbm.{k}": v for k, v in models_cfg.lightgbm.model_dump().items()},
            **{f"labels.{k}": v for k, v in models_cfg.labels.model_dump().items()},
            **{f"split.{k}": v for k, v in models_cfg.split.model_dump().items()},
        },
        metrics=metrics,
        tags={
            "model": "next_state",
            "data_window": f"{first.train_start}..{cutoff}",
            "train_window": f"{first.train_start}..{first.train_end}",
            "test_window": f"{first.test_start}..{first.test_end}",
        },
        tables={"feature_importance": importance},
        pip_requirements=pip_requirements("lightgbm", "numpy", "pandas", "polars"),
        sha=content_hash(*boosters.values()),
    )
    champion_score = None
    comparable = True
    if champion is not None and champion[0] != record.version:
        old = registry.load_python_model(name, champion[0])
        # A champion trained on other inputs or horizons (the config changed) cannot be
        # scored on this window: the new model replaces it, and the reason says so.
        comparable = old.input_columns == input_columns and set(horizons) <= set(old.boosters)
        if comparable:
            scores = []
            for h in horizons:
                _, _, test, _ = walk_forward_split(frame, cutoff, h, models_cfg.split)
                scores.append(evaluate(old.boosters[h], test, h, input_columns)[metric])
            champion_score = sum(scores) / len(scores)
    if champion is not None and champion[0] == record.version:
        decision_promote, reason = True, "re-run of the champion's own cut-off"
    elif not comparable:
        decision_promote = True
        reason = f"champion v{champion[0] if champion else '-'} has other inputs or horizons"
    else:
        gate = promotion_decision(new_score, champion_score, models_cfg.promotion)
        decision_promote, reason = gate.promote, gate.reason
    decision = "promoted" if decision_promote else "refused"
    if decision_promote:
        champion = (record.version, cutoff)
        registry.promote(name, record.version, cutoff)
    gate_tags = {
        "gate_decision": decision,
        "gate_reason": reason,
        "champion_after": f"v{champion[0]}" if champion else "-",
    }
    registry.tag_version(name, record.version, gate_tags)
    registry.tag_run(record.run_id, gate_tags)
    log(f"{cutoff}: v{record.version} {decision}: {reason}")
    rows = []
    for h, m in trained.items():
        w = m.windows
        rows.append(
            {
                "cutoff": cutoff,
                "horizon": h,
                "version": record.version,
                "run_id": record.run_id,
                "gate_decision": decision,
                "gate_reason": reason,
                "champion_version": champion[0] if champion else None,
                "champion_cutoff": champion[1] if champion else None,
                "best_iteration": m.best_iteration,
                "train_start": w.train_start,
                "train_end": w.train_end,
                "test_start": w.test_start,
                "test_end": w.test_end,
                "train_rows": w.train_rows,
                "validation_rows": w.validation_rows,
                "test_rows": w.test_rows,
                **{f"test_{k}": m.test_metrics[k] for k in TEST_METRICS},
                "_run_url": record.run_url,
            }
        )
    return rows, champion


TEST_METRICS = ("log_loss", "accuracy", "balanced_accuracy", "information_coefficient")


def fit_regime_cutoffs(
    registry: ModelRegistry,
    settings: Settings,
    inputs: pl.DataFrame,
    cutoffs: Sequence[date],
    config_hash: str,
) -> pl.DataFrame:
    """Fit, log and (when fitted) register the regime HMM at each of ``cutoffs``, in the order
    given; one row per cut-off.

    ``inputs``: :func:`quant_assets.regimes.regime_inputs` of the benchmark closes before the
    last cut-off (each fit uses the rows strictly before its own cut-off). ``config_hash`` is
    logged with every run. Returns the :data:`quant_assets.schemas.REGIME_MODEL` columns (with
    their dtypes) plus ``_url`` (Utf8: the registered version's MLflow page, null for a
    fallback) — not conformed, so the caller can show ``_url`` before dropping it. A fit that
    falls back is a row with its ``reason``, not an error; MLflow errors propagate.
    """
    from quant_assets.regimes.hmm import fit_regime_model

    rows = []
    for cutoff in cutoffs:
        fit = fit_regime_model(inputs, cutoff, settings.regimes)
        record = log_regime_fit(registry, settings, fit, config_hash)
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


def train_cutoffs(
    log: Callable[[str], None],
    registry: ModelRegistry,
    settings: Settings,
    frame: pl.DataFrame,
    cutoffs: Sequence[date],
    input_columns: list[str],
    champion: tuple | None,
    config_hash: str,
) -> pl.DataFrame:
    """:func:`train_cutoff` at each of ``cutoffs`` in the order given, the champion after one
    cut-off's gate entering the next.

    ``frame``: a :func:`quant_assets.models.next_state.training_frame` holding every row
    before the last cut-off; ``champion``: ``(version, cut-off)`` after the gate of the cut-off
    before the first one (None: no champion yet). Returns the
    :data:`quant_assets.schemas.NEXT_STATE_MODEL` rows with their dtypes: one per (cut-off,
    horizon), a skipped cut-off (too little data) included with its reason. MLflow and
    LightGBM errors propagate.
    """
    from quant_assets.models.next_state import train_walk_forward

    rows: list[dict] = []
    fits = train_walk_forward(frame, list(cutoffs), input_columns, settings.models)
    for cutoff, trained in fits:
        stored, champion = train_cutoff(
            log,
            registry,
            settings,
            frame,
            cutoff,
            input_columns,
            champion,
            config_hash,
            trained,
        )
        rows.extend(stored)
    if champion is not None and cutoffs:
        # The walk-forward record's champion after the last gate serves the live window: a
        # re-run through the live cut-off (new history) moves @champion to it even when that
        # is an earlier cut-off's model; a re-run of older cut-offs only leaves it alone.
        registry.follow_walk_forward(
            settings.models.mlflow.registered_model, champion[0], max(cutoffs)
        )
    return pl.from_dicts(rows, schema={c.name: c.dtype for c in schemas.NEXT_STATE_MODEL})
