"""``quant-assets``: run the asset graph, export tables, inspect signals and predictions,
list the walk-forward models, report and compare strategies, converge, show status."""

from __future__ import annotations

import os
import sys
from datetime import date
from pathlib import Path
from typing import Annotated

import typer
from rich.console import Console
from rich.table import Table

from quant_assets.errors import QuantAssetsError
from quant_assets.settings import CONFIG_ENV, Settings, data_home, load_settings
from quant_assets.tickers import validate_tickers

app = typer.Typer(
    add_completion=False,
    no_args_is_help=True,
    help="quant_assets: a quant research pipeline as a Dagster asset graph.",
)
console = Console(stderr=False)
errors = Console(stderr=True, soft_wrap=True)  # never break a file path in an error

ConfigOption = Annotated[
    Path | None,
    typer.Option("--config", help="Config directory (default: $QUANT_ASSETS_CONFIG or configs/)."),
]
StartOption = Annotated[str | None, typer.Option("--start", help="First date, YYYY-MM-DD.")]
EndOption = Annotated[str | None, typer.Option("--end", help="Last date, YYYY-MM-DD.")]
TickersOption = Annotated[
    str | None, typer.Option("--tickers", help="Comma-separated tickers (default: the universe).")
]


def _settings(config: Path | None) -> Settings:
    if config is not None:
        os.environ[CONFIG_ENV] = str(config.resolve())  # the code location sees the same config
    return load_settings(config)


def _date(value: str | None, option: str) -> date | None:
    if value is None:
        return None
    try:
        return date.fromisoformat(value)
    except ValueError:
        raise QuantAssetsError(f"{option}: {value!r} is not a date (expected YYYY-MM-DD)") from None


def _tickers(value: str | None) -> list[str] | None:
    if value is None:
        return None
    symbols = [t.strip() for t in value.split(",")]
    if not any(symbols):
        raise QuantAssetsError("--tickers: no ticker given")
    return validate_tickers(symbols)


def _fail(exc: Exception) -> None:
    errors.print(f"[bold red]error:[/] {exc}", highlight=False)
    raise typer.Exit(code=1)


SelectOption = Annotated[
    str, typer.Option("--select", help="Comma-separated assets, or 'all'. Upstream included.")
]


def _selection(settings: Settings, select: str) -> list[str]:
    if select.strip() == "all":
        return list(_graph_assets(settings))
    return [s.strip() for s in select.split(",") if s.strip()]


def _graph_assets(settings: Settings) -> tuple[str, ...]:
    """Every asset (= stored table) of the graph for ``settings``, read from the Definitions."""
    from quant_assets.defs.definitions import build_definitions
    from quant_assets.engine.plan import all_assets

    return all_assets(build_definitions(settings, data_home()))


def _run_ranges(
    settings: Settings,
    chosen: list[str],
    start: date | None,
    end: date | None,
    tickers: list[str] | None,
    *,
    upstream: bool = True,
    tags: dict[str, str] | None = None,
) -> None:
    """Run the planned range runs with a progress bar (runs and partitions); exit 1 on failure."""
    from rich.progress import BarColumn, Progress, SpinnerColumn, TextColumn, TimeElapsedColumn

    from quant_assets.engine.plan import RunPlan
    from quant_assets.engine.runner import RunOutcome, materialize

    home = data_home()
    with Progress(
        SpinnerColumn(),
        TextColumn("{task.description}"),
        BarColumn(),
        TextColumn("{task.completed}/{task.total} partitions"),
        TimeElapsedColumn(),
        console=console,
        transient=False,
    ) as progress:
        task = progress.add_task("planning", total=None)

        def on_plan(plans: list[RunPlan]) -> None:
            total = sum(max(p.partitions, 1) for p in plans)
            progress.update(task, total=total, description=f"{len(plans)} run(s)")

        def on_run(plan: RunPlan, outcome: RunOutcome | None) -> None:
            if outcome is None:
                progress.update(task, description=f"running {plan.label}")
                return
            mark = "[green]ok[/]" if outcome.success else "[red]FAILED[/]"
            progress.console.print(
                f"{mark} {plan.label}: {plan.partitions} partitions in "
                f"{outcome.seconds:.1f}s (run {outcome.run_id[:8]})"
            )
            progress.advance(task, max(plan.partitions, 1))

        outcomes = materialize(
            settings,
            home,
            chosen,
            start,
            end,
            tickers,
            on_run=on_run,
            on_plan=on_plan,
            upstream=upstream,
            tags=tags,
        )
        progress.update(task, description="finished")
    failed = [o for o in outcomes if not o.success]
    if failed:
        outcome = failed[0]
        errors.print(f"[bold red]run {outcome.run_id} failed[/] ({outcome.plan.label})")
        if outcome.check_failures:
            errors.print("failed checks: " + ", ".join(outcome.check_failures))
        errors.print(outcome.error or "see the run in the Dagster UI", highlight=False)
        raise typer.Exit(code=1)
    console.print(f"[green]done[/]: {len(outcomes)} run(s); data in {home}")


