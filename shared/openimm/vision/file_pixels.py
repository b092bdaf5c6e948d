"""Faces found on a reduced decode (vision/decode.py), put back in the file's own pixels.

Detection, alignment and attributes work on the decoded pixels; what is reported (a
face's Boundary, the seed rule's face size) is in the file's pixels, as IMM measures it.
"""

from __future__ import annotations

from dataclasses import replace

from openimm.vision.types import Box, DecodedImage, DetectedFace


def in_file_pixels(face: DetectedFace, image: DecodedImage) -> DetectedFace:
    """`face` with its box and landmarks in the file's pixels (itself when not reduced)."""
    scale = image.scale
    if scale == 1:
        return face
    box = face.box
    left, top = (
        min(box.left * scale, image.full_width - 1),
        min(box.top * scale, image.full_height - 1),
    )
    right = min((box.left + box.width) * scale, image.full_width)
    bottom = min((box.top + box.height) * scale, image.full_height)
    return replace(
        face,
        box=Box(left=left, top=top, width=max(1, right - left), height=max(1, bottom - top)),
        # a decoded pixel's centre (x + 0.5) is the centre of its scale x scale block
        landmarks=tuple(
            ((x + 0.5) * scale - 0.5, (y + 0.5) * scale - 0.5) for x, y in face.landmarks
        ),
    )


def in_decoded_pixels(box: Box, scale: int) -> Box:
    """A box in the file's pixels, on an image decoded reduced by `scale`."""
    if scale == 1:
        return box
    return Box(box.left // scale, box.top // scale, box.width // scale, box.height // scale)
