"""Typed settings, parsed once from the YAML files in the config directory.

The config directory is ``--config DIR`` on the CLI, else ``$QUANT_ASSETS_CONFIG``, else the
repository's ``configs/``. The data directory (DuckDB file, Dagster instance, later MLflow
and reports) is ``$QUANT_ASSETS_HOME``, default ``./data``.

Every problem is reported as :class:`quant_assets.errors.ConfigError` naming the file, the
key and what is wrong, before anything runs.
"""

from __future__ import annotations

import math
import os
import re
from datetime import date
from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Any, Literal

import yaml
from pydantic import (
    AfterValidator,
    BaseModel,
    ConfigDict,
    Field,
    ValidationError,
    field_validator,
    model_validator,
)

from quant_assets.errors import ConfigError

if TYPE_CHECKING:
    import polars as pl
from quant_assets.names import REGIME_NAMES
from quant_assets.tickers import validate_ticker

REPO_ROOT = Path(__file__).resolve().parents[1]
DEFAULT_CONFIG_DIR = REPO_ROOT / "configs"
CONFIG_ENV = "QUANT_ASSETS_CONFIG"
HOME_ENV = "QUANT_ASSETS_HOME"

Ticker = Annotated[str, AfterValidator(validate_ticker)]
PositiveWindow = Annotated[int, Field(ge=1, le=2520)]
VolWindow = Annotated[int, Field(ge=2, le=2520)]  # a sample std needs two returns


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class Membership(_Strict):
    """When a ticker belongs to the universe: from its listing or index entry (``from``) to
    its last session in it (``to``, a delisting or index exit), both inclusive; None: open."""

    model_config = ConfigDict(extra="forbid", frozen=True, populate_by_name=True)

    start: date | None = Field(default=None, alias="from")
    end: date | None = Field(default=None, alias="to")


class UniverseSettings(_Strict):
    """``universe.yaml``: what is traded, against which benchmark, on which calendar.

    ``tickers`` lists symbols; an entry may instead be ``{SYMBOL: {from: D, to: D}}`` (either
    bound optional) for a point-in-time universe — a name that lists, delists, enters or
    leaves an index inside the range. Its bars are kept only inside that membership, so every
    cross-section (alpha, sizing, the book, orders) holds the members of its date. The parsed
    bounds are in ``membership``; ``tickers`` stays the plain list of symbols.
    """

    tickers: list[Ticker] = Field(min_length=1)
    membership: dict[Ticker, Membership] = {}
    benchmark: Ticker
    start: date
    end: date | None = None  # None: up to today, the current window stays open
    calendar: str = "XNYS"
    partition_grain: Literal["month", "year"] = "month"

    @model_validator(mode="before")
    @classmethod
    def _point_in_time_entries(cls, data: Any) -> Any:
        """``{SYMBOL: {from, to}}`` entries (or a ``tickers`` mapping) → symbols + membership."""
        if not isinstance(data, dict) or "membership" in data:
            return data
        entries = data.get("tickers")
        if isinstance(entries, dict):
            entries = [{symbol: bounds} for symbol, bounds in entries.items()]
        if not isinstance(entries, list) or not any(isinstance(e, dict) for e in entries):
            return data
        symbols: list[Any] = []
        membership: dict[Any, Any] = {}
        for entry in entries:
            if not isinstance(entry, dict):
                symbols.append(entry)
                continue
            if len(entry) != 1:
                raise ValueError(
                    f"tickers entry {entry!r}: write one symbol per entry, e.g. "
                    "{ENRN: {to: 2001-11-30}}"
                )
            ((symbol, bounds),) = entry.items()
            symbols.append(symbol)
            if bounds is not None:
                if not isinstance(bounds, dict):
                    raise ValueError(
                        f"tickers entry {symbol}: membership must be {{from: DATE, to: DATE}}, "
                        f"not {bounds!r}"
                    )
                membership[symbol] = bounds
        return {**data, "tickers": symbols, "membership": membership}

    @model_validator(mode="after")
    def _consistent(self) -> UniverseSettings:
        for symbol, member in self.membership.items():
            if symbol not in self.tickers:
                raise ValueError(f"membership for {symbol}, which is not a universe ticker")
            if member.start and member.end and member.end < member.start:
                raise ValueError(
                    f"ticker {symbol}: membership to {member.end} is before from {member.start}"
                )
            if member.end is not None and member.end < self.start:
                raise ValueError(
                    f"ticker {symbol}: membership ends {member.end}, before the universe "
                    f"start {self.start}: drop it from tickers"
                )
        if len(set(self.tickers)) != len(self.tickers):
            dupes = sorted({t for t in self.tickers if self.tickers.count(t) > 1})
            raise ValueError(f"duplicate tickers: {', '.join(dupes)}")
        if self.benchmark in self.tickers:
            raise ValueError(f"benchmark {self.benchmark} must not also be a universe ticker")
        if self.end is not None and self.end < self.start:
            raise ValueError(f"end {self.end} is before start {self.start}")
        return self

    @property
    def exits(self) -> dict[str, date]:
        """Ticker → its last member session, for the tickers that leave the universe."""
        return {t: m.end for t, m in self.membership.items() if m.end is not None}

    def members_only(self, frame: pl.DataFrame) -> pl.DataFrame:
        """The rows of ``frame`` (``ticker``, ``date``) inside their ticker's membership; rows
        of tickers without bounds (the benchmark included) are all kept. Order is kept."""
        import polars as pl

        if not self.membership or frame.is_empty():
            return frame
        bounds = pl.DataFrame(
            {
                "ticker": list(self.membership),
                "_from": [m.start for m in self.membership.values()],
                "_to": [m.end for m in self.membership.values()],
            },
            schema={"ticker": pl.Utf8, "_from": pl.Date, "_to": pl.Date},
        )
        joined = frame.join(bounds, on="ticker", how="left", maintain_order="left")
        inside = (pl.col("_from").is_null() | (pl.col("date") >= pl.col("_from"))) & (
            pl.col("_to").is_null() | (pl.col("date") <= pl.col("_to"))
        )
        return joined.filter(inside).drop("_from", "_to")

    @field_validator("calendar")
    @classmethod
    def _known_calendar(cls, name: str) -> str:
        import exchange_calendars as xcals

        if name not in xcals.get_calendar_names(include_aliases=True):
            raise ValueError(f"unknown exchange calendar {name!r} (see exchange_calendars)")
        return name


