"""Face chips from the detector's five landmarks: a similarity transform onto a template.

A template gives where the five landmarks (person's right eye, left eye, nose tip, right and
left mouth corner) sit in a network's training crop, in units of the chip side minus one
(0 = first pixel centre, 1 = last), so one template serves every chip size. The transform
is the least-squares similarity (rotation, uniform scale, shift; no reflection) taking the
landmarks onto the template (Umeyama 1991).

Shrinking a face by more than 2x with a bilinear warp alone would alias, so the face region
is first reduced with area averaging to about the chip's scale, then warped: the same idea
as dlib's image pyramid in `extract_image_chip`, which produced the chips the age and gender
networks were trained on.
"""

from __future__ import annotations

import math

import numpy as np
import numpy.typing as npt

from openimm.vision.types import DetectedFace, Pixels

Matrix = npt.NDArray[np.float64]

# Below this scale (chip px per image px) the region is area-reduced before warping.
AREA_REDUCE_BELOW = 0.5
# Margin (chip sides) kept around the chip's footprint when cutting the region to reduce.
REGION_MARGIN = 0.1


def similarity(src: npt.ArrayLike, dst: npt.ArrayLike) -> Matrix:
    """2x3 matrix of the least-squares similarity mapping points `src` onto `dst`."""
    a = np.asarray(src, dtype=np.float64)
    b = np.asarray(dst, dtype=np.float64)
    mean_a, mean_b = a.mean(axis=0), b.mean(axis=0)
    da, db = a - mean_a, b - mean_b
    var_a = float((da**2).sum()) / len(a)
    cov = db.T @ da / len(a)
    u, s, vt = np.linalg.svd(cov)
    d = np.eye(2)
    if np.linalg.det(u) * np.linalg.det(vt) < 0:
        d[1, 1] = -1.0  # a reflection fits better; take the best proper rotation instead
    rotation = u @ d @ vt
    scale = float((s * np.diag(d)).sum()) / max(var_a, 1e-12)
    matrix = np.empty((2, 3))
    matrix[:, :2] = scale * rotation
    matrix[:, 2] = mean_b - scale * rotation @ mean_a
    return matrix


def warp_chip(rgb: Pixels, matrix: Matrix, size: int) -> Pixels:
    """The `size` x `size` chip that `matrix` (image -> chip) cuts from `rgb`, antialiased."""
    import cv2

    scale = math.sqrt(abs(float(np.linalg.det(matrix[:, :2]))))
    source = rgb
    if scale < AREA_REDUCE_BELOW:
        source, matrix = _area_reduced(rgb, matrix, size, scale)
    chip = cv2.warpAffine(
        source,
        matrix,
        (size, size),
        flags=cv2.INTER_LINEAR,
        borderMode=cv2.BORDER_CONSTANT,
        borderValue=(0, 0, 0),
    )
    return np.ascontiguousarray(chip, dtype=np.uint8)


def _area_reduced(rgb: Pixels, matrix: Matrix, size: int, scale: float) -> tuple[Pixels, Matrix]:
    import cv2

    # the chip's footprint in the image: its corners mapped back, plus a margin
    inverse = cv2.invertAffineTransform(matrix)
    edge = size - 1
    lo, hi = -REGION_MARGIN * edge, (1 + REGION_MARGIN) * edge
    corners = np.array([[lo, lo, 1], [hi, lo, 1], [lo, hi, 1], [hi, hi, 1]], dtype=np.float64)
    footprint = corners @ inverse.T
    height, width = rgb.shape[:2]
    x0 = max(0, math.floor(footprint[:, 0].min()))
    y0 = max(0, math.floor(footprint[:, 1].min()))
    x1 = min(width, math.ceil(footprint[:, 0].max()) + 1)
    y1 = min(height, math.ceil(footprint[:, 1].max()) + 1)
    if x1 - x0 < 2 or y1 - y0 < 2:
        return rgb, matrix  # the face lies outside the image; the warp fills black
    region = rgb[y0:y1, x0:x1]
    new_w = max(1, round((x1 - x0) * scale))
    new_h = max(1, round((y1 - y0) * scale))
    reduced = np.asarray(
        cv2.resize(region, (new_w, new_h), interpolation=cv2.INTER_AREA), dtype=np.uint8
    )
    # reduced pixel centre (i + 0.5) / f - 0.5 in region coordinates, per axis
    fx, fy = new_w / (x1 - x0), new_h / (y1 - y0)
    to_region = np.array(
        [[1 / fx, 0, 0.5 / fx - 0.5 + x0], [0, 1 / fy, 0.5 / fy - 0.5 + y0], [0, 0, 1]]
    )
    adjusted: Matrix = matrix @ to_region
    return reduced, adjusted


def landmark_chip(rgb: Pixels, face: DetectedFace, template: npt.ArrayLike, size: int) -> Pixels:
    """The chip that puts this face's five landmarks onto `template` (units of size - 1)."""
    target = np.asarray(template, dtype=np.float64) * (size - 1)
    return warp_chip(rgb, similarity(face.landmarks, target), size)
