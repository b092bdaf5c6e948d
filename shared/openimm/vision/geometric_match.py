"""Whether two photos show the same shot: ORB keypoints that agree on one homography.

A burst frame, a crop, a shifted, rotated, resized or re-exposed copy of a photo maps
onto the original by a homography (the scene is far away or the camera barely moved),
so many of their keypoint matches fit one; two different scenes, even of one place,
share no such geometry and only a few chance matches fit. This is the check for pairs
whose embeddings alone are ambiguous (grouping/similar_images.py).

- keypoints(): ORB (FAST corners + rotated BRIEF, OpenCV's defaults: 8 levels, scale
  1.2) on the grey image shrunk to MATCH_SIDE px, at most MAX_KEYPOINTS of them. Stored
  as Keypoints.to_bytes(): a 10-byte header and 36 bytes per keypoint (two uint16
  coordinates, a 32-byte descriptor), at most 18,010 bytes per image.
- geometric_match(): each descriptor of one image against the other's by Hamming
  distance, kept when clearly better than the runner-up (Lowe's ratio RATIO); then a
  RANSAC homography with a reprojection tolerance of REPROJECTION of the long side
  (6.4 px at 640 px) on coordinates scaled by each image's long side, so copies of
  different resolutions compare.
- same_shot(): at least MIN_INLIERS inliers.

Measured on the evaluation photos of bench/similar_quality.py: 8000 random pairs of
different photos (Kodak, UKBench, a handheld sequence, their synthetic copies) gave at
most 16 inliers (99.9th percentile 13), the two non-overlapping 45% halves of one photo
at most 13; frames of synthetic bursts (crop, shift, 3 degree rotation, exposure, JPEG
q50, blur) at least 124, resolution variants of one portrait 234..480 (a looser crop of
it 47..92, a face-only crop 7..10: not matched), frames of a handheld sequence 1 s
apart 35 or more, 2 s apart 17..266. MIN_INLIERS = 25 sits well above chance. Mirrored
copies do not match (ORB is not mirror-invariant). About 5 ms per image to find the
keypoints and 4 ms per pair to match them, on a busy 2-core machine.
"""

from __future__ import annotations

import struct
from dataclasses import dataclass
from typing import Any

import numpy as np
import numpy.typing as npt

from openimm.vision.image_ops import grey, shrink
from openimm.vision.types import Pixels

MATCH_SIDE = 640
MAX_KEYPOINTS = 500
DESCRIPTOR_BYTES = 32
RATIO = 0.8
REPROJECTION = 0.01
RANSAC_ITERATIONS = 2000
MIN_INLIERS = 25

_HEADER = struct.Struct("<4sHHH")
_MAGIC = b"ORB1"

Points = npt.NDArray[np.uint16]
Descriptors = npt.NDArray[np.uint8]


@dataclass(frozen=True, eq=False)
class Keypoints:
    """ORB keypoints of one image: pixel positions at its working size and descriptors."""

    points: Points  # (N, 2) x, y in pixels of the image shrunk to MATCH_SIDE
    descriptors: Descriptors  # (N, 32) binary descriptors
    width: int  # of the shrunk image
    height: int

    def to_bytes(self) -> bytes:
        """Compact form for storage: a 10-byte header, then 36 bytes per keypoint."""
        header = _HEADER.pack(_MAGIC, len(self.points), self.width, self.height)
        points = np.ascontiguousarray(self.points, dtype="<u2").tobytes()
        return header + points + np.ascontiguousarray(self.descriptors, np.uint8).tobytes()

    @classmethod
    def from_bytes(cls, data: bytes) -> Keypoints:
        """The Keypoints that to_bytes wrote; ValueError on anything else."""
        if len(data) < _HEADER.size:
            raise ValueError("not a keypoint record")
        magic, count, width, height = _HEADER.unpack_from(data)
        start = _HEADER.size
        end = start + 4 * count
        if magic != _MAGIC or len(data) != end + DESCRIPTOR_BYTES * count:
            raise ValueError("not a keypoint record, or a truncated one")
        points = np.frombuffer(data, dtype="<u2", count=2 * count, offset=start)
        descriptors = np.frombuffer(data, dtype=np.uint8, offset=end)
        return cls(
            points.reshape(count, 2).astype(np.uint16),
            descriptors.reshape(count, DESCRIPTOR_BYTES).copy(),
            width,
            height,
        )


@dataclass(frozen=True)
class GeometricMatch:
    """How two keypoint sets agree: matches passing the ratio test, and RANSAC inliers."""

    matches: int
    inliers: int


# ORB's default patch (31 px) and edge threshold: a thinner image has no keypoint
ORB_MIN_SIDE = 32


def keypoints(rgb: Pixels, max_keypoints: int = MAX_KEYPOINTS) -> Keypoints:
    """ORB keypoints of an RGB or grey uint8 image (none for a featureless one)."""
    import cv2

    luma = shrink(grey(rgb), MATCH_SIDE)
    height, width = luma.shape[:2]
    found, descriptors = (
        cv2.ORB.create(nfeatures=max_keypoints).detectAndCompute(luma, None)
        # ORB's pyramid asserts on a side it scales to nothing, and no keypoint's patch
        # fits a strip that thin anyway
        if min(height, width) >= ORB_MIN_SIDE
        else ((), None)
    )
    if descriptors is None or not found:
        empty = np.zeros((0, 2), dtype=np.uint16)
        return Keypoints(empty, np.zeros((0, DESCRIPTOR_BYTES), np.uint8), width, height)
    points = np.rint(np.array([k.pt for k in found], dtype=np.float32))
    points = np.clip(points, 0, [width - 1, height - 1]).astype(np.uint16)
    return Keypoints(points, np.asarray(descriptors, dtype=np.uint8), width, height)


def geometric_match(a: Keypoints, b: Keypoints, needed: int = 0) -> GeometricMatch:
    """Ratio-test matches of a's descriptors among b's, and how many fit one homography.

    `needed`: inliers that would count; with fewer matches than that, none can, and
    the homography is not looked for (inliers 0).
    """
    import cv2

    if len(a.points) < 2 or len(b.points) < 2:
        return GeometricMatch(0, 0)
    pairs = cv2.BFMatcher(cv2.NORM_HAMMING).knnMatch(a.descriptors, b.descriptors, k=2)
    good = [p[0] for p in pairs if len(p) == 2 and p[0].distance < RATIO * p[1].distance]
    # a homography needs 4 correspondences; fewer cannot show anything. RANSAC over
    # matches that cannot be enough took 5 of 7 ms a pair (look-alike portraits: 11-30
    # matches, every one of its 2000 iterations run for want of agreement)
    if len(good) < max(4, needed):
        return GeometricMatch(len(good), 0)
    source = _scaled(a)[[m.queryIdx for m in good]]
    target = _scaled(b)[[m.trainIdx for m in good]]
    homography, mask = cv2.findHomography(
        source, target, cv2.RANSAC, REPROJECTION, maxIters=RANSAC_ITERATIONS
    )
    if homography is None or mask is None:
        return GeometricMatch(len(good), 0)
    return GeometricMatch(len(good), int(np.count_nonzero(mask)))


def same_shot(a: Keypoints, b: Keypoints) -> bool:
    """True when at least MIN_INLIERS matches agree on one homography."""
    return geometric_match(a, b, MIN_INLIERS).inliers >= MIN_INLIERS


def _scaled(k: Keypoints) -> npt.NDArray[Any]:
    """Coordinates in units of the long side, so both images have the same scale."""
    return k.points.astype(np.float32) / float(max(k.width, k.height, 1))