class FilesProviderSettings(_Strict):
    path: Path


class SyntheticProviderSettings(_Strict):
    seed: int = 7
    origin: date = date(1990, 1, 2)


# Yahoo's own symbols: indices (^GSPC), share classes (BRK-B), foreign listings (VOD.L), FX.
YahooSymbol = Annotated[str, Field(pattern=r"^\^?[A-Z0-9]{1,10}(?:[.\-=][A-Z0-9]{1,4})?$")]


class YahooProviderSettings(_Strict):
    """The yahoo provider (network): retries, rate limit (seed 003: 5/s, burst 5), symbols."""

    max_attempts: Annotated[int, Field(ge=1, le=10)] = 4
    backoff_seconds: float = Field(default=1.0, ge=0, le=60, description="first retry wait")
    max_backoff_seconds: float = Field(default=30.0, ge=0, le=600)
    rate_per_second: float = Field(default=5.0, gt=0, le=100)
    burst: Annotated[int, Field(ge=1, le=100)] = 5
    timeout_seconds: float = Field(default=10.0, gt=0, le=120)
    symbols: dict[Ticker, YahooSymbol] = {}  # our ticker -> Yahoo's, over the built-in map


ProviderName = Literal["bundled", "synthetic", "files", "yahoo"]


class ProvidersSettings(_Strict):
    """``providers.yaml``: the primary provider, its ordered fallbacks, each one's options."""

    provider: ProviderName = "bundled"
    fallback: list[ProviderName] = []
    files: FilesProviderSettings | None = None
    synthetic: SyntheticProviderSettings = SyntheticProviderSettings()
    yahoo: YahooProviderSettings = YahooProviderSettings()

    @field_validator("fallback")
    @classmethod
    def _distinct_fallbacks(cls, fallback: list[str]) -> list[str]:
        dupes = sorted({name for name in fallback if fallback.count(name) > 1})
        if dupes:
            raise ValueError(f"duplicate fallback provider(s): {', '.join(dupes)}")
        return fallback

    @model_validator(mode="after")
    def _consistent(self) -> ProvidersSettings:
        if self.provider == "files" and self.files is None:
            raise ValueError("provider 'files' needs a 'files: {path: ...}' section")
        if self.provider in self.fallback:
            raise ValueError(f"fallback repeats the primary provider {self.provider!r}")
        if "files" in self.fallback and self.files is None:
            raise ValueError("fallback 'files' needs a 'files: {path: ...}' section")
        return self

    @property
    def chain(self) -> list[str]:
        """The provider names in the order they are tried: the primary, then the fallbacks."""
        return [self.provider, *self.fallback]


class FeatureSettings(_Strict):
    """``features.yaml``: the windows of every feature, in trading days."""

    ma_windows: list[PositiveWindow] = [10, 20, 50, 200]
    return_windows: list[PositiveWindow] = [1, 5, 20, 60]
    momentum_lookback: PositiveWindow = 252
    momentum_skip: Annotated[int, Field(ge=0, le=63)] = 21
    realized_vol_windows: list[PositiveWindow] = [20, 60]
    return_std_window: PositiveWindow = 20
    atr_window: PositiveWindow = 14
    volume_z_window: PositiveWindow = 20
    money_flow_window: PositiveWindow = 14
    obv_window: PositiveWindow = 20
    relative_return_windows: list[PositiveWindow] = [20, 60]
    beta_window: PositiveWindow = 60
    trading_days_per_year: PositiveWindow = 252

    @model_validator(mode="after")
    def _consistent(self) -> FeatureSettings:
        if self.momentum_skip >= self.momentum_lookback:
            raise ValueError("momentum_skip must be smaller than momentum_lookback")
        for name in ("ma_windows", "return_windows", "realized_vol_windows"):
            values = getattr(self, name)
            if not values:
                raise ValueError(f"{name} must not be empty")
        if 20 not in self.ma_windows or 50 not in self.ma_windows or 200 not in self.ma_windows:
            raise ValueError("ma_windows must include 20, 50 and 200 (the signals use them)")
        if 60 not in self.realized_vol_windows or 20 not in self.realized_vol_windows:
            raise ValueError("realized_vol_windows must include 20 and 60 (the signals use them)")
        if 60 not in self.relative_return_windows:
            raise ValueError("relative_return_windows must include 60 (the signals use it)")
        return self

    @property
    def max_window(self) -> int:
        """The longest look-back any feature needs, in trading days (plus one prior close)."""
        return 1 + max(
            *self.ma_windows,
            *self.return_windows,
            self.momentum_lookback,
            *self.realized_vol_windows,
            self.return_std_window,
            self.atr_window,
            self.volume_z_window,
            self.money_flow_window,
            self.obv_window,
            *self.relative_return_windows,
            self.beta_window,
        )


class SignalSettings(_Strict):
    """``signals.yaml``: the scales of the four rule-based signals (dimensionless)."""

    trend_momentum_scale: float = Field(default=1.0, gt=0)
    mean_reversion_z_scale: float = Field(default=2.0, gt=0)
    vol_ratio_scale: float = Field(default=1.0, gt=0)
    rel_strength_scale: float = Field(default=1.0, gt=0)


class SignalEvaluationSettings(_Strict):
    """The signal tear sheets (``research.yaml`` ``signal_evaluation``)."""

    horizons: tuple[Annotated[int, Field(ge=1, le=252)], ...] = (1, 5, 21)
    decay_horizons: Annotated[int, Field(ge=1, le=252)] = 21  # IC decay over 1..this
    quantiles: Annotated[int, Field(ge=2, le=20)] = 5
    min_names: Annotated[int, Field(ge=2)] = 5  # fewer names with a value: the date is dropped


