"""The provider fallback chain (seed 003 §4.1): per ticker, the first provider whose bars pass.

``providers.yaml`` names a primary (``provider``) and an ordered ``fallback`` list. For each
ticker, :func:`route_bars` asks the providers in that order and keeps the first answer that

- arrives (no :class:`ProviderError` and no network error after the provider's own retries),
- is not empty, and
- passes the blocking bar checks: the row suite (:func:`quant_assets.quality.bars.validate_bars`)
  and the seed-003 quality score (:func:`quant_assets.quality.bars.partition_summary`, the
  lowest window score of the ticker) ``>= quality.min_quality_score``.

Every try is logged (provider, ticker, outcome, reason, quality score, rows) so the ``bars``
asset can show which provider served each ticker and why others were passed over. A ticker no
provider can serve raises :class:`RoutingError` naming the ticker and every provider's reason.
A ticker every provider answers with no rows (no data in the range, e.g. before a listing)
contributes no rows, as with a single provider.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass
from datetime import date
from typing import Any, Literal

import polars as pl

from quant_assets.errors import NoBarsInRangeError, ProviderError
from quant_assets.providers.base import BAR_COLUMNS, BarProvider, empty_bars
from quant_assets.quality import bars as bar_quality
from quant_assets.quality.gx import ValidationReport
from quant_assets.settings import QualitySettings

Outcome = Literal["ok", "empty", "error", "rejected"]
RowCheck = Callable[[pl.DataFrame], ValidationReport]
ATTEMPT_SCHEMA: dict[str, pl.DataType] = {
    "provider": pl.Utf8(),
    "ticker": pl.Utf8(),
    "outcome": pl.Utf8(),
    "reason": pl.Utf8(),
    "quality_score": pl.Float64(),
    "rows": pl.Int64(),
}
_REASON_CHARS = 500  # keep metadata readable; the full error is in the run log


@dataclass(frozen=True)
class Attempt:
    """One provider's try at one ticker. ``quality_score`` is None when no bars were scored."""

    provider: str
    ticker: str
    outcome: Outcome
    reason: str
    quality_score: float | None = None
    rows: int = 0


@dataclass(frozen=True)
class RoutedBars:
    """Bars of every served ticker, which provider served each, and every attempt in order."""

    frame: pl.DataFrame  # the bar schema, sorted by (ticker, date)
    served_by: dict[str, str]  # ticker -> provider name; tickers with no rows are absent
    attempts: tuple[Attempt, ...]

    @property
    def providers_used(self) -> list[str]:
        """The providers that served at least one ticker, in chain order of first use."""
        return list(dict.fromkeys(self.served_by.values()))

    def attempt_log(self) -> pl.DataFrame:
        """The attempts as a frame of :data:`ATTEMPT_SCHEMA`, in the order they were made."""
        return attempt_frame(self.attempts)

    def as_metadata(self) -> dict[str, Any]:
        """Plain-JSON metadata for Dagster: who served what, fallbacks, every attempt."""
        primary = self.attempts[0].provider if self.attempts else None
        return {
            "served_by": dict(sorted(self.served_by.items())),
            "fallback_tickers": sorted(t for t, p in self.served_by.items() if p != primary),
            "attempts": [asdict(a) for a in self.attempts],
        }


class RoutingError(ProviderError):
    """No provider of the chain could serve one or more tickers; ``attempts`` has every try."""

    def __init__(self, message: str, attempts: Sequence[Attempt]) -> None:
        super().__init__(message)
        self.attempts = tuple(attempts)


def attempt_frame(attempts: Sequence[Attempt]) -> pl.DataFrame:
    """Attempts as a polars frame (:data:`ATTEMPT_SCHEMA`)."""
    return pl.DataFrame([asdict(a) for a in attempts], schema=ATTEMPT_SCHEMA, orient="row")


