"""Small JPEGs for people to look at: a face's box with some margin, or a whole photo.

Decoded as the analysis decodes (EXIF orientation applied), so a face's Boundary, which
was measured on the upright image, lands on the same pixels here.
"""

from __future__ import annotations

import numpy as np

from openimm.vision.decode import decode_image
from openimm.vision.file_pixels import in_decoded_pixels
from openimm.vision.image_ops import shrink
from openimm.vision.types import Box

# a face cut at its box looks cramped: show some hair and chin around it
FACE_MARGIN = 0.25
JPEG_QUALITY = 85


def thumbnail_jpeg(
    data: bytes,
    longest: int,
    box: Box | None = None,
    *,
    file_size: tuple[int, int] | None = None,
) -> bytes:
    """JPEG bytes of the image (or of `box` with a margin, squared), at most `longest` px
    on its long side. InvalidFile when the bytes are no image.

    With the upright file's (width, height) known, the file is decoded reduced to what
    the thumbnail shows (a JPEG by its decoder, at a half, a quarter or an eighth): a
    face crop from a 12 MP photo need not decode 12 MP.
    """
    import cv2

    image = decode_image(data, reduce_to=_pixels_needed(longest, box, file_size))
    rgb = image.rgb
    if box is not None:
        rgb = _face_square(rgb, in_decoded_pixels(box, image.scale))
    small = shrink(rgb, longest)
    ok, encoded = cv2.imencode(
        ".jpg", cv2.cvtColor(small, cv2.COLOR_RGB2BGR), [cv2.IMWRITE_JPEG_QUALITY, JPEG_QUALITY]
    )
    if not ok:
        raise ValueError("OpenCV could not encode the thumbnail as JPEG")
    return bytes(encoded.tobytes())


def _pixels_needed(longest: int, box: Box | None, file_size: tuple[int, int] | None) -> int | None:
    """How many of the file's pixels keep the thumbnail at full detail; None for all."""
    if file_size is None or min(file_size) <= 0:
        return None
    width, height = file_size
    shown = max(box.width, box.height) * (1 + 2 * FACE_MARGIN) if box else max(width, height)
    factor = int(shown // max(1, longest))
    return width * height // (factor * factor) if factor >= 2 else None


def _face_square(rgb: np.ndarray, box: Box) -> np.ndarray:
    # a square around the box's centre, so every crop of a person's grid has one shape;
    # clipped to the image, never padded (a face at the edge keeps its real surroundings)
    height, width = rgb.shape[:2]
    side = max(box.width, box.height) * (1 + 2 * FACE_MARGIN)
    cx, cy = box.left + box.width / 2, box.top + box.height / 2
    x0, y0 = max(0, round(cx - side / 2)), max(0, round(cy - side / 2))
    x1, y1 = min(width, round(cx + side / 2)), min(height, round(cy + side / 2))
    if x1 <= x0 or y1 <= y0:
        return rgb
    return np.ascontiguousarray(rgb[y0:y1, x0:x1])
