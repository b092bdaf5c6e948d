"""Fixtures of the vision tests: pinned models and sample photos, fetched once and cached.

Models go to $OPENIMM_MODEL_DIR (else ~/.cache/openimm/models), photos to
$OPENIMM_SAMPLE_DIR (else the user cache); both are sha256-verified on every session.
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import pytest

from openimm.local.samples import fetch_sample_photos, sample_dir
from openimm.vision import (
    DecodedImage,
    DetectedFace,
    DlibEmbedder,
    Pixels,
    RetinaFaceDetector,
    decode_image,
)
from openimm.vision.model_store import fetch_models, model_dir


@pytest.fixture(scope="session")
def vision_models() -> Path:
    """The pinned model files, in the directory model_path() reads from."""
    return fetch_models(model_dir())


@pytest.fixture(scope="session")
def photos() -> Path:
    """The directory holding the pinned sample photos."""
    return fetch_sample_photos(sample_dir())


@pytest.fixture(scope="session")
def photo(photos: Path) -> Callable[[str], DecodedImage]:
    """Decode a sample photo by name (cached for the session)."""
    cache: dict[str, DecodedImage] = {}

    def load(name: str) -> DecodedImage:
        if name not in cache:
            cache[name] = decode_image((photos / name).read_bytes())
        return cache[name]

    return load


@pytest.fixture(scope="session")
def detector(vision_models: Path) -> RetinaFaceDetector:
    """The default RetinaFace detector, its model fetched."""
    return RetinaFaceDetector()


@pytest.fixture(scope="session")
def embedder(vision_models: Path) -> DlibEmbedder:
    """The default dlib embedder (flip on), its models fetched."""
    return DlibEmbedder()


@pytest.fixture(scope="session")
def aligned_sample_chips(
    model_dir: Path, sample_photos: Path
) -> Callable[[Callable[[DecodedImage, DetectedFace], Pixels]], list[Pixels]]:
    """The chips `align` makes of every face RetinaFace finds in the sample photos."""

    def chips(align: Callable[[DecodedImage, DetectedFace], Pixels]) -> list[Pixels]:
        detector = RetinaFaceDetector()
        out: list[Pixels] = []
        for pattern in ("*.jpg", "*.png"):
            for path in sorted(sample_photos.glob(pattern)):
                image = decode_image(path.read_bytes())
                out += [align(image, face) for face in detector.detect(image)]
        return out

    return chips
