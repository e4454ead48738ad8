"""Column schemas of the stored tables, declared once: used by assets (Dagster column schema
metadata, shown in the UI), by the ingest step (column order and types) and by tests.

Every stored table has one: the shared tables in the market schema (``BARS`` for ``bars`` and
``benchmark_bars``, :func:`features_schema`, ``SIGNALS``, ``LABELS``, ``REGIME_MODEL``,
``REGIMES``, ``NEXT_STATE_MODEL``, ``PREDICTIONS``) and each strategy's tables in the strategy's
schema (``ALPHA_SCORES``, ``POSITIONS``, ``BACKTEST``, ``BACKTEST_REPORT``, ``ORDERS``,
``PAPER_BOOK``). A schema lists the columns in the order they are stored; rows are read in the
order of :func:`sort_columns`. Weights, exposures, returns and risk measures are fractions
(0.01 = 1 %) unless a column says otherwise; money is in the account currency.
"""

from __future__ import annotations

from dataclasses import dataclass

import polars as pl

from quant_assets.features.build import feature_columns
from quant_assets.names import (
    REGIME_NAMES,
    REGIME_PROB_COLUMNS,  # re-exported for readers of schemas
    SESSIONS_PER_YEAR,
    STATE_NAMES,  # re-exported for readers of schemas
    STATE_PROB_COLUMNS,
)
from quant_assets.settings import FeatureSettings
from quant_assets.signals.rules import SIGNAL_COLUMNS

REGIME_LABEL_NAMES = REGIME_NAMES  # alias of names.REGIME_NAMES


@dataclass(frozen=True)
class Column:
    """One stored column: its name, its polars dtype and what it holds (with units)."""

    name: str
    dtype: pl.DataType
    description: str


# The columns rows are read in order of, in this precedence, wherever a table has them.
SORT_KEYS: tuple[str, ...] = ("ticker", "cutoff", "date", "horizon")


def sort_columns(columns: tuple[Column, ...]) -> tuple[str, ...]:
    """The order rows of a table with ``columns`` are read in: those of :data:`SORT_KEYS`
    present, in that order, e.g. ``("ticker", "date")`` for bars, ``("date",)`` for regimes,
    ``("cutoff", "horizon")`` for next_state_model; ``()`` for a table with none of them (the
    one-row ``backtest_report``)."""
    names = {c.name for c in columns}
    return tuple(key for key in SORT_KEYS if key in names)


KEY_COLUMNS = (
    Column("date", pl.Date(), "trading session the row closes on (exchange calendar)"),
    Column("ticker", pl.Utf8(), "instrument symbol"),
)

BARS = (
    *KEY_COLUMNS,
    Column("open", pl.Float64(), "adjusted open; null when the provider has none"),
    Column("high", pl.Float64(), "adjusted high; null when the provider has none"),
    Column("low", pl.Float64(), "adjusted low; null when the provider has none"),
    Column("close", pl.Float64(), "split/dividend-adjusted close"),
    Column("volume", pl.Float64(), "shares traded; null when the provider has none"),
    Column("is_return_spike", pl.Boolean(), "|close-to-close return| above the spike threshold"),
    Column("provider", pl.Utf8(), "provider that delivered the bar"),
    Column("ingested_at", pl.Datetime("us", "UTC"), "when the partition was ingested (UTC)"),
    Column("raw_hash", pl.Utf8(), "sha256 of the raw provider row (date, ticker, OHLCV)"),
)


def features_schema(settings: FeatureSettings) -> tuple[Column, ...]:
    """The stored features table for ``settings``."""
    return (
        *KEY_COLUMNS,
        *(Column(n, pl.Float64(), d) for n, d in feature_columns(settings).items()),
        Column("warmed_up", pl.Boolean(), "every feature window of the row is full"),
        Column(
            "benchmark_complete",
            pl.Boolean(),
            "the benchmark has a close on every session of the relative-strength windows",
        ),
    )


SIGNALS = (
    *KEY_COLUMNS,
    *(Column(n, pl.Float64(), d + " (in [-1, 1])") for n, d in SIGNAL_COLUMNS.items()),
    Column("warmed_up", pl.Boolean(), "the features behind the row are past their warm-up"),
)


