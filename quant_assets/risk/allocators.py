"""Portfolio allocators: one date's weights from a returns window and expected returns.

An optional replacement for the per-name Kelly sizing of :mod:`quant_assets.risk.positions`
(``SizingSettings.allocator``), under the constraints of seed 003 §8.2: gross leverage ≤ G,
gross long ≤ L, gross short ≤ S, single name ≤ ``max_weight``, turnover Σ|w − w_prev| ≤ T.

- ``mean_variance``: max μᵀw − λ·wᵀΣw with skfolio's ``MeanRisk``
  (``ObjectiveFunction.MAXIMIZE_UTILITY``, ``RiskMeasure.VARIANCE``, ``risk_aversion`` = λ).
  μ is *ours* (IC · alpha · σ), injected through ``EmpiricalPrior(mu_estimator=_GivenMu(μ))``;
  Σ is the sample covariance of the window (``EmpiricalCovariance``, ddof 1, nearest PD).
  Bounds ``min_weights`` 0 or −max_weight, ``max_weights`` max_weight, ``budget=None``;
  long-only gross is ``max_budget`` (Σw ≤ min(G, L)); long/short uses ``max_long`` = L,
  ``max_short`` = S and, as skfolio has no gross-leverage parameter, ``add_constraints``
  ‖w‖₁ ≤ G. skfolio's ``max_turnover`` bounds each name's |Δw| separately, so the book's
  turnover (a sum, as in positions.py) is ``add_constraints`` ‖w − w_prev‖₁ ≤ T.
- ``risk_parity``: skfolio's ``RiskBudgeting`` (variance, equal budgets) over the names with
  a positive expected return (long/short: also the negative ones, held short — solved on the
  sign-flipped returns, which leaves each wᵢ(Σw)ᵢ unchanged). Contributions come out equal
  to ~3e-4 relative (CLARABEL's default tolerances). The unit-gross solution is scaled to G
  (less if the long or short side would pass L or S); names above ``max_weight`` are
  clipped and their excess spread pro rata over the same side's other names (water-filling:
  the side's gross holds while the caps allow it), so a binding name cap trades exact
  equality of risk contributions for the cap. Turnover above T moves from the previous book
  (clipped to the caps) only T of the way, as positions.py does.

Failure never raises: a solver error, an infeasible problem (e.g. previous weights so far
outside the caps that T cannot reach them) or a solution off its constraints by more than
1e-6 returns ``status="fallback"`` with the previous weights clipped to the caps (which may
then exceed the turnover limit) and the reason. Bad shapes or non-finite inputs raise
ValueError naming the argument.

Deterministic: CLARABEL (interior point, no randomness) on the same input gives
bit-identical weights.

Cost per call (CLARABEL, 252 observations, 2-core AMD EPYC under other load; median of 20
calls, fastest of them in brackets), caps 0.1 / G 1 / L 0.6 / S 0.4 / T 0.2:

==============================  ============  ============
                                20 assets     100 assets
==============================  ============  ============
mean_variance long-only         32 ms (27)    79 ms (45)
mean_variance long/short        41 ms (34)    69 ms (45)
risk_parity long-only           30 ms (26)    36 ms (26)
risk_parity long/short          29 ms (26)    60 ms (47)
==============================  ============  ============

About three quarters of it is cvxpy building the problem (skfolio rebuilds it on each
fit), not the solve. Over 8,000 dates: ≈ 4-5 min for 20 names and ≈ 5-10 min for 100 —
affordable once per backtest, costly inside a parameter sweep.
"""

from __future__ import annotations

import math
import warnings
from dataclasses import dataclass

import cvxpy as cp
import numpy as np
import sklearn.utils.validation as skv
from skfolio.exceptions import SkfolioError
from skfolio.measures import RiskMeasure
from skfolio.moments import BaseMu, EmpiricalCovariance
from skfolio.optimization import MeanRisk, ObjectiveFunction, RiskBudgeting
from skfolio.prior import EmpiricalPrior

ALLOCATORS = ("kelly", "mean_variance", "risk_parity")
STATUSES = ("optimal", "fallback")
SOLVER = "CLARABEL"
TOLERANCE = 1e-6  # a solution further than this off a constraint is not accepted
_EPS = 1e-12

