"""Head pose, sharpness and FaceQuality: synthetic geometry and real faces."""

from __future__ import annotations

import math
from collections.abc import Callable

import numpy as np
import pytest

from openimm.vision import (
    Box,
    DecodedImage,
    HeadPose,
    RetinaFaceDetector,
    face_quality,
    head_pose,
    sharpness,
)

# five landmarks of a frontal face in a 112x112 crop (the common ArcFace template)
FRONTAL = ((38.29, 51.70), (73.53, 51.50), (56.03, 71.74), (41.55, 92.37), (70.73, 92.20))
FACE_150 = Box(left=0, top=0, width=150, height=150)
LEVEL = HeadPose(pitch=0.0, roll=0.0, yaw=0.0)


Points = list[tuple[float, float]]


def _moved(points: tuple[tuple[float, float], ...], index: int, dx: float, dy: float) -> Points:
    moved = list(points)
    x, y = moved[index]
    moved[index] = (x + dx, y + dy)
    return moved


def _rotated(points: tuple[tuple[float, float], ...], degrees: float) -> Points:
    a = math.radians(degrees)
    cx, cy = 56.0, 72.0
    return [
        (cx + (x - cx) * math.cos(a) - (y - cy) * math.sin(a),
         cy + (x - cx) * math.sin(a) + (y - cy) * math.cos(a))
        for x, y in points
    ]  # fmt: skip


def test_frontal_face_is_level() -> None:
    pose = head_pose(FRONTAL)
    assert abs(pose.yaw) < 3 and abs(pose.roll) < 2 and abs(pose.pitch) < 3


def test_roll_follows_the_eye_line() -> None:
    # rotating clockwise in the image lowers the person's left eye (image right): positive roll
    assert head_pose(_rotated(FRONTAL, 20)).roll == pytest.approx(20, abs=1)
    assert head_pose(_rotated(FRONTAL, -35)).roll == pytest.approx(-35, abs=1)
    rolled = head_pose(_rotated(FRONTAL, 25))
    assert abs(rolled.yaw) < 3 and abs(rolled.pitch) < 3  # roll does not leak into the others


def test_yaw_from_the_nose_offset() -> None:
    eye_distance = 73.53 - 38.29
    turned = head_pose(_moved(FRONTAL, 2, 0.42 * eye_distance, 0))
    assert turned.yaw == pytest.approx(45, abs=2)
    assert head_pose(_moved(FRONTAL, 2, -8, 0)).yaw < -10


def test_pitch_from_the_nose_height() -> None:
    assert head_pose(_moved(FRONTAL, 2, 0, -8)).pitch > 10  # nose nearer the eyes: chin up
    assert head_pose(_moved(FRONTAL, 2, 0, 8)).pitch < -10


def test_quality_formula_separates_good_from_bad_faces() -> None:
    good = face_quality(0.999, FACE_150, LEVEL, 0.95)
    assert good > 0.85
    assert face_quality(0.999, Box(0, 0, 30, 30), LEVEL, 0.95) < 0.8  # tiny
    assert face_quality(0.999, FACE_150, HeadPose(0, 0, 60), 0.95) < 0.8  # profile
    assert face_quality(0.999, FACE_150, HeadPose(35, 0, 0), 0.95) < 0.8  # looking up
    assert face_quality(0.999, FACE_150, LEVEL, 0.4) < 0.8  # blurred
    assert face_quality(0.75, FACE_150, LEVEL, 0.95) < 0.8  # doubtful detection
    assert face_quality(0.999, FACE_150, HeadPose(0, 40, 0), 0.95) == good  # roll is free
    assert 0.0 <= face_quality(0.1, Box(0, 0, 0, 0), HeadPose(0, 0, 95), 0.0) <= 1.0


def test_sharpness_of_textures() -> None:
    rng = np.random.default_rng(7)
    texture = rng.integers(0, 256, (200, 200, 3), dtype=np.uint8)
    flat = np.full((200, 200, 3), 90, dtype=np.uint8)
    box = Box(20, 20, 160, 160)
    assert sharpness(texture, box) > 0.95
    assert sharpness(flat, box) == 0.0
    assert sharpness(texture, Box(0, 0, 1, 1)) == 0.0


@pytest.mark.models
def test_real_faces(detector: RetinaFaceDetector, photo: Callable[[str], DecodedImage]) -> None:
    import cv2

    image = photo("obama.jpg")
    face = detector.detect(image)[0]
    assert face.sharpness > 0.9
    assert face.quality > 0.8
    assert abs(face.head_pose.yaw) < 15 and abs(face.head_pose.roll) < 10

    blurred = np.asarray(cv2.GaussianBlur(image.rgb, (0, 0), 4), dtype=np.uint8)
    soft = detector.detect(DecodedImage(blurred, image.width, image.height, "JPEG"))[0]
    assert soft.sharpness < 0.6 and soft.quality < 0.8

    small = np.asarray(
        cv2.resize(image.rgb, (91, 114), interpolation=cv2.INTER_AREA), dtype=np.uint8
    )
    tiny = detector.detect(DecodedImage(small, 91, 114, "JPEG"))[0]
    assert tiny.box.width < 30 and tiny.quality < 0.8

    turned = max(detector.detect(photo("t1.jpg")), key=lambda f: abs(f.head_pose.yaw))
    assert abs(turned.head_pose.yaw) > 35 and turned.quality < 0.8
