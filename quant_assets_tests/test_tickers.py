"""Specification of ticker symbols: one strict pattern, checked before SQL, paths or keys."""

from __future__ import annotations

import pytest

from quant_assets.errors import InvalidTickerError, QuantAssetsError
from quant_assets.tickers import TICKER_PATTERN, validate_ticker, validate_tickers


@pytest.mark.parametrize(
    "symbol",
    [
        "AAPL",
        "BRK.B",
        "RDS-A",
        "X",
        "SP500",
        "GSPC",
        "0700",  # digits only (an exchange code) are fine
        "ABCDEFGH",  # 8 characters before a suffix: the longest base
        "ABCDEFGH.XYZ",  # 8 + '.' + 3 = 12 characters: the longest symbol
    ],
)
def test_valid_symbols_are_returned_unchanged(symbol: str) -> None:
    assert validate_ticker(symbol) == symbol
    assert TICKER_PATTERN.fullmatch(symbol)


@pytest.mark.parametrize(
    "symbol",
    [
        "AAPL; DROP TABLE bars",  # an SQL fragment
        "../etc",  # a path
        "AAPL/../../etc",
        "",
        "a" * 100,
        "A" * 100,
        "aapl",  # lower case
        "Aapl",
        "AAPL ",  # surrounding whitespace is not stripped silently
        " AAPL",
        "AAPL\n",  # a trailing newline must not slip through a '$' anchor
        "BRK.B.C",  # at most one suffix
        "BRK..B",
        "BRK.",
        ".B",
        "-A",
        "BRK.ABCD",  # suffix of at most 3 characters
        "ABCDEFGHI",  # base of at most 8 characters
        "AAPL*",
        "AA_PL",
        "ÄAPL",  # non-ASCII letters
    ],
)
def test_malformed_symbols_are_refused(symbol: str) -> None:
    with pytest.raises(InvalidTickerError, match="invalid ticker"):
        validate_ticker(symbol)


@pytest.mark.parametrize("value", [None, 42, 3.5, b"AAPL", ["AAPL"]])
def test_non_strings_are_refused(value: object) -> None:
    with pytest.raises(InvalidTickerError):
        validate_ticker(value)


def test_the_error_is_a_package_error_and_a_value_error() -> None:
    # A ValueError, so pydantic validators turn it into a validation error (ConfigError).
    with pytest.raises(QuantAssetsError):
        validate_ticker("aapl")
    with pytest.raises(ValueError):
        validate_ticker("aapl")


def test_the_error_shows_the_symbol_and_the_pattern() -> None:
    with pytest.raises(InvalidTickerError) as excinfo:
        validate_ticker("../etc")
    message = str(excinfo.value)
    assert "'../etc'" in message
    assert TICKER_PATTERN.pattern in message


def test_a_very_long_symbol_is_shown_truncated() -> None:
    with pytest.raises(InvalidTickerError) as excinfo:
        validate_ticker("a" * 100)
    message = str(excinfo.value)
    assert "a" * 40 in message
    assert "a" * 41 not in message


def test_none_is_shown_as_none() -> None:
    with pytest.raises(InvalidTickerError, match="invalid ticker None"):
        validate_ticker(None)


def test_validate_tickers_returns_a_list_in_order() -> None:
    assert validate_tickers(("MSFT", "AAPL", "BRK.B")) == ["MSFT", "AAPL", "BRK.B"]
    assert validate_tickers([]) == []


def test_validate_tickers_refuses_duplicates_by_name() -> None:
    with pytest.raises(InvalidTickerError, match="duplicate ticker 'AAPL'"):
        validate_tickers(["AAPL", "MSFT", "AAPL"])


def test_validate_tickers_refuses_any_malformed_symbol() -> None:
    with pytest.raises(InvalidTickerError, match="'msft'"):
        validate_tickers(["AAPL", "msft"])
