"""Thumbnails and face crops are made from no more pixels than they show."""

from __future__ import annotations

import io

import cv2
import numpy as np
from PIL import Image

from openimm.vision.thumbnail import thumbnail_jpeg
from openimm.vision.types import Box


def _photo(width: int, height: int) -> bytes:
    # smooth gradients with a dark square where the "face" is: resampling changes little
    ys, xs = np.mgrid[0:height, 0:width]
    rgb = np.stack([xs * 255 // width, ys * 255 // height, (xs + ys) * 127 // (width + height)], 2)
    rgb = rgb.astype(np.uint8)
    rgb[1200:1600, 2000:2400] = 20
    buffer = io.BytesIO()
    Image.fromarray(rgb).save(buffer, "JPEG", quality=92)
    return buffer.getvalue()


def _pixels(jpeg: bytes) -> np.ndarray:
    return cv2.imdecode(np.frombuffer(jpeg, np.uint8), cv2.IMREAD_COLOR)


def test_a_face_crop_from_a_reduced_decode_shows_the_same_face() -> None:
    data = _photo(4000, 3000)
    box = Box(2000, 1200, 400, 400)
    whole = _pixels(thumbnail_jpeg(data, 128, box))
    reduced = _pixels(thumbnail_jpeg(data, 128, box, file_size=(4000, 3000)))
    assert whole.shape == reduced.shape == (128, 128, 3)
    assert np.abs(whole.astype(int) - reduced.astype(int)).mean() < 3


def test_a_photo_thumbnail_keeps_its_size_and_look() -> None:
    data = _photo(4000, 3000)
    whole = _pixels(thumbnail_jpeg(data, 400))
    reduced = _pixels(thumbnail_jpeg(data, 400, file_size=(4000, 3000)))
    assert whole.shape == reduced.shape == (300, 400, 3)
    assert np.abs(whole.astype(int) - reduced.astype(int)).mean() < 3


def test_a_small_photo_or_an_unknown_size_is_decoded_whole() -> None:
    data = _photo(4000, 3000)
    box = Box(2000, 1200, 400, 400)
    assert thumbnail_jpeg(data, 1024, box, file_size=(4000, 3000)) == thumbnail_jpeg(
        data, 1024, box
    )
    assert thumbnail_jpeg(data, 128, box, file_size=(0, 0)) == thumbnail_jpeg(data, 128, box)
