"""Column schemas of the stored tables, declared once: used by assets (Dagster column schema
metadata, shown in the UI), by the ingest step (column order and types) and by tests."""

from __future__ import annotations

from dataclasses import dataclass

import polars as pl

from quant_assets.features.build import feature_columns
from quant_assets.settings import FeatureSettings
from quant_assets.signals.rules import SIGNAL_COLUMNS


@dataclass(frozen=True)
class Column:
    name: str
    dtype: pl.DataType
    description: str


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
    Column("label", pl.Int8(), "0 down, 1 flat, 2 up (forward return vs ±threshold)"),
)

REGIME_LABEL_NAMES = ("bull", "bear", "choppy", "crash")
REGIME_PROB_COLUMNS = tuple(f"regime_prob_{name}" for name in REGIME_LABEL_NAMES)
STATE_NAMES = ("down", "flat", "up")  # label codes 0, 1, 2

REGIMES = (
    Column("date", pl.Date(), "trading session"),
    Column("regime_label", pl.Utf8(), "bull | bear | choppy | crash (HMM, else the rule)"),
    *(
        Column(f"regime_prob_{name}", pl.Float64(), f"filtered P({name} | data up to date)")
        for name in REGIME_LABEL_NAMES
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
    Column("pred_state", pl.Utf8(), "down | flat | up: the most probable next state"),
    Column("prob_pred_state", pl.Float64(), "probability of pred_state"),
    Column("prob_down", pl.Float64(), "P(down)"),
    Column("prob_flat", pl.Float64(), "P(flat)"),
    Column("prob_up", pl.Float64(), "P(up)"),
    Column("model_version", pl.Utf8(), "registered MLflow version used"),
    Column("model_cutoff", pl.Date(), "cut-off of that model (always <= date)"),
)


def conform(frame: pl.DataFrame, columns: tuple[Column, ...]) -> pl.DataFrame:
    """Select ``columns`` in order with their declared dtypes (strict: a bad cast raises)."""
    missing = [c.name for c in columns if c.name not in frame.columns]
    if missing:
        raise ValueError(f"frame lacks declared column(s): {', '.join(missing)}")
    return frame.select(pl.col(c.name).cast(c.dtype, strict=True) for c in columns)


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
    Column("fill_price", pl.Float64(), "price per share after slippage (null: no fill)"),
    Column("fill_notional", pl.Float64(), "filled_quantity × fill_reference_price (currency)"),
    Column("commission", pl.Float64(), "commission of the fill (currency)"),
    Column("slippage_cost", pl.Float64(), "slippage of the fill against the trader (currency)"),
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
