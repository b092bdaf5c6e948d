"""RetinaFaceDetector on real photos."""

from __future__ import annotations

import io
from collections.abc import Callable
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from openimm.vision import DecodedImage, DetectedFace, RetinaFaceDetector, decode_image
from openimm.vision.batch_detector import REFINE_MAX_SIDE, REFINE_MIN_SIDE, refine_side
from openimm.vision.retinaface import anchors, nms

pytestmark = pytest.mark.models

Photo = Callable[[str], DecodedImage]


def _inside(face: DetectedFace) -> bool:
    b = face.box
    return all(
        b.left <= x <= b.left + b.width and b.top <= y <= b.top + b.height
        for x, y in face.landmarks
    )


def _iou(a: DetectedFace, b: DetectedFace) -> float:
    ax2, ay2 = a.box.left + a.box.width, a.box.top + a.box.height
    bx2, by2 = b.box.left + b.box.width, b.box.top + b.box.height
    w = max(0, min(ax2, bx2) - max(a.box.left, b.box.left))
    h = max(0, min(ay2, by2) - max(a.box.top, b.box.top))
    inter = w * h
    return inter / (a.box.width * a.box.height + b.box.width * b.box.height - inter)


def test_one_face_in_obama(detector: RetinaFaceDetector, photo: Photo) -> None:
    faces = detector.detect(photo("obama.jpg"))
    assert len(faces) == 1
    face = faces[0]
    assert face.confidence > 0.95
    assert 180 < face.box.width < 300 and 250 < face.box.height < 400
    assert 330 < face.box.left < 420 and 50 < face.box.top < 130
    assert _inside(face)
    right_eye, left_eye, nose, mouth_right, mouth_left = face.landmarks
    # the person's right eye and mouth corner are on the image's left
    assert right_eye[0] < nose[0] < left_eye[0]
    assert mouth_right[0] < mouth_left[0]
    assert max(right_eye[1], left_eye[1]) < nose[1] < min(mouth_right[1], mouth_left[1])


def test_several_faces_in_group_photo(detector: RetinaFaceDetector, photo: Photo) -> None:
    faces = detector.detect(photo("t1.jpg"))
    assert len(faces) == 6
    assert all(_inside(f) for f in faces)
    assert all(f.box.width >= 80 and f.confidence > 0.9 for f in faces)
    assert [f.confidence for f in faces] == sorted((f.confidence for f in faces), reverse=True)
    assert max(_iou(a, b) for i, a in enumerate(faces) for b in faces[i + 1 :]) < 0.1


@pytest.mark.parametrize(
    "name",
    ["obama2.jpg", "obama3.jpg", "biden.jpg", "32bit.png", "obama_partial_face.jpg",
     "Tom_Hanks_54745.png"],
)  # fmt: skip
def test_one_face_in_each_portrait(detector: RetinaFaceDetector, photo: Photo, name: str) -> None:
    faces = detector.detect(photo(name))
    assert len(faces) == 1
    assert _inside(faces[0])


def test_rotated_photo_is_found_after_exif_transpose(
    detector: RetinaFaceDetector, photo: Photo, photos: Path
) -> None:
    upright = Image.open(photos / "obama.jpg")
    stored = upright.transpose(Image.Transpose.ROTATE_90)  # viewers turn it back (tag 6)
    exif = Image.Exif()
    exif[0x0112] = 6
    buffer = io.BytesIO()
    stored.save(buffer, "JPEG", quality=95, exif=exif.tobytes())
    upright.close()

    image = decode_image(buffer.getvalue())
    assert image.orientation == 6
    assert (image.width, image.height) == (910, 1137)
    faces = detector.detect(image)
    reference = detector.detect(photo("obama.jpg"))[0]
    assert len(faces) == 1
    assert _iou(faces[0], reference) > 0.9
    assert abs(faces[0].head_pose.roll) < 10


def test_sideways_photo_without_exif_has_rolled_landmarks(
    detector: RetinaFaceDetector, photo: Photo
) -> None:
    upright = photo("obama.jpg")
    sideways = np.ascontiguousarray(np.rot90(upright.rgb))
    image = DecodedImage(sideways, sideways.shape[1], sideways.shape[0], "JPEG")
    faces = detector.detect(image)
    assert len(faces) == 1
    assert abs(abs(faces[0].head_pose.roll) - 90) < 15


def test_box_is_in_original_pixels_whatever_the_working_size(photo: Photo) -> None:
    image = photo("obama.jpg")
    small = RetinaFaceDetector(max_side=320).detect(image)
    large = RetinaFaceDetector(max_side=1024).detect(image)
    assert len(small) == len(large) == 1
    assert _iou(small[0], large[0]) > 0.85