LABELS = (
    Column("date", pl.Date(), "session on which the outcome is known (origin + horizon sessions)"),
    Column("ticker", pl.Utf8(), "instrument symbol"),
    Column("horizon", pl.Int16(), "sessions between origin and outcome"),
    Column("origin_date", pl.Date(), "session the target belongs to (features of that day)"),
    Column("forward_log_return", pl.Float64(), "log(close at date / close at origin_date)"),
    Column("daily_vol", pl.Float64(), "std of daily log returns up to origin_date"),
    Column("threshold", pl.Float64(), "multiple × daily_vol × sqrt(horizon)"),
    Column(
        "label",
        pl.Int8(),
        ", ".join(f"{code} {name}" for code, name in enumerate(STATE_NAMES))
        + " (forward return vs ±threshold)",
    ),
)

REGIMES = (
    Column("date", pl.Date(), "trading session"),
    Column("regime_label", pl.Utf8(), " | ".join(REGIME_NAMES) + " (HMM, else the rule)"),
    *(
        Column(column, pl.Float64(), f"filtered P({name} | data up to date)")
        for name, column in zip(REGIME_NAMES, REGIME_PROB_COLUMNS, strict=True)
    ),
    Column("rule_label", pl.Utf8(), "rule-based label: moving averages, volatility, VIX"),
    Column("regime_source", pl.Utf8(), "hmm, or rules when no HMM covers the date"),
    Column("model_cutoff", pl.Date(), "cut-off of the HMM used (null for rules)"),
)

REGIME_MODEL = (
    Column("cutoff", pl.Date(), "fitted on sessions strictly before this date"),
    Column("status", pl.Utf8(), "fitted | fallback"),
    Column("reason", pl.Utf8(), "why the fallback is used (null when fitted)"),
    Column("n_obs", pl.Int64(), "training sessions"),
    Column("train_start", pl.Date(), "first training session"),
    Column("train_end", pl.Date(), "last training session"),
    Column("log_likelihood", pl.Float64(), "best log likelihood over the restarts"),
    Column("fit_json", pl.Utf8(), "the fitted parameters and state labels (JSON)"),
    Column("mlflow_version", pl.Utf8(), "registered model version"),
    Column("mlflow_run_id", pl.Utf8(), "MLflow run"),
)

NEXT_STATE_MODEL = (
    Column("cutoff", pl.Date(), "trained on outcomes known strictly before this date"),
    Column("horizon", pl.Int16(), "sessions ahead"),
    Column("version", pl.Utf8(), "registered MLflow version trained at this cut-off"),
    Column("run_id", pl.Utf8(), "MLflow run of the training"),
    Column("gate_decision", pl.Utf8(), "promoted | refused"),
    Column("gate_reason", pl.Utf8(), "why"),
    Column("champion_version", pl.Utf8(), "champion after this gate: serves the window"),
    Column("champion_cutoff", pl.Date(), "cut-off the champion was trained at"),
    Column("best_iteration", pl.Int32(), "trees kept by early stopping"),
    Column("train_start", pl.Date(), "first training origin date"),
    Column("train_end", pl.Date(), "training origin dates end (exclusive)"),
    Column("test_start", pl.Date(), "first test origin date"),
    Column("test_end", pl.Date(), "test origin dates end (exclusive)"),
    Column("train_rows", pl.Int64(), "training rows"),
    Column("validation_rows", pl.Int64(), "early-stopping rows"),
    Column("test_rows", pl.Int64(), "out-of-sample rows"),
    Column("test_log_loss", pl.Float64(), "out-of-sample log loss"),
    Column("test_accuracy", pl.Float64(), "out-of-sample accuracy"),
    Column("test_balanced_accuracy", pl.Float64(), "out-of-sample balanced accuracy"),
    Column("test_information_coefficient", pl.Float64(), "Spearman(p_up - p_down, return)"),
)

