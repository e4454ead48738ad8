"""MLflow tracking and registry for the walk-forward models (SPEC §6, seed 002).

Every training is an MLflow run (params, config hash, data window, row counts, metrics,
feature importance) whose model is logged as a pyfunc with a signature and registered as a
new version tagged with its cut-off. The ``champion`` alias (aliases, not the deprecated
stages) moves only through :func:`promotion_decision`.

Embedded by default: ``sqlite:///$QUANT_ASSETS_HOME/mlflow/mlflow.db`` with artifacts beside
it; ``models.yaml: mlflow.tracking_uri`` or ``$MLFLOW_TRACKING_URI`` (which wins) point it at a
server.

Cost, measured here (MLflow 3.17, SQLite): logging a pyfunc lets MLflow infer its pip
requirements by importing the model in a subprocess, ~7 s per model; passing the
requirements explicitly makes log + register ~0.3 s. So we pass them.
"""

from __future__ import annotations

import hashlib
import json
import logging
import os
import tempfile
import warnings
from dataclasses import dataclass
from datetime import date
from functools import lru_cache
from pathlib import Path
from typing import Any

import pandas as pd

from quant_assets.settings import MlflowSettings, PromotionSettings

CHAMPION_ALIAS = "champion"
TRACKING_URI_ENV = "MLFLOW_TRACKING_URI"

# URIs this process passed to mlflow.set_tracking_uri, which also exports them as
# $MLFLOW_TRACKING_URI: such a value is ours, not the user's, and must not leak into the next
# data directory opened in the same process.
_URIS_WE_SET: set[str] = set()

# Metrics where lower is better; the others are higher-is-better.
_LOWER_IS_BETTER = {"log_loss"}


def resolve_tracking_uri(settings: MlflowSettings, home: Path) -> str:
    """``$MLFLOW_TRACKING_URI``, else ``models.yaml: mlflow.tracking_uri``, else the embedded
    SQLite store under ``home/mlflow``."""
    from_env = os.environ.get(TRACKING_URI_ENV)
    if from_env in _URIS_WE_SET:  # mlflow.set_tracking_uri also writes the variable
        from_env = None
    chosen = from_env or settings.tracking_uri
    if chosen:
        return chosen
    folder = home / "mlflow"
    folder.mkdir(parents=True, exist_ok=True)
    return f"sqlite:///{folder / 'mlflow.db'}"


def content_hash(*parts: str) -> str:
    """sha256 of the serialised model(s): the same model is registered once, not per re-run."""
    digest = hashlib.sha256()
    for part in parts:
        digest.update(part.encode())
    return digest.hexdigest()


@dataclass(frozen=True)
class ModelRecord:
    """A registered model version and the run that produced it."""

    name: str
    version: str
    run_id: str
    model_uri: str
    run_url: str
    version_url: str
    reused: bool  # an identical model was already registered for this cut-off


@dataclass(frozen=True)
class GateDecision:
    promote: bool
    reason: str
    new_score: float
    champion_score: float | None


def promotion_decision(
    new_score: float, champion_score: float | None, promotion: PromotionSettings
) -> GateDecision:
    """Promote when there is no champion, or the new out-of-sample score beats the champion's
    on the same test window by at least ``promotion.min_improvement`` (in the metric's units;
    lower is better for log loss, higher for the others)."""
    metric, margin = promotion.metric, promotion.min_improvement
    if champion_score is None:
        return GateDecision(True, "no champion yet", new_score, None)
    improvement = (
        champion_score - new_score if metric in _LOWER_IS_BETTER else new_score - champion_score
    )
    verdict = "beats" if improvement >= margin else "does not beat"
    reason = (
        f"test {metric} {new_score:.5f} vs champion {champion_score:.5f}: improvement "
        f"{improvement:+.5f} {verdict} the margin {margin}"
    )
    return GateDecision(improvement >= margin, reason, new_score, champion_score)


