"""Strategies: one set of assets per file in ``configs/strategies/``.

For a strategy ``s`` :func:`strategy_defs` returns its own ``Definitions``: ``s/alpha_scores`` →
``s/positions`` → ``s/backtest`` (date × ticker, from the first model cut-off so every strategy
is judged on the same out-of-sample span), ``s/orders`` + ``s/paper_book`` (date windows) and
``s/backtest_report``. Their tables live in the DuckDB schema ``s``; adding a strategy is adding
a YAML file. See :mod:`quant_assets.defs.strategy_state` for how the path-dependent assets
continue from the stored state.
"""

from collections.abc import Iterator
from dataclasses import dataclass, field
from datetime import date
from pathlib import Path

import dagster as dg
import polars as pl

from quant_assets import schemas
from quant_assets.defs.automation import follows_inputs
from quant_assets.defs.common import (
    RunScope,
    as_float,
    blocking_check,
    checked_output,
    code_version,
    domain_call,
    table_asset,
    table_metadata,
)
from quant_assets.defs.orders import orders_asset
from quant_assets.defs.partitions import (
    by_date,
    cross_section,
    first_cutoff_origin,
    first_model_window,
    first_window_start,
    periods_for_sessions,
    previous_window_start,
    ticker_date_partitions,
)
from quant_assets.defs.resources import WarehouseResource
from quant_assets.defs.strategy_state import (
    require_continuity,
    require_cross_section,
    stored_state_rows,
)
from quant_assets.errors import QuantAssetsError
from quant_assets.models.cutoffs import days_for_sessions
from quant_assets.settings import PREDICTION_COMPONENT, Settings, StrategySettings


def defs(settings: Settings) -> dg.Definitions:
    """Every strategy's assets: one ``Definitions`` per YAML, merged."""
    return dg.Definitions.merge(
        *(strategy_defs(settings, strategy) for strategy in settings.strategies.values())
    )


def strategy_defs(settings: Settings, strategy: StrategySettings) -> dg.Definitions:
    """``strategy``'s alpha scores, positions, backtest, orders + paper book and report."""
    facts = StrategyFacts.of(settings, strategy)
    return dg.Definitions(
        assets=[
            alpha_scores_asset(facts),
            positions_asset(facts),
            backtest_asset(facts),
            orders_asset(settings, strategy),
            report_asset(settings, strategy),
        ]
    )


@dataclass(frozen=True)
class StrategyFacts:
    """What a strategy's date × ticker assets share."""

    strategy: StrategySettings
    partitions: dg.MultiPartitionsDefinition
    first_start: date  # the first window: a run starting there starts a fresh book
    tickers: list[str]  # the universe, in partition order
    grain: str
    exits: dict[str, date] = field(default_factory=dict)  # ticker → last member session

    @classmethod
    def of(cls, settings: Settings, strategy: StrategySettings) -> "StrategyFacts":
        universe = settings.universe
        first_cutoff = settings.models.resolved_first_cutoff(universe.start)
        if universe.end is not None and first_cutoff > universe.end:
            origin = first_cutoff_origin(settings.models, universe)
            raise QuantAssetsError(
                f"strategy {strategy.name}: strategies start at the first model cut-off "
                f"{first_cutoff} ({origin}), after universe.yaml's end {universe.end}: lower "
                "min_history_years, set an earlier first_cutoff, or extend the history"
            )
        partitions = ticker_date_partitions(
            universe, start=first_model_window(settings.models, universe)
        )
        return cls(
            strategy=strategy,
            partitions=partitions,
            first_start=first_window_start(partitions),
            tickers=list(universe.tickers),
            grain=universe.partition_grain,
            exits=universe.exits,
        )

    def key(self, name: str) -> dg.AssetKey:
        return dg.AssetKey([self.strategy.name, name])

    def asset_args(self, version: str, columns, **decorator) -> dict:
        # A strategy's assets read ``bars`` together with their alpha, which a bars update
        # reaches later through features, signals and predictions: only the alpha triggers.
        return table_asset(
            partitions_def=self.partitions,
            group_name=self.strategy.name,
            code_version=version,
            metadata=table_metadata(columns, schema=self.strategy.name),
            automation_condition=follows_inputs(ignore=["bars", "benchmark_bars"]),
            **decorator,
        )

    def bars_read_back(self, sessions: int) -> dg.AssetDep:
        """Every ticker's ``bars`` of the run's windows and the windows holding ``sessions``
        sessions before them (risk look-backs, the book's prices)."""
        periods = periods_for_sessions(sessions, self.grain)
        return dg.AssetDep("bars", partition_mapping=cross_section(-periods))

    def bars_before(
        self, warehouse: WarehouseResource, scope: RunScope, sessions: int, columns: list[str]
    ) -> pl.DataFrame:
        """The stored bars of the run and of (about) ``sessions`` sessions before it."""
        start = scope.rect.start - days_for_sessions(sessions)
        return warehouse.read("bars", start=start, end=scope.rect.end, columns=columns)

    def continuing(self, rows: pl.DataFrame, scope: RunScope, what: str) -> bool:
        """Whether the run continues a stored book (refusing a gap before it)."""
        previous = previous_window_start(self.partitions, scope.rect.start)
        require_continuity(rows, scope.rect, self.first_start, previous, what)
        return scope.rect.start > self.first_start


