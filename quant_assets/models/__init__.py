"""Next-state models: labels stored at their realisation date (:mod:`.labels`), walk-forward
LightGBM classifiers per horizon (:mod:`.next_state`), and their MLflow wrappers
(:mod:`.pyfunc`, :mod:`.registry`). The first two are pure domain code: no Dagster, no MLflow.
"""