# What a failing optimisation can raise (skfolio wraps cvxpy's errors in
# ConvexOptimizationError, a SkfolioError and a cvxpy SolverError; skfolio raises ValueError
# for inconsistent parameters).
_SOLVER_ERRORS = (
    SkfolioError,
    cp.error.SolverError,
    cp.error.DCPError,
    np.linalg.LinAlgError,
    ArithmeticError,
    ValueError,
)


@dataclass(frozen=True, eq=False)
class AllocationResult:
    """Weights (n_assets,), ``status`` in :data:`STATUSES` and why (``None`` when plain)."""

    weights: np.ndarray
    status: str
    reason: str | None = None


class _GivenMu(BaseMu):
    """An expected-returns "estimator" that returns the vector it is given."""

    def __init__(self, mu: np.ndarray | None = None) -> None:
        self.mu = mu

    def fit(self, X: np.ndarray, y: None = None) -> _GivenMu:
        X = skv.validate_data(self, X)
        mu = np.asarray(self.mu, dtype=float)
        if mu.shape != (X.shape[1],):
            raise ValueError(f"mu has shape {mu.shape}, expected ({X.shape[1]},)")
        self.mu_ = mu.copy()
        return self


@dataclass(frozen=True)
class _Caps:
    lower: float  # per-name lower bound: 0 or -max_weight
    upper: float
    gross: float
    long: float
    short: float
    turnover: float | None

    @property
    def shorts(self) -> bool:
        return self.lower < 0


def _array(value: object, name: str, ndim: int) -> np.ndarray:
    try:
        array = np.asarray(value, dtype=float)
    except (TypeError, ValueError) as error:
        raise ValueError(f"{name} must be a numeric array: {error}") from error
    if array.ndim != ndim:
        raise ValueError(f"{name} must be {ndim}-dimensional, got shape {array.shape}")
    if not np.isfinite(array).all():
        raise ValueError(f"{name} must be finite (has NaN or inf)")
    return array


def _positive(
    value: float | None, name: str, *, allow_zero: bool = False, optional: bool = False
) -> None:
    if value is None:
        if optional:
            return
        raise ValueError(f"{name} is required")
    ok = math.isfinite(value) and (value >= 0 if allow_zero else value > 0)
    if not ok:
        bound = ">= 0" if allow_zero else "> 0"
        raise ValueError(f"{name} must be finite and {bound}, got {value}")


def allocate(
    method: str,
    window_returns: np.ndarray,
    expected_returns: np.ndarray,
    previous_weights: np.ndarray,
    *,
    long_only: bool,
    max_weight: float,
    max_gross_leverage: float,
    max_gross_long: float | None,
    max_gross_short: float | None,
    max_turnover: float | None,
    risk_aversion: float,
) -> AllocationResult:
    """Weights for one date by ``method`` ("mean_variance" or "risk_parity").

    ``window_returns``: (n_obs, n_assets) daily returns of the tradable names, n_obs ≥ 2.
    ``expected_returns``: (n_assets,) daily μ. ``previous_weights``: (n_assets,) the book
    held (turnover is measured from it). Caps as in ``SizingSettings``; ``None`` = no limit
    (``max_gross_short`` = 0 forbids shorts). Raises ValueError for bad arguments; solver
    trouble gives ``status="fallback"`` (see the module docstring).
    """
    if method not in ALLOCATORS:
        raise ValueError(f"method must be one of {', '.join(ALLOCATORS)}, got {method!r}")
    if method == "kelly":
        raise ValueError("method 'kelly' is positions.py's own per-name sizing, not allocate's")
    returns = _array(window_returns, "window_returns", 2)
    n_obs, n_assets = returns.shape
    if n_obs < 2 or n_assets < 1:
        raise ValueError(f"window_returns needs >= 2 rows and >= 1 column, got {returns.shape}")
    mu = _array(expected_returns, "expected_returns", 1)
    if mu.shape != (n_assets,):
        raise ValueError(f"expected_returns has shape {mu.shape}, expected ({n_assets},)")
    previous = _array(previous_weights, "previous_weights", 1)
    if previous.shape != (n_assets,):
        raise ValueError(f"previous_weights has shape {previous.shape}, expected ({n_assets},)")
    _positive(max_weight, "max_weight")
    _positive(max_gross_leverage, "max_gross_leverage")
    _positive(max_gross_long, "max_gross_long", optional=True)
    _positive(max_gross_short, "max_gross_short", allow_zero=True, optional=True)
    _positive(max_turnover, "max_turnover", allow_zero=True, optional=True)
    _positive(risk_aversion, "risk_aversion")

    shorts = not long_only and max_gross_short != 0
    caps = _Caps(
        lower=-max_weight if shorts else 0.0,
        upper=max_weight,
        gross=max_gross_leverage,
        long=math.inf if max_gross_long is None else max_gross_long,
        short=(math.inf if max_gross_short is None else max_gross_short) if shorts else 0.0,
        turnover=max_turnover,
    )
    fallback = _clip_to_caps(previous, caps)
    try:
        with warnings.catch_warnings(record=True) as caught:
            warnings.simplefilter("always")
            weights: np.ndarray | None
            note: str | None = None
            if method == "mean_variance":
                weights = _mean_variance(returns, mu, previous, caps, risk_aversion)
            else:
                weights, note = _risk_parity(returns, mu, previous, fallback, caps)
    except _SOLVER_ERRORS as error:
        reason = f"{type(error).__name__}: {error}".strip()
        return _result(
            fallback,
            "fallback",
            f"{method} failed, kept the previous weights clipped to the caps: {reason}",
        )
    if weights is None:
        return _result(fallback, "fallback", note)
    violation = _violation(weights, previous, caps)
    if violation:
        return _result(fallback, "fallback", f"{method} solution off its constraints: {violation}")
    inaccurate = [str(w.message) for w in caught if "inaccurate" in str(w.message)]
    if inaccurate and note is None:
        note = "solver reported an inaccurate solution (constraints checked, within 1e-6)"
    return _result(weights, "optimal", note)