@app.command()
def materialize(
    config: ConfigOption = None,
    select: SelectOption = "all",
    start: StartOption = None,
    end: EndOption = None,
    tickers: TickersOption = None,
    no_upstream: Annotated[
        bool,
        typer.Option(
            "--no-upstream",
            help="Only the selected assets, on the stored inputs (e.g. after editing a "
            "strategy YAML).",
        ),
    ] = False,
) -> None:
    """Materialise assets (and everything upstream) through Dagster for a date range."""
    try:
        settings = _settings(config)
        chosen = _selection(settings, select)
        first, last, symbols = _date(start, "--start"), _date(end, "--end"), _tickers(tickers)
        _run_ranges(settings, chosen, first, last, symbols, upstream=not no_upstream)
    except QuantAssetsError as exc:
        _fail(exc)


@app.command()
def backfill(
    start: Annotated[str, typer.Option("--start", help="First date, YYYY-MM-DD.")],
    end: Annotated[str, typer.Option("--end", help="Last date, YYYY-MM-DD.")],
    config: ConfigOption = None,
    tickers: TickersOption = None,
    select: SelectOption = "all",
) -> None:
    """Backfill a partition range: every date window touching [start, end] for the tickers
    (default: the universe), as few runs as the single-run backfill policies allow (one per
    partitions definition and contiguous ticker block), with progress. Upstream included."""
    import uuid

    try:
        settings = _settings(config)
        first, last = _date(start, "--start"), _date(end, "--end")
        assert first is not None and last is not None
        if last < first:
            raise QuantAssetsError(f"--end {last} is before --start {first}")
        chosen = _selection(settings, select)
        backfill_id = uuid.uuid4().hex[:8]
        console.print(f"backfill {backfill_id}: {', '.join(chosen)} over {first}..{last}")
        _run_ranges(
            settings,
            chosen,
            first,
            last,
            _tickers(tickers),
            tags={"quant_assets/backfill": backfill_id},
        )
    except QuantAssetsError as exc:
        _fail(exc)


@app.command()
def converge(config: ConfigOption = None) -> None:
    """Bring every asset to complete and current now, in this process: the converge sensor's
    plan (missing partitions whose inputs exist, partitions older than an input, and what
    reads them), one range run at a time, until nothing is left or a run fails."""
    from quant_assets.engine.converge import converge_in_process
    from quant_assets.engine.plan import RunPlan
    from quant_assets.engine.runner import RunOutcome

    try:
        settings = _settings(config)

        def on_run(plan: RunPlan, outcome: RunOutcome | None) -> None:
            if outcome is None:
                return
            mark = "[green]ok[/]" if outcome.success else "[red]FAILED[/]"
            console.print(
                f"{mark} {plan.label} in {outcome.seconds:.1f}s (run {outcome.run_id[:8]})"
            )
            if outcome.error:
                errors.print(outcome.error)

        outcomes = converge_in_process(settings, data_home(), on_run=on_run)
    except QuantAssetsError as exc:
        _fail(exc)
        return
    if outcomes and not outcomes[-1].success:
        raise typer.Exit(1)
    console.print(
        f"[green]done[/]: {len(outcomes)} run(s); every asset is complete and current"
        if outcomes
        else "nothing to do: every asset is complete and current"
    )


