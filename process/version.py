"""Wingman's version, as installed: what ``GET /v1/health`` reports and ``wingman check``
compares between the bot and its executors."""

from __future__ import annotations

from importlib.metadata import PackageNotFoundError, version


def package_version() -> str:
    """The installed ``wingman`` distribution's version; ``unknown`` when run uninstalled."""
    try:
        return version("wingman")
    except PackageNotFoundError:
        return "unknown"


VERSION = package_version()
