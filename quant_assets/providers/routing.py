"""Ingest a date range through the configured provider chain: fetch, route, score, stamp.

What the ``bars`` and ``benchmark_bars`` assets do before validating: cap the range at the
daily run's session, fetch from a margin before the range (so its first bar has a previous
close), route through the fallback chain when it has several providers, then
:func:`quant_assets.ingest.ingest_bars`. Pure of Dagster: the asset turns the metadata
returned here into Dagster metadata and a :class:`~quant_assets.providers.chain.RoutingError`
into a failure.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import replace
from datetime import UTC, date, datetime, timedelta
from typing import Any

import polars as pl

from quant_assets.ingest import IngestedBars, ingest_bars
from quant_assets.providers.chain import route_bars
from quant_assets.providers.registry import build_provider_chain
from quant_assets.settings import Settings

# Calendar days fetched before a range so its first bar has a previous close (covers the
# longest exchange closures, e.g. 2001-09-11..17).
PREVIOUS_CLOSE_MARGIN = timedelta(days=14)


def ingest_range(
    settings: Settings,
    tickers: Sequence[str],
    start: date,
    end: date,
    *,
    session: date | None,
    ingested_at: datetime | None = None,
) -> tuple[IngestedBars, dict[str, Any]]:
    """The stored bars of ``tickers`` in ``[start, end)`` from the configured providers.

    ``session``: the session of a daily run (None otherwise); no bar after it is kept, so
    ``end`` becomes ``session + 1 day`` when that is earlier. Bars are fetched from
    :data:`PREVIOUS_CLOSE_MARGIN` before ``start`` (for the first return; not kept) through
    the last kept day. With one provider its bars go to the quality suite as they are; with
    several, :func:`~quant_assets.providers.chain.route_bars` serves each ticker from the first
    provider whose bars pass the blocking checks, and each row's ``provider`` names the one
    that served its ticker. ``ingested_at`` stamps every row (default: the time after the
    fetch, in UTC).

    Returns the :class:`~quant_assets.ingest.IngestedBars` (not yet judged: the caller raises
    on its blocking reports) and plain-JSON metadata: ``provider_chain`` (``"a → b"``) and,
    when the chain has several providers, ``providers`` (``served_by``, ``fallback_tickers``
    and every attempt, :meth:`~quant_assets.providers.chain.RoutedBars.as_metadata`).

    Raises :class:`~quant_assets.providers.chain.RoutingError` (with ``attempts``) when no
    provider can serve a ticker, a ``ProviderError`` from a single provider, ConfigError for
    an unknown provider name.
    """
    universe = settings.universe
    grain = universe.partition_grain
    last_day = end - timedelta(days=1)
    if session is not None:  # a daily run for session D never stores bars after D
        last_day = min(last_day, session)
        end = last_day + timedelta(days=1)
    first_day = start - PREVIOUS_CLOSE_MARGIN
    chain = build_provider_chain(settings)
    routing: dict[str, Any]
    served_by: dict[str, str]
    if len(chain) == 1:  # one provider: its data goes to the quality suite as it is
        raw, served_by, routing = chain[0].fetch_bars(list(tickers), first_day, last_day), {}, {}
        name = chain[0].name
    else:  # the next provider when one fails or its data fails the blocking checks
        routed = route_bars(
            chain,
            list(tickers),
            first_day,
            last_day,
            calendar=universe.calendar,
            grain=grain,
            quality=settings.quality,
        )
        raw, served_by, name = routed.frame, routed.served_by, chain[0].name
        routing = routed.as_metadata()
    ingested = ingest_bars(
        universe.members_only(raw),  # a point-in-time universe: bars inside membership only
        provider=name,
        start=start,
        end=end,
        calendar=universe.calendar,
        grain=grain,
        quality=settings.quality,
        ingested_at=ingested_at if ingested_at is not None else datetime.now(UTC),
    )
    if served_by:  # each row names the provider that actually served its ticker
        frame = ingested.frame.with_columns(
            pl.col("ticker").replace_strict(served_by, default=name).alias("provider")
        )
        ingested = replace(ingested, frame=frame)
    return ingested, {
        "provider_chain": " → ".join(p.name for p in chain),
        **({"providers": routing} if routing else {}),
    }