def _result(weights: np.ndarray, status: str, reason: str | None) -> AllocationResult:
    weights = np.array(weights, dtype=float)
    weights[weights == 0] = 0.0  # no -0.0
    weights.setflags(write=False)
    return AllocationResult(weights=weights, status=status, reason=reason)


def _clip_to_caps(weights: np.ndarray, caps: _Caps) -> np.ndarray:
    """Names into [lower, upper], then each side and the gross scaled down onto its cap."""
    clipped = np.clip(weights, caps.lower, caps.upper)
    long_part, short_part = np.maximum(clipped, 0.0), np.minimum(clipped, 0.0)
    long_sum, short_sum = float(long_part.sum()), float(-short_part.sum())
    if long_sum > caps.long:
        long_part = long_part * (caps.long / long_sum)
    if short_sum > caps.short:
        short_part = short_part * (caps.short / short_sum) if caps.short > 0 else short_part * 0
    clipped = long_part + short_part
    gross = float(np.abs(clipped).sum())
    if gross > caps.gross:
        clipped = clipped * (caps.gross / gross)
    return clipped


def _violation(weights: np.ndarray, previous: np.ndarray, caps: _Caps) -> str | None:
    """The first constraint ``weights`` misses by more than :data:`TOLERANCE`, or None."""
    checks = (
        ("name lower bound", float(caps.lower - weights.min())),
        ("name cap", float(weights.max() - caps.upper)),
        ("gross leverage", float(np.abs(weights).sum() - caps.gross)),
        ("gross long", float(np.maximum(weights, 0).sum() - caps.long)),
        ("gross short", float(-np.minimum(weights, 0).sum() - caps.short)),
        (
            "turnover",
            -math.inf
            if caps.turnover is None
            else float(np.abs(weights - previous).sum() - caps.turnover),
        ),
    )
    for name, excess in checks:
        if excess > TOLERANCE:
            return f"{name} exceeded by {excess:.3g}"
    return None