@app.command()
def update(
    config: ConfigOption = None,
    session: Annotated[
        str | None,
        typer.Option(
            "--session",
            help="The session to ingest, YYYY-MM-DD (default: the latest completed session).",
        ),
    ] = None,
) -> None:
    """The daily path without a daemon: the daily schedule's runs for one session, then
    declarative automation until every downstream asset (to each strategy's orders) is
    current. Under `dagster dev` the schedule and the automation sensor do this."""
    from quant_assets.engine.daily import run_daily_update
    from quant_assets.engine.runner import RunOutcome

    try:
        settings = _settings(config)
        day = _date(session, "--session") or latest_session(settings)

        def on_run(run: RunOutcome) -> None:
            mark = "[green]ok[/]" if run.success else "[red]FAILED[/]"
            console.print(f"{mark} {run.plan.label} in {run.seconds:.1f}s (run {run.run_id[:8]})")

        outcome = run_daily_update(settings, data_home(), day, on_run=on_run)
    except QuantAssetsError as exc:
        _fail(exc)
        return
    if outcome.skipped:
        console.print(f"nothing to do for {day}: {outcome.skipped}")
        return
    console.print(
        f"[green]done[/]: session {day}: {len(outcome.runs)} run(s), {outcome.ticks} automation "
        f"tick(s), {outcome.seconds:.1f}s"
    )


def latest_session(settings: Settings) -> date:
    """The latest session whose close has passed (capped at universe.yaml's end)."""
    from datetime import datetime, timedelta
    from zoneinfo import ZoneInfo

    from quant_assets.calendar import last_session_on_or_before
    from quant_assets.defs.schedules import close_schedule

    universe = settings.universe
    when = close_schedule(universe.calendar, settings.operations.schedule.minutes_after_close)
    now = datetime.now(ZoneInfo(when.timezone))
    today = now.date() if now.time() >= when.close else now.date() - timedelta(days=1)
    if universe.end is not None:
        today = min(today, universe.end)
    return last_session_on_or_before(universe.calendar, today)


@app.command()
def export(
    asset: Annotated[
        str,
        typer.Argument(
            help="a stored asset: bars, signals, predictions, hybrid_alpha/positions, ... "
            "(every table `status` lists)"
        ),
    ],
    out: Annotated[Path, typer.Option("--out", help="Output Parquet file.")],
    config: ConfigOption = None,
    start: StartOption = None,
    end: EndOption = None,
    tickers: TickersOption = None,
) -> None:
    """Export a stored table (optionally a date range and tickers) to Parquet."""
    from quant_assets.store import read_table

    try:
        settings = _settings(config)
        frame = read_table(
            data_home(),
            asset,
            start=_date(start, "--start"),
            end=_date(end, "--end"),
            tickers=_tickers(tickers),
            known=_graph_assets(settings),
        )
    except QuantAssetsError as exc:
        _fail(exc)
        return
    out.parent.mkdir(parents=True, exist_ok=True)
    frame.write_parquet(out)
    console.print(f"wrote {frame.height} rows × {frame.width} columns to {out}")


