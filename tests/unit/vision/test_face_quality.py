"""Head pose, sharpness and FaceQuality: synthetic geometry and real faces."""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence

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
from openimm.vision.face_quality import FACE_MODEL

# five landmarks of a frontal face in a 112x112 crop (the common ArcFace template)
FRONTAL = ((38.29, 51.70), (73.53, 51.50), (56.03, 71.74), (41.55, 92.37), (70.73, 92.20))
FACE_150 = Box(left=0, top=0, width=150, height=150)
LEVEL = HeadPose(pitch=0.0, roll=0.0, yaw=0.0)


Points = list[tuple[float, float]]


def _moved(points: Sequence[tuple[float, float]], index: int, dx: float, dy: float) -> Points:
    moved = list(points)
    x, y = moved[index]
    moved[index] = (x + dx, y + dy)
    return moved


def _rotated(points: Sequence[tuple[float, float]], degrees: float) -> Points:
    a = math.radians(degrees)
    cx, cy = 56.0, 72.0
    return [
        (cx + (x - cx) * math.cos(a) - (y - cy) * math.sin(a),
         cy + (x - cx) * math.sin(a) + (y - cy) * math.cos(a))
        for x, y in points
    ]  # fmt: skip


def _project(yaw: float, pitch: float, roll: float, *, distance: float | None = None) -> Points:
    """The mean face turned by (yaw, pitch, roll), seen from the front 40 px per eye distance.

    With `distance` (eye distances from the camera) the projection is perspective.
    """

    def turn(axis: int, degrees: float) -> np.ndarray:
        """The right-handed rotation about x (0), y (1) or z (2)."""
        c, s = math.cos(math.radians(degrees)), math.sin(math.radians(degrees))
        i, j = {0: (1, 2), 1: (2, 0), 2: (0, 1)}[axis]
        m = np.eye(3)
        m[i, i], m[i, j], m[j, i], m[j, j] = c, -s, s, c
        return m

    # the module's convention: R = Rz(roll) Rx(-pitch) Ry(-yaw)
    rotation = turn(2, roll) @ turn(0, -pitch) @ turn(1, -yaw)
    points = FACE_MODEL @ rotation.T
    if distance is not None:
        points = points[:, :2] * distance / (distance + points[:, 2:3])
    return [(100 + 40 * x, 80 + 40 * y) for x, y in points[:, :2]]


def test_frontal_faces_are_level() -> None:
    level = head_pose(_project(0, 0, 0))
    assert max(abs(level.yaw), abs(level.pitch), abs(level.roll)) < 1e-6
    # the ArcFace template: level and straight; its nose sits a little higher than the
    # median of real photos the model was calibrated on (see face_quality.py)
    template = head_pose(FRONTAL)
    assert abs(template.yaw) < 1 and abs(template.roll) < 1 and 0 < template.pitch < 9


@pytest.mark.parametrize(
    ("yaw", "pitch", "roll"),
    [(30, 0, 0), (-45, 0, 0), (0, 20, 0), (0, -25, 0), (0, 0, 35), (25, -15, 10), (-20, 10, -30)],
)
def test_pose_of_a_turned_mean_face(yaw: float, pitch: float, roll: float) -> None:
    pose = head_pose(_project(yaw, pitch, roll))
    assert (pose.yaw, pose.pitch, pose.roll) == pytest.approx((yaw, pitch, roll), abs=0.01)
    # perspective from a camera 25 eye distances (1.6 m) away changes the answer a little
    near = head_pose(_project(yaw, pitch, roll, distance=25))
    assert (near.yaw, near.pitch, near.roll) == pytest.approx((yaw, pitch, roll), abs=2.5)


def test_turning_the_image_adds_to_roll_only() -> None:
    for pose in ((0, 0, 0), (25, -10, 5), (-35, 15, 0)):
        before = head_pose(_project(*pose))
        for angle in (20, -35, 90):
            after = head_pose(_rotated(_project(*pose), angle))
            assert after.roll - before.roll == pytest.approx(angle, abs=1e-6)
            assert (after.yaw, after.pitch) == pytest.approx((before.yaw, before.pitch), abs=1e-6)


