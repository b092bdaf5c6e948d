"""Letterbox, tiles, warps and the small-face pyramid: pure geometry, no model."""

from __future__ import annotations

import itertools
import math

import numpy as np
import pytest

from openimm.vision.batch_detector import SmallFaces, plan_views, pyramid
from openimm.vision.letterbox import Region, Warp, fit_scale, letterbox, tiles


def _gradient(width: int, height: int) -> np.ndarray:
    y, x = np.mgrid[0:height, 0:width]
    return np.stack([x % 256, y % 256, (x + y) % 256], axis=-1).astype(np.uint8)


def test_letterbox_keeps_the_aspect_and_pads_right_and_bottom() -> None:
    box = letterbox(Region(0, 0, 1000, 600), scale=fit_scale(1000, 600, 640))
    assert (box.content_width, box.content_height) == (640, 384)
    assert box.canvas == (384, 640)
    odd = letterbox(Region(0, 0, 500, 333), scale=1.0)
    assert odd.canvas == (352, 512)  # padded up to multiples of 32
    rgb = _gradient(500, 333)
    canvas = odd.render(rgb, fill=(1, 2, 3))
    assert np.array_equal(canvas[:333, :500], rgb)
    assert (canvas[333:, :] == [1, 2, 3]).all() and (canvas[:, 500:] == [1, 2, 3]).all()


def test_letterbox_maps_canvas_points_back_to_the_image() -> None:
    box = letterbox(Region(100, 50, 400, 300), scale=0.5)
    points = np.array([[0.0, 0.0], [200.0, 150.0], [10.0, 20.0]], dtype=np.float32)
    assert box.to_source(points).tolist() == [[100, 50], [500, 350], [120, 90]]


def test_a_fixed_canvas_lowers_the_scale_to_fit() -> None:
    box = letterbox(Region(0, 0, 1280, 720), scale=1.0, canvas=(640, 640))
    assert box.canvas == (640, 640)
    assert (box.content_width, box.content_height) == (640, 360)
    assert box.scale_x == pytest.approx(0.5)


def test_small_images_are_not_upscaled_unless_asked() -> None:
    assert fit_scale(300, 200, 640) == 1.0
    assert fit_scale(300, 200, 600, upscale=True) == 2.0


@pytest.mark.parametrize(("width", "height", "scale"), [(4000, 3000, 1.0), (6000, 4000, 0.7)])
def test_tiles_cover_the_image_with_the_overlap_asked(
    width: int, height: int, scale: float
) -> None:
    overlap = 100.0
    regions = tiles(width, height, scale=scale, max_side=1024, overlap=overlap)
    assert len({(r.width, r.height) for r in regions}) == 1  # one canvas size: one batch
    side_w, side_h = regions[0].width * scale, regions[0].height * scale
    assert side_w <= 1024 and side_h <= 1024
    covered = np.zeros((height, width), dtype=bool)
    for r in regions:
        covered[r.top : r.top + r.height, r.left : r.left + r.width] = True
    assert covered.all()
    lefts = sorted({r.left for r in regions})
    for a, b in itertools.pairwise(lefts):
        assert (a + regions[0].width - b) * scale >= overlap - 1


def test_one_tile_when_the_image_fits() -> None:
    assert tiles(800, 600, scale=1.0, max_side=1024, overlap=64) == [Region(0, 0, 800, 600)]


def test_warp_turns_and_scales_about_a_point() -> None:
    rgb = _gradient(120, 100)
    still = Warp(50, 50, 1.0, 0.0, 40, 40)
    assert np.array_equal(still.render(rgb), rgb[30:70, 30:70])
    quarter = Warp(50, 50, 1.0, math.pi / 2, 40, 40)
    # a line pointing down the image (90 degrees, y down) points right on the canvas: the
    # content turns counter-clockwise as seen on screen
    assert np.array_equal(quarter.render(rgb), np.rot90(rgb[30:70, 30:70], 1))
    assert quarter.to_source(np.array([[20.0, 20.0], [30.0, 20.0]], dtype=np.float32)) == (
        pytest.approx(np.array([[50.0, 50.0], [50.0, 60.0]]))
    )


def test_warp_shrinks_through_area_averaging() -> None:
    import cv2

    rgb = _gradient(120, 100)
    half = Warp(60, 50, 0.5, 0.0, 40, 40).render(rgb)
    reference = cv2.resize(rgb[10:90, 20:100], (40, 40), interpolation=cv2.INTER_AREA)
    assert np.abs(half.astype(int) - reference)[2:-2, 2:-2].max() <= 1


def test_pyramid_levels_for_a_large_photo() -> None:
    small = SmallFaces(scale=1.0)
    scales = pyramid(4000, 3000, 640, small)
    assert scales[0] == pytest.approx(0.16) and scales[-1] == pytest.approx(1.0)
    ratios = [b / a for a, b in itertools.pairwise(scales)]
    assert all(r <= small.level_ratio + 1e-9 for r in ratios)
    assert pyramid(4000, 3000, 640, None) == [pytest.approx(0.16)]
    assert pyramid(640, 480, 640, small) == [1.0]  # nothing finer than native pixels
    # a 100-megapixel photo stops where the finest level covers max_pixels
    assert pyramid(12000, 8000, 640, small)[-1] == pytest.approx(math.sqrt(16e6 / 96e6))


def test_views_of_a_large_photo() -> None:
    views = plan_views(0, 4000, 3000, max_side=640, small=SmallFaces(), multiple=32, canvas=None)
    whole = [v for v in views if not v.tile]
    tiled = [v for v in views if v.tile]
    assert [v.placement.canvas for v in whole] == [(480, 640)]
    # both finer levels are cut into tiles of one size each, none over 1 MP
    middle = [v for v in tiled if v.min_face]
    finest = [v for v in tiled if not v.min_face]
    assert len(middle) == 4 and len(finest) == 20
    for level in (middle, finest):
        assert len({v.placement.canvas for v in level}) == 1
    assert all(v.placement.canvas_width * v.placement.canvas_height <= 1 << 20 for v in tiled)
    # coarse levels leave small faces to the finer ones; the finest keeps everything
    assert [v.min_face for v in whole + middle] == [32.0] * 5
    pixels = sum(v.placement.canvas_width * v.placement.canvas_height for v in views)
    assert pixels < 1.5 * 4000 * 3000


def test_views_with_a_fixed_canvas() -> None:
    views = plan_views(
        0, 1920, 1080, max_side=640, small=SmallFaces(), multiple=32, canvas=(640, 640)
    )
    assert {v.placement.canvas for v in views} == {(640, 640)}
    assert any(v.tile for v in views)
