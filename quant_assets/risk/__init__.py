"""Risk: tail measures (hybrid VaR/CVaR, EVT) and the sizing engine that turns alpha scores
into target weights under the limits of ``configs/risk.yaml``. Pure domain code."""

from quant_assets.risk.measures import GpdTail, TailRisk, fit_gpd_tail, portfolio_tail_risk
from quant_assets.risk.positions import (
    POSITION_COLUMNS,
    BreakerState,
    PositionsResult,
    PositionState,
    advance_breaker,
    history_sessions,
    mark_exits,
    size_positions,
    state_lookback_sessions,
)

__all__ = [
    "POSITION_COLUMNS",
    "BreakerState",
    "GpdTail",
    "PositionState",
    "PositionsResult",
    "TailRisk",
    "advance_breaker",
    "fit_gpd_tail",
    "history_sessions",
    "mark_exits",
    "portfolio_tail_risk",
    "size_positions",
    "state_lookback_sessions",
]