@app.command("inspect-signals")
def inspect_signals(
    ticker: Annotated[str, typer.Argument(help="Ticker symbol, e.g. AAPL")],
    config: ConfigOption = None,
    start: StartOption = None,
    end: EndOption = None,
    limit: Annotated[int, typer.Option("--limit", help="Most recent rows to show.")] = 20,
) -> None:
    """Show a ticker's signals (and the close) as a readable table."""
    from quant_assets.store import read_table

    try:
        _settings(config)
        (symbol,) = validate_tickers([ticker])
        first, last = _date(start, "--start"), _date(end, "--end")
        signals = read_table(data_home(), "signals", start=first, end=last, tickers=[symbol])
        bars = read_table(data_home(), "bars", start=first, end=last, tickers=[symbol])
        bars = bars.select("date", "ticker", "close")
    except QuantAssetsError as exc:
        _fail(exc)
        return
    frame = signals.join(bars, on=["date", "ticker"], how="left").sort("date").tail(limit)
    if frame.is_empty():
        _fail(QuantAssetsError(f"no signals stored for {symbol} in that range"))
    table = Table(title=f"signals for {symbol} ({frame.height} most recent rows)")
    columns = ["date", "close", "trend_alpha", "mean_rev_alpha", "vol_alpha", "rel_strength_alpha"]
    for column in columns:
        table.add_column(column, justify="right")
    for row in frame.select(columns).iter_rows():
        day, close, *alphas = row
        table.add_row(
            str(day),
            "—" if close is None else f"{close:,.2f}",
            *("—" if v is None else f"{v:+.3f}" for v in alphas),
        )
    console.print(table)


@app.command("inspect-predictions")
def inspect_predictions(
    ticker: Annotated[str, typer.Argument(help="Ticker symbol, e.g. AAPL")],
    config: ConfigOption = None,
    horizon: Annotated[int, typer.Option("--horizon", help="Sessions ahead.")] = 5,
    start: StartOption = None,
    end: EndOption = None,
    limit: Annotated[int, typer.Option("--limit", help="Most recent rows to show.")] = 10,
) -> None:
    """Show a ticker's next-state predictions and the regime of each day."""
    from quant_assets.store import read_table

    try:
        _settings(config)
        (symbol,) = validate_tickers([ticker])
        first, last = _date(start, "--start"), _date(end, "--end")
        predictions = read_table(
            data_home(), "predictions", start=first, end=last, tickers=[symbol]
        )
        regimes = read_table(data_home(), "regimes", start=first, end=last)
        regimes = regimes.select("date", "regime_label")
    except QuantAssetsError as exc:
        _fail(exc)
        return
    frame = (
        predictions.filter(predictions["horizon"] == horizon)
        .join(regimes, on="date", how="left")
        .sort("date")
        .tail(limit)
    )
    if frame.is_empty():
        _fail(QuantAssetsError(f"no {horizon}-day predictions stored for {symbol}"))
    table = Table(title=f"{horizon}-session next-state predictions for {symbol}")
    for column in ("date", "regime", "predicted", "P(down)", "P(flat)", "P(up)", "model"):
        table.add_column(column, justify="right", no_wrap=True)
    for row in frame.iter_rows(named=True):
        table.add_row(
            str(row["date"]),
            row["regime_label"] or "—",
            row["pred_state"],
            *(f"{row[c]:.3f}" for c in ("prob_down", "prob_flat", "prob_up")),
            f"v{row['model_version']}",
        )
    console.print(table)


@app.command()
def models(config: ConfigOption = None) -> None:
    """The walk-forward record: each cut-off's version, gate decision and test metrics."""
    from quant_assets.store import read_table

    try:
        settings = _settings(config)
        frame = read_table(data_home(), "next_state_model")
    except QuantAssetsError as exc:
        _fail(exc)
        return
    import polars as pl

    summary = (
        frame.group_by("cutoff")
        .agg(
            pl.col("version").first(),
            pl.col("gate_decision").first(),
            pl.col("test_log_loss").mean(),
            pl.col("test_balanced_accuracy").mean(),
            pl.col("test_information_coefficient").mean(),
            pl.col("champion_version").first(),
        )
        .sort("cutoff")
    )
    table = Table(title="next_state_model walk-forward (test metrics averaged over horizons)")
    for column in ("cut-off", "version", "gate", "log loss", "bal. acc.", "IC", "champion"):
        table.add_column(column, justify="right")
    for row in summary.iter_rows():
        cutoff, version, decision, loss, balanced, ic, champion = row
        table.add_row(
            str(cutoff),
            f"v{version}" if version else "—",
            decision,
            *("—" if v is None else f"{v:.4f}" for v in (loss, balanced, ic)),
            f"v{champion}" if champion else "—",
        )
    console.print(table)
    mlflow_cfg = settings.models.mlflow
    console.print(
        f"MLflow: model {mlflow_cfg.registered_model} (@champion), experiments "
        f"{mlflow_cfg.experiment}/next_state and /regime_hmm; "
        f"`make mlflow-ui` → {mlflow_cfg.ui_url}"
    )