def _prediction_coverage(
    context: dg.AssetExecutionContext,
    scope: RunScope,
    predictions: pl.DataFrame | None,
    out: pl.DataFrame,
    strategy: StrategySettings,
) -> dict[str, int]:
    """How many alpha rows had no prediction: their dates had no champion model yet (e.g. too
    few training rows: next_state_model's gate_reason says why) and they score on the other
    components alone. Empty when the strategy does not weight the prediction."""
    if predictions is None or "horizon" not in predictions.columns:
        return {}
    horizon = strategy.alpha.prediction_horizon
    keys = scope.within(predictions).filter(pl.col("horizon") == horizon).select("date", "ticker")
    missing = out.join(keys, on=["date", "ticker"], how="anti").height
    if missing:
        context.log.warning(
            f"{missing} of {out.height} rows have no prediction (no champion model for their "
            "dates: see next_state_model's gate_reason); the prediction component drops out "
            "of their alpha"
        )
    return {"rows_without_prediction": missing}


def alpha_scores_asset(facts: StrategyFacts) -> dg.AssetsDefinition:
    strategy, key = facts.strategy, facts.key("alpha_scores")
    ins = {
        "signals": dg.AssetIn(partition_mapping=cross_section()),
        "regimes": dg.AssetIn(partition_mapping=by_date()),
    }
    if PREDICTION_COMPONENT in strategy.alpha.components:
        ins["predictions"] = dg.AssetIn(partition_mapping=cross_section())
    check = blocking_check(
        key,
        "alpha_scores_valid",
        "one row per (ticker, date), score in [-1, 1], confidence in [0, 1]",
    )

    @dg.asset(
        key=key,
        description=f"{strategy.description}\n\nAlpha scores: the regime-weighted ensemble.",
        **facts.asset_args(
            code_version(strategy.alpha),
            schemas.ALPHA_SCORES,
            ins=ins,
            check_specs=[check],
        ),
    )
    def alpha_scores(context: dg.AssetExecutionContext, **inputs: pl.DataFrame) -> Iterator:
        """Regime-weighted, confidence-weighted ensemble of the strategy's components with a
        disagreement penalty and a robust cross-sectional z-score (seed 003 §3.1, 004 §3.7)."""
        from quant_assets.meta import combine_signals
        from quant_assets.quality.derived import validate_alpha_scores

        scope = RunScope.of(context)
        signals = scope.within(inputs["signals"])
        scores = domain_call(
            key,
            lambda: combine_signals(
                signals, inputs.get("predictions"), inputs["regimes"], strategy.alpha
            ),
        )
        out = scope.own_tickers(scores)
        metadata = {
            "rows": out.height,
            "mean_confidence": round(as_float(out["confidence"].mean()), 4),
            "mean_disagreement": round(as_float(out["disagreement"].mean()), 4),
        }
        metadata |= _prediction_coverage(context, scope, inputs.get("predictions"), out, strategy)
        report = validate_alpha_scores(scores)
        yield from checked_output("alpha_scores_valid", report, out, metadata, scope=scope)

    return alpha_scores


