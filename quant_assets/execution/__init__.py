"""Execution: next-session orders from the target weights and a paper book that fills them with
the backtest's order step (:mod:`quant_assets.backtest.kernel`)."""

from quant_assets.execution.orders import (
    BUY,
    KILL_SWITCH,
    ORDER_CODES,
    SELL,
    SIDES,
    SessionOrders,
    decide_orders,
    share_step,
)
from quant_assets.execution.paper import PaperBookState, PaperResult, run_paper_book

__all__ = [
    "BUY",
    "KILL_SWITCH",
    "ORDER_CODES",
    "SELL",
    "SIDES",
    "PaperBookState",
    "PaperResult",
    "SessionOrders",
    "decide_orders",
    "run_paper_book",
    "share_step",
]
