"""Orders for the next session, decided at a session's close from the target weights.

One session's decision, over arrays of shape ``(n_tickers,)`` (shares, currency per share,
currency): the target shares of each name are its target weight of the paper equity at the
close, in shares at the close, rounded toward zero to the lot; the order is the difference
to the shares held. With the kill switch on the target of every name is zero, so every
order moves a position toward zero (it closes it) and none opens or adds exposure.

Order-level reason codes (appended to the position's own codes): ``OPEN`` (from flat),
``INCREASE`` (same side, larger), ``REDUCE`` (same side, smaller), ``CLOSE`` (to flat),
``REVERSE`` (through zero to the other side) and ``KILL_SWITCH``.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np
import polars as pl

BUY, SELL = "BUY", "SELL"
SIDES = (BUY, SELL)
OPEN, INCREASE, REDUCE, CLOSE, REVERSE = "OPEN", "INCREASE", "REDUCE", "CLOSE", "REVERSE"
KILL_SWITCH = "KILL_SWITCH"
ORDER_CODES = (OPEN, INCREASE, REDUCE, CLOSE, REVERSE, KILL_SWITCH)
# Lot 0 means fractional shares; they still trade in steps (a broker's 4 decimals, seed 003
# §9.1), so a weight that has not moved yields no dust order from floating-point noise.
FRACTIONAL_STEP = 1e-4


def share_step(lot_size: float) -> float:
    """The quantum quantities are rounded to: the lot, or :data:`FRACTIONAL_STEP` for lot 0."""
    if not math.isfinite(lot_size) or lot_size < 0:
        raise ValueError(f"lot_size must be finite and >= 0, got {lot_size}")
    return lot_size if lot_size > 0 else FRACTIONAL_STEP


def round_toward_zero(shares: np.ndarray, step: float) -> np.ndarray:
    """``shares`` rounded toward zero to a multiple of ``step`` (> 0), so |result| <= |shares|.

    A tiny relative tolerance keeps 2.9999999999 lots (a product that should be 3) at 3.
    """
    lots = shares / step
    return np.trunc(lots + np.sign(lots) * 1e-9) * step


def round_down(shares: np.ndarray, step: float) -> np.ndarray:
    """``shares`` (>= 0) rounded down to a multiple of ``step``: for buys scaled to the cash."""
    return np.floor(shares / step) * step


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
    if kill_switch:
        weight = np.zeros(n)
        target = np.zeros(n)
        quantity = np.where(shares != 0.0, -shares, 0.0)
    else:
        sizable = np.isfinite(target_weight) & np.isfinite(reference_price) & (equity > 0)
        weight = np.where(sizable, target_weight, np.nan)
        with np.errstate(invalid="ignore", divide="ignore"):
            desired = np.where(sizable, target_weight * equity / reference_price, 0.0)
        target = np.where(sizable, round_toward_zero(desired, step), shares)
        quantity = np.where(
            sizable & (target == 0.0), -shares, round_toward_zero(target - shares, step)
        )
        quantity = np.where(sizable, quantity, 0.0)
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