_POSITIONS_CHECK = (
    "Great Expectations: every target weight within the per-name cap (>= 0 long-only), gross "
    "exposure within the leverage cap on every date, a decision and reason codes on every row."
)


def positions_asset(facts: StrategyFacts) -> dg.AssetsDefinition:
    from quant_assets.risk import history_sessions

    strategy, key, alpha_key = facts.strategy, facts.key("positions"), facts.key("alpha_scores")
    history = history_sessions(strategy)

    @dg.asset(
        key=key,
        **facts.asset_args(
            code_version(strategy.sizing, strategy.risk),
            schemas.POSITIONS,
            path_dependent=True,  # circuit breakers continue from the stored book
            ins={
                "alpha_scores": dg.AssetIn(key=alpha_key, partition_mapping=cross_section()),
                "regimes": dg.AssetIn(partition_mapping=by_date()),
            },
            deps=[facts.bars_read_back(history)],
            check_specs=[blocking_check(key, "positions_within_limits", _POSITIONS_CHECK)],
        ),
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
        from quant_assets.risk import mark_exits

        scope = RunScope.of(context)
        closes = facts.bars_before(warehouse, scope, history, ["date", "ticker", "close"])
        require_cross_section(alpha_scores, scope.within(closes), alpha_key)
        rows = domain_call(
            key, lambda: _size(facts, scope, alpha_scores, closes, regimes, warehouse)
        )
        rows = mark_exits(rows, facts.exits)  # names that left the universe: the reason
        sizing = strategy.sizing
        limits = (sizing.max_weight, sizing.max_gross_leverage, sizing.long_only)
        report = validate_positions(rows, *limits)
        out = scope.own_tickers(rows)
        metadata = _positions_metadata(out, rows)
        yield from checked_output("positions_within_limits", report, out, metadata, scope=scope)

    return positions


def _size(facts: StrategyFacts, scope: RunScope, alpha_scores, closes, regimes, warehouse):
    """The positions of the run's dates, continuing from the stored sizing state."""
    from quant_assets.risk import PositionState, size_positions, state_lookback_sessions

    strategy = facts.strategy
    lookback = state_lookback_sessions(strategy.risk)
    rows = stored_state_rows(warehouse, strategy.name, "positions", scope.rect.start, lookback)
    continuing = facts.continuing(rows, scope, "positions")
    state = PositionState.from_rows(rows) if continuing else PositionState()
    result = size_positions(
        alpha_scores,
        closes,
        regimes,
        strategy,
        start=scope.rect.start,
        state=state,
        tickers=facts.tickers,
    )
    return result.rows


def _positions_metadata(out: pl.DataFrame, rows: pl.DataFrame) -> dict:
    per_date = rows.group_by("date").agg(pl.all().first()).sort("date")
    states = per_date.group_by("breaker_state").len().sort("breaker_state")
    return {
        "rows": out.height,
        "mean_gross_exposure": round(as_float(per_date["gross_exposure"].mean()), 4),
        "max_gross_exposure": round(as_float(per_date["gross_exposure"].max()), 4),
        "breaker_sessions": ", ".join(f"{k}={n}" for k, n in states.iter_rows()),
        "final_paper_drawdown": round(float(per_date["paper_drawdown"][-1]), 4)
        if per_date.height
        else 0.0,
    }


_BACKTEST_CHECK = (
    "Great Expectations: equity = cash + Σ shares × price on every date (1e-9 relative) and "
    "never NaN; one row per (ticker, date)."
)


def backtest_asset(facts: StrategyFacts) -> dg.AssetsDefinition:
    strategy, key, positions_key = facts.strategy, facts.key("backtest"), facts.key("positions")
    settings = strategy.backtest
    history = max(settings.adv_window, settings.vol_window) + 1

    @dg.asset(
        key=key,
        **facts.asset_args(
            code_version(settings),
            schemas.BACKTEST,
            path_dependent=True,
            kinds=("duckdb", "polars", "numba"),
            ins={"positions": dg.AssetIn(key=positions_key, partition_mapping=cross_section())},
            deps=[facts.bars_read_back(history)],
            check_specs=[blocking_check(key, "backtest_accounting", _BACKTEST_CHECK)],
        ),
    )
    def backtest(
        context: dg.AssetExecutionContext, positions: pl.DataFrame, warehouse: WarehouseResource
    ) -> Iterator:
        """The simulated book: quantities decided at each close from that close's prices fill
        at the next session's open (or close), with commission, slippage and square-root
        impact; exact cash and share accounting by the numba kernel (the same order step as
        the paper book), continuing from the stored book before the range."""
        from quant_assets.backtest.book import BookState, run_book
        from quant_assets.backtest.frames import with_exit_prints
        from quant_assets.quality.derived import validate_backtest

        scope = RunScope.of(context)
        rows = stored_state_rows(warehouse, strategy.name, "backtest", scope.rect.start, 1)
        continuing = facts.continuing(rows, scope, "backtest")
        state = (
            BookState.from_rows(rows) if continuing else BookState.initial(settings.initial_capital)
        )
        bars = facts.bars_before(
            warehouse, scope, history, ["date", "ticker", "open", "close", "volume"]
        )
        require_cross_section(positions, scope.within(bars), positions_key)
        bars = with_exit_prints(bars, facts.exits)  # a name leaving is sold at its last close
        targets = positions.select("date", "ticker", "target_weight")
        result = domain_call(
            key,
            lambda: run_book(
                bars, targets, settings, start=scope.rect.start, state=state, tickers=facts.tickers
            ),
        )
        out = scope.own_tickers(result.book)
        metadata = _book_metadata(out, result.book, result.trades)
        report = validate_backtest(result.book)
        yield from checked_output("backtest_accounting", report, out, metadata, scope=scope)

    return backtest


def _book_metadata(out: pl.DataFrame, book: pl.DataFrame, trades: pl.DataFrame) -> dict:
    daily = book.group_by("date").agg(pl.col("equity").first()).sort("date")
    return {
        "rows": out.height,
        "trades": trades.height,
        "start_equity": round(float(daily["equity"][0]), 2) if daily.height else 0.0,
        "end_equity": round(float(daily["equity"][-1]), 2) if daily.height else 0.0,
        "commission": round(as_float(trades["commission"].sum()), 2),
    }


def report_asset(settings: Settings, strategy: StrategySettings) -> dg.AssetsDefinition:
    name = strategy.name
    backtests = [dg.AssetKey([s, "backtest"]) for s in settings.strategies]
    # The Deflated Sharpe counts every trial in the ledger: the studies record theirs first.
    studies = [dg.AssetKey([s, "decision"]) for s in settings.studies]
    summarised = [
        dg.AssetKey([name, "alpha_scores"]),
        dg.AssetKey("benchmark_bars"),
        dg.AssetKey("regimes"),
    ]

    @dg.asset(
        **table_asset(
            key=dg.AssetKey([name, "backtest_report"]),
            partitions_def=None,
            group_name=name,
            code_version=code_version(strategy.promotion, sorted(settings.strategies)),
            metadata=table_metadata(schemas.BACKTEST_REPORT, partition_expr=None, schema=name),
            # It summarises the books: it follows the backtests (its other inputs all reach
            # it through them).
            automation_condition=follows_inputs(ignore=summarised),
            kinds=("duckdb", "plotly", "mlflow"),
            deps=[*backtests, *summarised, *studies],
        )
    )
    def backtest_report(context: dg.AssetExecutionContext, warehouse: WarehouseResource):
        """Performance (return, volatility, Sharpe, Sortino, drawdown, Calmar, win rate,
        turnover, exposure, benchmark alpha/beta/IR), PnL by regime and by signal bucket, the
        Deflated Sharpe Ratio for the number of strategies tried and the Hansen SPA / White
        reality-check p-value across the configured strategies; the promotion gate; an HTML
        report in the data directory and an MLflow run per strategy."""
        from quant_assets.engine.reporting import build_report

        home = Path(warehouse.database).parent
        outcome = domain_call(name, lambda: build_report(settings, strategy, warehouse, home))
        context.log.info(f"{name}: {outcome.decision} — {outcome.reason}")
        return dg.Output(outcome.row, metadata=outcome.metadata)

    return backtest_report