def test_no_faces_in_a_blank_or_noisy_image(detector: RetinaFaceDetector) -> None:
    blank = np.full((300, 400, 3), 128, dtype=np.uint8)
    noise = np.random.default_rng(3).integers(0, 256, (300, 400, 3), dtype=np.uint8)
    for rgb in (blank, noise):
        assert detector.detect(DecodedImage(rgb, 400, 300, "PNG")) == []


def test_faces_below_the_size_floor_are_dropped(photo: Photo) -> None:
    image = photo("t1.jpg")
    assert len(RetinaFaceDetector(min_face=200).detect(image)) == 0


def test_anchor_layout() -> None:
    grid = anchors(64, 96)
    # per stride: cells x 2 sizes; strides 8, 16, 32
    assert grid.shape == ((8 * 12 + 4 * 6 + 2 * 3) * 2, 4)
    assert grid[0].tolist() == [4.0, 4.0, 16.0, 16.0]
    assert grid[1].tolist() == [4.0, 4.0, 32.0, 32.0]
    assert grid[2].tolist() == [12.0, 4.0, 16.0, 16.0]
    assert grid[-1].tolist() == [80.0, 48.0, 512.0, 512.0]


def test_nms_keeps_the_best_of_overlapping_boxes() -> None:
    boxes = np.array(
        [[0, 0, 10, 10], [1, 1, 11, 11], [20, 20, 30, 30], [0, 0, 10, 10.5]], dtype=np.float32
    )
    scores = np.array([0.9, 0.95, 0.8, 0.5], dtype=np.float32)
    assert nms(boxes, scores, 0.4) == [1, 2]


def test_detect_batch_matches_detect(detector: RetinaFaceDetector, photo: Photo) -> None:
    images = [photo("obama.jpg"), photo("t1.jpg"), photo("obama2.jpg"), photo("32bit.png")]
    batched = detector.detect_batch(images)
    assert [len(faces) for faces in batched] == [1, 6, 1, 1]
    for image, faces in zip(images, batched, strict=True):
        alone = detector.detect(image)
        assert [f.box for f in faces] == [f.box for f in alone]
        assert np.allclose([f.landmarks for f in faces], [f.landmarks for f in alone], atol=0.5)


def _pasted(face_side: int, photo: Photo) -> tuple[DecodedImage, tuple[float, float]]:
    """obama.jpg shrunk until its face is `face_side` px wide, in a 4000x3000 grey photo."""
    import cv2

    source = photo("obama.jpg")
    scale = face_side / 228  # the face box is about 228 px wide at full size
    size = (round(source.width * scale), round(source.height * scale))
    small = cv2.resize(source.rgb, size, interpolation=cv2.INTER_AREA)
    canvas = np.full((3000, 4000, 3), 110, dtype=np.uint8)
    canvas[1700 : 1700 + size[1], 2500 : 2500 + size[0]] = small
    centre = (2500 + (376 + 114) * scale, 1700 + (87 + 167) * scale)
    return DecodedImage(canvas, 4000, 3000, "PNG"), centre


def test_a_small_face_in_a_large_photo(photo: Photo) -> None:
    image, (cx, cy) = _pasted(30, photo)
    assert RetinaFaceDetector(small_faces=None).detect(image) == []
    faces = RetinaFaceDetector().detect(image)
    assert len(faces) == 1
    box = faces[0].box
    assert 24 <= box.width <= 40
    assert abs(box.left + box.width / 2 - cx) < 6 and abs(box.top + box.height / 2 - cy) < 8
    assert _inside(faces[0])


def test_refinement_steadies_landmarks_across_working_sizes(photo: Photo) -> None:
    def spread(name: str, refine: bool) -> float:
        image = photo(name)
        marks = [
            np.array(RetinaFaceDetector(max_side=side, refine=refine).detect(image)[0].landmarks)
            for side in (160, 320, 640, 1024)
        ]
        return float(np.std(marks, axis=0).mean())

    names = ("obama.jpg", "obama2.jpg", "biden.jpg")
    refined = np.mean([spread(name, True) for name in names])
    raw = np.mean([spread(name, False) for name in names])
    assert refined < 2.0 and refined < 0.85 * raw


def test_a_face_is_refined_at_about_its_own_size() -> None:
    # box long side x REFINE_CONTEXT, down to a multiple of the stride, within bounds
    assert refine_side(40, 32) == REFINE_MIN_SIDE == 160  # small faces enlarged to 160
    assert refine_side(110, 32) == 160  # 176 px of context: not enlarged past it
    assert refine_side(130, 32) == 192
    assert refine_side(400, 32) == REFINE_MAX_SIDE == 256  # large faces reduced to 256
