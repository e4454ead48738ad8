"""Orders for the next session, decided at a session's close from the target weights.

One session's decision, over arrays of shape ``(n_tickers,)`` (shares, currency per share,
currency): the target shares of each name are its target weight of the paper equity at the
close, in shares at the close, rounded toward zero to the lot; the order is the difference
to the shares held. With the kill switch on the target of every name is zero, so every
order moves a position toward zero (it closes it) and none opens or adds exposure.

The rule itself is the kernel's :func:`quant_assets.backtest.kernel.decide_orders_nb`, which
the backtest sizes its orders with too: this module adds what an order desk reports on top
(target shares and weights, sides, reason codes).

Order-level reason codes (appended to the position's own codes): ``OPEN`` (from flat),
``INCREASE`` (same side, larger), ``REDUCE`` (same side, smaller), ``CLOSE`` (to flat),
``REVERSE`` (through zero to the other side) and ``KILL_SWITCH``.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import polars as pl

from quant_assets.backtest.kernel import FRACTIONAL_STEP, decide_orders_nb, share_step

__all__ = [
    "BUY",
    "CLOSE",
    "FRACTIONAL_STEP",
    "INCREASE",
    "KILL_SWITCH",
    "OPEN",
    "ORDER_CODES",
    "REDUCE",
    "REVERSE",
    "SELL",
    "SIDES",
    "SessionOrders",
    "decide_orders",
    "order_code",
    "share_step",
    "with_order_codes",
]

BUY, SELL = "BUY", "SELL"
SIDES = (BUY, SELL)
OPEN, INCREASE, REDUCE, CLOSE, REVERSE = "OPEN", "INCREASE", "REDUCE", "CLOSE", "REVERSE"
KILL_SWITCH = "KILL_SWITCH"
ORDER_CODES = (OPEN, INCREASE, REDUCE, CLOSE, REVERSE, KILL_SWITCH)


@dataclass(frozen=True)
class SessionOrders:
    """The orders decided at one close, arrays of shape (n_tickers,).

    ``quantity``: signed shares to trade next session (+ buy, - sell, 0 no order);
    ``target_shares``: the shares the order leads to; ``target_weight``: the weight traded
    to (NaN where no order was sized); ``reference_price``: the price the order was sized at.
    """

    quantity: np.ndarray
    target_shares: np.ndarray
    target_weight: np.ndarray
    reference_price: np.ndarray


def decide_orders(
    target_weight: np.ndarray,
    shares: np.ndarray,
    reference_price: np.ndarray,
    equity: float,
    lot_size: float,
    kill_switch: bool,
) -> SessionOrders:
    """The orders decided at a close.

    ``target_weight``: fraction of equity per name (NaN: no order, keep the shares);
    ``shares``: held at the close; ``reference_price``: the close (else the last close, NaN
    when never priced), currency per share; ``equity``: the paper equity at the close.

    Target shares = weight × equity / price rounded toward zero to the lot (or the fractional
    step); quantity = target − held, rounded toward zero as well, except that a target of 0
    closes the whole position. Names without a price, a weight, or with a non-positive or NaN
    equity get no order — except under the kill switch, where every held name is closed (its
    target is 0, whatever the weight, price or equity).
    """
    n = shares.shape[0]
    for name, values in (("target_weight", target_weight), ("reference_price", reference_price)):
        if values.shape != (n,):
            raise ValueError(f"{name} must have shape (n_tickers,) = ({n},), got {values.shape}")
    if np.isinf(target_weight).any():
        raise ValueError("target_weight must be finite or NaN")
    step = share_step(lot_size)
    shares = np.asarray(shares, dtype=np.float64)
    quantity = np.empty(n)
    decide_orders_nb(
        np.asarray(target_weight, dtype=np.float64),
        shares,
        np.asarray(reference_price, dtype=np.float64),
        float(equity),
        step,
        bool(kill_switch),
        quantity,
    )
    if kill_switch:
        weight = np.zeros(n)
    else:
        sizable = np.isfinite(target_weight) & np.isfinite(reference_price) & (equity > 0)
        weight = np.where(sizable, target_weight, np.nan)
    target = shares + quantity
    return SessionOrders(
        quantity=quantity + 0.0,  # no negative zeros
        target_shares=target + 0.0,
        target_weight=weight,
        reference_price=reference_price,
    )


def order_code(current_shares: pl.Expr, target_shares: pl.Expr) -> pl.Expr:
    """The order-level code (:data:`ORDER_CODES` but ``KILL_SWITCH``) of an order from
    ``current_shares`` to ``target_shares``, as a polars expression over order rows."""
    return (
        pl.when(current_shares == 0)
        .then(pl.lit(OPEN))
        .when(target_shares == 0)
        .then(pl.lit(CLOSE))
        .when((current_shares > 0) != (target_shares > 0))
        .then(pl.lit(REVERSE))
        .when(target_shares.abs() > current_shares.abs())
        .then(pl.lit(INCREASE))
        .otherwise(pl.lit(REDUCE))
    )


def with_order_codes(
    position_codes: pl.Expr, current_shares: pl.Expr, target_shares: pl.Expr, kill_switch: pl.Expr
) -> pl.Expr:
    """The JSON list of the position's codes (``position_codes``, a JSON list of strings or
    null) followed by the order's codes, formatted as ``json.dumps`` would: string
    expressions, no per-row Python (a backfill emits an order per name and session)."""
    order_part = pl.concat_str(
        pl.lit('"'),
        order_code(current_shares, target_shares),
        pl.lit('"'),
        pl.when(kill_switch).then(pl.lit(f', "{KILL_SWITCH}"')).otherwise(pl.lit("")),
    )
    inner = position_codes.str.strip_chars().str.strip_prefix("[").str.strip_suffix("]")
    inner = inner.str.strip_chars().fill_null("")
    return pl.concat_str(
        pl.lit("["),
        pl.when(inner != "").then(inner + pl.lit(", ")).otherwise(pl.lit("")),
        order_part,
        pl.lit("]"),
    )
