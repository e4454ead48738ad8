"""The strategy half of the graph: one set of assets per file in ``configs/strategies/``.

For a strategy ``s`` the factory builds ``s/alpha_scores`` → ``s/positions`` → ``s/backtest``
(date × ticker, from the first model cut-off so every strategy is judged on the same
out-of-sample span) and ``s/backtest_report`` (one per strategy). Their tables live in the
DuckDB schema ``s``; adding a strategy is adding a YAML file.

Alpha scores and positions are decided **across tickers** per date, and positions and the book
are **path-dependent**. So every run computes the whole cross-section from its inputs (all
tickers), continues from the stored state at the close before its first date, checks the
whole result, and writes the rows of its own tickers. A one-window update advances the book
from yesterday's state; a range runs the kernel once over the range.
"""

from collections.abc import Iterator
from datetime import date
from pathlib import Path

import dagster as dg
import polars as pl

from quant_assets.defs.common import STORED, check_metadata, code_version
from quant_assets.defs.partitions import (
    DATE_DIMENSION,
    PARTITION_EXPR,
    TICKER_DIMENSION,
    PartitionRectangle,
    days_for_sessions,
    periods_for_sessions,
    rectangle_from_keys,
    ticker_date_partitions,
)
from quant_assets.defs.resources import WarehouseResource
from quant_assets.settings import PREDICTION_COMPONENT, Settings, StrategySettings


def _cross_section(start_offset: int = 0, end_offset: int = 0) -> dg.MultiPartitionMapping:
    """Every ticker's partitions of the same date windows (shifted by the offsets)."""
    return dg.MultiPartitionMapping(
        {
            DATE_DIMENSION: dg.DimensionPartitionMapping(
                DATE_DIMENSION,
                dg.TimeWindowPartitionMapping(
                    start_offset=start_offset,
                    end_offset=end_offset,
                    allow_nonexistent_upstream_partitions=True,
                ),
            ),
            TICKER_DIMENSION: dg.DimensionPartitionMapping(
                TICKER_DIMENSION, dg.AllPartitionMapping()
            ),
        }
    )


def _by_date() -> dg.MultiToSingleDimensionPartitionMapping:
    return dg.MultiToSingleDimensionPartitionMapping(partition_dimension_name=DATE_DIMENSION)


def strategy_asset_names(settings: Settings) -> list[str]:
    """The strategy assets as user strings (``s/alpha_scores`` ...), in graph order."""
    names = []
    for strategy in settings.strategies:
        names += [f"{strategy}/{a}" for a in ("alpha_scores", "positions", "backtest")]
    return names


def report_asset_names(settings: Settings) -> list[str]:
    return [f"{s}/backtest_report" for s in settings.strategies]


def stored_state_rows(
    warehouse: WarehouseResource, schema: str, table: str, before: date, sessions: int
) -> pl.DataFrame:
    """The stored rows of the last ``sessions`` dates before ``before`` (empty if none)."""
    if not warehouse.table_exists(table, schema=schema):
        return pl.DataFrame()
    return warehouse.read_sql(
        "select * from {table} where date in (select distinct date from {table} "
        "where date < ? order by date desc limit ?) order by date, ticker",
        table,
        [before, sessions],
        schema=schema,
    )


def require_continuity(
    rows: pl.DataFrame,
    rect: PartitionRectangle,
    first_start: date,
    previous_window: date,
    what: str,
) -> None:
    """A range after the first window continues from the stored close before it."""
    if rect.start <= first_start:
        return
    last = rows["date"].max() if not rows.is_empty() else None
    if last is None or not isinstance(last, date) or last < previous_window:
        raise dg.Failure(
            description=(
                f"{what} for {rect.start} continues from the book at the close before it, "
                f"which is not stored (last stored date: {last or 'none'}); materialise the "
                f"window {previous_window} first (ranges run in order)"
            )
        )


def require_cross_section(rows: pl.DataFrame, bars: pl.DataFrame, key: dg.AssetKey) -> None:
    """Refuse to decide across tickers on a partial cross-section: every ticker with a bar in
    the range must have rows in ``rows`` (a backfill split per ticker may not have written
    the others yet)."""
    have = set(rows["ticker"].unique().to_list()) if rows.height else set()
    missing = sorted(set(bars["ticker"].unique().to_list()) - have)
    if missing:
        raise dg.Failure(
            description=(
                f"{key.to_user_string()} has no rows for {', '.join(missing)} in this range: "
                "decisions across tickers need every ticker; materialise it for all tickers "
                "first (`quant-assets materialize` runs them together)"
            )
        )