PREDICTIONS = (
    *KEY_COLUMNS,
    Column("horizon", pl.Int16(), "sessions ahead"),
    Column("pred_state", pl.Utf8(), " | ".join(STATE_NAMES) + ": the most probable next state"),
    Column("prob_pred_state", pl.Float64(), "probability of pred_state"),
    *(
        Column(column, pl.Float64(), f"P({name})")
        for name, column in zip(STATE_NAMES, STATE_PROB_COLUMNS, strict=True)
    ),
    Column("model_version", pl.Utf8(), "registered MLflow version used"),
    Column("model_cutoff", pl.Date(), "cut-off of that model (always <= date)"),
)


def conform(frame: pl.DataFrame, columns: tuple[Column, ...]) -> pl.DataFrame:
    """Select ``columns`` in order with their declared dtypes (strict: a bad cast raises)."""
    missing = [c.name for c in columns if c.name not in frame.columns]
    if missing:
        raise ValueError(f"frame lacks declared column(s): {', '.join(missing)}")
    return frame.select(pl.col(c.name).cast(c.dtype, strict=True) for c in columns)


# --- each strategy's tables, in the schema named after the strategy --------------------------

ALPHA_SCORES = (
    Column("date", pl.Date(), "session whose close the score is decided at"),
    Column("ticker", pl.Utf8(), "instrument symbol"),
    Column(
        "alpha_score",
        pl.Float64(),
        "final score in [-1, 1]: tanh(robust_zscore / zscore_scale), or penalized_score clipped "
        "without normalisation (null when no component is available)",
    ),
    Column(
        "confidence",
        pl.Float64(),
        "(Σ weight × component confidence / Σ weight) × exp(-beta × disagreement), in [0, 1]",
    ),
    Column(
        "disagreement",
        pl.Float64(),
        "weight × confidence-weighted variance of the component alphas around ensemble_score "
        "(>= 0)",
    ),
    Column(
        "ensemble_score",
        pl.Float64(),
        "weight × confidence-weighted mean of the component alphas, in [-1, 1] (null: none)",
    ),
    Column("penalized_score", pl.Float64(), "ensemble_score × exp(-beta × disagreement)"),
    Column(
        "robust_zscore",
        pl.Float64(),
        "(penalized_score - the day's median) / (1.4826 × MAD) across the day's tickers; 0 with "
        "too few tickers or no spread, null without normalisation",
    ),
    Column(
        "components_used",
        pl.Int16(),
        "components with a value and a positive weight × confidence (count)",
    ),
    Column(
        "prediction_alpha",
        pl.Float64(),
        "tanh((P(up) - P(down)) / prediction_scale) at the strategy's horizon (null: no "
        "prediction, or the strategy does not use it)",
    ),
    Column("regime_label", pl.Utf8(), "the day's regime: " + " | ".join(REGIME_NAMES)),
)

