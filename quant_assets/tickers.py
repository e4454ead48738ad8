"""Ticker symbols: one strict pattern, checked before a symbol reaches SQL, paths or keys."""

from __future__ import annotations

import re

from quant_assets.errors import InvalidTickerError

# Upper-case letters and digits, optionally one class/venue suffix after '.' or '-'
# (BRK.B, RDS-A). 1 to 12 characters. Nothing that could be a path or SQL fragment.
TICKER_PATTERN = re.compile(r"^[A-Z0-9]{1,8}(?:[.\-][A-Z0-9]{1,3})?$")


def validate_ticker(symbol: object) -> str:
    """Return ``symbol`` unchanged if it is a valid ticker; raise InvalidTickerError otherwise."""
    if not isinstance(symbol, str) or not TICKER_PATTERN.fullmatch(symbol):
        shown = (
            repr(symbol)
            if not isinstance(symbol, str) or len(symbol) <= 40
            else repr(symbol[:40] + "…")
        )
        raise InvalidTickerError(
            f"invalid ticker {shown}: tickers must match {TICKER_PATTERN.pattern} "
            "(upper-case letters/digits, optional .X or -X class suffix)"
        )
    return symbol


def validate_tickers(symbols: list[str] | tuple[str, ...]) -> list[str]:
    """Validate every symbol and refuse duplicates; return them as a list."""
    seen: set[str] = set()
    out: list[str] = []
    for symbol in symbols:
        validate_ticker(symbol)
        if symbol in seen:
            raise InvalidTickerError(f"duplicate ticker {symbol!r}")
        seen.add(symbol)
        out.append(symbol)
    return out