def _check(name: str, report, rect: PartitionRectangle) -> dg.AssetCheckResult:
    return dg.AssetCheckResult(
        check_name=name,
        passed=report.success,
        metadata=check_metadata(report, rect.windows, rect.tickers),
    )


def build_strategy_assets(settings: Settings) -> list:
    """Every strategy's alpha_scores, positions, backtest, backtest_report, orders and
    paper_book."""
    from quant_assets.defs.order_assets import build_order_assets

    out: list = []
    for strategy in settings.strategies.values():
        out += _strategy_assets(settings, strategy)
        out += build_order_assets(settings, strategy)
    return out


def _strategy_assets(settings: Settings, strategy: StrategySettings) -> list:
    from quant_assets.risk import history_sessions, state_lookback_sessions

    universe = settings.universe
    grain = universe.partition_grain
    name = strategy.name
    first_cutoff = settings.models.resolved_first_cutoff(universe.start)
    partitions = ticker_date_partitions(universe, start=first_cutoff)
    date_def = partitions.get_partitions_def_for_dimension(DATE_DIMENSION)
    assert isinstance(date_def, dg.TimeWindowPartitionsDefinition)
    first_key = date_def.get_first_partition_key()
    assert first_key is not None
    first_start = date.fromisoformat(first_key)
    stored = {**STORED, "backfill_policy": dg.BackfillPolicy.single_run()}
    tickers = list(universe.tickers)
    uses_prediction = PREDICTION_COMPONENT in strategy.alpha.components
    alpha_key = dg.AssetKey([name, "alpha_scores"])
    positions_key = dg.AssetKey([name, "positions"])
    backtest_key = dg.AssetKey([name, "backtest"])
    table_metadata = {"partition_expr": PARTITION_EXPR, "schema": name}
    position_history = history_sessions(strategy)
    book_history = max(strategy.backtest.adv_window, strategy.backtest.vol_window) + 1

    def previous_window(rect: PartitionRectangle) -> date:
        window = date_def.get_prev_partition_window(
            date_def.time_window_for_partition_key(rect.start.isoformat()).start
        )
        return window.start.date() if window else rect.start

    alpha_ins = {
        "signals": dg.AssetIn(partition_mapping=_cross_section()),
        "regimes": dg.AssetIn(partition_mapping=_by_date()),
    }
    if uses_prediction:
        alpha_ins["predictions"] = dg.AssetIn(partition_mapping=_cross_section())

    @dg.asset(
        key=alpha_key,
        partitions_def=partitions,
        **stored,
        group_name=name,
        code_version=code_version(strategy.alpha),
        ins=alpha_ins,
        metadata=table_metadata,
        description=f"{strategy.description}\n\nAlpha scores: the regime-weighted ensemble.",
        check_specs=[
            dg.AssetCheckSpec(
                "alpha_scores_valid",
                asset=alpha_key,
                blocking=True,
                description="one row per (ticker, date), score in [-1, 1], confidence in [0, 1]",
            )
        ],
    )
    def alpha_scores(context: dg.AssetExecutionContext, **inputs: pl.DataFrame) -> Iterator:
        """Regime-weighted, confidence-weighted ensemble of the strategy's components with a
        disagreement penalty and a robust cross-sectional z-score (seed 003 §3.1, 004 §3.7)."""
        from quant_assets.meta import combine_signals
        from quant_assets.quality.derived import validate_alpha_scores

        rect = rectangle_from_keys(context.partition_keys, partitions)
        signals = inputs["signals"].filter(
            (pl.col("date") >= rect.start) & (pl.col("date") < rect.end)
        )
        try:
            scores = combine_signals(
                signals, inputs.get("predictions"), inputs["regimes"], strategy.alpha
            )
        except ValueError as exc:
            raise dg.Failure(description=f"{alpha_key.to_user_string()}: {exc}") from exc
        report = validate_alpha_scores(scores)
        yield _check("alpha_scores_valid", report, rect)
        if not report.success:
            raise dg.Failure(description=report.summary())
        out = scores.filter(pl.col("ticker").is_in(list(rect.tickers)))
        yield dg.Output(
            out,
            metadata={
                "rows": out.height,
                "mean_confidence": round(float(out["confidence"].mean() or 0.0), 4),
                "mean_disagreement": round(float(out["disagreement"].mean() or 0.0), 4),
            },
        )

    @dg.asset(
        key=positions_key,
        partitions_def=partitions,
        **stored,
        group_name=name,
        code_version=code_version(strategy.sizing, strategy.risk),
        ins={
            "alpha_scores": dg.AssetIn(key=alpha_key, partition_mapping=_cross_section()),
            "regimes": dg.AssetIn(partition_mapping=_by_date()),
        },
        deps=[
            dg.AssetDep(
                "bars",
                partition_mapping=_cross_section(-periods_for_sessions(position_history, grain)),
            ),
        ],
        metadata=table_metadata,
        check_specs=[
            dg.AssetCheckSpec(
                "positions_within_limits",
                asset=positions_key,
                blocking=True,
                description=(
                    "Great Expectations: every target weight within the per-name cap (>= 0 "
                    "long-only), gross exposure within the leverage cap on every date, a "
                    "decision and reason codes on every row."
                ),
            )
        ],
    )
    def positions(
        context: dg.AssetExecutionContext,
        alpha_scores: pl.DataFrame,
        regimes: pl.DataFrame,
        warehouse: WarehouseResource,
    ) -> Iterator:
        """Target weights decided at each close across tickers: fractional Kelly, volatility
        target, per-name and gross caps, then the overlays of risk.yaml (regime multiplier,
        hybrid VaR/CVaR and EVT tail, drawdown guard, circuit breakers with staged recovery,
        kill switch) and the turnover limit. ``reason_codes`` lists every scaling applied."""
        from quant_assets.quality.derived import validate_positions
        from quant_assets.risk import PositionState, size_positions

        rect = rectangle_from_keys(context.partition_keys, partitions)
        lookback = state_lookback_sessions(strategy.risk)
        state_rows = stored_state_rows(warehouse, name, "positions", rect.start, lookback)
        require_continuity(state_rows, rect, first_start, previous_window(rect), "positions")
        state = PositionState.from_rows(state_rows) if rect.start > first_start else PositionState()
        closes = warehouse.read(
            "bars",
            start=rect.start - days_for_sessions(position_history),
            end=rect.end,
            columns=["date", "ticker", "close"],
        )
        require_cross_section(
            alpha_scores,
            closes.filter((pl.col("date") >= rect.start) & (pl.col("date") < rect.end)),
            alpha_key,
        )
        try:
            result = size_positions(
                alpha_scores,
                closes,
                regimes,
                strategy,
                start=rect.start,
                state=state,
                tickers=tickers,
            )
        except ValueError as exc:
            raise dg.Failure(description=f"{positions_key.to_user_string()}: {exc}") from exc
        sizing = strategy.sizing
        report = validate_positions(
            result.rows, sizing.max_weight, sizing.max_gross_leverage, sizing.long_only
        )
        yield _check("positions_within_limits", report, rect)
        if not report.success:
            raise dg.Failure(description=report.summary())
        out = result.rows.filter(pl.col("ticker").is_in(list(rect.tickers)))
        per_date = result.rows.group_by("date").agg(pl.all().first()).sort("date")
        states = per_date.group_by("breaker_state").len().sort("breaker_state")
        yield dg.Output(
            out,
            metadata={
                "rows": out.height,
                "mean_gross_exposure": round(float(per_date["gross_exposure"].mean() or 0), 4),
                "max_gross_exposure": round(float(per_date["gross_exposure"].max() or 0), 4),
                "breaker_sessions": ", ".join(f"{k}={n}" for k, n in states.iter_rows()),
                "final_paper_drawdown": round(float(per_date["paper_drawdown"][-1]), 4)
                if per_date.height
                else 0.0,
            },
        )

    @dg.asset(
        key=backtest_key,
        partitions_def=partitions,
        **{**stored, "kinds": {"duckdb", "polars", "numba"}},
        group_name=name,
        code_version=code_version(strategy.backtest),
        ins={"positions": dg.AssetIn(key=positions_key, partition_mapping=_cross_section())},
        deps=[
            dg.AssetDep(
                "bars",
                partition_mapping=_cross_section(-periods_for_sessions(book_history, grain)),
            ),
        ],
        metadata=table_metadata,
        check_specs=[
            dg.AssetCheckSpec(
                "backtest_accounting",
                asset=backtest_key,
                blocking=True,
                description=(
                    "Great Expectations: equity = cash + Σ shares × price on every date "
                    "(1e-9 relative) and never NaN; one row per (ticker, date)."
                ),
            )
        ],
    )
    def backtest(
        context: dg.AssetExecutionContext, positions: pl.DataFrame, warehouse: WarehouseResource
    ) -> Iterator:
        """The simulated book: target weights decided at each close fill at the next session's
        open (or close), with commission, slippage and square-root impact; exact cash and
        share accounting by the numba kernel, continuing from the stored book before the
        range."""
        from quant_assets.backtest.book import BookState, run_book
        from quant_assets.quality.derived import validate_backtest

        rect = rectangle_from_keys(context.partition_keys, partitions)
        state_rows = stored_state_rows(warehouse, name, "backtest", rect.start, 1)
        require_continuity(state_rows, rect, first_start, previous_window(rect), "backtest")
        state = (
            BookState.from_rows(state_rows)
            if rect.start > first_start
            else BookState.initial(strategy.backtest.initial_capital)
        )
        bars = warehouse.read(
            "bars",
            start=rect.start - days_for_sessions(book_history),
            end=rect.end,
            columns=["date", "ticker", "open", "close", "volume"],
        )
        require_cross_section(
            positions,
            bars.filter((pl.col("date") >= rect.start) & (pl.col("date") < rect.end)),
            positions_key,
        )
        targets = positions.select("date", "ticker", "target_weight")
        try:
            result = run_book(
                bars, targets, strategy.backtest, start=rect.start, state=state, tickers=tickers
            )
        except ValueError as exc:
            raise dg.Failure(description=f"{backtest_key.to_user_string()}: {exc}") from exc
        report = validate_backtest(result.book)
        yield _check("backtest_accounting", report, rect)
        if not report.success:
            raise dg.Failure(description=report.summary())
        out = result.book.filter(pl.col("ticker").is_in(list(rect.tickers)))
        daily = result.book.group_by("date").agg(pl.col("equity").first()).sort("date")
        yield dg.Output(
            out,
            metadata={
                "rows": out.height,
                "trades": result.trades.height,
                "start_equity": round(float(daily["equity"][0]), 2) if daily.height else 0.0,
                "end_equity": round(float(daily["equity"][-1]), 2) if daily.height else 0.0,
                "commission": round(float(result.trades["commission"].sum() or 0), 2),
            },
        )

    report_asset = _report_asset(settings, strategy)
    return [alpha_scores, positions, backtest, report_asset]


