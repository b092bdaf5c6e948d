"""DlibEmbedder and FaceAnalyser: same person closer than different people, shapes, laziness."""

from __future__ import annotations

import os
import subprocess
import sys
from collections.abc import Callable
from pathlib import Path

import numpy as np
import pytest

from openimm.errors import InvalidFile
from openimm.vision import (
    Box,
    DecodedImage,
    DetectedFace,
    DlibEmbedder,
    FaceAnalyser,
    HeadPose,
    Pixels,
    RetinaFaceDetector,
    Vectors,
    default_face_analyser,
)

Photo = Callable[[str], DecodedImage]
PEOPLE = ("obama.jpg", "obama2.jpg", "obama3.jpg", "biden.jpg")


@pytest.fixture(scope="module")
def chips(detector: RetinaFaceDetector, embedder: DlibEmbedder, photo: Photo) -> list[Pixels]:
    """One aligned chip per photo in PEOPLE."""
    out = []
    for name in PEOPLE:
        image = photo(name)
        out.append(embedder.align(image, detector.detect(image)[0]))
    return out


@pytest.mark.models
def test_chips_are_150px_rgb(chips: list[Pixels]) -> None:
    assert all(c.shape == (150, 150, 3) and c.dtype == np.uint8 for c in chips)


@pytest.mark.models
def test_same_person_is_clearly_closer(embedder: DlibEmbedder, chips: list[Pixels]) -> None:
    vectors = embedder.embed(chips)
    assert vectors.shape == (4, 128) and vectors.dtype == np.float32
    assert np.allclose(np.linalg.norm(vectors, axis=1), 1.0, atol=1e-5)
    sim = vectors @ vectors.T
    same = [sim[0, 1], sim[0, 2], sim[1, 2]]
    different = [sim[0, 3], sim[1, 3], sim[2, 3]]
    # dlib vectors all share a large common component, so strangers still sit near 0.8
    assert min(same) > 0.93
    assert max(different) < 0.87
    assert min(same) - max(different) > 0.08


@pytest.mark.models
def test_flip_averaging_is_mirror_symmetric(chips: list[Pixels]) -> None:
    flipped = DlibEmbedder(flip=True)
    plain = DlibEmbedder(flip=False)
    chip = chips[0]
    mirrored = np.ascontiguousarray(chip[:, ::-1])
    both = flipped.embed([chip, mirrored])
    assert float(both[0] @ both[1]) > 0.9999
    single = plain.embed([chip])[0]
    assert 0.97 < float(single @ both[0]) < 0.99999


@pytest.mark.models
def test_empty_batch(embedder: DlibEmbedder) -> None:
    assert embedder.embed([]).shape == (0, 128)


@pytest.mark.models
def test_default_analyser_end_to_end(vision_models: Path, photos: Path) -> None:
    analyser = default_face_analyser()
    image, faces, vectors = analyser.analyse((photos / "t1.jpg").read_bytes())
    assert (image.width, image.height) == (1280, 886)
    assert len(faces) == 6 and vectors.shape == (6, 128)
    sim = vectors @ vectors.T
    assert float(sim[~np.eye(6, dtype=bool)].max()) < 0.93  # six different people


class _OneFace:
    def detect(self, image: DecodedImage) -> list[DetectedFace]:
        return [DetectedFace(Box(0, 0, 4, 4), (), 1.0, HeadPose(0, 0, 0), 1.0, 1.0)]


class _NoFace:
    def detect(self, image: DecodedImage) -> list[DetectedFace]:
        return []


class _Embedder:
    name = "fake"
    dim = 3

    def align(self, image: DecodedImage, face: DetectedFace) -> Pixels:
        return image.rgb[:4, :4]

    def embed(self, chips: list[Pixels]) -> Vectors:
        return np.full((len(chips), 3), 3**-0.5, dtype=np.float32)


def _png() -> bytes:
    import io

    from PIL import Image

    buffer = io.BytesIO()
    Image.new("RGB", (8, 8), (10, 20, 30)).save(buffer, "PNG")
    return buffer.getvalue()


def test_analyser_wires_decode_detect_align_embed() -> None:
    image, faces, vectors = FaceAnalyser(_OneFace(), _Embedder()).analyse(_png())
    assert image.width == 8 and len(faces) == 1 and vectors.shape == (1, 3)
    _, none, empty = FaceAnalyser(_NoFace(), _Embedder()).analyse(_png())
    assert none == [] and empty.shape == (0, 3) and empty.dtype == np.float32
    with pytest.raises(InvalidFile):
        FaceAnalyser(_OneFace(), _Embedder(), max_pixels=63).analyse(_png())


def test_importing_the_package_loads_no_model(tmp_path: Path) -> None:
    code = (
        "import sys, openimm.vision as v; v.default_face_analyser(); "
        "print(','.join(m for m in ('cv2', 'onnxruntime', 'dlib') if m in sys.modules))"
    )
    env = {**os.environ, "OPENIMM_MODEL_DIR": str(tmp_path / "models")}
    result = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, env=env, check=True
    )
    assert result.stdout.strip() == ""
    assert not (tmp_path / "models").exists()