def _strategy(settings: Settings, name: str) -> str:
    if name not in settings.strategies:
        known = ", ".join(settings.strategies) or "none"
        raise QuantAssetsError(
            f"unknown strategy {name!r}; configured in {settings.config_dir / 'strategies'}: "
            f"{known}"
        )
    return name


def _report_rows(config: Path | None, names: list[str]) -> list[dict]:
    from quant_assets.store import read_report

    settings = _settings(config)
    home = data_home()
    return [read_report(home, _strategy(settings, name)) for name in names]


def _metric_table(title: str, reports: list[dict]) -> Table:
    from quant_assets.engine.reporting import SUMMARY, format_metric

    table = Table(title=title)
    table.add_column("metric")
    for report in reports:
        table.add_column(report["strategy"], justify="right")
    table.add_row("period", *(f"{r['period_start']} .. {r['period_end']}" for r in reports))
    for metric in SUMMARY:
        table.add_row(metric, *(format_metric(metric, r.get(metric)) for r in reports))
    table.add_row("promoted", *("yes" if r["promoted"] else "no" for r in reports))
    return table


@app.command()
def report(
    strategy: Annotated[
        str | None,
        typer.Argument(help="Strategy name (a file in strategies/); default: every strategy"),
    ] = None,
    config: ConfigOption = None,
) -> None:
    """A strategy's backtest report: metrics, promotion decision, HTML and MLflow run."""
    try:
        names = [strategy] if strategy else list(_settings(config).strategies)
        if not names:
            raise QuantAssetsError("no strategies configured (configs/strategies/*.yaml)")
        rows = _report_rows(config, names)
    except QuantAssetsError as exc:
        _fail(exc)
        return
    for row in rows:
        console.print(_metric_table(f"backtest report: {row['strategy']}", [row]))
        decision = "promoted" if row["promoted"] else "refused"
        console.print(f"promotion: {decision} — {row['promotion_reason']}")
        console.print(f"HTML report: {row['report_path']}")
        console.print(f"MLflow run:  {row['mlflow_run_id']} (`make mlflow-ui`)\n")


def _study(settings: Settings, name: str) -> str:
    if name not in settings.studies:
        known = ", ".join(settings.studies) or "none"
        raise QuantAssetsError(
            f"unknown study {name!r}; configured in {settings.config_dir / 'studies'}: {known}"
        )
    return name


def _decision(name: str) -> dict:
    from quant_assets.store import read_study_decision

    return read_study_decision(data_home(), name)


@app.command()
def study(
    name: Annotated[str, typer.Argument(help="Study name (a file in configs/studies/)")],
    config: ConfigOption = None,
) -> None:
    """Run a parameter study through Dagster (and whatever it reads that is not stored yet):
    every trial, the walk-forward selection, DSR / PBO / SPA and the gate decision."""
    from quant_assets.defs.studies import STUDY_TABLES, study_reads
    from quant_assets.store import stored_tables

    try:
        settings = _settings(config)
        _study(settings, name)
        reads = {key.to_user_string() for key in study_reads(settings, settings.studies[name])}
        # On the stored research tables when they are there; otherwise build them first.
        missing = reads - stored_tables(data_home())
        selection = [f"{name}/{table}" for table in STUDY_TABLES]
        _run_ranges(settings, selection, None, None, None, upstream=bool(missing))
        row = _decision(name)
    except QuantAssetsError as exc:
        _fail(exc)
        return
    table = Table(title=f"study {name}: {row['n_trials_study']} trials of {row['base_strategy']}")
    table.add_column("figure")
    table.add_column("value", justify="right")
    for key in (
        "oos_start",
        "oos_end",
        "oos_sharpe",
        "benchmark_sharpe",
        "deflated_sharpe",
        "n_trials_ledger",
        "n_trials_effective",
        "deflated_sharpe_effective",
        "pbo",
        "spa_pvalue",
        "spa_pvalue_volatility_matched",
        "in_sample_mean_objective",
        "out_of_sample_mean_objective",
    ):
        value = row[key]
        table.add_row(key, f"{value:.4f}" if isinstance(value, float) else str(value))
    console.print(table)
    console.print(f"selected trial {row['selected_trial']}: {row['selected_params']}")
    decision = "promoted" if row["promoted"] else "refused"
    console.print(f"gate: {decision} — {row['reasons']}")
    console.print(f"HTML report: {row['report_path']}")
    console.print(f"MLflow run:  {row['mlflow_run_id']} (`make mlflow-ui`)")


