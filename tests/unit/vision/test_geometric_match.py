"""Geometric verification on scenes drawn here: edited copies match, other scenes do not."""

from __future__ import annotations

import io

import cv2
import numpy as np
import pytest
from PIL import Image

from openimm.vision.geometric_match import (
    DESCRIPTOR_BYTES,
    MAX_KEYPOINTS,
    MIN_INLIERS,
    GeometricMatch,
    Keypoints,
    geometric_match,
    keypoints,
    same_shot,
)
from openimm.vision.types import Pixels


def scene(seed: int, width: int = 800, height: int = 600) -> Pixels:
    """A cluttered RGB scene: smooth shading, then many random shapes and words."""
    rng = np.random.default_rng(seed)
    low = rng.uniform(40, 200, size=(6, 8, 3)).astype(np.float32)
    rgb = cv2.resize(low, (width, height), interpolation=cv2.INTER_CUBIC).astype(np.uint8)
    for _ in range(120):
        colour = tuple(int(c) for c in rng.integers(0, 256, 3))
        x, y = int(rng.integers(0, width)), int(rng.integers(0, height))
        size = int(rng.integers(8, 60))
        shape = int(rng.integers(0, 4))
        if shape == 0:
            cv2.rectangle(rgb, (x, y), (x + size, y + size // 2), colour, -1)
        elif shape == 1:
            cv2.circle(rgb, (x, y), size // 2, colour, int(rng.integers(1, 4)))
        elif shape == 2:
            end = (x + int(rng.integers(-80, 80)), y + int(rng.integers(-80, 80)))
            cv2.line(rgb, (x, y), end, colour, 2)
        else:
            cv2.putText(rgb, str(rng.integers(0, 10**4)), (x, y), 0, size / 40, colour, 2)
    return rgb


def _jpeg(rgb: Pixels, quality: int) -> Pixels:
    buffer = io.BytesIO()
    Image.fromarray(rgb).save(buffer, "JPEG", quality=quality)
    return np.asarray(Image.open(io.BytesIO(buffer.getvalue())).convert("RGB"))


def _copies(rgb: Pixels) -> dict[str, Pixels]:
    h, w = rgb.shape[:2]
    shift = np.float32([[1, 0, 0.03 * w], [0, 1, 0.02 * h]])
    rotation = cv2.getRotationMatrix2D((w / 2, h / 2), 3.0, 1.08)
    return {
        "crop5": rgb[h // 20 : h - h // 20, w // 20 : w - w // 20],
        "shift": cv2.warpAffine(rgb, shift, (w, h), borderMode=cv2.BORDER_REFLECT),
        "rotated": cv2.warpAffine(rgb, rotation, (w, h), borderMode=cv2.BORDER_REFLECT),
        "brighter": np.clip(rgb * 1.3, 0, 255).astype(np.uint8),
        "jpeg50": _jpeg(rgb, 50),
        "half size": cv2.resize(rgb, (w // 2, h // 2), interpolation=cv2.INTER_AREA),
        "blurred": cv2.GaussianBlur(rgb, (0, 0), 1.5),
    }


@pytest.fixture(scope="module")
def original() -> Keypoints:
    return keypoints(scene(1))


@pytest.mark.parametrize("kind", list(_copies(scene(1))))
def test_edited_copies_are_the_same_shot(original: Keypoints, kind: str) -> None:
    copy = keypoints(_copies(scene(1))[kind])
    match = geometric_match(original, copy)
    assert match.inliers >= 2 * MIN_INLIERS, match
    assert same_shot(original, copy) and same_shot(copy, original)


def test_other_scenes_and_other_parts_of_one_scene_are_not(original: Keypoints) -> None:
    for seed in (2, 3, 4):
        other = keypoints(scene(seed))
        full = geometric_match(original, other)
        assert full.inliers < MIN_INLIERS and not same_shot(original, other)
        # asked for more inliers than there are matches: no homography is looked for
        short = geometric_match(original, other, needed=full.matches + 1)
        assert short == GeometricMatch(full.matches, 0)
    wide = scene(5, width=1600)
    left, right = keypoints(wide[:, :720]), keypoints(wide[:, -720:])
    assert not same_shot(left, right)


def test_keypoints_are_stored_compactly_and_read_back(original: Keypoints) -> None:
    data = original.to_bytes()
    assert len(original.points) == MAX_KEYPOINTS
    assert len(data) == 10 + (4 + DESCRIPTOR_BYTES) * MAX_KEYPOINTS <= 20_000
    again = Keypoints.from_bytes(data)
    assert np.array_equal(again.points, original.points)
    assert np.array_equal(again.descriptors, original.descriptors)
    assert (again.width, again.height) == (original.width, original.height) == (640, 480)
    assert geometric_match(again, original).inliers >= 0.9 * MAX_KEYPOINTS
    for broken in (data[:-1], b"ORB2" + data[4:], b"", data[:6]):
        with pytest.raises(ValueError):
            Keypoints.from_bytes(broken)


def test_a_featureless_image_has_no_keypoints_and_matches_nothing(original: Keypoints) -> None:
    flat = keypoints(np.full((300, 400, 3), 128, dtype=np.uint8))
    assert len(flat.points) == 0 and (flat.width, flat.height) == (400, 300)
    assert Keypoints.from_bytes(flat.to_bytes()).points.shape == (0, 2)
    assert geometric_match(flat, original).inliers == 0
    assert not same_shot(original, flat)


def test_small_and_grey_images_are_accepted() -> None:
    grey = cv2.cvtColor(scene(6, 320, 240), cv2.COLOR_RGB2GRAY)
    small = keypoints(grey)
    assert (small.width, small.height) == (320, 240) and len(small.points) > 50
    assert same_shot(small, keypoints(scene(6, 320, 240)))
