"""The CLI as a user meets it: bad input is refused loudly and writes nothing downstream."""

from __future__ import annotations

from datetime import date

import duckdb
import polars as pl
import pytest
import yaml

BAD_TICKER = "BBB"
BAD_DAY = date(2020, 2, 12)


def corrupt(project, how: str) -> None:
    frame = project.bars(BAD_TICKER)
    day = pl.col("date") == BAD_DAY
    if how == "negative_price":
        frame = frame.with_columns(
            pl.when(day).then(-pl.col("close")).otherwise(pl.col("close")).alias("close")
        )
    elif how == "duplicate_date":
        frame = pl.concat([frame, frame.filter(day)]).sort("date")
    elif how == "nan_close":
        frame = frame.with_columns(
            pl.when(day).then(float("nan")).otherwise(pl.col("close")).alias("close")
        )
    elif how == "missing_close_column":
        frame = frame.drop("close")
    elif how == "unparsable_date":
        frame = frame.with_columns(
            pl.when(day)
            .then(pl.lit("2020-02-31"))
            .otherwise(pl.col("date").cast(pl.Utf8))
            .alias("date")
        )
    project.write(BAD_TICKER, frame)


@pytest.mark.parametrize(
    ("how", "expected"),
    [
        ("negative_price", ["BBB", "2020-02-12", "expect_column_values_to_be_between", "close"]),
        ("duplicate_date", ["BBB", "2020-02-12", "compound_columns_to_be_unique"]),
        ("nan_close", ["BBB", "2020-02-12", "not_be_null", "close"]),
        ("missing_close_column", ["BBB.csv", "close", "missing required column"]),
        ("unparsable_date", ["BBB.csv", "2020-02-31", "unparsable date"]),
    ],
)
def test_bad_input_fails_naming_ticker_date_and_rule_and_writes_nothing_downstream(
    make_project, cli, how, expected
):
    project = make_project(["AAA", "BBB", "CCC"], date(2020, 1, 1), date(2020, 3, 31))
    corrupt(project, how)
    result = cli(project, "materialize")
    assert result.exit_code != 0
    for text in expected:
        assert text in result.output, (text, result.output)
    database = project.home / "warehouse.duckdb"
    with duckdb.connect(str(database), read_only=True) as conn:
        tables = {
            r[0]
            for r in conn.execute("select table_name from information_schema.tables").fetchall()
        }
        for downstream in ("bars", "features", "signals"):
            if downstream in tables:
                rows = conn.execute(
                    f"select count(*) from market.{downstream} where ticker = ?", [BAD_TICKER]
                ).fetchall()[0][0]
                assert rows == 0, f"{downstream} was written for the bad ticker"
        assert "features" not in tables and "signals" not in tables


def test_materialize_export_and_inspect_signals_round_trip(make_project, cli, tmp_path):
    project = make_project(["AAA", "BBB"], date(2020, 1, 1), date(2020, 2, 29))
    assert cli(project, "materialize", "--select", "signals").exit_code == 0
    out = tmp_path / "signals.parquet"
    result = cli(
        project, "export", "signals", "--out", str(out), "--tickers", "AAA", "--start", "2020-02-01"
    )
    assert result.exit_code == 0, result.output
    exported = pl.read_parquet(out)
    assert exported["ticker"].unique().to_list() == ["AAA"]
    assert exported["date"].min() >= date(2020, 2, 1)
    shown = cli(project, "inspect-signals", "AAA", "--limit", "3")
    assert shown.exit_code == 0 and "trend_alpha" in shown.output and "2020-02-28" in shown.output
    status = cli(project, "status")
    assert status.exit_code == 0 and "signals" in status.output
    assert "not complete and current" in status.output  # only signals and what it reads
    converged = cli(project, "converge")
    assert converged.exit_code == 0, converged.output
    assert "every asset is complete and current" in cli(project, "status").output
    assert "nothing to do" in cli(project, "converge").output


MALFORMED_TICKERS = ["AAPL; DROP TABLE bars", "../etc", "", "A" * 100]


@pytest.mark.parametrize("ticker", MALFORMED_TICKERS)
@pytest.mark.parametrize("command", ["materialize", "backfill"])
def test_malformed_tickers_are_refused_before_anything_runs(make_project, cli, ticker, command):
    project = make_project(["AAA"], date(2020, 1, 1), date(2020, 1, 31))
    dates = ["--start", "2020-01-01", "--end", "2020-01-31"] if command == "backfill" else []
    result = cli(project, command, "--tickers", ticker or ",", *dates)
    assert result.exit_code != 0
    assert "invalid ticker" in result.output or "no ticker given" in result.output, result.output
    assert not (project.home / "warehouse.duckdb").exists()


