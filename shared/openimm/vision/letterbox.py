"""Where an image, a region of it or one face lands on a detector's input canvas.

A letterbox resizes a region of the image keeping its aspect ratio and pads it at the
right and bottom to the canvas size. Keeping the content at the top-left corner means
the mapping back to image pixels is a scale and an offset per axis, with no centring
term, and padding never shifts a face. Tiles are overlapping regions of a large image,
each letterboxed on its own, so that a detector can look at them at a finer scale than
the whole image would fit in memory or time. A warp turns and scales the image about
one point, to look at one face upright. Coordinates are in edge units throughout (pixel
i spans [i, i + 1)), as the detectors' anchors are.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np
import numpy.typing as npt

from openimm.vision.types import Pixels

Floats = npt.NDArray[np.float32]


@dataclass(frozen=True)
class Region:
    """A rectangle of the source image, in pixels."""

    left: int
    top: int
    width: int
    height: int


@dataclass(frozen=True)
class Letterbox:
    """One region resized by (scale_x, scale_y) onto the top-left of a canvas."""

    region: Region
    scale_x: float
    scale_y: float
    content_width: int
    content_height: int
    canvas_width: int
    canvas_height: int

    @property
    def canvas(self) -> tuple[int, int]:
        """(height, width) of the canvas: images of one canvas size batch together."""
        return self.canvas_height, self.canvas_width

    def to_source(self, xy: Floats) -> Floats:
        """Canvas (..., 2) x, y points to source image pixels."""
        scale = np.array([self.scale_x, self.scale_y], dtype=np.float32)
        origin = np.array([self.region.left, self.region.top], dtype=np.float32)
        out: Floats = (xy / scale + origin).astype(np.float32)
        return out

    def render(self, rgb: Pixels, fill: tuple[int, int, int] = (0, 0, 0)) -> Pixels:
        """The canvas: the region resized to the content size, the rest filled."""
        import cv2

        r = self.region
        crop = rgb[r.top : r.top + r.height, r.left : r.left + r.width]
        size = (self.content_width, self.content_height)
        if size != (r.width, r.height):
            # area averaging when shrinking keeps small faces' detail; bilinear when growing
            shrinking = self.content_width < r.width
            interpolation = cv2.INTER_AREA if shrinking else cv2.INTER_LINEAR
            crop = np.asarray(cv2.resize(crop, size, interpolation=interpolation), dtype=np.uint8)
        # padding in the same pass as the copy: filling the whole canvas first, then
        # copying the content over it, wrote a native-size level's pixels twice
        bottom = self.canvas_height - self.content_height
        right = self.canvas_width - self.content_width
        content = np.ascontiguousarray(crop)
        canvas = cv2.copyMakeBorder(content, 0, bottom, 0, right, cv2.BORDER_CONSTANT, value=fill)
        return np.asarray(canvas, dtype=np.uint8)


def round_up(value: int, multiple: int) -> int:
    """The smallest multiple of `multiple` that is >= value."""
    return -(-value // multiple) * multiple


def letterbox(
    region: Region,
    *,
    scale: float,
    multiple: int = 32,
    canvas: tuple[int, int] | None = None,
) -> Letterbox:
    """Place `region` scaled by `scale` on a canvas of (height, width) or padded to `multiple`.

    With a fixed canvas the scale is lowered, if needed, so that the region fits.
    """
    if canvas is not None:
        scale = min(scale, canvas[1] / region.width, canvas[0] / region.height)
    # per axis: rounding the content size makes the two effective factors differ slightly
    content_w = min(max(1, round(region.width * scale)), canvas[1] if canvas else 1 << 30)
    content_h = min(max(1, round(region.height * scale)), canvas[0] if canvas else 1 << 30)
    if canvas is None:
        canvas = (round_up(content_h, multiple), round_up(content_w, multiple))
    return Letterbox(
        region=region,
        scale_x=content_w / region.width,
        scale_y=content_h / region.height,
        content_width=content_w,
        content_height=content_h,
        canvas_width=canvas[1],
        canvas_height=canvas[0],
    )


def fit_scale(width: int, height: int, max_side: int, *, upscale: bool = False) -> float:
    """The factor that brings the long side to `max_side` (never above 1 unless `upscale`)."""
    scale = max_side / max(width, height)
    return scale if upscale else min(1.0, scale)


def tiles(
    width: int, height: int, *, scale: float, max_side: int, overlap: float, multiple: int = 32
) -> list[Region]:
    """Equal overlapping regions covering a width x height image, for a pass at `scale`.

    Measured in input pixels (image pixels times `scale`), each tile is at most `max_side`
    and a multiple of `multiple` on each axis, and neighbours share at least `overlap`, so
    any object up to `overlap` wide lies whole inside one tile. Per axis, the fewest tiles
    that do this are spread evenly and shrunk to fit, so little is looked at twice and all
    tiles batch together.
    """
    side = max_side // multiple * multiple
    if overlap >= side:
        raise ValueError("tile overlap must be smaller than the tile side")
    return [
        Region(left=x, top=y, width=w, height=h)
        for y, h in _spans(height, scale, side, overlap, multiple)
        for x, w in _spans(width, scale, side, overlap, multiple)
    ]


def _spans(
    length: int, scale: float, side: int, overlap: float, multiple: int
) -> list[tuple[int, int]]:
    scaled = length * scale
    if scaled <= side:
        return [(0, length)]
    count = math.ceil((scaled - overlap) / (side - overlap))
    tile_in = min(side, round_up(math.ceil((scaled + (count - 1) * overlap) / count), multiple))
    tile = min(length, math.floor(tile_in / scale))
    step = (length - tile) / (count - 1)
    return [(round(i * step), tile) for i in range(count)]


@dataclass(frozen=True)
class Warp:
    """The image turned and scaled about a point that lands at the canvas centre.

    Used to look at one face upright: a network trained on upright faces places the
    landmarks of a tilted face with a bias towards upright, which turning it first avoids.
    """

    centre_x: float
    centre_y: float
    scale: float
    # radians: a line at this angle in the image is level on the canvas
    angle: float
    canvas_width: int
    canvas_height: int

    @property
    def canvas(self) -> tuple[int, int]:
        """(height, width) of the canvas: views of one canvas size batch together."""
        return self.canvas_height, self.canvas_width

    def matrix(self) -> npt.NDArray[np.float64]:
        """The 2x3 affine map from image to canvas pixels."""
        c, s = math.cos(self.angle) * self.scale, math.sin(self.angle) * self.scale
        linear = np.array([[c, s], [-s, c]])
        centre = np.array([self.centre_x, self.centre_y])
        shift = np.array([self.canvas_width / 2, self.canvas_height / 2]) - linear @ centre
        return np.hstack([linear, shift[:, None]])

    def to_source(self, xy: Floats) -> Floats:
        """Canvas (..., 2) x, y points to source image pixels."""
        m = self.matrix()
        inverse = np.linalg.inv(m[:, :2])
        out: Floats = ((xy - m[:, 2]) @ inverse.T).astype(np.float32)
        return out

    def render(self, rgb: Pixels, fill: tuple[int, int, int] = (0, 0, 0)) -> Pixels:
        """The canvas; shrinking goes through area averaging first, as a letterbox does."""
        import cv2

        m = self.matrix()
        height, width = rgb.shape[:2]
        w, h = self.canvas_width, self.canvas_height
        seen = self.to_source(np.array([[0, 0], [w, 0], [0, h], [w, h]], dtype=np.float32))
        left = max(0, math.floor(float(seen[:, 0].min())) - 1)
        top = max(0, math.floor(float(seen[:, 1].min())) - 1)
        right = min(width, math.ceil(float(seen[:, 0].max())) + 2)
        bottom = min(height, math.ceil(float(seen[:, 1].max())) + 2)
        fx = fy = 1.0
        if right - left < 2 or bottom - top < 2:
            crop: Pixels = np.zeros((2, 2, 3), dtype=np.uint8)  # off the image: all fill
            left = top = -(1 << 20)
        else:
            crop = rgb[top:bottom, left:right]
            if self.scale < 1.0:
                size = (
                    max(1, round((right - left) * self.scale)),
                    max(1, round((bottom - top) * self.scale)),
                )
                crop = np.asarray(cv2.resize(crop, size, interpolation=cv2.INTER_AREA))
                fx, fy = size[0] / (right - left), size[1] / (bottom - top)
        # In edge coordinates (a pixel spans [i, i + 1)) the crop point u is the image
        # point origin + u / f, so the canvas point is A u + b; OpenCV samples at pixel
        # centres, which shifts both ends by half a pixel.
        linear = m[:, :2] @ np.diag([1 / fx, 1 / fy])
        shift = m[:, :2] @ np.array([left, top], dtype=np.float64) + m[:, 2]
        shift = shift + linear @ np.array([0.5, 0.5]) - 0.5
        out = cv2.warpAffine(
            np.ascontiguousarray(crop),
            np.hstack([linear, shift[:, None]]),
            (w, h),
            flags=cv2.INTER_LINEAR,
            borderMode=cv2.BORDER_CONSTANT,
            borderValue=tuple(int(v) for v in fill),
        )
        return np.asarray(out, dtype=np.uint8)