_BREAKER_STATES = ("normal", "defensive", "frozen", "recovery", "killed")  # risk.positions
POSITIONS = (
    Column("date", pl.Date(), "session whose close decides the weights (traded the next one)"),
    Column("ticker", pl.Utf8(), "instrument symbol"),
    Column("alpha_score", pl.Float64(), "the day's alpha score (null: none)"),
    Column("confidence", pl.Float64(), "the alpha score's confidence, in [0, 1] (null: none)"),
    Column(
        "volatility_daily",
        pl.Float64(),
        "sample std of the daily close-to-close returns over volatility_window sessions "
        "(null: window not full)",
    ),
    Column(
        "expected_return_daily",
        pl.Float64(),
        "information_coefficient × alpha_score × volatility_daily (null: not tradable)",
    ),
    Column(
        "kelly_weight",
        pl.Float64(),
        "fractional Kelly kelly_fraction × (expected_return_daily - daily risk-free rate) / "
        "volatility_daily² (0: not tradable), or the configured allocator's weight; of equity",
    ),
    Column(
        "sized_weight",
        pl.Float64(),
        "kelly_weight after the volatility target, the name cap and the gross cap, before the "
        "overlays (of equity)",
    ),
    Column(
        "target_weight",
        pl.Float64(),
        "weight of equity decided at the close, traded the next session: sized_weight × "
        "risk_scale, then the turnover limit",
    ),
    Column("previous_weight", pl.Float64(), "target_weight of the previous session"),
    Column(
        "decision",
        pl.Utf8(),
        "EXECUTE_BUY | EXECUTE_SELL | HOLD | REJECT (REJECT: Kelly wanted a weight, the target "
        "is 0)",
    ),
    Column(
        "reason_codes",
        pl.Utf8(),
        "JSON list of every scaling applied: the row's own codes, then the book's",
    ),
    Column("gross_exposure", pl.Float64(), "Σ |target_weight| of the date"),
    Column("net_exposure", pl.Float64(), "Σ target_weight of the date"),
    Column(
        "ex_ante_vol_annualized",
        pl.Float64(),
        f"√(wᵀΣw · {SESSIONS_PER_YEAR}) of the Kelly weights over the VaR window, before the "
        "volatility target",
    ),
    Column(
        "var_95",
        pl.Float64(),
        "1-day hybrid Value at Risk of the sized book × regime_multiplier at risk.var.confidence "
        "(a loss, of equity)",
    ),
    Column(
        "cvar_95",
        pl.Float64(),
        "1-day hybrid CVaR (expected shortfall) of the same book at risk.var.confidence "
        "(a loss, of equity)",
    ),
    Column(
        "evt_es_95",
        pl.Float64(),
        "EVT (generalised Pareto) expected shortfall × the book's daily volatility (a loss, of "
        "equity; null: EVT off or no fit)",
    ),
    Column("regime_label", pl.Utf8(), "the day's regime: " + " | ".join(REGIME_NAMES)),
    Column("regime_multiplier", pl.Float64(), "exposure multiplier of the regime (risk.yaml)"),
    Column(
        "var_scale",
        pl.Float64(),
        "multiplier bringing VaR and CVaR within their limits (1: within)",
    ),
    Column("drawdown_scale", pl.Float64(), "drawdown-guard multiplier (1: guard inactive)"),
    Column(
        "breaker_state",
        pl.Utf8(),
        "circuit breaker after the session: " + " | ".join(_BREAKER_STATES),
    ),
    Column("breaker_scale", pl.Float64(), "exposure multiplier the circuit breaker allows"),
    Column(
        "risk_scale",
        pl.Float64(),
        "regime_multiplier × var_scale × drawdown_scale × breaker_scale",
    ),
    Column("turnover", pl.Float64(), "Σ |target_weight - previous_weight| of the date"),
    Column(
        "paper_return",
        pl.Float64(),
        "paper book: the previous weights × the day's close-to-close returns, before costs",
    ),
    Column("paper_equity", pl.Float64(), "paper book equity, compounded from 1"),
    Column("paper_peak", pl.Float64(), "running maximum of paper_equity"),
    Column("paper_drawdown", pl.Float64(), "1 - paper_equity / paper_peak, in [0, 1)"),
    Column(
        "paper_vol_annualized",
        pl.Float64(),
        f"std of the last realized_vol_window paper returns × √{SESSIONS_PER_YEAR} (0 until "
        "the window is full)",
    ),
    Column(
        "breaker_sessions",
        pl.Int64(),
        "sessions spent in breaker_state (in recovery: in the current stage)",
    ),
    Column("recovery_stage", pl.Int64(), "index of the recovery stage (0 outside recovery)"),
    Column("session_number", pl.Int64(), "sessions sized so far, this one included"),
    Column("evt_shape", pl.Float64(), "shape ξ of the last EVT tail fit (null: no fit)"),
    Column(
        "evt_es_standardized",
        pl.Float64(),
        "expected shortfall of the last EVT fit, in loss standard deviations (null: no fit)",
    ),
)

