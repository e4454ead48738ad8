"""Scale smoke test: 200 synthetic tickers over three years through the whole graph — bars,
features, signals, labels, regimes, a walk-forward model, predictions, the shipped strategies'
alpha, positions, backtests, orders, paper books, reports, tear sheets and the study.

It proves the wide path works end to end (every table written, every name in every
cross-section, the model trained on a per-date sample of names), not how fast it is:
speed is measured in ``benchmarks/bench_scale.py``."""

from datetime import date

import duckdb
import yaml

from quant_assets_tests.conftest import SHIPPED_CONFIGS, materialize_all, write_strategies

TICKERS = [f"S{i:03d}" for i in range(200)]
START, END = date(2017, 1, 1), date(2019, 12, 31)


def _wide_project(root):
    from quant_assets_tests.conftest import Project

    config, home = root / "configs", root / "data"
    config.mkdir(parents=True)
    home.mkdir()
    universe = {
        "tickers": TICKERS,
        "benchmark": "IDX",
        "start": START.isoformat(),
        "end": END.isoformat(),
        "calendar": "XNYS",
        "partition_grain": "year",
    }
    (config / "universe.yaml").write_text(yaml.safe_dump(universe))
    (config / "providers.yaml").write_text(yaml.safe_dump({"provider": "synthetic"}))
    # Three years of history, the first a year of feature warm-up: quarterly model cut-offs
    # through 2019, short walk-forward windows, and 50 names per date in the training sample
    # (the shipped cap is 100).
    models = yaml.safe_load((SHIPPED_CONFIGS / "models.yaml").read_text())
    models.update(first_cutoff="2019-01-01", cutoff_frequency="quarter")
    models["split"].update(
        validation_sessions=30, test_sessions=30, embargo_sessions=5, max_rows_per_date=50
    )
    models["lightgbm"].update(n_estimators=20, early_stopping_rounds=5)
    (config / "models.yaml").write_text(yaml.safe_dump(models))
    regimes = yaml.safe_load((SHIPPED_CONFIGS / "regimes.yaml").read_text())
    regimes.update(first_cutoff="2019-01-01", min_train_sessions=150)
    (config / "regimes.yaml").write_text(yaml.safe_dump(regimes))
    project = Project(
        config_dir=config, drop=root / "drop", home=home, tickers=TICKERS, benchmark="IDX"
    )
    return write_strategies(project)


def test_two_hundred_tickers_run_through_the_whole_graph(tmp_path):
    project = _wide_project(tmp_path)
    materialize_all(project)
    with duckdb.connect(str(project.home / "warehouse.duckdb"), read_only=True) as conn:

        def one(sql: str) -> tuple:
            row = conn.sql(sql).fetchone()
            assert row is not None, sql
            return row

        bars = one("select count(*), count(distinct ticker) from market.bars")
        sessions = one("select count(distinct date) from market.bars")[0]
        assert bars == (200 * sessions, 200) and sessions > 740
        model = one(
            "select count(*), count(*) filter (where gate_decision = 'skipped'), "
            "max(train_rows), max(test_rows) from market.next_state_model"
        )
        # Trained (3 horizons at four cut-offs) on at most 50 names a date; tested on all.
        assert model[0] == 12 and model[1] == 0
        assert model[2] <= 50 * sessions and model[3] > 50 * 30
        predictions = one(
            "select count(distinct ticker), min(date) from market.predictions where horizon = 1"
        )
        assert predictions == (200, date(2019, 1, 2))
        for strategy in ("hybrid_alpha", "trend_only", "mean_reversion_only"):
            names = one(f"select count(distinct ticker) from {strategy}.alpha_scores")
            assert names == (200,)
            book = one(
                f"select count(distinct date), count(distinct ticker), min(equity) "
                f"from {strategy}.backtest"
            )
            assert book[0] > 240 and book[1] == 200 and book[2] > 0
            orders = one(f"select count(*) from {strategy}.orders")
            assert orders[0] >= 0
            report = one(f"select count(*) from {strategy}.backtest_report")
            assert report[0] > 0
        assert one("select count(distinct signal) from research.signal_evaluation")[0] > 4
