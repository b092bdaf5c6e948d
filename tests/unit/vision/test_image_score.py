"""ImageScore on images made here: the original shot outranks its degraded copies."""

from __future__ import annotations

import io

import cv2
import numpy as np
import pytest
from PIL import Image

from openimm.vision.image_features import working_copy
from openimm.vision.image_score import (
    ImageScore,
    blockiness,
    centre_crop,
    exposure,
    image_score,
    noise_sigma,
    sharpness,
)
from openimm.vision.types import Pixels


def photo_like(seed: int, width: int = 768, height: int = 512) -> Pixels:
    """Shading, fine texture, hard edges and mild sensor noise, mid-tones mostly."""
    rng = np.random.default_rng(seed)
    low = rng.uniform(50, 190, size=(5, 7, 3)).astype(np.float32)
    rgb = cv2.resize(low, (width, height), interpolation=cv2.INTER_CUBIC)
    texture = cv2.GaussianBlur(rng.normal(0, 25, (height, width)).astype(np.float32), (0, 0), 1.2)
    rgb += texture[:, :, None]
    for _ in range(60):
        x, y = int(rng.integers(0, width)), int(rng.integers(0, height))
        colour = tuple(float(c) for c in rng.uniform(20, 235, 3))
        cv2.rectangle(rgb, (x, y), (x + int(rng.integers(10, 80)), y + 30), colour, -1)
    # a bright, sky-like patch that clips when brighter; its edges off the 8x8 grid
    rgb[: height // 8 + 3, : width // 4 + 5] = 250.0
    rgb += rng.normal(0, 1.5, rgb.shape).astype(np.float32)
    return np.clip(rgb, 0, 255).astype(np.uint8)


def _jpeg(rgb: Pixels, quality: int) -> Pixels:
    buffer = io.BytesIO()
    Image.fromarray(rgb).save(buffer, "JPEG", quality=quality)
    return np.asarray(Image.open(io.BytesIO(buffer.getvalue())).convert("RGB"))


DEGRADED = {
    "blurred": lambda rgb: cv2.GaussianBlur(rgb, (0, 0), 2.0),
    "over-exposed": lambda rgb: np.clip(rgb * 1.3, 0, 255).astype(np.uint8),
    "jpeg50": lambda rgb: _jpeg(rgb, 50),
}


@pytest.mark.parametrize("seed", [1, 2, 3])
@pytest.mark.parametrize("kind", list(DEGRADED))
def test_the_original_outranks_its_degraded_copy(seed: int, kind: str) -> None:
    rgb = photo_like(seed)
    original, copy = image_score(rgb), image_score(DEGRADED[kind](rgb))
    assert original.overall > 1.03 * copy.overall, (original, copy)


def test_each_part_reacts_to_its_own_defect() -> None:
    rgb = photo_like(4)
    original = image_score(rgb)
    assert image_score(cv2.GaussianBlur(rgb, (0, 0), 2.0)).sharpness < original.sharpness - 0.2
    assert image_score(np.clip(rgb * 1.3, 0, 255).astype(np.uint8)).exposure < original.exposure
    assert image_score(_jpeg(rgb, 50)).artefacts < 0.9 * original.artefacts
    noisy = np.clip(rgb + np.random.default_rng(0).normal(0, 8, rgb.shape), 0, 255)
    assert image_score(noisy.astype(np.uint8)).noise < original.noise - 0.1
    for part in ("sharpness", "exposure", "noise", "artefacts", "resolution"):
        assert 0.0 <= getattr(original, part) <= 1.0


def test_sharpness_ignores_exposure_and_is_zero_when_flat() -> None:
    luma = cv2.cvtColor(photo_like(5), cv2.COLOR_RGB2GRAY)
    darker = (luma * 0.6).astype(np.uint8)
    assert sharpness(darker) == pytest.approx(sharpness(luma), abs=0.03)
    assert sharpness(np.full((64, 64), 90, np.uint8)) == 0.0


def test_exposure_of_blank_clipped_and_mid_grey_images() -> None:
    assert exposure(np.full((50, 50, 3), 255, np.uint8)) == 0.0
    assert exposure(np.zeros((50, 50, 3), np.uint8)) == 0.0
    # mid-grey, but nothing reaches the highlights: under-exposed by 128 / 220
    assert exposure(np.full((50, 50, 3), 128, np.uint8)) == pytest.approx(128 / 220)
    lit = np.full((100, 100), 128, np.uint8)
    lit[:10, :10] = 230
    assert exposure(lit) == 1.0
    # one blown pixel in a hundred costs a tenth
    lit[:10, :10] = 255
    assert exposure(lit) == pytest.approx(0.9)
    darker = np.clip(photo_like(8) * 0.7, 0, 255).astype(np.uint8)
    assert exposure(darker) < exposure(photo_like(8))


def test_noise_sigma_reads_the_added_noise() -> None:
    rng = np.random.default_rng(1)
    flat = np.clip(120 + rng.normal(0, 5, (400, 400)), 0, 255).astype(np.uint8)
    assert noise_sigma(flat) == pytest.approx(5.0, rel=0.15)
    assert noise_sigma(np.full((400, 400), 120, np.uint8)) == 0.0
    assert noise_sigma(np.zeros((2, 2), np.uint8)) == 0.0


def test_blockiness_shows_jpeg_blocks() -> None:
    luma = cv2.cvtColor(photo_like(6), cv2.COLOR_RGB2GRAY)
    assert blockiness(luma) == pytest.approx(1.0, abs=0.1)
    assert blockiness(cv2.cvtColor(_jpeg(photo_like(6), 30), cv2.COLOR_RGB2GRAY)) > 1.2
    assert blockiness(np.full((16, 16), 7, np.uint8)) == 1.0
    # a photo one pixel high or wide has no step along that axis
    for shape in ((1, 1), (1, 500), (500, 1)):
        assert blockiness(np.zeros(shape, np.uint8)) == 1.0


def test_resolution_prefers_the_larger_copy() -> None:
    rgb = photo_like(7, 1536, 1024)
    small = cv2.resize(rgb, (384, 256), interpolation=cv2.INTER_AREA)
    large, little = image_score(rgb), image_score(small)
    assert large.resolution == 1.0 and little.resolution == pytest.approx(np.sqrt(0.098304))
    assert large.overall > little.overall


def test_a_shrunk_view_given_gives_the_same_score() -> None:
    rgb = photo_like(9, 2048, 1536)
    assert image_score(rgb, working_copy(rgb)) == image_score(rgb)


def test_centre_crop_stays_on_the_jpeg_grid() -> None:
    rgb = np.zeros((3000, 2001, 3), np.uint8)
    crop = centre_crop(rgb, 1024)
    assert crop.shape == (1024, 1024, 3)
    assert centre_crop(rgb[:100, :100], 1024).shape == (100, 100, 3)


def test_overall_is_the_product_of_the_parts() -> None:
    score = ImageScore(sharpness=0.8, exposure=0.5, noise=0.9, artefacts=1.0, resolution=0.5)
    assert score.overall == pytest.approx(0.18)