BACKTEST = (
    Column("date", pl.Date(), "trading session"),
    Column("ticker", pl.Utf8(), "instrument symbol"),
    Column("shares", pl.Float64(), "shares held after the session's trade"),
    Column(
        "trade_quantity",
        pl.Float64(),
        "shares traded on the session (+ bought, - sold, 0 none)",
    ),
    Column(
        "fill_price",
        pl.Float64(),
        "price per share paid or received, after slippage and impact (null: no trade)",
    ),
    Column(
        "reference_price",
        pl.Float64(),
        "the open (next_open fills, else the close) per share before costs (null: no price)",
    ),
    Column("commission", pl.Float64(), "commission paid on the session's trade (currency)"),
    Column("slippage_cost", pl.Float64(), "fixed slippage cost of the session's trade (currency)"),
    Column(
        "impact_cost",
        pl.Float64(),
        "square-root market impact cost of the session's trade (currency)",
    ),
    Column(
        "pnl",
        pl.Float64(),
        "the ticker's profit and loss over the session, net of costs (currency)",
    ),
    Column(
        "mark_price",
        pl.Float64(),
        "close the position is valued at (else the last close, else the open; null: never priced)",
    ),
    Column(
        "target_weight",
        pl.Float64(),
        "weight of equity decided at this session's close, traded the next session",
    ),
    Column("weight", pl.Float64(), "shares × mark_price / equity after the session"),
    Column(
        "cash",
        pl.Float64(),
        "the book's cash at the close (currency; same on every ticker row of the date)",
    ),
    Column("equity", pl.Float64(), "cash + Σ shares × mark_price at the close (currency)"),
    Column("gross_exposure", pl.Float64(), "Σ |shares × mark_price| / equity"),
    Column("net_exposure", pl.Float64(), "Σ shares × mark_price / equity"),
    Column("portfolio_pnl", pl.Float64(), "equity - previous equity (currency)"),
    Column("portfolio_return", pl.Float64(), "equity / previous equity - 1"),
    Column("turnover", pl.Float64(), "Σ |trade_quantity × fill_price| / previous equity"),
)

# One row per strategy: the evaluation of its whole stored backtest (metrics: backtest.metrics
# and backtest.evaluation; annualised with names.SESSIONS_PER_YEAR).
BACKTEST_REPORT = (
    Column("strategy", pl.Utf8(), "strategy name"),
    Column("period_start", pl.Date(), "first session of the stored backtest"),
    Column("period_end", pl.Date(), "last session of the stored backtest"),
    Column("total_return", pl.Float64(), "compounded return over the period"),
    Column("annualized_return", pl.Float64(), "CAGR (-1 when equity reached zero)"),
    Column("annualized_volatility", pl.Float64(), "sample std of the daily returns, annualised"),
    Column("sharpe", pl.Float64(), "annualised Sharpe ratio of the daily returns (rf = 0)"),
    Column("sortino", pl.Float64(), "annualised mean over annualised downside deviation"),
    Column("max_drawdown", pl.Float64(), "worst drawdown of compounded wealth (<= 0)"),
    Column("calmar", pl.Float64(), "annualized_return / |max_drawdown| (NaN: no drawdown)"),
    Column("win_rate", pl.Float64(), "share of days with a non-zero return that were positive"),
    Column("average_daily_turnover", pl.Float64(), "mean daily turnover (of equity)"),
    Column("average_gross_exposure", pl.Float64(), "mean daily gross exposure (of equity)"),
    Column("alpha_annualized", pl.Float64(), "CAPM alpha against the benchmark, compounded"),
    Column("beta", pl.Float64(), "OLS slope of the daily returns on the benchmark's"),
    Column(
        "information_ratio",
        pl.Float64(),
        "annualised mean over std of the daily return minus the benchmark's",
    ),
    Column(
        "tracking_error_annualized",
        pl.Float64(),
        "std of the daily return minus the benchmark's, annualised",
    ),
    Column("benchmark_total_return", pl.Float64(), "benchmark's compounded return, same days"),
    Column("benchmark_sharpe", pl.Float64(), "benchmark's annualised Sharpe ratio, same days"),
    Column(
        "deflated_sharpe",
        pl.Float64(),
        "Deflated Sharpe Ratio: P(the Sharpe beats the best of n_trials unskilled strategies), "
        "in [0, 1] (NaN: undefined)",
    ),
    Column(
        "expected_max_sharpe_annualized",
        pl.Float64(),
        "expected best annualised Sharpe of n_trials unskilled strategies (NaN: undefined)",
    ),
    Column(
        "n_trials",
        pl.Float64(),
        "trials deflated for: the trial ledger's distinct configurations + extra_trials",
    ),
    Column(
        "spa_pvalue",
        pl.Float64(),
        "Hansen's SPA p-value of the best compared strategy against the benchmark (NaN: too "
        "few common days)",
    ),
    Column(
        "reality_check_pvalue",
        pl.Float64(),
        "White's Reality Check p-value (the SPA's conservative bound; NaN: too few common days)",
    ),
    Column("promoted", pl.Boolean(), "the promotion gate passed"),
    Column("promotion_reason", pl.Utf8(), "the gate's reasons, '; '-separated"),
    Column("compared_strategies", pl.Utf8(), "strategies in the reality check, ', '-separated"),
    Column("report_path", pl.Utf8(), "path of the HTML report"),
    Column("mlflow_run_id", pl.Utf8(), "MLflow run of the evaluation"),
)