def _report_asset(settings: Settings, strategy: StrategySettings):
    name = strategy.name
    key = dg.AssetKey([name, "backtest_report"])
    others = [dg.AssetKey([s, "backtest"]) for s in settings.strategies]

    @dg.asset(
        key=key,
        io_manager_key="warehouse_io_manager",
        kinds={"duckdb", "plotly", "mlflow"},
        group_name=name,
        code_version=code_version(strategy.promotion, sorted(settings.strategies)),
        deps=[*others, dg.AssetKey([name, "alpha_scores"]), "benchmark_bars", "regimes"],
        metadata={"schema": name},
    )
    def backtest_report(context: dg.AssetExecutionContext, warehouse: WarehouseResource):
        """Performance (return, volatility, Sharpe, Sortino, drawdown, Calmar, win rate,
        turnover, exposure, benchmark alpha/beta/IR), PnL by regime and by signal bucket, the
        Deflated Sharpe Ratio for the number of strategies tried and the Hansen SPA / White
        reality-check p-value across the configured strategies; the promotion gate; an HTML
        report in the data directory and an MLflow run per strategy."""
        from quant_assets.defs.reporting import build_report

        home = Path(warehouse.database).parent
        outcome = build_report(settings, strategy, warehouse, home)
        context.log.info(f"{name}: {outcome.decision} — {outcome.reason}")
        return dg.Output(outcome.row, metadata=outcome.metadata)

    return backtest_report
