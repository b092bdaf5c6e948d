"""A small colour signature: the HSV histogram of an image, as a unit vector.

Bins: 8 hues x 3 saturations x 3 values (72), over OpenCV's 8-bit HSV (hue 0..179). The
signature is the square root of the normalised histogram, so its L2 norm is 1 and the
dot product of two signatures is their Bhattacharyya coefficient: colour_distance =
1 - coefficient is 0 for identical colour distributions and 1 for disjoint ones.
The histogram is taken on a copy at most SIGNATURE_SIDE px long, which changes it by
well under a percent and keeps the cost flat for large photos.
"""

from __future__ import annotations

import numpy as np

from openimm.vision.image_ops import shrink
from openimm.vision.types import Pixels, Vectors

HUE_BINS = 8
SATURATION_BINS = 3
VALUE_BINS = 3
SIGNATURE_DIM = HUE_BINS * SATURATION_BINS * VALUE_BINS
SIGNATURE_SIDE = 256


def colour_signature(rgb: Pixels) -> Vectors:
    """(72,) float32 unit vector: the square root of the image's HSV histogram."""
    import cv2

    hsv = cv2.cvtColor(shrink(rgb, SIGNATURE_SIDE), cv2.COLOR_RGB2HSV)
    hist = cv2.calcHist(
        [hsv], [0, 1, 2], None, [HUE_BINS, SATURATION_BINS, VALUE_BINS], [0, 180, 0, 256, 0, 256]
    ).ravel()
    total = float(hist.sum())
    signature: Vectors = np.sqrt(hist / max(total, 1.0)).astype(np.float32)
    return signature


def colour_distance(a: Vectors, b: Vectors) -> float:
    """1 - Bhattacharyya coefficient of two signatures: 0 same colours .. 1 disjoint."""
    return float(np.clip(1.0 - float(np.dot(a, b)), 0.0, 1.0))