ORDERS = (
    Column("date", pl.Date(), "session whose close decided the order (it fills the next session)"),
    Column("ticker", pl.Utf8(), "instrument symbol"),
    Column("strategy", pl.Utf8(), "strategy whose positions the order trades toward"),
    Column(
        "client_order_id",
        pl.Utf8(),
        "deterministic id: strategy-yyyymmdd-ticker (idempotent resubmits)",
    ),
    Column("side", pl.Utf8(), "BUY | SELL"),
    Column("quantity", pl.Float64(), "shares to trade, > 0, a multiple of the lot"),
    Column("reference_price", pl.Float64(), "the close of date (else the last close) per share"),
    Column("notional", pl.Float64(), "quantity × reference_price (currency, > 0)"),
    Column("target_weight", pl.Float64(), "weight of equity the order trades to (0: kill switch)"),
    Column("position_target_weight", pl.Float64(), "target weight of the positions asset"),
    Column("current_shares", pl.Float64(), "shares held at the close of date"),
    Column("target_shares", pl.Float64(), "lot-rounded shares the order leads to"),
    Column("sizing_equity", pl.Float64(), "paper equity at the close of date (currency)"),
    Column("kill_switch", pl.Boolean(), "the kill switch was on: the order only reduces |shares|"),
    Column("reason_codes", pl.Utf8(), "JSON list: the position's codes, then the order's"),
)

PAPER_BOOK = (
    *KEY_COLUMNS,
    Column("order_quantity", pl.Float64(), "signed shares ordered the session before (0: none)"),
    Column("filled_quantity", pl.Float64(), "signed shares filled on date (+ bought, - sold)"),
    Column("fill_reference_price", pl.Float64(), "open (or close) the fill is priced from"),
    Column(
        "fill_price",
        pl.Float64(),
        "price per share after slippage and square-root impact (null: no fill)",
    ),
    Column("fill_notional", pl.Float64(), "filled_quantity × fill_reference_price (currency)"),
    Column("commission", pl.Float64(), "commission of the fill (currency)"),
    Column(
        "slippage_cost",
        pl.Float64(),
        "slippage and market impact of the fill against the trader (currency)",
    ),
    Column("cash_flow", pl.Float64(), "-(fill_notional + commission + slippage_cost)"),
    Column("shares", pl.Float64(), "shares held at the close of date"),
    Column("mark_price", pl.Float64(), "close the position is valued at (else the last close)"),
    Column("position_value", pl.Float64(), "shares × mark_price (currency)"),
    Column("weight", pl.Float64(), "position_value / equity"),
    Column("cash", pl.Float64(), "cash at the close (same on every ticker row of the date)"),
    Column("equity", pl.Float64(), "cash + Σ position_value at the close"),
    Column("gross_exposure", pl.Float64(), "Σ |position_value| / equity"),
    Column("net_exposure", pl.Float64(), "Σ position_value / equity"),
)

# --- each study's tables, in the schema named after the study ---------------------------------

