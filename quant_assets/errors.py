"""Exceptions that name what is wrong and where: file, ticker, date, rule."""

from __future__ import annotations

from datetime import date


class QuantAssetsError(Exception):
    """Base class of every error this package raises on purpose."""


class ConfigError(QuantAssetsError):
    """A configuration file is missing, malformed or inconsistent.

    The message always names the file, the key and the problem.
    """

    def __init__(self, file: str, key: str, problem: str) -> None:
        self.file, self.key, self.problem = file, key, problem
        super().__init__(f"{file}: {key}: {problem}")


class InvalidTickerError(QuantAssetsError, ValueError):
    """A ticker symbol does not match the strict symbol pattern."""


class ProviderError(QuantAssetsError):
    """A provider could not deliver bars (unknown ticker, unreadable file, ...)."""


class NoBarsInRangeError(ProviderError):
    """The provider knows the ticker but has no bars in the requested range (e.g. before it
    listed): the ticker contributes no rows, as with the bundled and files providers."""


class BadBarsError(QuantAssetsError):
    """Bars break a data-quality rule. Names the source, ticker, date and rule."""

    def __init__(
        self,
        rule: str,
        *,
        ticker: str | None = None,
        date: date | str | None = None,
        source: str | None = None,
        detail: str | None = None,
    ) -> None:
        self.rule, self.ticker, self.date, self.source, self.detail = (
            rule,
            ticker,
            date,
            source,
            detail,
        )
        where = ", ".join(
            part
            for part in (
                f"source={source}" if source else "",
                f"ticker={ticker}" if ticker else "",
                f"date={date}" if date is not None else "",
            )
            if part
        )
        message = f"rule '{rule}' failed"
        if where:
            message += f" ({where})"
        if detail:
            message += f": {detail}"
        super().__init__(message)
