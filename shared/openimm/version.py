"""OpenIMM's own version, as installed."""

from __future__ import annotations

from importlib.metadata import PackageNotFoundError, version


def openimm_version() -> str:
    """The installed distribution's version, or "unknown" in a tree never installed."""
    try:
        return version("openimm")
    except PackageNotFoundError:
        return "unknown"
