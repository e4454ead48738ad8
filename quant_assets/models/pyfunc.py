"""The MLflow pyfunc wrappers of our models, so a registered version is usable on its own.

``mlflow.pyfunc.load_model("models:/quant_assets_next_state@champion")`` returns a model whose
``predict`` takes the input columns (see the signature) and returns, per horizon, the
probabilities of down / flat / up. The pipeline itself unwraps the Python object and calls
the LightGBM boosters through :func:`quant_assets.models.next_state.predict_next_state`.

Importing this module imports MLflow (~5 s): only the model assets do.
"""

from __future__ import annotations

from typing import Any

import pandas as pd
from mlflow.pyfunc import PythonModel


class NextStateModel(PythonModel):
    """One LightGBM booster per horizon, trained at one cut-off."""

    def __init__(self, horizons: list[int], input_columns: list[str]) -> None:
        self.horizons = list(horizons)
        self.input_columns = list(input_columns)
        self.boosters: dict[int, Any] = {}

    @staticmethod
    def artifact_key(horizon: int) -> str:
        return f"booster_h{horizon}"

    def load_context(self, context: Any) -> None:
        import lightgbm

        self.boosters = {
            h: lightgbm.Booster(model_file=context.artifacts[self.artifact_key(h)])
            for h in self.horizons
        }

    def predict(self, context: Any, model_input: pd.DataFrame, params: Any = None) -> pd.DataFrame:
        from quant_assets.models.labels import STATES

        values = model_input[self.input_columns].to_numpy(dtype="float64")
        out = {}
        for horizon, booster in self.boosters.items():
            probabilities = booster.predict(values, num_iteration=booster.best_iteration or None)
            for index, state in enumerate(STATES):
                out[f"h{horizon}_prob_{state}"] = probabilities[:, index]
        return pd.DataFrame(out, index=model_input.index)


class RegimeHmmModel(PythonModel):
    """A fitted regime HMM; ``predict`` gives forward-filtered regime probabilities over the
    rows it is given (columns ``date``, ``log_return``, ``realized_vol``), in order."""

    def __init__(self) -> None:
        self.fit: Any = None

    def load_context(self, context: Any) -> None:
        from pathlib import Path

        from quant_assets.regimes import RegimeFit

        self.fit = RegimeFit.from_json(Path(context.artifacts["fit"]).read_text())

    def predict(self, context: Any, model_input: pd.DataFrame, params: Any = None) -> pd.DataFrame:
        import polars as pl

        from quant_assets.regimes import PROB_COLUMNS, filtered_probabilities

        probabilities = filtered_probabilities(self.fit, pl.from_pandas(model_input))
        return pd.DataFrame(probabilities, columns=list(PROB_COLUMNS), index=model_input.index)
