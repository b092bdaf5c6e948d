"""How good a shot is, to pick the best of a burst (IMM's ImageScore), as 0..1 numbers.

All three scores are read from the luma of the image shrunk (area averaging) to at most
QUALITY_SIDE px on its long side, so that photos of different resolutions are measured
at the same scale.

- sharpness (IMM ClarityScore) = 1 - exp(-v / SHARPNESS_SCALE), v = variance of the
  3x3 Laplacian: 0 for a flat image, 0.63 at v = SHARPNESS_SCALE, towards 1 for crisp
  ones. On sharp photos v is 150..4700 (it grows with texture), a Gaussian blur of
  sigma 1 px divides it by 10 to 25 and sigma 2 px by 40 to 200, so a blurred frame of a
  burst always scores below the sharp ones.
- exposure (IMM ExposureScore) = brightness_term * clipping_term. brightness_term is 1
  while the mean luma is within [0.25, 0.75] of full scale, falling linearly to 0 at 0.02
  and 0.98; clipping_term = 1 - (clipped - CLIP_FREE) / CLIP_SPAN, within 0..1, where
  clipped is the fraction of pixels at luma <= 2 or >= 253. Well-exposed photos score 1;
  letterboxing and large white skies count as clipping, equally in every frame of one
  burst.
- overall (IMM OverallQualityScore) = sharpness * exposure.

Scores compare frames of one scene; across unrelated photos sharpness mostly measures
how much texture there is.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np

from openimm.vision.image_ops import grey, shrink
from openimm.vision.types import Pixels

QUALITY_SIDE = 1024
SHARPNESS_SCALE = 100.0
DARK_LEVEL = 2
BRIGHT_LEVEL = 253
CLIP_FREE = 0.02
CLIP_SPAN = 0.5
MEAN_GOOD = (0.25, 0.75)
MEAN_ZERO = (0.02, 0.98)


@dataclass(frozen=True)
class ImageQuality:
    """Scores of one shot, each 0 (worst) .. 1 (best); see the module docstring."""

    sharpness: float
    exposure: float

    @property
    def overall(self) -> float:
        return self.sharpness * self.exposure


def quality_view(rgb: Pixels) -> Pixels:
    """The luma the scores are read from: at most QUALITY_SIDE px long."""
    return grey(shrink(rgb, QUALITY_SIDE))


def image_quality(rgb: Pixels) -> ImageQuality:
    """Sharpness and exposure of an RGB (or grey) uint8 image."""
    luma = quality_view(rgb)
    return ImageQuality(sharpness=sharpness_score(luma), exposure=exposure_score(luma))


def sharpness_score(luma: Pixels) -> float:
    """1 - exp(-variance of the Laplacian / SHARPNESS_SCALE) of a grey image."""
    import cv2

    variance = float(cv2.Laplacian(luma, cv2.CV_64F).var())
    return 1.0 - math.exp(-variance / SHARPNESS_SCALE)


def exposure_score(luma: Pixels) -> float:
    """Mean-brightness term times clipping term of a grey image, 0..1."""
    brightness = brightness_term(float(luma.mean()) / 255.0)
    clipped = float(np.count_nonzero((luma <= DARK_LEVEL) | (luma >= BRIGHT_LEVEL))) / luma.size
    clipping = 1.0 - (clipped - CLIP_FREE) / CLIP_SPAN
    return float(brightness * np.clip(clipping, 0.0, 1.0))


def brightness_term(mean: float) -> float:
    """1 for a mean brightness (0..1) within MEAN_GOOD, linear to 0 at MEAN_ZERO."""
    low_good, high_good = MEAN_GOOD
    low_zero, high_zero = MEAN_ZERO
    if mean < low_good:
        term = (mean - low_zero) / (low_good - low_zero)
    elif mean > high_good:
        term = (high_zero - mean) / (high_zero - high_good)
    else:
        term = 1.0
    return min(1.0, max(0.0, term))