def _mean_variance(
    returns: np.ndarray,
    mu: np.ndarray,
    previous: np.ndarray,
    caps: _Caps,
    risk_aversion: float,
) -> np.ndarray:
    turnover = caps.turnover

    def extra_constraints(w: cp.Variable) -> list[cp.Constraint]:
        constraints = []
        if caps.shorts and math.isfinite(caps.gross):
            constraints.append(cp.norm1(w) <= caps.gross)
        if turnover is not None:
            constraints.append(cp.norm1(w - previous) <= turnover)
        return constraints

    model = MeanRisk(
        objective_function=ObjectiveFunction.MAXIMIZE_UTILITY,
        risk_measure=RiskMeasure.VARIANCE,
        risk_aversion=risk_aversion,
        prior_estimator=EmpiricalPrior(
            mu_estimator=_GivenMu(mu), covariance_estimator=EmpiricalCovariance()
        ),
        min_weights=caps.lower,
        max_weights=caps.upper,
        budget=None,
        max_budget=None if caps.shorts else min(caps.gross, caps.long),
        max_long=caps.long if caps.shorts and math.isfinite(caps.long) else None,
        max_short=caps.short if caps.shorts and math.isfinite(caps.short) else None,
        previous_weights=previous,
        add_constraints=extra_constraints,
        solver=SOLVER,
    )
    model.fit(returns)
    weights = np.asarray(model.weights_, dtype=float)
    # Interior-point solutions sit within ~1e-9 of their bounds: put them on the bounds.
    return np.clip(weights, caps.lower, caps.upper)


def _risk_parity(
    returns: np.ndarray,
    mu: np.ndarray,
    previous: np.ndarray,
    clipped_previous: np.ndarray,
    caps: _Caps,
) -> tuple[np.ndarray | None, str | None]:
    sign = np.where(mu > 0, 1.0, np.where(mu < 0, -1.0 if caps.shorts else 0.0, 0.0))
    active = np.flatnonzero(sign)
    unit = np.zeros(len(mu))
    note = None
    if active.size == 0:
        note = "no name with a usable expected return: flat"
    elif active.size == 1:
        unit[active] = sign[active]
    else:
        model = RiskBudgeting(
            risk_measure=RiskMeasure.VARIANCE,
            prior_estimator=EmpiricalPrior(covariance_estimator=EmpiricalCovariance()),
            min_weights=0.0,
            max_weights=1.0,
            solver=SOLVER,
        )
        model.fit(returns[:, active] * sign[active])
        solved = np.maximum(np.asarray(model.weights_, dtype=float), 0.0)
        unit[active] = sign[active] * solved / solved.sum()
    target = _scale_to_caps(unit, caps)

    if caps.turnover is not None:
        full = float(np.abs(target - previous).sum())
        if full > caps.turnover + _EPS:
            to_caps = float(np.abs(clipped_previous - previous).sum())
            if to_caps > caps.turnover + TOLERANCE:
                reason = (
                    f"turnover: bringing the previous weights within the caps alone turns "
                    f"over {to_caps:.4g} > max_turnover {caps.turnover:.4g}"
                )
                return None, reason
            rest = float(np.abs(target - clipped_previous).sum())
            step = min(1.0, (caps.turnover - to_caps) / rest) if rest > _EPS else 1.0
            target = clipped_previous + step * (target - clipped_previous)
            note = f"turnover limit: moved x{step:.4f} of the way to the risk-parity book"
    return target, note


def _scale_to_caps(unit: np.ndarray, caps: _Caps) -> np.ndarray:
    """Unit-gross weights scaled to G (less if a side would pass its cap), then names capped
    with the excess spread pro rata over the same side's uncapped names."""
    long_sum = float(np.maximum(unit, 0).sum())
    short_sum = float(-np.minimum(unit, 0).sum())
    scale = caps.gross
    if long_sum > 0:
        scale = min(scale, caps.long / long_sum)
    if short_sum > 0:
        scale = min(scale, caps.short / short_sum)
    scaled = unit * scale
    return _water_fill(np.maximum(scaled, 0), caps.upper) - _water_fill(
        np.maximum(-scaled, 0), -caps.lower if caps.shorts else caps.upper
    )


def _water_fill(side: np.ndarray, cap: float) -> np.ndarray:
    """Non-negative ``side`` with every name ≤ ``cap`` and the same total where possible."""
    held = side > 0
    total = min(float(side.sum()), cap * int(held.sum()))
    out = side.copy()
    capped = np.zeros(len(side), dtype=bool)
    while (out > cap).any():
        capped |= out > cap
        out[capped] = cap
        free = held & ~capped
        free_sum = float(side[free].sum())
        if free_sum <= 0:
            break
        out[free] = side[free] * ((total - cap * int(capped.sum())) / free_sum)
    return np.minimum(out, cap)