def test_a_mirror_negates_yaw_and_roll() -> None:
    for pose in ((25, -10, 5), (-35, 15, -20)):
        points = _project(*pose)
        # x -> -x, and the person's right and left points trade places
        mirrored = [(200 - points[i][0], points[i][1]) for i in (1, 0, 2, 4, 3)]
        a, b = head_pose(points), head_pose(mirrored)
        assert (b.yaw, b.roll, b.pitch) == pytest.approx((-a.yaw, -a.roll, a.pitch), abs=1e-6)


def test_signs() -> None:
    eye_distance = 73.53 - 38.29
    # rotating clockwise in the image lowers the person's left eye (image right): positive roll
    assert head_pose(_rotated(FRONTAL, 20)).roll > 15
    # nose towards image right: the person turns to their left, positive yaw
    assert head_pose(_moved(FRONTAL, 2, 0.3 * eye_distance, 0)).yaw > 20
    assert head_pose(_moved(FRONTAL, 2, -8, 0)).yaw < -10
    # nose nearer the eyes: chin up, positive pitch
    assert head_pose(_moved(FRONTAL, 2, 0, -8)).pitch > 10
    assert head_pose(_moved(FRONTAL, 2, 0, 8)).pitch < -10


def test_degenerate_landmarks() -> None:
    assert head_pose([(5.0, 5.0)] * 5) == HeadPose(0.0, 0.0, 0.0)


def test_quality_formula_separates_good_from_bad_faces() -> None:
    good = face_quality(0.999, FACE_150, LEVEL, 0.95)
    assert good > 0.85
    assert face_quality(0.999, Box(0, 0, 30, 30), LEVEL, 0.95) < 0.8  # tiny
    assert face_quality(0.999, FACE_150, HeadPose(0, 0, 60), 0.95) < 0.8  # profile
    assert face_quality(0.999, FACE_150, HeadPose(35, 0, 0), 0.95) < 0.8  # looking up
    assert face_quality(0.999, FACE_150, LEVEL, 0.4) < 0.8  # blurred
    assert face_quality(0.75, FACE_150, LEVEL, 0.95) < 0.8  # doubtful detection
    assert face_quality(0.999, FACE_150, HeadPose(0, 40, 0), 0.95) == good  # roll is free
    # the pose term is the foreshortening of the face plane, cos(yaw) * cos(pitch)
    turned = face_quality(0.999, FACE_150, HeadPose(20, 0, 30), 0.95)
    assert turned == pytest.approx(good * math.cos(math.radians(20)) * math.cos(math.radians(30)))
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


@pytest.mark.models
def test_pose_of_real_photos(
    detector: RetinaFaceDetector, photo: Callable[[str], DecodedImage]
) -> None:
    import cv2

    # a lectern shot with a mild turn to the image left: inside IMM's 30 degree gate
    lectern = detector.detect(photo("obama2.jpg"))[0].head_pose
    assert -28 < lectern.yaw < -12 and abs(lectern.roll) < 10 and abs(lectern.pitch) < 15
    image = photo("obama.jpg")
    face = detector.detect(image)[0]
    mirrored_rgb = np.ascontiguousarray(image.rgb[:, ::-1])
    mirrored = detector.detect(DecodedImage(mirrored_rgb, image.width, image.height, "JPEG"))
    a, b = face.head_pose, mirrored[0].head_pose
    assert abs(a.yaw + b.yaw) < 3 and abs(a.roll + b.roll) < 3 and abs(a.pitch - b.pitch) < 3
    box = face.box
    centre = (box.left + box.width / 2, box.top + box.height / 2)
    for angle in (-30, 15, 40):
        # cv2 turns counter-clockwise for positive angles; roll grows clockwise
        turn = cv2.getRotationMatrix2D(centre, -angle, 1.0)
        rgb = cv2.warpAffine(
            image.rgb, turn, (image.width, image.height), borderMode=cv2.BORDER_REFLECT
        )
        turned = detector.detect(DecodedImage(np.asarray(rgb), image.width, image.height, "JPEG"))
        assert turned[0].head_pose.roll - a.roll == pytest.approx(angle, abs=3)