@app.command()
def promote(
    name: Annotated[str, typer.Argument(help="Study whose selection to promote")],
    as_name: Annotated[
        str | None,
        typer.Option("--name", help="Strategy name to write (default: <study>_selected)."),
    ] = None,
    replace: Annotated[
        bool, typer.Option("--replace", help="Overwrite an existing strategy file.")
    ] = False,
    config: ConfigOption = None,
) -> None:
    """Write a study's selection as a strategy YAML (with its provenance) if it passed the
    gates; it then gets alpha, positions, a backtest, orders and a paper book like any other."""
    import json

    from quant_assets.research.ledger import read_ledger
    from quant_assets.research.promotion import (
        promoted_document,
        record_promotion,
        write_strategy_file,
    )
    from quant_assets.settings import STRATEGY_DIR
    from quant_assets.store import database_path

    try:
        settings = _settings(config)
        _study(settings, name)
        row = _decision(name)
        home = data_home()
        ledger = read_ledger(database_path(home))
        chosen = ledger.filter(ledger["config_hash"] == row["selected_hash"])
        if chosen.is_empty():
            raise QuantAssetsError(
                f"the ledger has no configuration {row['selected_hash']}: run the study again"
            )
        document = promoted_document(json.loads(chosen["config"][0]), row)
        strategy = as_name or f"{name}_selected"
        path = settings.config_dir / STRATEGY_DIR / f"{strategy}.yaml"
        write_strategy_file(path, document, replace=replace)
        try:
            load_settings(settings.config_dir)
        except QuantAssetsError:
            path.unlink()  # never leave a strategy file the platform refuses
            raise
        record_promotion(database_path(home), strategy, document)
    except QuantAssetsError as exc:
        _fail(exc)
        return
    console.print(f"[green]promoted[/] {name} → strategy {strategy}: {path}")
    console.print(
        f"figures: deflated Sharpe {row['deflated_sharpe']:.3f} (N = {row['n_trials_ledger']}), "
        f"PBO {row['pbo']:.3f}, SPA p-value {row['spa_pvalue']:.3f}"
    )
    console.print(
        f"next: `quant-assets materialize --select {strategy}/orders` (or let the converge "
        "sensor build it) for its orders and paper book"
    )


@app.command()
def compare(
    strategies: Annotated[list[str], typer.Argument(help="Two or more strategy names")],
    config: ConfigOption = None,
) -> None:
    """Strategies side by side: the metrics of their stored reports."""
    try:
        if len(strategies) < 2:
            raise QuantAssetsError("compare needs at least two strategies")
        rows = _report_rows(config, strategies)
    except QuantAssetsError as exc:
        _fail(exc)
        return
    console.print(_metric_table("strategies compared", rows))
    for row in rows:
        console.print(f"{row['strategy']}: {row['report_path']}")