class ResearchSettings(_Strict):
    """``research.yaml``: the research loop's own settings."""

    signal_evaluation: SignalEvaluationSettings = SignalEvaluationSettings()


class QualitySettings(_Strict):
    """``quality.yaml``: data-quality thresholds (seed 003 §4.2-4.3)."""

    return_spike_threshold: float = Field(default=0.40, gt=0, description="|daily return|")
    min_quality_score: float = Field(default=0.6, ge=0, le=1)


class RuleRegimeSettings(_Strict):
    """The rule-based regime fallback: moving averages, realised volatility, VIX-style stress."""

    ma_fast: PositiveWindow = 50
    ma_slow: PositiveWindow = 200
    vol_window: VolWindow = 20
    high_vol_annualized: float = Field(default=0.25, gt=0)
    crash_vol_annualized: float = Field(default=0.45, gt=0)
    crash_drawdown: float = Field(default=0.20, gt=0, lt=1, description="from the 252-day high")
    vix_high: float = Field(default=30.0, gt=0)
    vix_crash: float = Field(default=45.0, gt=0)
    vix_source: Literal["bundled", "none"] = "bundled"  # bundled: arch's VIX (2014-2019)

    @model_validator(mode="after")
    def _consistent(self) -> RuleRegimeSettings:
        if self.ma_fast >= self.ma_slow:
            raise ValueError("ma_fast must be shorter than ma_slow")
        if self.high_vol_annualized >= self.crash_vol_annualized:
            raise ValueError("high_vol_annualized must be below crash_vol_annualized")
        if self.vix_high >= self.vix_crash:
            raise ValueError("vix_high must be below vix_crash")
        return self


FREQUENCY_MONTHS = {"month": 1, "quarter": 3, "year": 12}