def route_bars(
    chain: Sequence[BarProvider],
    tickers: Sequence[str],
    start: date,
    end: date,
    *,
    calendar: str,
    grain: str,
    quality: QualitySettings,
    row_check: RowCheck | None = None,
) -> RoutedBars:
    """Fetch each ticker's bars in ``[start, end]`` from the first provider of ``chain`` that
    delivers bars passing the blocking checks (see the module docstring).

    ``calendar`` (exchange calendar) and ``grain`` (``month``/``year``) define the windows of
    the quality score; ``quality`` holds the spike threshold and the minimum score;
    ``row_check`` is the row-level rule suite (default :func:`validate_bars`; tests may pass
    a faster stand-in). Returns a
    :class:`RoutedBars`. Raises :class:`RoutingError` (a ProviderError) naming every ticker no
    provider could serve with each provider's reason, ValueError for an empty chain.
    Exceptions other than ProviderError and network errors (bugs, invalid tickers) propagate.
    """
    if not chain:
        raise ValueError("the provider chain is empty")
    check = row_check or bar_quality.validate_bars
    pending = list(dict.fromkeys(tickers))
    attempts: list[Attempt] = []
    served: dict[str, pl.DataFrame] = {}
    served_by: dict[str, str] = {}
    for provider in chain:
        if not pending:
            break
        # One round per provider: fetch every pending ticker, judge them together, log the
        # round's attempts in ticker order.
        round_attempts: dict[str, Attempt] = {}
        fetched: dict[str, pl.DataFrame] = {}
        for ticker in pending:
            try:
                frame = provider.fetch_bars([ticker], start, end)
            except NoBarsInRangeError as exc:  # a known ticker with nothing in the range
                round_attempts[ticker] = Attempt(provider.name, ticker, "empty", _short(exc))
                continue
            except (ProviderError, OSError) as exc:
                round_attempts[ticker] = Attempt(provider.name, ticker, "error", _short(exc))
                continue
            frame = frame.select(BAR_COLUMNS).filter(pl.col("ticker") == ticker)
            if frame.is_empty():
                reason = f"no bars in [{start}, {end}]"
                round_attempts[ticker] = Attempt(provider.name, ticker, "empty", reason)
                continue
            fetched[ticker] = frame
        verdicts = _judge(fetched, calendar=calendar, grain=grain, quality=quality, check=check)
        for ticker, frame in fetched.items():
            score, problem = verdicts[ticker]
            outcome: Outcome = "ok" if problem is None else "rejected"
            round_attempts[ticker] = Attempt(
                provider.name, ticker, outcome, problem or "", score, frame.height
            )
            if problem is None:
                served[ticker] = frame
                served_by[ticker] = provider.name
        attempts.extend(round_attempts[t] for t in pending)
        pending = [t for t in pending if t not in served]
    failed = [t for t in pending if any(a.ticker == t and a.outcome != "empty" for a in attempts)]
    if failed:
        raise RoutingError(_failure_message(failed, attempts, start, end), attempts)
    frame = (
        pl.concat([served[t] for t in served]).sort(["ticker", "date"]) if served else empty_bars()
    )
    return RoutedBars(frame=frame, served_by=served_by, attempts=tuple(attempts))


def _judge(
    fetched: dict[str, pl.DataFrame],
    *,
    calendar: str,
    grain: str,
    quality: QualitySettings,
    check: RowCheck,
) -> dict[str, tuple[float | None, str | None]]:
    """Per ticker: its quality score (lowest window) and the reason to reject it, if any."""
    if not fetched:
        return {}
    combined = pl.concat(list(fetched.values()))
    threshold = quality.return_spike_threshold
    summary = bar_quality.partition_summary(
        bar_quality.with_return_flags(combined, threshold), calendar, grain, threshold
    )
    scores = {
        row["ticker"]: row
        for row in summary.sort("quality_score")
        .unique("ticker", keep="first", maintain_order=True)
        .iter_rows(named=True)
    }
    # One suite run for the whole round; per-ticker runs only to say who broke a rule.
    all_pass = check(combined).success
    verdicts: dict[str, tuple[float | None, str | None]] = {}
    for ticker, frame in fetched.items():
        worst = scores[ticker]
        score = float(worst["quality_score"])
        problem = None
        if not all_pass:
            report = check(frame)
            if not report.success:
                problem = "row checks failed: " + report.summary().replace("\n", "; ")
        if problem is None and score < quality.min_quality_score:
            problem = (
                f"quality score {score:.3f} < min_quality_score {quality.min_quality_score} "
                f"(window {worst['window']}: missing_dates_pct {worst['missing_dates_pct']:.3f}, "
                f"duplicate_pct {worst['duplicate_pct']:.3f}, "
                f"zero_negative_flag {worst['zero_negative_flag']}, "
                f"extreme_spike_flag {worst['extreme_spike_flag']})"
            )
        verdicts[ticker] = (score, _clip(problem) if problem else None)
    return verdicts


def _short(exc: BaseException) -> str:
    text = str(exc) or type(exc).__name__
    if not isinstance(exc, ProviderError):
        text = f"{type(exc).__name__}: {text}"
    return _clip(text)


def _clip(text: str) -> str:
    return text if len(text) <= _REASON_CHARS else text[: _REASON_CHARS - 1] + "…"


def _failure_message(
    failed: Sequence[str], attempts: Sequence[Attempt], start: date, end: date
) -> str:
    lines = [f"no provider could serve {', '.join(failed)} for [{start}, {end}]:"]
    for ticker in failed:
        for attempt in attempts:
            if attempt.ticker == ticker:
                lines.append(
                    f"  {ticker} from {attempt.provider}: {attempt.outcome}: {attempt.reason}"
                )
    return "\n".join(lines)
