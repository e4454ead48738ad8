"""Alpha scores -> risk-sized target weights, decided cross-sectionally at each date's close.

Per date t, with information up to t's close only (seed 003 §6-8, 004 §3.8):

1. **Kelly**: μ_i = IC · alpha_i · σ_i (Grinold's α = IC · σ · score), σ_i the daily return std
   over ``volatility_window`` sessions; f_i = γ · (μ_i - r_f) / σ_i², clipped at 0 when
   long-only. A ticker without a full volatility window or an alpha gets 0.
2. **Volatility target** as a ceiling: the book's ex-ante volatility √(fᵀΣf · 252) is scaled
   down to ``target_volatility`` (never up: Kelly decides how much, the target caps risk).
3. **Caps**: per name ±``max_weight``, then gross leverage ``max_gross_leverage``.
4. **Overlays**, each a multiplier ≤ 1 on the whole book: the regime multiplier (003 §7.2);
   VaR and CVaR (hybrid, and the EVT tail when it is worse) scaled onto their limits; the
   drawdown guard (linear from ``guard_start`` to ``guard_floor`` at ``max_drawdown``);
   circuit breakers (003 §7.5-7.6): defensive sizing when VaR > 1.5× its limit or realised
   volatility > 2× target, a freeze (flat) when the drawdown passes ``max_drawdown`` in high
   volatility, a cooldown, then staged recovery while volatility stays calm; the kill switch
   (flat for good) at ``kill_switch`` drawdown.
5. **Turnover**: Σ|w - w_prev| above ``max_turnover`` moves only that far towards the target,
   unless the overlays are cutting risk (a reduction is never slowed).

Caps hold at the end: overlays only scale down, and the turnover step is a convex
combination of two books that both satisfy them.

Drawdown and realised volatility are those of the strategy's **paper book**: yesterday's
target weights times today's close-to-close returns (before costs). The simulated book with
costs (:mod:`quant_assets.backtest`) depends on these positions, so it cannot feed them back.

The path-dependent part (paper equity, breaker state, EVT refit schedule, previous weights) is
carried in :class:`PositionState`, stored on the rows, so a range continues exactly from the
state at the close before it. Every scaling applied to a row is listed in its
``reason_codes`` (JSON), the audit record of 003 §10.1.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass, field, replace
from datetime import date

import numpy as np
import polars as pl

from quant_assets.names import SESSIONS_PER_YEAR
from quant_assets.risk.measures import fit_gpd_tail, portfolio_tail_risk
from quant_assets.settings import RiskSettings, SizingSettings, StrategySettings

BREAKER_STATES = ("normal", "defensive", "frozen", "recovery", "killed")
DECISIONS = ("EXECUTE_BUY", "EXECUTE_SELL", "HOLD", "REJECT")
_EPS = 1e-12

POSITION_COLUMNS: dict[str, pl.DataType] = {
    "date": pl.Date(),
    "ticker": pl.Utf8(),
    "alpha_score": pl.Float64(),
    "confidence": pl.Float64(),
    "volatility_daily": pl.Float64(),
    "expected_return_daily": pl.Float64(),
    "kelly_weight": pl.Float64(),
    "sized_weight": pl.Float64(),
    "target_weight": pl.Float64(),
    "previous_weight": pl.Float64(),
    "decision": pl.Utf8(),
    "reason_codes": pl.Utf8(),
    "gross_exposure": pl.Float64(),
    "net_exposure": pl.Float64(),
    "ex_ante_vol_annualized": pl.Float64(),
    "var_95": pl.Float64(),
    "cvar_95": pl.Float64(),
    "evt_es_95": pl.Float64(),
    "regime_label": pl.Utf8(),
    "regime_multiplier": pl.Float64(),
    "var_scale": pl.Float64(),
    "drawdown_scale": pl.Float64(),
    "breaker_state": pl.Utf8(),
    "breaker_scale": pl.Float64(),
    "risk_scale": pl.Float64(),
    "turnover": pl.Float64(),
    "paper_return": pl.Float64(),
    "paper_equity": pl.Float64(),
    "paper_peak": pl.Float64(),
    "paper_drawdown": pl.Float64(),
    "paper_vol_annualized": pl.Float64(),
    "breaker_sessions": pl.Int64(),
    "recovery_stage": pl.Int64(),
    "session_number": pl.Int64(),
    "evt_shape": pl.Float64(),
    "evt_es_standardized": pl.Float64(),
}


@dataclass(frozen=True)
class PositionState:
    """The positions book at the close of ``as_of``: what the next date continues from."""

    as_of: date | None = None
    weights: dict[str, float] = field(default_factory=dict)
    paper_equity: float = 1.0
    paper_peak: float = 1.0
    breaker_state: str = "normal"
    breaker_sessions: int = 0
    recovery_stage: int = 0
    risk_scale: float = 1.0
    session_number: int = 0
    evt_shape: float = math.nan
    evt_es_standardized: float = math.nan
    recent_paper_returns: tuple[float, ...] = ()

    @classmethod
    def from_rows(cls, rows: pl.DataFrame) -> PositionState:
        """The state after the last date of ``rows`` (stored positions rows of the last few
        dates: the last one gives the book, all of them the recent paper returns)."""
        missing = [c for c in POSITION_COLUMNS if c not in rows.columns]
        if missing:
            raise ValueError(f"stored positions rows lack column(s) {', '.join(missing)}")
        if rows.is_empty():
            return cls()
        last_date = rows["date"].max()
        last = rows.filter(pl.col("date") == last_date)
        head = last.row(0, named=True)
        returns = rows.group_by("date").agg(pl.col("paper_return").first()).sort("date")
        return cls(
            as_of=head["date"],
            weights=dict(zip(last["ticker"], last["target_weight"], strict=True)),
            paper_equity=head["paper_equity"],
            paper_peak=head["paper_peak"],
            breaker_state=head["breaker_state"],
            breaker_sessions=head["breaker_sessions"],
            recovery_stage=head["recovery_stage"],
            risk_scale=head["risk_scale"],
            session_number=head["session_number"],
            evt_shape=_nan_if_none(head["evt_shape"]),
            evt_es_standardized=_nan_if_none(head["evt_es_standardized"]),
            recent_paper_returns=tuple(returns["paper_return"].to_list()),
        )


@dataclass(frozen=True)
class PositionsResult:
    rows: pl.DataFrame
    final_state: PositionState


def _nan_if_none(value: float | None) -> float:
    return math.nan if value is None else float(value)


def state_lookback_sessions(risk: RiskSettings) -> int:
    """Stored sessions a range needs before its start (paper returns for realised vol)."""
    return risk.circuit_breakers.realized_vol_window


def history_sessions(strategy: StrategySettings) -> int:
    """Sessions of returns a date needs before it (volatility and VaR windows)."""
    return max(strategy.sizing.volatility_window, strategy.risk.var.window_sessions) + 1


def _wide(frame: pl.DataFrame, value: str, dates: list[date], tickers: Sequence[str]) -> np.ndarray:
    pivot = (
        frame.select("date", "ticker", value)
        .pivot(on="ticker", index="date", values=value)
        .join(pl.DataFrame({"date": dates}, schema={"date": pl.Date}), on="date", how="right")
        .sort("date")
    )
    columns = [pl.col(t) if t in pivot.columns else pl.lit(None).alias(t) for t in tickers]
    return pivot.select(columns).cast(pl.Float64).to_numpy()


_PER_TICKER = (
    "alpha_score",
    "confidence",
    "volatility_daily",
    "expected_return_daily",
    "kelly_weight",
    "sized_weight",
    "target_weight",
    "previous_weight",
)
_PER_DATE = tuple(c for c in POSITION_COLUMNS if c not in (*_PER_TICKER, "ticker", "decision"))
_PER_DATE = tuple(c for c in _PER_DATE if c != "reason_codes")


def _annualised_vol(window_returns: np.ndarray, weights: np.ndarray) -> float:
    """√(wᵀΣw · 252) with Σ the window's sample covariance (= std of the window's book returns)."""
    if len(window_returns) < 2:
        return 0.0
    return float(np.std(window_returns @ weights, ddof=1)) * math.sqrt(SESSIONS_PER_YEAR)


def _assemble(
    per_ticker: dict[str, list[np.ndarray]],
    per_date: dict[str, list],
    reason_codes: list[str],
    tickers: Sequence[str],
) -> pl.DataFrame:
    """Rows (date-major, tickers in order) from the per-date arrays and scalars."""
    n, n_dates = len(tickers), len(per_date["date"])
    columns: dict[str, pl.Series] = {}
    for name in POSITION_COLUMNS:
        dtype = POSITION_COLUMNS[name]
        if name == "ticker":
            values: list | np.ndarray = list(tickers) * n_dates
        elif name == "reason_codes":
            values = reason_codes
        elif name == "decision":
            continue
        elif name in per_ticker:
            values = np.concatenate(per_ticker[name]) if n_dates else np.zeros(0)
        else:
            values = [v for v in per_date[name] for _ in range(n)]
        series = pl.Series(name, values, dtype=dtype, nan_to_null=dtype == pl.Float64())
        columns[name] = series
    frame = pl.DataFrame(columns)
    delta = pl.col("target_weight") - pl.col("previous_weight")
    decision = (
        pl.when((pl.col("kelly_weight") != 0) & (pl.col("target_weight") == 0))
        .then(pl.lit("REJECT"))
        .when(delta > _EPS)
        .then(pl.lit("EXECUTE_BUY"))
        .when(delta < -_EPS)
        .then(pl.lit("EXECUTE_SELL"))
        .otherwise(pl.lit("HOLD"))
    )
    return frame.with_columns(decision.alias("decision")).select(list(POSITION_COLUMNS))


def _allocate(
    sizing: SizingSettings,
    tradable: np.ndarray,
    scores: np.ndarray,
    sigma: np.ndarray,
    window_returns: np.ndarray,
    book: _Book,
) -> tuple[np.ndarray, list[str]]:
    """Weights from the configured skfolio allocator over the tradable names."""
    from quant_assets.risk.allocators import allocate

    weights = np.zeros(len(scores))
    names = np.flatnonzero(tradable)
    if names.size == 0:
        return weights, []
    result = allocate(
        sizing.allocator,
        window_returns[:, names],
        sizing.information_coefficient * scores[names] * sigma[names],
        book.weights[names],
        long_only=sizing.long_only,
        max_weight=sizing.max_weight,
        max_gross_leverage=sizing.max_gross_leverage,
        max_gross_long=sizing.max_gross_long or sizing.max_gross_leverage,
        max_gross_short=(
            sizing.max_gross_short
            if sizing.max_gross_short is not None
            else (0.0 if sizing.long_only else sizing.max_gross_leverage)
        ),
        max_turnover=sizing.max_turnover,
        risk_aversion=sizing.risk_aversion,
    )
    weights[names] = result.weights
    # Reason codes are joined into JSON by hand: keep them to plain tokens.
    return weights, [] if result.status == "optimal" else ["ALLOCATOR_FALLBACK:previous_book"]


def _kelly(alpha: np.ndarray, sigma: np.ndarray, sizing: SizingSettings) -> np.ndarray:
    rf_daily = sizing.risk_free_rate / SESSIONS_PER_YEAR
    mu = sizing.information_coefficient * alpha * sigma
    with np.errstate(invalid="ignore", divide="ignore"):
        kelly = sizing.kelly_fraction * (mu - rf_daily) / sigma**2
    kelly = np.where(np.isfinite(kelly), kelly, 0.0)
    return np.maximum(kelly, 0.0) if sizing.long_only else kelly


def _fmt(value: float) -> str:
    return f"{value:.4f}"


@dataclass(frozen=True)
class BreakerState:
    """Circuit-breaker state: ``state`` in :data:`BREAKER_STATES`, sessions spent in it (or
    in the current recovery stage) and the recovery stage index."""

    state: str = "normal"
    sessions: int = 0
    stage: int = 0


def advance_breaker(
    current: BreakerState,
    *,
    drawdown: float,
    vol: float,
    var: float,
    risk: RiskSettings,
    target_volatility: float,
) -> tuple[BreakerState, float, list[str]]:
    """One session of the circuit breaker (seed 003 §7.4-7.6); returns the new state, the
    exposure scale it allows and its reason codes.

    - kill switch: drawdown >= ``kill_switch`` → flat for good;
    - tier 3, freeze: drawdown > ``max_drawdown`` and realised vol > ``freeze_vol_multiple``
      × target → flat; after ``cooldown_sessions`` and once vol < ``recovery_vol_multiple`` ×
      target, recovery climbs ``recovery_stages``, one stage per ``sessions_per_stage`` calm
      sessions, back to normal;
    - tier 2, defensive: VaR > ``defensive_var_multiple`` × its limit or vol >
      ``defensive_vol_multiple`` × target → ``defensive_scale``;
    - otherwise normal (tier 1, scaling VaR onto its limit, is the VaR overlay itself).
    """
    cb, dd = risk.circuit_breakers, risk.drawdown
    state, sessions = current.state, current.sessions
    if state == "killed" or (dd.kill_switch is not None and drawdown >= dd.kill_switch):
        codes = [f"KILL_SWITCH:drawdown>={_fmt(dd.kill_switch or 0.0)}"]
        return BreakerState("killed", sessions + 1, 0), 0.0, codes
    freeze = drawdown > dd.max_drawdown and vol > cb.freeze_vol_multiple * target_volatility
    if freeze and state != "frozen":
        codes = [f"BREAKER_FREEZE:drawdown={_fmt(drawdown)},vol={_fmt(vol)}"]
        return BreakerState("frozen", 1, 0), 0.0, codes
    calm = vol < cb.recovery_vol_multiple * target_volatility
    if state == "frozen":
        if sessions >= cb.cooldown_sessions and calm:
            scale = cb.recovery_stages[0]
            return BreakerState("recovery", 1, 0), scale, [f"RECOVERY_STAGE_1:x{_fmt(scale)}"]
        return BreakerState("frozen", sessions + 1, 0), 0.0, [f"BREAKER_FROZEN:{sessions + 1}"]
    if state == "recovery":
        stage = current.stage
        if sessions >= cb.sessions_per_stage and calm:
            stage, sessions = stage + 1, 0
        if stage >= len(cb.recovery_stages) - 1:
            return BreakerState("normal", 0, 0), 1.0, ["RECOVERY_COMPLETE"]
        scale = cb.recovery_stages[stage]
        codes = [f"RECOVERY_STAGE_{stage + 1}:x{_fmt(scale)}"]
        return BreakerState("recovery", sessions + 1, stage), scale, codes
    if var > cb.defensive_var_multiple * risk.var.limit or (
        vol > cb.defensive_vol_multiple * target_volatility
    ):
        codes = [f"BREAKER_DEFENSIVE:x{_fmt(cb.defensive_scale)},var={_fmt(var)},vol={_fmt(vol)}"]
        sessions = sessions + 1 if state == "defensive" else 1
        return BreakerState("defensive", sessions, 0), cb.defensive_scale, codes
    return BreakerState(), 1.0, []


class _Book:
    """The sequential part: paper equity, breakers, turnover. One instance per run.

    Its paper equity is NOT a book of fills, and deliberately does not use the order step of
    :mod:`quant_assets.backtest.kernel` that the backtest and the paper book share: it is the
    close-to-close return of the previous target weights, before costs, lots and cash limits —
    the strategy's own risk as the overlays and breakers must judge it. It has to be, since
    the executed books are computed FROM these positions (their fills depend on the targets
    sized here) and cannot feed back into them; and keeping it cost-free keeps the stored
    positions, and every drawdown and breaker decision in them, independent of execution
    assumptions. Nothing here executes an order: there is no cash, share or fill accounting
    to share.
    """

    def __init__(self, strategy: StrategySettings, state: PositionState, tickers: Sequence[str]):
        self.sizing = strategy.sizing
        self.risk = strategy.risk
        self.tickers = list(tickers)
        self.weights = np.array([state.weights.get(t, 0.0) or 0.0 for t in tickers], dtype=float)
        self.paper_equity = state.paper_equity
        self.paper_peak = state.paper_peak
        self.breaker_state = state.breaker_state
        self.breaker_sessions = state.breaker_sessions
        self.recovery_stage = state.recovery_stage
        self.risk_scale = state.risk_scale
        self.session_number = state.session_number
        self.evt_shape = state.evt_shape
        self.evt_es = state.evt_es_standardized
        window = self.risk.circuit_breakers.realized_vol_window
        self.recent = list(state.recent_paper_returns[-window:])

    def paper_step(self, returns_today: np.ndarray) -> tuple[float, float, float]:
        """Yesterday's weights × today's returns (missing = 0) -> (return, drawdown, vol)."""
        paper_return = float(np.dot(self.weights, returns_today))
        self.paper_equity *= 1.0 + paper_return
        self.paper_peak = max(self.paper_peak, self.paper_equity)
        drawdown = 1.0 - self.paper_equity / self.paper_peak
        window = self.risk.circuit_breakers.realized_vol_window
        self.recent = [*self.recent, paper_return][-window:]
        vol = (
            float(np.std(self.recent, ddof=1)) * math.sqrt(SESSIONS_PER_YEAR)
            if len(self.recent) >= window
            else 0.0
        )
        return paper_return, drawdown, vol

    def breaker(self, drawdown: float, vol: float, var: float) -> tuple[float, list[str]]:
        """Advance the circuit breaker one session; return its scale and reason codes."""
        current = BreakerState(self.breaker_state, self.breaker_sessions, self.recovery_stage)
        after, scale, codes = advance_breaker(
            current,
            drawdown=drawdown,
            vol=vol,
            var=var,
            risk=self.risk,
            target_volatility=self.sizing.target_volatility,
        )
        self.breaker_state, self.breaker_sessions, self.recovery_stage = (
            after.state,
            after.sessions,
            after.stage,
        )
        return scale, codes

    def drawdown_scale(self, drawdown: float) -> float:
        dd = self.risk.drawdown
        if drawdown <= dd.guard_start:
            return 1.0
        if drawdown >= dd.max_drawdown:
            return dd.guard_floor
        progress = (drawdown - dd.guard_start) / (dd.max_drawdown - dd.guard_start)
        return 1.0 - progress * (1.0 - dd.guard_floor)


def size_positions(
    alpha: pl.DataFrame,
    closes: pl.DataFrame,
    regimes: pl.DataFrame,
    strategy: StrategySettings,
    *,
    start: date,
    state: PositionState,
    tickers: Sequence[str],
) -> PositionsResult:
    """Target weights for every (date >= ``start``, ticker) of ``alpha``.

    ``alpha``: date, ticker, alpha_score, confidence. ``closes``: date, ticker, close, with at
    least :func:`history_sessions` sessions before ``start`` for full windows. ``regimes``:
    date, regime_label for each alpha date. ``state``: the book at the close before
    ``start``. Returns rows with :data:`POSITION_COLUMNS` and the state after the last date.

    Raises ValueError for missing columns, duplicate (date, ticker) rows, non-positive closes
    or a date without a regime.
    """
    for name, frame, needed in (
        ("alpha_scores", alpha, ("date", "ticker", "alpha_score", "confidence")),
        ("bars", closes, ("date", "ticker", "close")),
        ("regimes", regimes, ("date", "regime_label")),
    ):
        missing = [c for c in needed if c not in frame.columns]
        if missing:
            raise ValueError(f"{name} lacks column(s) {', '.join(missing)}")
        keys = ("date", "ticker") if "ticker" in needed else ("date",)
        duplicated = frame.filter(pl.struct(*keys).is_duplicated())
        if duplicated.height:
            row = duplicated.row(0, named=True)
            where = f"{row.get('ticker', '')} on {row['date']}".strip()
            raise ValueError(f"{name}: duplicate row for {where}")
    bad = closes.filter(pl.col("close") <= 0)
    if bad.height:
        row = bad.row(0, named=True)
        raise ValueError(f"bars: non-positive close for {row['ticker']} on {row['date']}")
    alpha = alpha.filter(pl.col("date") >= start)
    dates = sorted(alpha["date"].unique().to_list())
    if not dates:
        return PositionsResult(pl.DataFrame(schema=POSITION_COLUMNS), state)
    regime_of = dict(
        regimes.filter(pl.col("date") >= start).select("date", "regime_label").iter_rows()
    )
    no_regime = [d for d in dates if d not in regime_of]
    if no_regime:
        raise ValueError(f"regimes: no regime row for {no_regime[0]} (alpha scores have one)")
    history = closes.filter(pl.col("date") <= dates[-1])
    all_dates = sorted(set(history["date"].unique().to_list()) | set(dates))
    close = _wide(history, "close", all_dates, tickers)
    with np.errstate(invalid="ignore", divide="ignore"):
        returns = np.full_like(close, np.nan)
        returns[1:] = close[1:] / close[:-1] - 1.0
    index_of = {d: i for i, d in enumerate(all_dates)}
    finite = np.isfinite(returns)
    filled_returns = np.where(finite, returns, 0.0)  # a missing return counts as no move
    alpha_score = _wide(alpha, "alpha_score", dates, tickers)
    confidence = _wide(alpha, "confidence", dates, tickers)

    sizing, risk = strategy.sizing, strategy.risk
    book = _Book(strategy, state, tickers)
    n = len(tickers)
    per_ticker: dict[str, list[np.ndarray]] = {name: [] for name in _PER_TICKER}
    per_date: dict[str, list] = {name: [] for name in _PER_DATE}
    reason_codes: list[str] = []
    for row_index, day in enumerate(dates):
        t = index_of[day]
        vol_window = returns[max(0, t - sizing.volatility_window + 1) : t + 1]
        full = (vol_window.shape[0] == sizing.volatility_window) & finite[
            max(0, t - sizing.volatility_window + 1) : t + 1
        ].all(0)
        with np.errstate(invalid="ignore"):
            sigma = np.where(full, np.std(vol_window, axis=0, ddof=1), np.nan)
        scores = alpha_score[row_index]
        has_alpha = np.isfinite(scores)
        tradable = full & has_alpha & (sigma > 0)
        kelly = np.where(tradable, _kelly(np.nan_to_num(scores), sigma, sizing), 0.0)
        var_rows = filled_returns[max(0, t - risk.var.window_sessions + 1) : t + 1]
        portfolio_codes: list[str] = []
        label = "KELLY"
        if sizing.allocator != "kelly":
            # The optimiser replaces the per-name Kelly weights (kept in kelly_weight's place).
            kelly, allocator_code = _allocate(sizing, tradable, scores, sigma, var_rows, book)
            label = sizing.allocator.upper()
            portfolio_codes.extend(allocator_code)
        codes: list[list[str]] = [[] for _ in range(n)]
        for i in range(n):
            if not has_alpha[i]:
                codes[i].append("NO_ALPHA")
            elif not full[i]:
                codes[i].append("NO_VOLATILITY_HISTORY")
            else:
                codes[i].append(f"{label}:{_fmt(kelly[i])}")
        # Volatility target (a ceiling), name cap, gross cap.
        weights = kelly.copy()
        ex_ante = _annualised_vol(var_rows, weights)
        if ex_ante > sizing.target_volatility:
            k = sizing.target_volatility / ex_ante
            weights *= k
            portfolio_codes.append(f"VOL_TARGET:x{_fmt(k)}")
        capped = np.clip(weights, -sizing.max_weight, sizing.max_weight)
        for capped_index in np.flatnonzero(np.abs(capped - weights) > _EPS):
            codes[int(capped_index)].append(f"NAME_CAP:{_fmt(sizing.max_weight)}")
        weights = capped
        gross = float(np.abs(weights).sum())
        if gross > sizing.max_gross_leverage:
            k = sizing.max_gross_leverage / gross
            weights *= k
            portfolio_codes.append(f"GROSS_CAP:x{_fmt(k)}")
        sized = weights

        # Overlays.
        regime = regime_of[day]
        regime_multiplier = risk.regime_multipliers[regime]
        if regime_multiplier < 1:
            portfolio_codes.append(f"REGIME_{regime.upper()}:x{_fmt(regime_multiplier)}")
        proposed = sized * regime_multiplier
        tail = portfolio_tail_risk(
            var_rows, proposed, risk.var.confidence, risk.var.historical_weight
        )
        evt_es = math.nan
        if risk.evt.enabled:
            if book.session_number % risk.evt.refit_every_sessions == 0:
                fitted = fit_gpd_tail(
                    -(var_rows @ sized),
                    risk.var.confidence,
                    risk.evt.threshold_quantile,
                    risk.evt.min_exceedances,
                )
                book.evt_shape = fitted.shape if fitted else math.nan
                book.evt_es = fitted.expected_shortfall if fitted else math.nan
            if math.isfinite(book.evt_es):
                evt_es = book.evt_es * tail.volatility_daily
            else:
                portfolio_codes.append("EVT_UNAVAILABLE")
        tail_cvar = max(tail.cvar_hybrid, evt_es) if math.isfinite(evt_es) else tail.cvar_hybrid
        var_scale = 1.0
        if tail.var_hybrid > risk.var.limit:
            var_scale = risk.var.limit / tail.var_hybrid
            portfolio_codes.append(f"VAR:x{_fmt(var_scale)}")
        if tail_cvar * var_scale > risk.var.cvar_limit:
            k = risk.var.cvar_limit / (tail_cvar * var_scale)
            var_scale *= k
            source = "EVT" if math.isfinite(evt_es) and evt_es >= tail.cvar_hybrid else "HYBRID"
            portfolio_codes.append(f"CVAR_{source}:x{_fmt(k)}")

        paper_return, drawdown, paper_vol = book.paper_step(filled_returns[t])
        drawdown_scale = book.drawdown_scale(drawdown)
        if drawdown_scale < 1:
            portfolio_codes.append(f"DRAWDOWN_GUARD:x{_fmt(drawdown_scale)}")
        breaker_scale, breaker_codes = book.breaker(drawdown, paper_vol, tail.var_hybrid)
        portfolio_codes.extend(breaker_codes)
        risk_scale = regime_multiplier * var_scale * drawdown_scale * breaker_scale
        target = sized * risk_scale
        previous = book.weights
        turnover = float(np.abs(target - previous).sum())
        if sizing.max_turnover is not None and turnover > sizing.max_turnover + _EPS:
            if risk_scale < book.risk_scale - _EPS:
                portfolio_codes.append("TURNOVER_WAIVED:risk_reduction")
            else:
                step = sizing.max_turnover / turnover
                target = previous + step * (target - previous)
                portfolio_codes.append(f"TURNOVER_LIMIT:x{_fmt(step)}")
                turnover = float(np.abs(target - previous).sum())
        book.weights = target
        book.risk_scale = risk_scale
        book.session_number += 1

        # The codes are fixed tokens (no quotes or backslashes): JSON by joining is safe.
        shared = "".join(f', "{c}"' for c in portfolio_codes)
        reason_codes.extend(
            "[" + ", ".join(f'"{c}"' for c in own) + shared + "]" if own else "[" + shared[2:] + "]"
            for own in codes
        )
        with np.errstate(invalid="ignore"):
            mu = np.where(tradable, sizing.information_coefficient * scores * sigma, np.nan)
        for name, values in (
            ("alpha_score", scores),
            ("confidence", confidence[row_index]),
            ("volatility_daily", sigma),
            ("expected_return_daily", mu),
            ("kelly_weight", kelly),
            ("sized_weight", sized),
            ("target_weight", target),
            ("previous_weight", previous),
        ):
            per_ticker[name].append(values)
        for name, value in (
            ("date", day),
            ("gross_exposure", float(np.abs(target).sum())),
            ("net_exposure", float(target.sum())),
            ("ex_ante_vol_annualized", ex_ante),
            ("var_95", tail.var_hybrid),
            ("cvar_95", tail.cvar_hybrid),
            ("evt_es_95", evt_es),
            ("regime_label", regime),
            ("regime_multiplier", regime_multiplier),
            ("var_scale", var_scale),
            ("drawdown_scale", drawdown_scale),
            ("breaker_state", book.breaker_state),
            ("breaker_scale", breaker_scale),
            ("risk_scale", risk_scale),
            ("turnover", turnover),
            ("paper_return", paper_return),
            ("paper_equity", book.paper_equity),
            ("paper_peak", book.paper_peak),
            ("paper_drawdown", drawdown),
            ("paper_vol_annualized", paper_vol),
            ("breaker_sessions", book.breaker_sessions),
            ("recovery_stage", book.recovery_stage),
            ("session_number", book.session_number),
            ("evt_shape", book.evt_shape),
            ("evt_es_standardized", book.evt_es),
        ):
            per_date[name].append(value)
    rows = _assemble(per_ticker, per_date, reason_codes, tickers)
    final = replace(
        state,
        as_of=dates[-1],
        weights=dict(zip(tickers, book.weights.tolist(), strict=True)),
        paper_equity=book.paper_equity,
        paper_peak=book.paper_peak,
        breaker_state=book.breaker_state,
        breaker_sessions=book.breaker_sessions,
        recovery_stage=book.recovery_stage,
        risk_scale=book.risk_scale,
        session_number=book.session_number,
        evt_shape=book.evt_shape,
        evt_es_standardized=book.evt_es,
        recent_paper_returns=tuple(book.recent),
    )
    return PositionsResult(rows, final)


def mark_exits(rows: pl.DataFrame, exits: dict[str, date]) -> pl.DataFrame:
    """``rows`` (positions: ticker, date, reason_codes as a JSON list) with
    ``LEFT_UNIVERSE:<last member session>`` first among the codes of every row of a ticker
    after it left a point-in-time universe (``exits``: ticker → last member session). Those
    rows have no alpha, so their target is 0 and the book sells what is left at the last
    close (:func:`quant_assets.backtest.frames.with_exit_prints`); the code says why."""
    if not exits or rows.is_empty():
        return rows
    ends = pl.DataFrame(
        {"ticker": list(exits), "_exit": list(exits.values())},
        schema={"ticker": pl.Utf8, "_exit": pl.Date},
    )
    joined = rows.join(ends, on="ticker", how="left", maintain_order="left")
    code = pl.concat_str(pl.lit('"LEFT_UNIVERSE:'), pl.col("_exit").cast(pl.Utf8), pl.lit('"'))
    codes = pl.col("reason_codes")
    tagged = (
        pl.when(codes == "[]")
        .then(pl.concat_str(pl.lit("["), code, pl.lit("]")))
        .otherwise(pl.concat_str(pl.lit("["), code, pl.lit(", "), codes.str.slice(1)))
    )
    after = pl.col("_exit").is_not_null() & (pl.col("date") > pl.col("_exit"))
    return joined.with_columns(
        pl.when(after).then(tagged).otherwise(codes).alias("reason_codes")
    ).drop("_exit")