class CutoffSettings(_Strict):
    """How often a model is refitted: one model per cut-off window (Dagster partition)."""

    cutoff_frequency: Literal["month", "quarter", "year"] = "year"
    first_cutoff: date | None = None  # default: the universe start + min_history_years
    min_history_years: Annotated[int, Field(ge=1, le=50)] = 3

    @field_validator("first_cutoff")
    @classmethod
    def _window_start(cls, value: date | None) -> date | None:
        if value is not None and value.day != 1:
            raise ValueError(f"first_cutoff {value} must be the first day of a month")
        return value

    @model_validator(mode="after")
    def _aligned(self) -> CutoffSettings:
        months = FREQUENCY_MONTHS[self.cutoff_frequency]
        if self.first_cutoff is not None and (self.first_cutoff.month - 1) % months:
            raise ValueError(
                f"first_cutoff {self.first_cutoff} does not start a {self.cutoff_frequency}"
            )
        return self

    def resolved_first_cutoff(self, universe_start: date) -> date:
        """The first cut-off: ``first_cutoff``, else the first window start at least
        ``min_history_years`` after the universe start."""
        if self.first_cutoff is not None:
            return self.first_cutoff
        months = FREQUENCY_MONTHS[self.cutoff_frequency]
        earliest = universe_start.replace(year=universe_start.year + self.min_history_years)
        index = earliest.year * 12 + earliest.month - 1
        if earliest.day != 1 or index % months:
            index = (index // months + 1) * months
        return date(index // 12, index % 12 + 1, 1)


class RegimeSettings(CutoffSettings):
    """``regimes.yaml``: the benchmark HMM (seed 004 §3.5) and its rule-based fallback."""

    restarts: Annotated[int, Field(ge=1, le=50)] = 5
    seed: int = 11
    n_iter: Annotated[int, Field(ge=10, le=5000)] = 200
    tol: float = Field(default=1e-4, gt=0)
    covariance_type: Literal["full", "diag"] = "full"
    realized_vol_window: VolWindow = 20
    min_train_sessions: Annotated[int, Field(ge=100)] = 500
    train_window_sessions: Annotated[int, Field(ge=100)] | None = None  # None: expanding
    filter_burn_in_sessions: Annotated[int, Field(ge=0, le=2520)] = 126
    rules: RuleRegimeSettings = RuleRegimeSettings()


class LabelSettings(_Strict):
    """Next-state targets: down / flat / up by ``threshold_vol_multiple`` × σ_daily × √h."""

    horizons: list[Annotated[int, Field(ge=1, le=63)]] = [1, 3, 5]
    threshold_vol_multiple: float = Field(default=0.5, gt=0)
    vol_window: VolWindow = 20

    @field_validator("horizons")
    @classmethod
    def _distinct(cls, value: list[int]) -> list[int]:
        if not value or len(set(value)) != len(value):
            raise ValueError("horizons must be a non-empty list of distinct day counts")
        return sorted(value)


class SplitSettings(_Strict):
    """The walk-forward split before each cut-off, in exchange sessions (seed 002)."""

    validation_sessions: Annotated[int, Field(ge=20)] = 126
    test_sessions: Annotated[int, Field(ge=20)] = 126
    embargo_sessions: Annotated[int, Field(ge=0)] = 5
    train_sessions: Annotated[int, Field(ge=100)] | None = None  # None: expanding window
    min_train_rows: Annotated[int, Field(ge=100)] = 5000
    # Train and validation rows kept per origin date (a seeded, stable choice of tickers);
    # None keeps all. Bounds training at wide universes; the test window is never sampled.
    max_rows_per_date: Annotated[int, Field(ge=1)] | None = None


class LightGBMSettings(_Strict):
    n_estimators: Annotated[int, Field(ge=1, le=10000)] = 300
    learning_rate: float = Field(default=0.05, gt=0, le=1)
    num_leaves: Annotated[int, Field(ge=2, le=1024)] = 31
    min_child_samples: Annotated[int, Field(ge=1)] = 200
    feature_fraction: float = Field(default=0.8, gt=0, le=1)
    bagging_fraction: float = Field(default=0.8, gt=0, le=1)
    bagging_freq: Annotated[int, Field(ge=0)] = 1
    lambda_l2: float = Field(default=1.0, ge=0)
    early_stopping_rounds: Annotated[int, Field(ge=1)] = 30
    max_bin: Annotated[int, Field(ge=7, le=1023)] = 255  # histogram bins per input
    # "goss": gradient-based one-side sampling (LightGBM); it replaces bagging, so
    # bagging_fraction and bagging_freq are not used with it.
    data_sample_strategy: Literal["bagging", "goss"] = "bagging"
    seed: int = 7
    num_threads: Annotated[int, Field(ge=1, le=64)] = 1  # OpenMP threads per fit
    parallel_fits: Annotated[int, Field(ge=1, le=64)] = 2  # fits at once (threads)


class PromotionSettings(_Strict):
    """The champion gate: promote only when the test log loss improves by ``min_improvement``."""

    metric: Literal["log_loss", "balanced_accuracy", "information_coefficient"] = "log_loss"
    min_improvement: float = Field(default=0.001, ge=0)


class MlflowSettings(_Strict):
    """Where models are tracked. ``tracking_uri`` None: a SQLite store in the data directory;
    ``$MLFLOW_TRACKING_URI`` overrides both."""

    tracking_uri: str | None = None
    experiment: str = "quant_assets"
    registered_model: str = "quant_assets_next_state"
    regime_registered_model: str = "quant_assets_regime_hmm"
    ui_url: str = (
        "http://127.0.0.1:5000"  # where `make mlflow-ui` serves; links in Dagster metadata
    )


class ModelSettings(CutoffSettings):
    """``models.yaml``: labels, walk-forward split, LightGBM, promotion gate, MLflow."""

    labels: LabelSettings = LabelSettings()
    split: SplitSettings = SplitSettings()
    lightgbm: LightGBMSettings = LightGBMSettings()
    promotion: PromotionSettings = PromotionSettings()
    mlflow: MlflowSettings = MlflowSettings()


# --- strategies (configs/strategies/*.yaml) and risk limits (configs/risk.yaml) ---

SIGNAL_COMPONENTS = ("trend_alpha", "mean_rev_alpha", "vol_alpha", "rel_strength_alpha")
PREDICTION_COMPONENT = "prediction"
ALPHA_COMPONENTS = (*SIGNAL_COMPONENTS, PREDICTION_COMPONENT)
Fraction = Annotated[float, Field(ge=0, le=1)]
NonNegative = Annotated[float, Field(ge=0)]


class VarSettings(_Strict):
    """Value at Risk of the proposed portfolio: hybrid historical + parametric (003 §7.3)."""

    confidence: float = Field(default=0.95, gt=0.5, lt=1)
    window_sessions: Annotated[int, Field(ge=20, le=2520)] = 252
    historical_weight: Fraction = 0.6  # the rest is parametric (normal)
    limit: float = Field(default=0.04, gt=0, description="1-day VaR as a fraction of equity")
    cvar_limit: float = Field(default=0.06, gt=0, description="1-day CVaR (expected shortfall)")


class EvtSettings(_Strict):
    """Generalised Pareto tail on the losses above a threshold (peaks over threshold)."""

    enabled: bool = True
    threshold_quantile: float = Field(default=0.90, gt=0.5, lt=1)
    min_exceedances: Annotated[int, Field(ge=10)] = 20
    refit_every_sessions: Annotated[int, Field(ge=1, le=252)] = 21


class DrawdownSettings(_Strict):
    """Drawdown guard on the strategy's paper equity, and the kill switch."""

    guard_start: float = Field(default=0.10, gt=0, lt=1)
    max_drawdown: float = Field(default=0.18, gt=0, lt=1)
    guard_floor: Fraction = 0.25
    kill_switch: float | None = Field(default=0.25, gt=0, lt=1)

    @model_validator(mode="after")
    def _ordered(self) -> DrawdownSettings:
        if self.guard_start >= self.max_drawdown:
            raise ValueError("guard_start must be below max_drawdown")
        if self.kill_switch is not None and self.kill_switch < self.max_drawdown:
            raise ValueError("kill_switch must be at or above max_drawdown")
        return self


class CircuitBreakerSettings(_Strict):
    """Tiers (003 §7.5) and staged recovery after a freeze (003 §7.6)."""

    realized_vol_window: VolWindow = 20
    defensive_var_multiple: float = Field(default=1.5, gt=1)
    defensive_vol_multiple: float = Field(default=2.0, gt=1)
    defensive_scale: Fraction = 0.25
    freeze_vol_multiple: float = Field(default=1.5, gt=0)
    cooldown_sessions: Annotated[int, Field(ge=0, le=252)] = 10
    recovery_stages: list[Annotated[float, Field(gt=0, le=1)]] = [0.2, 0.4, 0.6, 0.8, 1.0]
    sessions_per_stage: Annotated[int, Field(ge=1, le=252)] = 5
    recovery_vol_multiple: float = Field(default=1.5, gt=0)

    @field_validator("recovery_stages")
    @classmethod
    def _increasing(cls, stages: list[float]) -> list[float]:
        if not stages or stages != sorted(stages) or stages[-1] != 1.0:
            raise ValueError("recovery_stages must increase and end at 1.0")
        return stages


class RiskSettings(_Strict):
    """Portfolio risk overlays (configs/risk.yaml; a strategy may override any key)."""

    var: VarSettings = VarSettings()
    evt: EvtSettings = EvtSettings()
    drawdown: DrawdownSettings = DrawdownSettings()
    circuit_breakers: CircuitBreakerSettings = CircuitBreakerSettings()
    regime_multipliers: dict[str, Fraction] = {
        "bull": 1.0,
        "choppy": 0.7,
        "bear": 0.5,
        "crash": 0.0,
    }

    @field_validator("regime_multipliers")
    @classmethod
    def _every_regime(cls, multipliers: dict[str, float]) -> dict[str, float]:
        unknown = sorted(set(multipliers) - set(REGIME_NAMES))
        missing = [r for r in REGIME_NAMES if r not in multipliers]
        if unknown or missing:
            raise ValueError(
                f"needs exactly the regimes {', '.join(REGIME_NAMES)}"
                + (f"; unknown: {', '.join(unknown)}" if unknown else "")
                + (f"; missing: {', '.join(missing)}" if missing else "")
            )
        return multipliers


class AlphaSettings(_Strict):
    """The meta-brain: regime-weighted ensemble of signals and predictions (003 §3.1, 004 §3.7)."""

    weights: dict[str, dict[str, NonNegative]]
    regime_weighting: Literal["probability", "label"] = "probability"
    prediction_horizon: Annotated[int, Field(ge=1, le=63)] = 5
    prediction_scale: float = Field(
        default=0.1, gt=0, description="prediction alpha = tanh((p_up - p_down) / scale)"
    )
    disagreement_penalty: NonNegative = 0.5  # beta in exp(-beta * Var)
    normalization: Literal["robust_zscore", "none"] = "robust_zscore"
    zscore_scale: float = Field(default=2.0, gt=0, description="alpha = tanh(z / scale)")
    min_cross_section: Annotated[int, Field(ge=2)] = 3

    @field_validator("weights")
    @classmethod
    def _table(cls, weights: dict[str, dict[str, float]]) -> dict[str, dict[str, float]]:
        missing = [r for r in REGIME_NAMES if r not in weights]
        unknown = sorted(set(weights) - set(REGIME_NAMES))
        if missing or unknown:
            raise ValueError(
                f"needs a row for each regime {', '.join(REGIME_NAMES)}"
                + (f"; missing: {', '.join(missing)}" if missing else "")
                + (f"; unknown: {', '.join(unknown)}" if unknown else "")
            )
        for regime, row in weights.items():
            bad = sorted(set(row) - set(ALPHA_COMPONENTS))
            if bad:
                raise ValueError(
                    f"{regime}: unknown component(s) {', '.join(bad)}; "
                    f"known: {', '.join(ALPHA_COMPONENTS)}"
                )
            if sum(row.values()) <= 0:
                raise ValueError(f"{regime}: weights must not all be zero")
        return weights

    @property
    def components(self) -> tuple[str, ...]:
        """Components with a positive weight in some regime, in canonical order."""
        used = {k for row in self.weights.values() for k, v in row.items() if v > 0}
        return tuple(c for c in ALPHA_COMPONENTS if c in used)


class SizingSettings(_Strict):
    """Alpha -> target weight: fractional Kelly, volatility target, caps (003 §6.3, §8)."""

    long_only: bool = True
    # kelly: per-name fractional Kelly (below); mean_variance / risk_parity: skfolio's
    # optimisers under the caps of seed 003 §8.2 (see quant_assets/risk/allocators.py).
    allocator: Literal["kelly", "mean_variance", "risk_parity"] = "kelly"
    risk_aversion: float = Field(default=1.0, gt=0, description="lambda of mean-variance")
    max_gross_long: float | None = Field(default=None, gt=0)
    max_gross_short: float | None = Field(default=None, ge=0)
    kelly_fraction: float = Field(default=0.3, gt=0, le=1)  # gamma
    information_coefficient: float = Field(default=0.05, gt=0, le=1)  # mu = IC * alpha * sigma
    risk_free_rate: float = Field(default=0.02, ge=0, le=0.5, description="annual")
    volatility_window: VolWindow = 60
    target_volatility: float = Field(default=0.10, gt=0, le=2, description="annualised")
    max_weight: float = Field(default=0.10, gt=0, le=1)
    max_gross_leverage: float = Field(default=1.0, gt=0, le=10)
    max_turnover: float | None = Field(default=0.20, gt=0, description="sum |dw| per session")


class BacktestSettings(_Strict):
    """Execution assumptions of the simulated book."""

    initial_capital: float = Field(default=1_000_000.0, gt=0)
    fill: Literal["next_open", "next_close"] = "next_open"
    commission_bps: NonNegative = 1.0
    slippage_bps: NonNegative = 2.0
    impact_coefficient: NonNegative = 0.1  # impact = k * daily_vol * sqrt(shares / ADV)
    adv_window: Annotated[int, Field(ge=1, le=252)] = 20
    vol_window: VolWindow = 20
    lot_size: NonNegative = 1.0  # 0: fractional shares
    allow_borrowing: bool = False  # False: buys are scaled down to the cash available


class StrategyPromotionSettings(_Strict):
    """Out-of-sample gates a strategy must pass to be marked promoted (seed 002)."""

    min_deflated_sharpe: Fraction = 0.95
    max_spa_pvalue: Fraction = 0.10
    extra_trials: Annotated[int, Field(ge=0)] = 0  # tried outside the platform (not in the ledger)
    bootstrap_reps: Annotated[int, Field(ge=100, le=100_000)] = 1000
    bootstrap_block: Annotated[int, Field(ge=1, le=252)] = 10
    seed: int = 17


class StrategySettings(_Strict):
    """One strategy: ``configs/strategies/<name>.yaml``."""

    name: str
    description: str = ""
    alpha: AlphaSettings
    sizing: SizingSettings = SizingSettings()
    backtest: BacktestSettings = BacktestSettings()
    risk: RiskSettings = RiskSettings()
    promotion: StrategyPromotionSettings = StrategyPromotionSettings()
    # Where a promoted study's winner came from (study, ledger hash, gate figures); written by
    # `quant-assets promote`, informational: it changes no computation.
    provenance: dict[str, Any] | None = None


class ParameterRange(_Strict):
    """A numeric range of a study parameter: ``low..high`` by ``step`` on a grid (both ends
    included when they fall on the step), or sampled between them (``log``: on a log scale,
    ``integer``: whole numbers)."""

    low: float
    high: float
    step: float | None = Field(default=None, gt=0)
    log: bool = False
    integer: bool = False

    @model_validator(mode="after")
    def _ordered(self) -> ParameterRange:
        if self.high < self.low:
            raise ValueError(f"high ({self.high}) is below low ({self.low})")
        if self.log and self.low <= 0:
            raise ValueError("a log range needs low > 0")
        return self

    def grid(self) -> list[float]:
        """The grid values low, low + step, ... <= high (a range without a step: both ends)."""
        if self.step is None:
            values = [self.low, self.high] if self.high > self.low else [self.low]
        else:
            count = math.floor((self.high - self.low) / self.step + 1e-9) + 1
            values = [round(self.low + i * self.step, 12) for i in range(count)]
        return [float(round(v)) if self.integer else v for v in values]


class StudySearch(_Strict):
    """How a study walks its space: every point of the grid, or ``trials`` points sampled by
    Optuna's TPE sampler (seeded) for spaces too large to enumerate."""

    method: Literal["grid", "sample"] = "grid"
    trials: Annotated[int, Field(ge=1, le=100_000)] = 100
    seed: int = 17
    max_grid: Annotated[int, Field(ge=1, le=1_000_000)] = 5_000


class StudyConstraints(_Strict):
    """A trial is eligible in a fold only if, on the fold's train window, it trades at least
    ``min_trades`` times and its drawdown stays within ``max_drawdown``."""

    min_trades: Annotated[int, Field(ge=0)] = 0
    max_drawdown: Fraction | None = None


class WalkForwardSettings(_Strict):
    """Folds of the walk-forward selection, in sessions: each fold trains on
    ``train_sessions`` (rolling) or on everything since the first session (anchored, at least
    ``train_sessions``) and tests on the next ``test_sessions``."""

    scheme: Literal["anchored", "rolling"] = "anchored"
    train_sessions: Annotated[int, Field(ge=20, le=20_000)] = 756
    test_sessions: Annotated[int, Field(ge=5, le=5_000)] = 252
    start: date | None = None  # first session of the first train window (default: the first)


class StudyGates(_Strict):
    """What a study's selection must pass to be promoted (seed 002's promotion gate)."""

    min_deflated_sharpe: Fraction = 0.95
    max_pbo: Fraction = 0.5
    max_spa_pvalue: Fraction = 0.10


class StudySettings(_Strict):
    """One parameter study: ``configs/studies/<name>.yaml``.

    ``space`` maps dotted keys of the base strategy's config (``sizing.kelly_fraction``,
    ``alpha.weights.bull.trend_alpha``, ``risk.drawdown.max_drawdown`` ...) to a list of
    values or a :class:`ParameterRange`.
    """

    name: str
    description: str = ""
    base: str
    space: dict[str, list[Any] | ParameterRange]
    search: StudySearch = StudySearch()
    objective: Literal["sharpe", "sortino", "calmar", "cagr"] = "sharpe"
    constraints: StudyConstraints = StudyConstraints()
    walk_forward: WalkForwardSettings = WalkForwardSettings()
    gates: StudyGates = StudyGates()
    pbo_partitions: Annotated[int, Field(ge=2, le=24)] = 16
    surface: tuple[str, str] | None = None  # two space keys for the report's heatmaps
    top_runs: Annotated[int, Field(ge=0, le=50)] = 5  # trials logged as MLflow child runs

    @field_validator("space")
    @classmethod
    def _space(cls, space: dict[str, Any]) -> dict[str, Any]:
        if not space:
            raise ValueError("needs at least one parameter")
        for key, values in space.items():
            if not _DOTTED_KEY.match(key):
                raise ValueError(f"{key!r} is not a dotted key of the strategy config")
            if isinstance(values, list) and not values:
                raise ValueError(f"{key}: the list of values is empty")
        return space

    @field_validator("pbo_partitions")
    @classmethod
    def _even(cls, value: int) -> int:
        if value % 2:
            raise ValueError("must be even (CSCV splits the blocks in two halves)")
        return value

    @model_validator(mode="after")
    def _surface_in_space(self) -> StudySettings:
        if self.surface is not None:
            unknown = [k for k in self.surface if k not in self.space]
            if unknown:
                raise ValueError(f"surface: {', '.join(unknown)} not in space")
        return self


_DOTTED_KEY = re.compile(r"^[a-z_][a-z0-9_]*(\.[a-z0-9_]+)+$")


class PostgresStorageSettings(_Strict):
    """``storage.yaml`` ``postgres:``: the shared PostgreSQL data backend. The password is
    never in the file: ``password_env`` names the environment variable that holds it."""

    host: str = Field(default="127.0.0.1", pattern=r"^[A-Za-z0-9_.:-]{1,253}$")
    port: Annotated[int, Field(ge=1, le=65535)] = 5432
    database: str = Field(default="quant_assets", pattern=r"^[A-Za-z_][A-Za-z0-9_]{0,62}$")
    user: str = Field(default="quant_assets", pattern=r"^[A-Za-z_][A-Za-z0-9_]{0,62}$")
    password_env: str = "QUANT_ASSETS_PG_PASSWORD"
    # Schema of the market tables; strategy tables go to a schema named after the strategy.
    schema_name: str = Field(default="market", pattern=r"^[a-z_][a-z0-9_]{0,62}$")
    sslmode: Literal["disable", "allow", "prefer", "require", "verify-ca", "verify-full"] = "prefer"

    @field_validator("password_env")
    @classmethod
    def _password_env_name(cls, value: str) -> str:
        if not _ENV_NAME.match(value):
            raise ValueError(
                f"{value!r} is not an environment variable name (A-Z, 0-9, _): put the "
                "password in the environment and its variable's name here"
            )
        return value


class StorageSettings(_Strict):
    """``storage.yaml``: where the tables live and how many steps run at once
    (docs/deployment.md)."""

    # duckdb: the embedded default, one DuckDB file, one writing process.
    # postgres: shared storage several processes and machines write at once.
    backend: Literal["duckdb", "postgres"] = "duckdb"
    postgres: PostgresStorageSettings = PostgresStorageSettings()
    # Steps run at once per run with the postgres backend (multiprocess executor).
    max_concurrent: Annotated[int, Field(ge=1, le=64)] = 4


class DailyScheduleSettings(_Strict):
    """The daily update: one run per new exchange session, after the close."""

    enabled: bool = True
    # Minutes after the calendar's regular close (XNYS 16:00 America/New_York): data vendors
    # publish the day's bars a little after the bell.
    minutes_after_close: Annotated[int, Field(ge=0, le=480)] = 30


class SensorSettings(_Strict):
    """Whether a sensor runs by default and how often it ticks."""

    enabled: bool = True
    minimum_interval_seconds: Annotated[int, Field(ge=1, le=86_400)] = 15


_ENV_NAME = re.compile(r"^[A-Z_][A-Z0-9_]{0,63}$")


class AlertSettings(_Strict):
    """Run-failure alerts: always recorded under ``$QUANT_ASSETS_HOME/alerts``; posted to a
    webhook only when ``webhook_url_env`` names an environment variable that holds its URL
    (the URL often embeds a token, so it never lives in a config file)."""

    webhook_url_env: str | None = None  # off by default
    timeout_seconds: float = Field(default=5.0, gt=0, le=60)
    max_attempts: Annotated[int, Field(ge=1, le=10)] = 3

    @field_validator("webhook_url_env")
    @classmethod
    def _env_name(cls, value: str | None) -> str | None:
        if value is not None and not _ENV_NAME.match(value):
            raise ValueError(
                f"{value!r} is not an environment variable name (A-Z, 0-9, _): put the URL "
                "in the environment and its variable's name here"
            )
        return value


class OperationsSettings(_Strict):
    """``operations.yaml``: the daily schedule, sensors, declarative automation and alerts."""

    schedule: DailyScheduleSettings = DailyScheduleSettings()
    # The converge sensor: universe.yaml, the drop folder and the graph's own state.
    converge: SensorSettings = SensorSettings()
    # The eager automation sensor: an alternative to converge (latest windows only), off.
    automation: SensorSettings = SensorSettings(enabled=False, minimum_interval_seconds=30)
    alerts: AlertSettings = AlertSettings()


class Settings(_Strict):
    """All settings of one config directory."""

    config_dir: Path
    universe: UniverseSettings
    providers: ProvidersSettings
    features: FeatureSettings = FeatureSettings()
    signals: SignalSettings = SignalSettings()
    research: ResearchSettings = ResearchSettings()
    quality: QualitySettings = QualitySettings()
    regimes: RegimeSettings = RegimeSettings()
    models: ModelSettings = ModelSettings()
    risk: RiskSettings = RiskSettings()
    strategies: dict[str, StrategySettings] = {}
    studies: dict[str, StudySettings] = {}
    storage: StorageSettings = StorageSettings()
    operations: OperationsSettings = OperationsSettings()


_FILES: dict[str, tuple[str, bool]] = {
    # section: (file name, required)
    "universe": ("universe.yaml", True),
    "providers": ("providers.yaml", True),
    "features": ("features.yaml", False),
    "signals": ("signals.yaml", False),
    "research": ("research.yaml", False),
    "quality": ("quality.yaml", False),
    "regimes": ("regimes.yaml", False),
    "models": ("models.yaml", False),
    "risk": ("risk.yaml", False),
    "storage": ("storage.yaml", False),
    "operations": ("operations.yaml", False),
}
STRATEGY_DIR = "strategies"
STUDY_DIR = "studies"
# DuckDB schemas the warehouse already uses (a strategy's tables live in a schema of its name).
_RESERVED_STRATEGY_NAMES = {"market", "main", "warehouse", "information_schema", "pg_catalog"}
_STRATEGY_NAME = re.compile(r"^[a-z][a-z0-9_]{0,39}$")


def resolve_config_dir(config_dir: str | Path | None = None) -> Path:
    """The config directory: the argument, else ``$QUANT_ASSETS_CONFIG``, else ``configs/``."""
    chosen = config_dir or os.environ.get(CONFIG_ENV) or DEFAULT_CONFIG_DIR
    return Path(chosen).expanduser().resolve()


def data_home() -> Path:
    """The data directory: ``$QUANT_ASSETS_HOME`` or ``./data``; created if missing."""
    home = Path(os.environ.get(HOME_ENV) or "data").expanduser().resolve()
    home.mkdir(parents=True, exist_ok=True)
    return home


def _read_yaml(path: Path) -> dict[str, Any]:
    try:
        text = path.read_text()
    except OSError as exc:
        raise ConfigError(str(path), "(file)", f"cannot read: {exc.strerror}") from exc
    try:
        loaded = yaml.safe_load(text)
    except yaml.YAMLError as exc:
        mark = getattr(exc, "problem_mark", None)
        where = f"line {mark.line + 1}" if mark is not None else "(file)"
        raise ConfigError(str(path), where, f"malformed YAML: {exc}") from exc
    if loaded is None:
        return {}
    if not isinstance(loaded, dict):
        raise ConfigError(str(path), "(top level)", "expected a mapping of keys to values")
    return loaded


def _first_error(path: Path, exc: ValidationError) -> ConfigError:
    err = exc.errors()[0]
    key = ".".join(str(p) for p in err["loc"]) or "(top level)"
    msg = err["msg"].removeprefix("Value error, ")
    extra = f" ({len(exc.errors()) - 1} more problem(s))" if len(exc.errors()) > 1 else ""
    if err["type"] == "extra_forbidden":
        msg = "unknown key"
    return ConfigError(str(path), key, msg + extra)


def load_settings(config_dir: str | Path | None = None) -> Settings:
    """Parse and validate every config file of ``config_dir`` (see :func:`resolve_config_dir`).

    Raises ConfigError naming the file, key and problem for a missing required file,
    malformed YAML, an unknown key, a wrong type or inconsistent values.
    """
    directory = resolve_config_dir(config_dir)
    if not directory.is_dir():
        raise ConfigError(str(directory), "(directory)", "config directory does not exist")
    sections: dict[str, Any] = {"config_dir": directory}
    models: dict[str, type[BaseModel]] = {
        "universe": UniverseSettings,
        "providers": ProvidersSettings,
        "features": FeatureSettings,
        "signals": SignalSettings,
        "research": ResearchSettings,
        "quality": QualitySettings,
        "regimes": RegimeSettings,
        "models": ModelSettings,
        "risk": RiskSettings,
        "storage": StorageSettings,
        "operations": OperationsSettings,
    }
    for section, (file_name, required) in _FILES.items():
        path = directory / file_name
        if not path.exists():
            if required:
                raise ConfigError(str(path), "(file)", "required config file is missing")
            continue
        raw = _read_yaml(path)
        try:
            sections[section] = models[section].model_validate(raw)
        except ValidationError as exc:
            raise _first_error(path, exc) from exc
    sections["strategies"] = load_strategies(
        directory / STRATEGY_DIR, sections.get("risk", RiskSettings())
    )
    sections["studies"] = load_studies(directory / STUDY_DIR, sections["strategies"])
    settings = Settings(**sections)
    files = settings.providers.files
    if files is not None and not files.path.is_absolute():
        # A relative files path is relative to the config directory, not the shell's cwd.
        resolved = FilesProviderSettings(path=(directory / files.path).resolve())
        settings = settings.model_copy(
            update={"providers": settings.providers.model_copy(update={"files": resolved})}
        )
    return settings


def _deep_merge(base: dict[str, Any], override: dict[str, Any]) -> dict[str, Any]:
    merged = dict(base)
    for key, value in override.items():
        if isinstance(value, dict) and isinstance(merged.get(key), dict):
            merged[key] = _deep_merge(merged[key], value)
        else:
            merged[key] = value
    return merged


def load_strategies(directory: Path, risk: RiskSettings) -> dict[str, StrategySettings]:
    """Every ``*.yaml`` in ``directory`` as a strategy named by its file stem.

    A strategy's ``risk:`` section overrides keys of ``risk.yaml``. Raises ConfigError naming
    the strategy file and key for a bad name, an unknown key or an invalid value.
    """
    if not directory.is_dir():
        return {}
    strategies: dict[str, StrategySettings] = {}
    for path in sorted(directory.glob("*.yaml")):
        name = path.stem
        if not _STRATEGY_NAME.match(name) or name in _RESERVED_STRATEGY_NAMES:
            raise ConfigError(
                str(path),
                "(file name)",
                "a strategy name must be 1-40 of a-z, 0-9, _ starting with a letter, and not "
                f"one of {', '.join(sorted(_RESERVED_STRATEGY_NAMES))}",
            )
        raw = _read_yaml(path)
        if "name" in raw and raw["name"] != name:
            raise ConfigError(
                str(path), "name", f"must equal the file name ({name!r}) or be left out"
            )
        risk_override = raw.get("risk") or {}
        if not isinstance(risk_override, dict):
            raise ConfigError(str(path), "risk", "expected a mapping of risk.yaml keys")
        raw = {
            **raw,
            "name": name,
            "risk": _deep_merge(risk.model_dump(), risk_override),
        }
        try:
            strategies[name] = StrategySettings.model_validate(raw)
        except ValidationError as exc:
            raise _first_error(path, exc) from exc
    return strategies


def strategy_document(settings: StrategySettings) -> dict[str, Any]:
    """A strategy as the plain mapping its YAML would hold (every key, defaults included)."""
    return settings.model_dump(mode="json", exclude={"name", "provenance"})


def load_studies(
    directory: Path, strategies: dict[str, StrategySettings]
) -> dict[str, StudySettings]:
    """Every ``*.yaml`` in ``directory`` as a study named by its file stem.

    Raises ConfigError naming the study file and key for a bad name, an unknown base
    strategy, a space key the strategy does not have, or an invalid value.
    """
    if not directory.is_dir():
        return {}
    studies: dict[str, StudySettings] = {}
    for path in sorted(directory.glob("*.yaml")):
        name = path.stem
        if not _STRATEGY_NAME.match(name):
            raise ConfigError(str(path), "(file name)", "a study name must be 1-40 of a-z, 0-9, _")
        raw = _read_yaml(path)
        if "name" in raw and raw["name"] != name:
            raise ConfigError(
                str(path), "name", f"must equal the file name ({name!r}) or be left out"
            )
        try:
            study = StudySettings.model_validate({**raw, "name": name})
        except ValidationError as exc:
            raise _first_error(path, exc) from exc
        if name in strategies:
            raise ConfigError(
                str(path), "(file name)", f"a strategy is also named {name!r}: tables would mix"
            )
        if study.base not in strategies:
            known = ", ".join(sorted(strategies)) or "none"
            raise ConfigError(
                str(path), "base", f"unknown strategy {study.base!r} (configured: {known})"
            )
        document = strategy_document(strategies[study.base])
        for key in study.space:
            if not _has_key(document, key.split(".")):
                raise ConfigError(
                    str(path), f"space.{key}", f"not a key of strategy {study.base!r}"
                )
        studies[name] = study
    return studies


def _has_key(document: dict[str, Any], parts: list[str]) -> bool:
    node: Any = document
    for part in parts[:-1]:
        if not isinstance(node, dict) or part not in node:
            return False
        node = node[part]
    if not isinstance(node, dict):
        return False
    if parts[-1] in node:
        return True
    # alpha.weights.<regime>.<component>: a component a row may leave out (weight 0).
    return len(parts) == 4 and parts[:2] == ["alpha", "weights"]