_F, _I, _S, _D = pl.Float64(), pl.Int64(), pl.Utf8(), pl.Date()
STUDY_TRIALS = (
    Column("trial", _I, "trial number in search order (0 ..)"),
    Column("config_hash", _S, "content hash of the trial's alpha, sizing, risk and backtest"),
    Column("params", _S, "JSON: the space's values this trial sets (dotted keys)"),
    Column("sharpe", _F, "annualised Sharpe of the trial's book over every study session"),
    Column("sortino", _F, "annualised Sortino over every study session"),
    Column("cagr", _F, "compound annual growth over every study session"),
    Column("calmar", _F, "cagr / |max_drawdown|"),
    Column("max_drawdown", _F, "deepest drawdown of the book (<= 0)"),
    Column("trades", _I, "orders filled over every study session"),
    Column("mean_turnover", _F, "mean daily turnover (traded notional / equity)"),
    Column("folds_chosen", _I, "folds whose train window chose this trial"),
)
STUDY_RETURNS = (
    Column("date", _D, "study session"),
    Column("trial", _I, "trial number"),
    Column("daily_return", _F, "the trial's book return on the session (equity / previous - 1)"),
    Column("trades", _I, "orders the trial's book filled on the session"),
    Column("turnover", _F, "traded notional / previous equity on the session"),
)
STUDY_FOLDS = (
    Column("fold", _I, "fold number (0 ..)"),
    Column("train_start", _D, "first session of the train window"),
    Column("train_end", _D, "last session of the train window"),
    Column("test_start", _D, "first session of the test window (the one after train_end)"),
    Column("test_end", _D, "last session of the test window"),
    Column("chosen_trial", _I, "the trial best on the train window (-1: none eligible, cash)"),
    Column("eligible_trials", _I, "trials meeting the constraints on the train window"),
    Column("in_sample_objective", _F, "the chosen trial's objective on the train window"),
    Column("out_of_sample_objective", _F, "the chosen trial's objective on the test window"),
    Column("note", _S, "why the fold holds cash, if it does"),
)
STUDY_CURVE = (
    Column("date", _D, "session of the stitched out-of-sample curve"),
    Column("fold", _I, "fold whose test window holds the session"),
    Column("trial", _I, "trial chosen by that fold (-1: cash)"),
    Column("daily_return", _F, "the chosen trial's book return on the session"),
    Column("equity", _F, "the stitched curve compounded from 1"),
)
STUDY_DECISION = (
    Column("study", _S, "study name"),
    Column("base_strategy", _S, "the strategy the trials vary"),
    Column("n_trials_study", _I, "distinct trials of this study"),
    Column("n_trials_ledger", _I, "distinct configurations ever evaluated (the DSR's N)"),
    Column("n_trials_effective", _I, "the ledger N with this study's trials clustered"),
    Column("selected_trial", _I, "the last fold's choice: what promotion writes"),
    Column("selected_hash", _S, "its configuration hash"),
    Column("selected_params", _S, "JSON: its values of the space"),
    Column("oos_start", _D, "first session of the stitched out-of-sample curve"),
    Column("oos_end", _D, "last session of the stitched out-of-sample curve"),
    Column("oos_sharpe", _F, "annualised Sharpe of the stitched curve"),
    Column("benchmark_sharpe", _F, "annualised Sharpe of the benchmark on the same sessions"),
    Column("deflated_sharpe", _F, "DSR of the stitched curve with the ledger's N"),
    Column("deflated_sharpe_effective", _F, "DSR with the effective N"),
    Column("pbo", _F, "probability of backtest overfitting (CSCV) over the trials"),
    Column("spa_pvalue", _F, "Hansen SPA p-value of the stitched curve vs the benchmark"),
    Column(
        "spa_pvalue_volatility_matched",
        _F,
        "SPA p-value vs the benchmark scaled to the curve's volatility",
    ),
    Column("in_sample_mean_objective", _F, "mean train-window objective of the folds' choices"),
    Column("out_of_sample_mean_objective", _F, "mean test-window objective of the choices"),
    Column("degradation_slope", _F, "slope of out-of-sample on in-sample objective over folds"),
    Column("promoted", pl.Boolean(), "whether the selection passed every gate"),
    Column("reasons", _S, "each gate: pass/fail with its figure and threshold"),
    Column("report_path", _S, "the study's HTML report"),
    Column("mlflow_run_id", _S, "the study's parent MLflow run"),
)
