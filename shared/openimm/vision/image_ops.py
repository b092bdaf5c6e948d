"""Pixel helpers shared by the image features: grey levels and area-averaged shrinking."""

from __future__ import annotations

import numpy as np

from openimm.vision.types import Pixels


def grey(image: Pixels) -> Pixels:
    """Luma (ITU-R BT.601) of an RGB uint8 image; a grey image is returned as is."""
    import cv2

    if image.ndim == 2:
        return image
    return np.asarray(cv2.cvtColor(image, cv2.COLOR_RGB2GRAY), dtype=np.uint8)


def shrink(image: Pixels, longest: int) -> Pixels:
    """The image at most `longest` px on its long side; area averaging, so no aliasing."""
    import cv2

    height, width = image.shape[:2]
    scale = longest / max(height, width)
    if scale >= 1.0:
        return image
    size = (max(1, round(width * scale)), max(1, round(height * scale)))
    return np.asarray(cv2.resize(image, size, interpolation=cv2.INTER_AREA), dtype=np.uint8)
