# quant_assets — the two commands: `make demo` and `make test`. Each sets itself up.
SHELL := /bin/bash
PYTHON ?= python3.11
TOOLS := .tools
UV := $(TOOLS)/bin/uv
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed
export QUANT_ASSETS_HOME ?= $(CURDIR)/data
export UV_PYTHON := $(PYTHON)
# Compile bytecode at install: a machine with PYTHONDONTWRITEBYTECODE would otherwise
# recompile Great Expectations (~8 s) on every import.
export UV_COMPILE_BYTECODE := 1
# One planned event per asset for range runs (see quant_assets/engine/runner.py).
export DAGSTER_EMIT_PARTITION_SUBSET_IN_PLANNED_EVENTS := true
# A step's asset events stored in one batch (the project's SQLite event log and
# dagster-postgres both implement it; see quant_assets/dagster_internals.py).
export DAGSTER_EVENT_BATCH_SIZE ?= 1000
# OpenMP threads (LightGBM) wait passively: busy-waiting made training 5-30x slower under load.
export OMP_WAIT_POLICY := PASSIVE

.PHONY: install demo test lint typecheck ui mlflow-ui bench clean

$(UV):
	$(PYTHON) -m venv $(TOOLS)
	$(TOOLS)/bin/pip install --quiet --disable-pip-version-check "uv==0.13.9"

$(STAMP): pyproject.toml uv.lock | $(UV)
	$(UV) sync --frozen --extra dev
	# numba kernels compiled once into their on-disk cache (~1 min), not in the first run
	$(BIN)/python -m quant_assets.warmup
	touch $(STAMP)

install: $(STAMP) ## create .venv from uv.lock

demo: install ## materialise the whole graph (bars -> models -> strategies -> reports -> studies), bundled data
	$(BIN)/quant-assets materialize --select all
	$(BIN)/quant-assets inspect-signals AAPL --limit 5
	$(BIN)/quant-assets inspect-predictions AAPL --limit 5
	$(BIN)/quant-assets models
	$(BIN)/quant-assets status
	$(BIN)/quant-assets compare hybrid_alpha trend_only mean_reversion_only
	$(BIN)/quant-assets report
	$(BIN)/quant-assets orders
	$(BIN)/quant-assets study hybrid_sizing

lint: install
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .

typecheck: install
	$(BIN)/mypy

test: install lint typecheck ## ruff, mypy and the whole pytest suite (3 workers, one file each)
	$(BIN)/pytest -q -p no:cacheprovider -n 3 --dist loadfile

ui: install ## the Dagster UI on http://127.0.0.1:3000 over the demo's instance
	$(BIN)/python -c "from quant_assets.engine.instance import dagster_home; \
	  from quant_assets.settings import data_home; dagster_home(data_home())"
	DAGSTER_HOME=$(QUANT_ASSETS_HOME)/dagster $(BIN)/dagster dev -h 127.0.0.1 -p 3000

mlflow-ui: install ## the MLflow UI on http://127.0.0.1:5000 over the demo's tracking store
	mkdir -p $(QUANT_ASSETS_HOME)/mlflow
	$(BIN)/mlflow ui --backend-store-uri sqlite:///$(QUANT_ASSETS_HOME)/mlflow/mlflow.db \
	  --host 127.0.0.1 --port 5000

bench: install ## performance benchmarks (prints ratios; not part of the tests)
	$(UV) sync --frozen --extra dev --extra bench
	$(BIN)/python benchmarks/bench_pipeline.py
	$(BIN)/python benchmarks/bench_models.py
	$(BIN)/python benchmarks/bench_backtest.py
	if [ -f $(QUANT_ASSETS_HOME)/warehouse.duckdb ]; then \
	  $(BIN)/python benchmarks/bench_strategies.py --home $(QUANT_ASSETS_HOME); \
	  $(BIN)/python benchmarks/bench_daily.py --home30 $(QUANT_ASSETS_HOME); \
	else $(BIN)/python benchmarks/bench_strategies.py; $(BIN)/python benchmarks/bench_daily.py; fi

clean:
	rm -rf $(VENV) $(TOOLS) data
