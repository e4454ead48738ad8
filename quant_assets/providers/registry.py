"""Build the configured provider from settings."""

from __future__ import annotations

from quant_assets.errors import ConfigError
from quant_assets.providers.base import BarProvider
from quant_assets.settings import Settings


def build_provider(settings: Settings) -> BarProvider:
    """The provider named in ``providers.yaml``."""
    choice = settings.providers.provider
    if choice == "bundled":
        from quant_assets.providers.bundled import BundledProvider

        return BundledProvider()
    if choice == "synthetic":
        from quant_assets.providers.synthetic import SyntheticProvider

        synthetic = settings.providers.synthetic
        return SyntheticProvider(
            seed=synthetic.seed,
            calendar=settings.universe.calendar,
            origin=synthetic.origin,
            benchmark=settings.universe.benchmark,
            end=settings.universe.end,
        )
    if choice == "files":
        from quant_assets.providers.files import FilesProvider

        assert settings.providers.files is not None  # enforced by ProvidersSettings
        return FilesProvider(settings.providers.files.path)
    raise ConfigError(
        str(settings.config_dir / "providers.yaml"), "provider", f"{choice!r} is not available"
    )