@app.command()
def orders(
    strategy: Annotated[
        str | None, typer.Argument(help="Strategy name (default: every strategy).")
    ] = None,
    config: ConfigOption = None,
) -> None:
    """The orders to place at the next session (from the latest positions) and the paper
    book they trade; says when the kill switch made them flat-only."""
    from quant_assets.store import read_latest_orders

    try:
        settings = _settings(config)
        names = [_strategy(settings, strategy)] if strategy else list(settings.strategies)
        home = data_home()
        for name in names:
            frame, book = read_latest_orders(home, name)
            if book is None:
                console.print(f"{name}: no paper book yet")
                continue
            title = (
                f"{name}: orders decided at the close of {book['date']} (fill next session); "
                f"paper equity {book['equity']:,.2f}, cash {book['cash']:,.2f}, "
                f"gross {book['gross_exposure']:.2f}"
            )
            if frame.height and bool(frame["kill_switch"].any()):
                title += " [KILL SWITCH: flat-only]"
            table = Table(title=title)
            for column in ("ticker", "side", "quantity", "reference_price", "notional", "reasons"):
                table.add_column(column)
            for row in frame.iter_rows(named=True):
                table.add_row(
                    row["ticker"],
                    row["side"],
                    f"{row['quantity']:,.0f}",
                    f"{row['reference_price']:,.2f}",
                    f"{row['notional']:,.2f}",
                    row["reason_codes"],
                )
            console.print(table if frame.height else f"{title}\n  no orders")
    except QuantAssetsError as exc:
        _fail(exc)


@app.command()
def status(config: ConfigOption = None) -> None:
    """How complete and current the graph is, per asset, why not, and where results are."""
    from quant_assets.engine.status import graph_status
    from quant_assets.store import table_summary

    try:
        settings = _settings(config)
        home = data_home()
        report = graph_status(settings, home)
    except QuantAssetsError as exc:
        _fail(exc)
        return
    graph = Table(title="how complete and current each asset is (partitions)")
    graph.add_column("asset", no_wrap=True)
    for column in ("partitions", "done", "missing", "stale", "failed", "oldest stale"):
        graph.add_column(column, justify="right", no_wrap=True)
    for row in report.assets:
        graph.add_row(
            row.asset,
            str(row.expected),
            str(row.materialized),
            str(row.missing or ""),
            str(row.stale or ""),
            str(row.failed or ""),
            row.oldest_stale or "",
            style=None if row.complete else "yellow",
        )
    tables = Table(title=f"tables in {home / 'warehouse.duckdb'}")
    for column in ("table", "rows", "tickers", "first date", "last date"):
        tables.add_column(column)
    for stored in table_summary(home, _graph_assets(settings)):
        tables.add_row(*(str(v) for v in stored))
    console.print(f"config directory: {settings.config_dir}")
    console.print(f"data directory:   {home}")
    Console(width=max(console.width, 110)).print(graph)  # asset names never cut in a pipe
    incomplete = sum(not a.complete for a in report.assets)
    if not incomplete:
        console.print("[green]every asset is complete and current[/]")
    else:
        console.print(
            f"[yellow]{incomplete} asset(s) not complete and current[/]: the converge sensor "
            "brings them up to date under the daemon (make ui), or run "
            "`quant-assets materialize --select all`"
        )
    if report.problems:
        console.print("needs attention:")
    for problem in report.problems:
        console.print(f"[red]{problem.asset}[/] {problem.what}\n  why:  {problem.reason}")
        console.print(f"  do:   {problem.action}")
    console.print(tables)
    console.print(
        "Dagster UI:  make ui   (or: DAGSTER_HOME="
        f"{home / 'dagster'} dagster dev -h 127.0.0.1 -p 3000) → http://127.0.0.1:3000"
    )
    console.print(
        f"MLflow UI:   make mlflow-ui   (or: mlflow ui --backend-store-uri "
        f"sqlite:///{home / 'mlflow' / 'mlflow.db'} -h 127.0.0.1 -p 5000) → "
        f"{settings.models.mlflow.ui_url}"
    )


def main() -> None:  # pragma: no cover - console entry point
    try:
        app()
    except QuantAssetsError as exc:
        errors.print(f"[bold red]error:[/] {exc}")
        sys.exit(1)


if __name__ == "__main__":  # pragma: no cover
    main()
