"""FusedEmbedder: one vector whose cosine is the weighted mean of its parts' cosines."""

from __future__ import annotations

from collections.abc import Callable

import numpy as np
import pytest

from openimm.vision import DecodedImage, DetectedFace, RetinaFaceDetector
from openimm.vision.fused_embedder import FusedEmbedder, FusionPart, dlib_facenet_fusion
from openimm.vision.types import Pixels, Vectors

Photo = Callable[[str], DecodedImage]


class ColourEmbedder:
    """Plumbing stand-in: a chip of one grey level, side `side`, embeds to a fixed unit vector."""

    def __init__(self, side: int, dim: int, seed: int) -> None:
        self.name = f"colour{side}"
        self.dim = dim
        self.side = side
        self._table = np.random.default_rng(seed).normal(size=(256, dim)).astype(np.float32)
        self._table /= np.linalg.norm(self._table, axis=1, keepdims=True)

    def align(self, image: DecodedImage, face: DetectedFace) -> Pixels:
        level = int(image.rgb[face.box.top, face.box.left, 0])
        return np.full((self.side, self.side, 3), level, np.uint8)

    def embed(self, chips: list[Pixels]) -> Vectors:
        assert all(c.shape == (self.side, self.side, 3) for c in chips)
        return self._table[[int(c[0, 0, 0]) for c in chips]]


def _face(x: int, y: int) -> DetectedFace:
    from openimm.vision import Box, HeadPose

    points = (
        (x + 3.0, y + 4.0),
        (x + 7.0, y + 4.0),
        (x + 5.0, y + 6.0),
        (x + 3.0, y + 8.0),
        (x + 7.0, y + 8.0),
    )
    return DetectedFace(Box(x, y, 10, 10), points, 1.0, HeadPose(0.0, 0.0, 0.0), 1.0, 1.0)


def _fusion() -> tuple[FusedEmbedder, ColourEmbedder, ColourEmbedder]:
    small, large = ColourEmbedder(4, 3, seed=1), ColourEmbedder(6, 5, seed=2)
    fused = FusedEmbedder(
        [FusionPart(small, 4, weight=0.5, impostor_sd=0.05), FusionPart(large, 6, 0.5, 0.2)]
    )
    return fused, small, large


def test_strip_holds_each_parts_chip() -> None:
    fused, _, _ = _fusion()
    rgb = np.zeros((40, 40, 3), np.uint8)
    rgb[0:20] = 7
    strip = fused.align(DecodedImage(rgb, 40, 40, "raw"), _face(2, 2))
    assert strip.shape == (6, 10, 3)
    assert (strip[:4, :4] == 7).all() and (strip[4:, :4] == 0).all() and (strip[:, 4:] == 7).all()


def test_cosine_is_the_gain_weighted_mean_of_the_parts() -> None:
    fused, small, large = _fusion()
    levels = [3, 90, 200]
    chips = [np.full((6, 10, 3), v, np.uint8) for v in levels]
    vectors = fused.embed(chips)
    assert vectors.shape == (3, 8) and fused.dim == 8
    assert np.allclose(np.linalg.norm(vectors, axis=1), 1.0, atol=1e-6)
    a = small.embed([np.full((4, 4, 3), v, np.uint8) for v in levels])
    b = large.embed([np.full((6, 6, 3), v, np.uint8) for v in levels])
    gain_a, gain_b = 0.5 / 0.05, 0.5 / 0.2
    expected = (gain_a * (a @ a.T) + gain_b * (b @ b.T)) / (gain_a + gain_b)
    assert np.allclose(vectors @ vectors.T, expected, atol=1e-6)


def test_fusion_needs_two_sound_parts() -> None:
    small = ColourEmbedder(4, 3, seed=1)
    with pytest.raises(ValueError, match="two"):
        FusedEmbedder([FusionPart(small, 4, 1.0, 0.1)])
    with pytest.raises(ValueError, match="positive"):
        FusedEmbedder([FusionPart(small, 4, 1.0, 0.1), FusionPart(small, 4, 0.0, 0.1)])
    assert FusedEmbedder([FusionPart(small, 4, 1.0, 0.1)] * 2).embed([]).shape == (0, 6)


@pytest.mark.models
def test_dlib_facenet_fusion_on_real_faces(
    vision_models: object, detector: RetinaFaceDetector, photo: Photo
) -> None:
    fused = dlib_facenet_fusion()
    names = ("obama.jpg", "obama2.jpg", "biden.jpg")
    chips = []
    for name in names:
        image = photo(name)
        chips.append(fused.align(image, detector.detect(image)[0]))
    assert chips[0].shape == (160, 310, 3)
    vectors = fused.embed(chips)
    assert vectors.shape == (3, 640)
    sim = vectors @ vectors.T
    # parts' own vectors, fused by hand, give the same similarities
    parts = [
        p.embedder.embed(
            [np.ascontiguousarray(c[: p.chip_side, off : off + p.chip_side]) for c in chips]
        )
        for p, off in zip(fused.parts, (0, 150), strict=True)
    ]
    gains = [p.gain for p in fused.parts]
    by_hand = sum(g * (v @ v.T) for g, v in zip(gains, parts, strict=True)) / sum(gains)
    assert np.allclose(sim, by_hand, atol=1e-5)
    assert sim[0, 1] - max(sim[0, 2], sim[1, 2]) > 0.2


@pytest.mark.models
def test_the_default_fusion_mirrors_dlib_and_not_facenet(vision_models: object) -> None:
    dlib, facenet = dlib_facenet_fusion().parts
    assert vars(dlib.embedder)["flip"] is True
    assert vars(facenet.embedder)["flip"] is False
    assert vars(dlib_facenet_fusion(facenet_flip=True).parts[1].embedder)["flip"] is True