def _quiet() -> None:
    # Requirements are pinned explicitly (pip_requirements): no uv.lock copy into every
    # model, no `pip install --dry-run` (works offline), no progress bars.
    for name in ("MLFLOW_UV_AUTO_DETECT", "MLFLOW_LOG_UV_FILES"):
        os.environ.setdefault(name, "false")
    os.environ.setdefault("MLFLOW_SKIP_PIP_REQUIREMENTS_CHECK", "true")
    os.environ.setdefault("MLFLOW_ENABLE_ARTIFACTS_PROGRESS_BAR", "false")
    import mlflow  # noqa: F401  (its import configures the logger; quiet it afterwards)

    logging.getLogger("mlflow").setLevel(logging.ERROR)
    warnings.filterwarnings("ignore", module="mlflow")


class ModelRegistry:
    """One MLflow tracking store and its model registry."""

    def __init__(self, settings: MlflowSettings, home: Path, experiment: str | None = None) -> None:
        _quiet()
        from mlflow import MlflowClient

        self.settings = settings
        self.tracking_uri = resolve_tracking_uri(settings, home)
        self._artifact_root = home / "mlflow" / "artifacts"
        _set_tracking_uri(self.tracking_uri)
        self.client = MlflowClient(self.tracking_uri, self.tracking_uri)
        self.experiment_name = experiment or settings.experiment
        self._experiment_id: str | None = None

    @property
    def experiment_id(self) -> str:
        if self._experiment_id is None:
            found = self.client.get_experiment_by_name(self.experiment_name)
            if found is not None:
                self._experiment_id = found.experiment_id
            else:
                local = self.tracking_uri.startswith(("sqlite:", "file:"))
                location = self._artifact_root.as_uri() if local else None
                self._experiment_id = self.client.create_experiment(
                    self.experiment_name, artifact_location=location
                )
        return self._experiment_id

    def run_url(self, run_id: str) -> str:
        return f"{self.settings.ui_url}/#/experiments/{self.experiment_id}/runs/{run_id}"

    def version_url(self, name: str, version: str) -> str:
        return f"{self.settings.ui_url}/#/models/{name}/versions/{version}"

    def _existing(self, name: str, cutoff: date, sha: str) -> ModelRecord | None:
        from mlflow.exceptions import MlflowException

        try:
            versions = self.client.search_model_versions(
                f"name = '{name}' and tag.content_sha256 = '{sha}'"
            )
        except MlflowException:
            return None
        for found in versions:
            if found.tags.get("cutoff") == cutoff.isoformat() and found.run_id:
                return self._record(
                    name, str(found.version), found.run_id, found.source or "", True
                )
        return None

    def _record(self, name: str, version: str, run_id: str, uri: str, reused: bool) -> ModelRecord:
        return ModelRecord(
            name=name,
            version=version,
            run_id=run_id,
            model_uri=uri,
            run_url=self.run_url(run_id),
            version_url=self.version_url(name, version),
            reused=reused,
        )

    def log_and_register(
        self,
        *,
        name: str,
        cutoff: date,
        run_name: str,
        python_model: Any,
        artifacts: dict[str, str],
        signature_input: pd.DataFrame,
        signature_output: pd.DataFrame,
        params: dict[str, Any],
        metrics: dict[str, float],
        tags: dict[str, str],
        tables: dict[str, pd.DataFrame] | None = None,
        pip_requirements: list[str],
        sha: str,
    ) -> ModelRecord:
        """Log one run with its model and register it as a new version of ``name``.

        ``artifacts`` maps artifact names to file *contents* (written to a temporary folder
        for MLflow). An identical model (same ``sha``) already registered for ``cutoff`` is
        reused instead of registered again, so re-materialising a partition is idempotent.
        """
        import mlflow
        from mlflow.models import infer_signature

        existing = self._existing(name, cutoff, sha)
        if existing is not None:
            return existing
        all_tags = {"cutoff": cutoff.isoformat(), "content_sha256": sha, **tags}
        with tempfile.TemporaryDirectory() as folder:
            paths = {}
            for key, text in artifacts.items():
                path = Path(folder) / f"{key}.txt"
                path.write_text(text)
                paths[key] = str(path)
            with mlflow.start_run(
                experiment_id=self.experiment_id, run_name=run_name, tags=all_tags
            ) as run:
                mlflow.log_params({k: _param(v) for k, v in params.items()})
                mlflow.log_metrics({k: float(v) for k, v in metrics.items()})
                for table_name, table in (tables or {}).items():
                    mlflow.log_text(table.to_csv(index=False), f"{table_name}.csv")
                info = mlflow.pyfunc.log_model(
                    name="model",
                    python_model=python_model,
                    artifacts=paths,
                    signature=infer_signature(signature_input, signature_output),
                    pip_requirements=pip_requirements,
                )
            version = self._register(name, info.model_uri, run.info.run_id, all_tags)
        return self._record(name, str(version.version), run.info.run_id, info.model_uri, False)

    def log_evaluation(
        self,
        *,
        run_name: str,
        params: dict[str, Any],
        metrics: dict[str, float],
        tags: dict[str, str],
        files: list[Path],
        tables: dict[str, pd.DataFrame] | None = None,
        sha: str,
    ) -> str:
        """Log one run without a model (a strategy's evaluation); return its run id.

        A run of this experiment with the same ``run_name`` and content ``sha`` is reused, so
        re-materialising an unchanged report does not add a run.
        """
        import mlflow

        found = self._run_with_content(run_name, sha)
        if found is not None:
            return found
        with mlflow.start_run(
            experiment_id=self.experiment_id,
            run_name=run_name,
            tags={"content_sha256": sha, **tags},
        ) as run:
            mlflow.log_params({k: _param(v) for k, v in params.items()})
            mlflow.log_metrics({k: float(v) for k, v in metrics.items() if _finite(v)})
            for path in files:
                mlflow.log_artifact(str(path))
            for table_name, table in (tables or {}).items():
                mlflow.log_text(table.to_csv(index=False), f"{table_name}.csv")
        return str(run.info.run_id)

    def _run_with_content(self, run_name: str, sha: str) -> str | None:
        """The id of this experiment's run named ``run_name`` with content hash ``sha``."""
        found = self.client.search_runs(
            [self.experiment_id],
            filter_string=f"tags.content_sha256 = '{sha}' and tags.mlflow.runName = '{run_name}'",
            max_results=1,
        )
        return str(found[0].info.run_id) if found else None

    def log_study(
        self,
        *,
        run_name: str,
        params: dict[str, Any],
        metrics: dict[str, float],
        tags: dict[str, str],
        files: list[Path],
        trials: pd.DataFrame,
        children: list[tuple[str, dict[str, Any], dict[str, float]]],
        sha: str,
    ) -> str:
        """One parent run per study evaluation: its params, metrics, report and the trials as
        a table artifact (``trials.json``, shown in the MLflow UI's artifact view), with one
        nested child run per entry of ``children`` (run name, params, metrics). A parent with
        the same ``run_name`` and content ``sha`` is reused. Returns the parent's run id."""
        import mlflow

        found = self._run_with_content(run_name, sha)
        if found is not None:
            return found
        with mlflow.start_run(
            experiment_id=self.experiment_id,
            run_name=run_name,
            tags={"content_sha256": sha, **tags},
        ) as parent:
            mlflow.log_params({k: _param(v) for k, v in params.items()})
            mlflow.log_metrics({k: float(v) for k, v in metrics.items() if _finite(v)})
            for path in files:
                mlflow.log_artifact(str(path))
            mlflow.log_table(trials, artifact_file="trials.json")
            for child_name, child_params, child_metrics in children:
                with mlflow.start_run(
                    experiment_id=self.experiment_id, run_name=child_name, nested=True
                ):
                    mlflow.log_params({k: _param(v) for k, v in child_params.items()})
                    mlflow.log_metrics(
                        {k: float(v) for k, v in child_metrics.items() if _finite(v)}
                    )
        return str(parent.info.run_id)

    def _register(self, name: str, source: str, run_id: str, tags: dict[str, str]) -> Any:
        # The client, not mlflow.register_model: the same calls without printing to stderr.
        from mlflow.exceptions import MlflowException

        try:
            self.client.get_registered_model(name)
        except MlflowException:
            self.client.create_registered_model(
                name, description="Walk-forward models of quant_assets; see the cutoff tag."
            )
        return self.client.create_model_version(name, source, run_id=run_id, tags=tags)

    def tag_version(self, name: str, version: str, tags: dict[str, str]) -> None:
        for key, value in tags.items():
            self.client.set_model_version_tag(name, version, key, value)

    def tag_run(self, run_id: str, tags: dict[str, str]) -> None:
        for key, value in tags.items():
            self.client.set_tag(run_id, key, value)

    def champion(self, name: str) -> tuple[str, date] | None:
        """The version behind ``@champion`` and its cut-off, or None."""
        from mlflow.exceptions import MlflowException

        try:
            found = self.client.get_model_version_by_alias(name, CHAMPION_ALIAS)
        except MlflowException:
            return None
        return str(found.version), date.fromisoformat(found.tags["cutoff"])

    def promote(self, name: str, version: str, cutoff: date) -> bool:
        """Point ``@champion`` at ``version`` unless the alias already holds a later cut-off
        (re-materialising an old cut-off never moves the live champion backwards)."""
        current = self.champion(name)
        if current is not None and current[1] > cutoff:
            return False
        self.client.set_registered_model_alias(name, CHAMPION_ALIAS, version)
        return True

    def follow_walk_forward(self, name: str, version: str, through: date) -> bool:
        """Point ``@champion`` at ``version``, the champion after the gates of a run whose
        last cut-off is ``through``, unless the alias holds a model of a later cut-off."""
        from mlflow.exceptions import MlflowException

        current = self.champion(name)
        if current is not None and (current[1] > through or current[0] == version):
            return False
        try:
            self.client.set_registered_model_alias(name, CHAMPION_ALIAS, version)
        except MlflowException:  # a champion from another store (nothing registered here)
            return False
        return True

    def load_python_model(self, name: str, version: str) -> Any:
        """The pyfunc's Python object (e.g. with its LightGBM boosters) for a version."""
        return _load_python_model(self.tracking_uri, name, version)

    def load_champion(self, name: str) -> tuple[str, Any] | None:
        current = self.champion(name)
        if current is None:
            return None
        return current[0], self.load_python_model(name, current[0])


@lru_cache(maxsize=64)
def _load_python_model(tracking_uri: str, name: str, version: str) -> Any:
    import mlflow

    _quiet()
    _set_tracking_uri(tracking_uri)
    return mlflow.pyfunc.load_model(f"models:/{name}/{version}").unwrap_python_model()


def _set_tracking_uri(uri: str) -> None:
    import mlflow

    _URIS_WE_SET.add(uri)
    mlflow.set_tracking_uri(uri)
    mlflow.set_registry_uri(uri)


def _finite(value: Any) -> bool:
    try:
        number = float(value)
    except (TypeError, ValueError):
        return False
    return number == number and abs(number) != float("inf")


def _param(value: Any) -> str:
    text = value if isinstance(value, str) else json.dumps(value, default=str, sort_keys=True)
    return text[:6000]  # MLflow's param value limit


def pip_requirements(*packages: str) -> list[str]:
    """Pinned requirements of the installed ``packages`` (skips MLflow's slow inference)."""
    from importlib.metadata import version

    return [f"{package}=={version(package)}" for package in packages]
