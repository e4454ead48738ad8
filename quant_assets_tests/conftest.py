"""Shared fixtures: a throw-away project (config dir + files-provider folder + data dir)."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from dataclasses import dataclass
from datetime import date, timedelta
from pathlib import Path

import polars as pl
import pytest
import yaml

from quant_assets.providers.synthetic import SyntheticProvider


@dataclass
class Project:
    """A temporary config directory whose files provider reads ``drop``, storing in ``home``."""

    config_dir: Path
    drop: Path
    home: Path
    tickers: list[str]
    benchmark: str

    def bars(self, ticker: str) -> pl.DataFrame:
        return pl.read_csv(self.drop / f"{ticker}.csv", try_parse_dates=True)

    def write(self, ticker: str, frame: pl.DataFrame) -> None:
        frame.write_csv(self.drop / f"{ticker}.csv")


def write_project(
    root: Path,
    tickers: list[str],
    start: date,
    end: date,
    *,
    benchmark: str = "IDX",
    grain: str = "month",
    history_start: date | None = None,
    origin: date = date(2015, 1, 2),
) -> Project:
    """Configs + one CSV per ticker (synthetic, seeded) for a files-provider project."""
    config_dir, drop, home = root / "configs", root / "drop", root / "data"
    for folder in (config_dir, drop, home):
        folder.mkdir(parents=True, exist_ok=True)
    universe = {
        "tickers": tickers,
        "benchmark": benchmark,
        "start": start.isoformat(),
        "end": end.isoformat(),
        "calendar": "XNYS",
        "partition_grain": grain,
    }
    (config_dir / "universe.yaml").write_text(yaml.safe_dump(universe))
    (config_dir / "providers.yaml").write_text(
        yaml.safe_dump({"provider": "files", "files": {"path": str(drop)}})
    )
    provider = SyntheticProvider(seed=11, benchmark=benchmark, origin=origin, end=end)
    bars = provider.fetch_bars([*tickers, benchmark], history_start or start, end)
    for (ticker,), frame in bars.group_by("ticker"):
        frame.drop("ticker").write_csv(drop / f"{ticker}.csv")
    return Project(config_dir, drop, home, list(tickers), benchmark)


def weekdays(first: date, count: int) -> list[date]:
    """``count`` consecutive weekdays from ``first`` (test calendars without holidays)."""
    days, day = [], first
    while len(days) < count:
        if day.weekday() < 5:
            days.append(day)
        day += timedelta(days=1)
    return days


FAST_REGIMES = {
    "cutoff_frequency": "year",
    "min_history_years": 2,
    "restarts": 2,
    "n_iter": 60,
    "min_train_sessions": 300,
    "rules": {"vix_source": "none"},
}
FAST_MODELS = {
    "cutoff_frequency": "year",
    "min_history_years": 2,
    "split": {
        "validation_sessions": 40,
        "test_sessions": 40,
        "embargo_sessions": 2,
        "min_train_rows": 300,
    },
    "lightgbm": {"n_estimators": 40, "num_leaves": 7, "min_child_samples": 30},
    "promotion": {"min_improvement": 0.0},
}


SHIPPED_CONFIGS = Path(__file__).resolve().parents[1] / "configs"
FAST_PROMOTION = {"bootstrap_reps": 200}


def write_fast_model_configs(project: Project, strategies: bool = True) -> Project:
    """Small, quick model settings: yearly cut-offs after two years, few trees; the shipped
    risk.yaml and strategies (with a smaller bootstrap for the reality check)."""
    (project.config_dir / "regimes.yaml").write_text(yaml.safe_dump(FAST_REGIMES))
    (project.config_dir / "models.yaml").write_text(yaml.safe_dump(FAST_MODELS))
    if strategies:
        write_strategies(project)
    return project


def write_strategies(project: Project, names: list[str] | None = None) -> Project:
    """Copy the shipped risk.yaml and strategies (all, or ``names``) into the project."""
    (project.config_dir / "risk.yaml").write_text((SHIPPED_CONFIGS / "risk.yaml").read_text())
    folder = project.config_dir / "strategies"
    folder.mkdir(exist_ok=True)
    for path in sorted((SHIPPED_CONFIGS / "strategies").glob("*.yaml")):
        if names is not None and path.stem not in names:
            continue
        config = yaml.safe_load(path.read_text())
        config["promotion"] = {**config.get("promotion", {}), **FAST_PROMOTION}
        (folder / path.name).write_text(yaml.safe_dump(config))
    return project


@pytest.fixture
def make_project(tmp_path: Path) -> Callable[..., Project]:
    counter = iter(range(100))

    def make(*args, **kwargs) -> Project:
        return write_project(tmp_path / f"project{next(counter)}", *args, **kwargs)

    return make


PIPELINE_TICKERS = ["AAA", "BBB", "CCC", "DDD"]
PIPELINE_START, PIPELINE_END = date(2015, 1, 1), date(2019, 12, 31)


PIPELINE_STUDY = {
    "description": "Two sizing keys of trend_only; trial 3 is trend_only itself.",
    "base": "trend_only",
    "space": {"sizing.kelly_fraction": [0.2, 0.3], "sizing.max_weight": [0.05, 0.1]},
    "walk_forward": {"train_sessions": 250, "test_sessions": 125},
    "pbo_partitions": 6,
    "top_runs": 2,
    # Open gates: the pipeline's selection is promoted, so `promote` can be tested on it.
    "gates": {"min_deflated_sharpe": 0.0, "max_pbo": 1.0, "max_spa_pvalue": 1.0},
}


def write_study(project: Project, name: str = "sizing", study: dict | None = None) -> Project:
    """A small study of the pipeline's trend_only (and the research settings four tickers
    need: a signal date counts with three names)."""
    (project.config_dir / "research.yaml").write_text(
        yaml.safe_dump({"signal_evaluation": {"min_names": 3}})
    )
    folder = project.config_dir / "studies"
    folder.mkdir(exist_ok=True)
    (folder / f"{name}.yaml").write_text(yaml.safe_dump(study or PIPELINE_STUDY))
    return project


def new_pipeline_project(root: Path) -> Project:
    """Four synthetic tickers over 2015-2019 at year grain, fast models, shipped strategies,
    a small study of trend_only and the signal tear sheets."""
    project = write_project(root, PIPELINE_TICKERS, PIPELINE_START, PIPELINE_END, grain="year")
    return write_study(write_fast_model_configs(project))


def materialize_all(project: Project, select: list[str] | None = None, **kwargs) -> None:
    """Materialise ``select`` (default: everything, reports included) and assert success."""
    from quant_assets.defs.definitions import build_definitions
    from quant_assets.engine.plan import all_assets
    from quant_assets.engine.runner import materialize
    from quant_assets.settings import load_settings

    settings = load_settings(project.config_dir)
    chosen = (
        select
        if select is not None
        else list(all_assets(build_definitions(settings, project.home)))
    )
    outcomes = materialize(settings, project.home, chosen, **kwargs)
    assert outcomes and all(o.success for o in outcomes), [o.error for o in outcomes]


@pytest.fixture(scope="session")
def pipeline(tmp_path_factory) -> Iterator[Project]:
    """The whole graph materialised once (bars → models → strategies → reports → study), shared
    by the graph tests that only read it. Runs with the embedded MLflow store.

    Built once per test session: under pytest-xdist the first worker to need it builds it in
    the session's shared temporary root (the others wait on a file lock) and every worker
    reads its own copy (``copy_project``), so no two processes open one DuckDB file."""
    import os

    from filelock import FileLock

    saved = os.environ.pop("MLFLOW_TRACKING_URI", None)
    try:
        root = tmp_path_factory.getbasetemp()
        if os.environ.get("PYTEST_XDIST_WORKER"):  # a worker's basetemp is in the session's
            root = root.parent
        shared = root / "shared-pipeline"
        built = Project(
            shared / "configs", shared / "drop", shared / "data", PIPELINE_TICKERS, "IDX"
        )
        with FileLock(str(shared) + ".lock"):
            if not (shared / "built").exists():
                if shared.exists():
                    import shutil

                    shutil.rmtree(shared)  # a build interrupted earlier
                materialize_all(new_pipeline_project(shared))
                (shared / "built").touch()
        yield copy_project(built, tmp_path_factory.mktemp("pipeline"))
    finally:
        if saved is not None:
            os.environ["MLFLOW_TRACKING_URI"] = saved


def copy_project(project: Project, root: Path) -> Project:
    """A full copy of ``project`` (configs, files, warehouse, Dagster instance, MLflow store)
    under ``root`` that shares nothing with it: paths stored in the copy are rewritten."""
    import shutil
    import sqlite3

    root.mkdir(parents=True, exist_ok=True)
    copy = Project(
        root / "configs", root / "drop", root / "data", project.tickers, project.benchmark
    )
    shutil.copytree(project.config_dir, copy.config_dir)
    shutil.copytree(project.drop, copy.drop)
    shutil.copytree(project.home, copy.home)
    providers = yaml.safe_load((copy.config_dir / "providers.yaml").read_text())
    providers["files"]["path"] = str(copy.drop)
    (copy.config_dir / "providers.yaml").write_text(yaml.safe_dump(providers))
    # The instance's dagster.yaml names the original storage: a new one is written on open.
    (copy.home / "dagster" / "dagster.yaml").unlink(missing_ok=True)  # (a copy of a copy)
    store = copy.home / "mlflow" / "mlflow.db"
    if store.exists():  # artifact locations are absolute paths into the original
        old, new = str(project.home), str(copy.home)
        with sqlite3.connect(store) as conn:
            tables = [
                r[0] for r in conn.execute("select name from sqlite_master where type='table'")
            ]
            for table in tables:
                for column in conn.execute(f"pragma table_info('{table}')").fetchall():
                    if "CHAR" in column[2].upper() or "TEXT" in column[2].upper():
                        conn.execute(
                            f'update "{table}" set "{column[1]}" = replace("{column[1]}", ?, ?) '
                            f'where "{column[1]}" like ?',
                            [old, new, f"%{old}%"],
                        )
    return copy


@pytest.fixture
def cli(monkeypatch):
    """``quant-assets COMMAND --config <project's> ARGS...`` in-process, on the project's data."""
    from typer.testing import CliRunner

    from quant_assets.cli import app

    def invoke(project, *args: str):
        monkeypatch.setenv("QUANT_ASSETS_HOME", str(project.home))
        return CliRunner().invoke(app, [*args[:1], "--config", str(project.config_dir), *args[1:]])

    return invoke