@pytest.mark.parametrize("ticker", MALFORMED_TICKERS)
def test_malformed_tickers_in_universe_yaml_are_refused_naming_the_file(make_project, cli, ticker):
    project = make_project(["AAA"], date(2020, 1, 1), date(2020, 1, 31))
    universe = yaml.safe_load((project.config_dir / "universe.yaml").read_text())
    universe["tickers"] = ["AAA", ticker]
    (project.config_dir / "universe.yaml").write_text(yaml.safe_dump(universe))
    result = cli(project, "update", "--session", "2020-01-02")
    assert result.exit_code != 0
    assert "universe.yaml" in result.output and "tickers" in result.output
    assert not (project.home / "warehouse.duckdb").exists()
    assert not (project.home / "dagster").exists()


def test_backfill_runs_a_partition_range_in_as_few_runs_as_the_policies_allow(make_project, cli):
    project = make_project(["AAA", "BBB", "CCC"], date(2020, 1, 1), date(2020, 6, 30))
    result = cli(
        project,
        "backfill",
        "--start",
        "2020-02-10",
        "--end",
        "2020-04-05",
        "--tickers",
        "AAA,BBB",
        "--select",
        "features",
    )
    assert result.exit_code == 0, result.output
    # benchmark (with the features' look-back) in one run, bars + features in one run.
    assert "done: 2 run(s)" in result.output
    assert "benchmark_bars 2020-01-01..2020-04-01: 4 partitions" in result.output
    assert "bars, features 2020-02-01..2020-04-01 × AAA..BBB (2 ticker(s)): 6 partitions" in (
        result.output.replace("\n", " ")
    )
    with duckdb.connect(str(project.home / "warehouse.duckdb"), read_only=True) as conn:
        first, last, tickers = conn.execute(
            "select min(date), max(date), list(distinct ticker order by ticker) "
            "from market.features"
        ).fetchone()
    assert (first.month, last.month, tickers) == (2, 4, ["AAA", "BBB"])


def test_backfill_refuses_an_inverted_range(make_project, cli):
    project = make_project(["AAA"], date(2020, 1, 1), date(2020, 3, 31))
    result = cli(project, "backfill", "--start", "2020-03-01", "--end", "2020-02-01")
    assert result.exit_code != 0 and "before --start" in result.output


def test_a_malformed_config_fails_fast_naming_file_and_key(make_project, cli):
    project = make_project(["AAA"], date(2020, 1, 1), date(2020, 1, 31))
    (project.config_dir / "universe.yaml").write_text("tickers: [AAA]\nbenchmark: IDX\nstart: x\n")
    result = cli(project, "materialize")
    assert result.exit_code != 0
    assert "universe.yaml" in result.output and "start" in result.output


def test_report_and_compare_print_the_metrics_the_decision_and_where_the_html_is(pipeline, cli):
    shown = cli(pipeline, "report", "trend_only")
    assert shown.exit_code == 0, shown.output
    for text in ("sharpe", "deflated_sharpe", "spa_pvalue", "promotion:", "trend_only.html"):
        assert text in shown.output
    every = cli(pipeline, "report")
    assert every.exit_code == 0 and every.output.count("HTML report:") == 3
    compared = cli(pipeline, "compare", "hybrid_alpha", "trend_only")
    assert compared.exit_code == 0, compared.output
    assert "hybrid_alpha" in compared.output and "trend_only" in compared.output
    unknown = cli(pipeline, "report", "no_such_strategy")
    assert unknown.exit_code != 0 and "unknown strategy 'no_such_strategy'" in unknown.output


def test_orders_prints_the_next_sessions_orders_and_the_paper_book(pipeline, cli):
    result = cli(pipeline, "orders", "hybrid_alpha")
    assert result.exit_code == 0, result.output
    text = result.output.replace("\n", " ")
    assert "hybrid_alpha: orders decided at the close of 2019-12-31" in text
    assert "paper equity" in text and "KILL SWITCH" not in text
    unknown = cli(pipeline, "orders", "nope")
    assert unknown.exit_code != 0 and "nope" in unknown.output
