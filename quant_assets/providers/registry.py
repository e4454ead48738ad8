"""Build the configured providers from settings: the primary and its fallback chain."""

from __future__ import annotations

from quant_assets.errors import ConfigError
from quant_assets.providers.base import BarProvider
from quant_assets.settings import Settings


def build_named_provider(name: str, settings: Settings) -> BarProvider:
    """The provider called ``name``, configured from ``providers.yaml``.

    Raises ConfigError naming providers.yaml for a name no provider answers to.
    """
    providers = settings.providers
    if name == "bundled":
        from quant_assets.providers.bundled import BundledProvider

        return BundledProvider()
    if name == "synthetic":
        from quant_assets.providers.synthetic import SyntheticProvider

        return SyntheticProvider(
            seed=providers.synthetic.seed,
            calendar=settings.universe.calendar,
            origin=providers.synthetic.origin,
            benchmark=settings.universe.benchmark,
            end=settings.universe.end,
        )
    if name == "files":
        from quant_assets.providers.files import FilesProvider

        if providers.files is None:  # ProvidersSettings refuses this; a guard for mypy
            raise ConfigError(str(settings.config_dir / "providers.yaml"), "files", "needs a path")
        return FilesProvider(providers.files.path)
    if name == "yahoo":
        from quant_assets.providers.yahoo import YahooProvider

        yahoo = providers.yahoo
        return YahooProvider(
            symbols=yahoo.symbols,
            max_attempts=yahoo.max_attempts,
            backoff_seconds=yahoo.backoff_seconds,
            max_backoff_seconds=yahoo.max_backoff_seconds,
            timeout_seconds=yahoo.timeout_seconds,
            rate_per_second=yahoo.rate_per_second,
            burst=yahoo.burst,
        )
    raise ConfigError(
        str(settings.config_dir / "providers.yaml"), "provider", f"{name!r} is not available"
    )


def build_provider(settings: Settings) -> BarProvider:
    """The primary provider named by ``provider:`` in ``providers.yaml``."""
    return build_named_provider(settings.providers.provider, settings)


def build_provider_chain(settings: Settings) -> list[BarProvider]:
    """The primary provider, then each ``fallback:`` provider, in the order they are tried."""
    return [build_named_provider(name, settings) for name in settings.providers.chain]
