"""Next-state models: labels stored at their realisation date (:mod:`.labels`), walk-forward
LightGBM classifiers per horizon (:mod:`.next_state`), and their MLflow wrappers
(:mod:`.pyfunc`, :mod:`.registry`). The first two are pure domain code: no Dagster, no MLflow.
:mod:`.cutoffs` says which cut-off's model serves which dates; :mod:`.walk_forward` runs the
MLflow steps over a run's cut-offs.

Only the light :mod:`.cutoffs` is re-exported here: importing this package must not load
LightGBM or MLflow (the model modules load them; definition time stays cheap).
"""

from quant_assets.models.cutoffs import CutoffWindow, cutoff_windows, days_for_sessions

__all__ = ["CutoffWindow", "cutoff_windows", "days_for_sessions"]
