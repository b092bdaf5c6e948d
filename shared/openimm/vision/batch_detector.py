"""What every ONNX face detector here shares: letterbox, batching, a pyramid, refinement.

A detector network sees a canvas (a letterboxed image, a tile, or one face turned upright)
and yields candidate boxes, scores and five landmarks in canvas pixels; a subclass says
how to build its input tensor and decode its outputs, the rest is here.

Passes. Every image is looked at whole, its long side brought to `max_side` (never
upscaled). When that shrinks the image and a `SmallFaces` search is configured, finer
levels follow, evenly spaced in scale and at most `level_ratio` apart, up to
`SmallFaces.scale` (1.0 = native pixels) or `max_pixels` of image. A level is looked at
whole when its canvas is at most `max_canvas_pixels` (1 MP, about 40 MB of activations
for RetinaFace), else in equal overlapping tiles of at most `tile_side`. Each level owns
a band of face sizes (input px): from `coarse_face` (a finer level boxes smaller faces
better) up to 1.5 x `coarse_face` x its ratio to the coarser level (a coarser level sees
larger faces whole; a fine level looking at a big face sees its parts and may find
faces in them). Tiles overlap by `coarse_face` x the ratio, so every face too small for
the coarser level lies whole in one tile; a detection touching an inner tile edge is a
cut face and is dropped. Candidates of all passes go through one non-maximum
suppression per image, so a face seen by two levels is kept once, by its best score.

Refinement. Each kept face is then looked at again on its own: turned so that its eyes
are level, on a canvas where the box's long side is the canvas side / `REFINE_CONTEXT`,
and mirrored; the two re-detections' boxes and landmarks are averaged.
This removes the coarse level's rounding from faces found there, the network's pull of
a tilted face's landmarks towards upright, and its left-right bias; the detection score
stays. On the sample photos it halved the head-pose errors (face_quality.py). It costs
two canvases of 160 to 256 px a side per face (about the face's own size: `refine_side`),
batched with the other faces of the call of that size.

Batching. Canvases of the same size run in one onnxruntime call (several images, the
tiles of one, all refinement views), up to `batch_pixels` input pixels per call to bound
memory; files whose batch axis is fixed to 1 run one canvas per call.
"""

from __future__ import annotations

import itertools
import math
from abc import ABC, abstractmethod
from collections import defaultdict
from dataclasses import dataclass
from pathlib import Path
from types import EllipsisType
from typing import Any, ClassVar

import numpy as np
import numpy.typing as npt

from openimm.vision.face_quality import face_quality, head_pose, sharpness
from openimm.vision.letterbox import Letterbox, Region, Warp, fit_scale, letterbox, tiles
from openimm.vision.onnx_session import fixed_dims, onnx_session
from openimm.vision.types import Box, DecodedImage, DetectedFace, Pixels

Floats = npt.NDArray[np.float32]

DEFAULT_MAX_SIDE = 640
DEFAULT_NMS_IOU = 0.4
DEFAULT_MIN_FACE = 20
DEFAULT_BATCH_PIXELS = 1024 * 1024
# candidates kept per image before NMS; a photo rarely has more than a few hundred faces
PRE_NMS_TOP_K = 2000
# a tile detection this close to an inner tile edge (input px) counts as cut
EDGE_MARGIN = 2
MIN_GAIN = 1.5
BAND_OVERLAP = 1.5
# Landmark refinement: each face is looked at again, and mirrored, on a square canvas
# where its box's long side is the canvas side / REFINE_CONTEXT: about the face's own
# size (never enlarged past it, down to a multiple of the stride), from REFINE_MIN_SIDE
# to REFINE_MAX_SIDE px. A fixed 256 px canvas enlarged lfw-dev's faces (about 110 px)
# 1.45 times; the spread of three large sample faces' landmarks across working sizes
# wants 256 (2.04 px at a fixed 160, 1.40 at 256, unrefined 2.26). Sized so, against a
# fixed 256, on lfw-dev with fused-int8 (bench/verification.py, cluster_quality.py,
# search.py): accuracy 0.9953 / 0.9939, TAR@1e-4 0.9522 / 0.9395, BCubed F 0.934 /
# 0.932 at precision 0.994 / 0.995, rank-1 0.9732 / 0.9708; and detection at 250 px
# takes 16.3 ms of CPU a photo instead of 20.8.
REFINE_MIN_SIDE = 160
REFINE_MAX_SIDE = 256
REFINE_CONTEXT = 1.6
REFINE_THRESHOLD = 0.3
REFINE_MIN_IOU = 0.3
# the same points seen in a mirror: right and left swap
MIRRORED_POINTS = [1, 0, 2, 4, 3]


@dataclass(frozen=True)
class Candidates:
    """Detections in one coordinate frame: (N, 4) x1 y1 x2 y2, (N,) scores, (N, 5, 2) points."""

    boxes: Floats
    scores: Floats
    points: Floats

    @staticmethod
    def empty() -> Candidates:
        """No detection."""
        z = np.zeros
        f = np.float32
        return Candidates(z((0, 4), f), z((0,), f), z((0, 5, 2), f))

    def __len__(self) -> int:
        return int(self.scores.shape[0])

    def select(self, keep: npt.NDArray[np.bool_] | npt.NDArray[np.intp] | list[int]) -> Candidates:
        """The candidates at `keep` (indices or mask)."""
        return Candidates(self.boxes[keep], self.scores[keep], self.points[keep])

    @staticmethod
    def concat(parts: list[Candidates]) -> Candidates:
        """All candidates of several frames already mapped to one."""
        if not parts:
            return Candidates.empty()
        return Candidates(
            np.concatenate([p.boxes for p in parts]),
            np.concatenate([p.scores for p in parts]),
            np.concatenate([p.points for p in parts]),
        )


@dataclass(frozen=True)
class SmallFaces:
    """The finer passes for faces the whole-image pass is too coarse to see."""

    # finest level, input px per image px (1.0 = native resolution)
    scale: float = 1.0
    # image pixels the finest level may cover; larger images get a coarser finest level
    max_pixels: int = 16_000_000
    # each level is at most this much finer than the one before; 4 rather than 3 drops
    # the middle level of 2-4 MP photos (1.4x faster at 4 MP, same faces found)
    level_ratio: float = 4.0
    # a level whose scaled image is larger than this (input px) is cut into tiles: 1 MP
    # canvases and calls (DEFAULT_BATCH_PIXELS) rather than 2 and 4 MP took the peak RSS
    # of `openimm run` on 4 MP photos from 790 to 530 MB, for 5% more detection CPU and
    # the same faces found (celeb5, the face_recognition examples)
    max_canvas_pixels: int = 1024 * 1024
    tile_side: int = 1024
    # input px from which a level finds faces reliably: sets the tile overlap of the next
    coarse_face: float = 32.0


@dataclass(frozen=True)
class View:
    """One canvas to run: which image, how it was letterboxed, what it may report."""

    image: int
    placement: Letterbox | Warp
    tile: bool
    # input px: smaller detections are left to a finer level, which boxes them better
    min_face: float = 0.0
    # input px: larger ones to a coarser level, which sees them whole
    max_face: float = math.inf
    # the canvas is shown mirrored left-right (landmark refinement)
    mirrored: bool = False


def planar_tensor(
    canvases: list[Pixels],
    *,
    bgr: bool,
    mean: tuple[float, float, float] = (0.0, 0.0, 0.0),
    scale: float = 1.0,
) -> Floats:
    """NCHW float32 input from RGB uint8 canvases of one size: (pixel - mean) * scale, the
    channels in BGR order when `bgr` (`mean` is then in BGR order too).

    Each canvas is split into contiguous planes first and each plane converted straight
    into the output: reading a channel out of interleaved pixels (stride 3) cost 5x more,
    and converting the whole batch, then reversing and transposing it, cost RetinaFace's
    detect more than its network at 2 MP.
    """
    import cv2

    height, width = canvases[0].shape[:2]
    out = np.empty((len(canvases), 3, height, width), dtype=np.float32)
    for index, canvas in enumerate(canvases):
        planes = cv2.split(np.ascontiguousarray(canvas))
        for channel in range(3):
            plane = out[index, channel]
            source = planes[2 - channel if bgr else channel]
            np.subtract(source, np.float32(mean[channel]), out=plane)
            if scale != 1.0:
                plane *= np.float32(scale)
    return out


def refine_side(long_side: float, multiple: int) -> int:
    """The refinement canvas's side for a face box whose long side is `long_side` px."""
    native = int(REFINE_CONTEXT * long_side) // multiple * multiple
    return min(REFINE_MAX_SIDE, max(REFINE_MIN_SIDE, native))


def nms(boxes: Floats, scores: Floats, iou_threshold: float) -> list[int]:
    """Greedy non-maximum suppression over (x1, y1, x2, y2) boxes; kept indices by score."""
    x1, y1, x2, y2 = boxes[:, 0], boxes[:, 1], boxes[:, 2], boxes[:, 3]
    areas = np.maximum(x2 - x1, 0) * np.maximum(y2 - y1, 0)
    order = np.argsort(-scores, kind="stable")
    keep: list[int] = []
    while order.size:
        best = int(order[0])
        keep.append(best)
        rest = order[1:]
        w = np.maximum(np.minimum(x2[best], x2[rest]) - np.maximum(x1[best], x1[rest]), 0)
        h = np.maximum(np.minimum(y2[best], y2[rest]) - np.maximum(y1[best], y1[rest]), 0)
        inter = w * h
        iou = inter / np.maximum(areas[best] + areas[rest] - inter, 1e-9)
        order = rest[iou <= iou_threshold]
    return keep


def pyramid(
    width: int,
    height: int,
    max_side: int,
    small: SmallFaces | None,
    canvas: tuple[int, int] | None = None,
) -> list[float]:
    """The scales of the passes over a width x height image, whole image first."""
    first = fit_scale(width, height, max_side)
    if canvas is not None:  # a fixed input size may shrink the whole image further
        first = min(first, canvas[1] / width, canvas[0] / height)
    if small is None:
        return [first]
    finest = min(small.scale, math.sqrt(small.max_pixels / (width * height)))
    # a level less than MIN_GAIN finer than the whole pass costs more than the faces it adds
    if finest < first * MIN_GAIN:
        return [first]
    steps = math.ceil(math.log(finest / first) / math.log(small.level_ratio) - 1e-9)
    return [first * (finest / first) ** (k / steps) for k in range(steps + 1)]


def plan_views(
    index: int,
    width: int,
    height: int,
    *,
    max_side: int,
    small: SmallFaces | None,
    multiple: int,
    canvas: tuple[int, int] | None,
) -> list[View]:
    """The canvases that cover one image: the whole image, then the tiles of finer levels."""
    whole = Region(0, 0, width, height)
    scales = pyramid(width, height, max_side, small, canvas)
    if small is None or len(scales) == 1:
        return [
            View(index, letterbox(whole, scale=scales[0], multiple=multiple, canvas=canvas), False)
        ]
    views = [
        View(
            index,
            letterbox(whole, scale=scales[0], multiple=multiple, canvas=canvas),
            False,
            min_face=small.coarse_face,
        )
    ]
    for level, (coarser, scale) in enumerate(itertools.pairwise(scales), start=2):
        ratio = scale / coarser
        # each level owns a band of face sizes, overlapping its neighbours' by BAND_OVERLAP
        low = small.coarse_face if level < len(scales) else 0.0
        high = small.coarse_face * ratio * BAND_OVERLAP
        if _fits(width * scale, height * scale, small, canvas):
            box = letterbox(whole, scale=scale, multiple=multiple, canvas=canvas)
            views.append(View(index, box, False, min_face=low, max_face=high))
            continue
        side = min(small.tile_side, *canvas) if canvas else small.tile_side
        # faces too small for the coarser level must lie whole in a tile, clear of the
        # edge rule; larger ones cut by a tile edge are the coarser level's
        overlap = min(small.coarse_face * ratio + 2 * EDGE_MARGIN + 2, side / 2)
        for region in tiles(
            width, height, scale=scale, max_side=side, overlap=overlap, multiple=multiple
        ):
            box = letterbox(region, scale=scale, multiple=multiple, canvas=canvas)
            views.append(View(index, box, True, min_face=low, max_face=high))
    return views


def _fits(width: float, height: float, small: SmallFaces, canvas: tuple[int, int] | None) -> bool:
    """Whether a level can be looked at whole rather than in tiles."""
    if canvas is not None:
        return width <= canvas[1] and height <= canvas[0]
    return width * height <= small.max_canvas_pixels


class BatchFaceDetector(ABC):
    """FaceDetector over an ONNX network: subclasses build its input and decode its output."""

    # padding colour (RGB) of the canvas, as the network saw it in training
    fill: tuple[int, int, int] = (0, 0, 0)
    # each network's own defaults, for the settings left out
    default_score_threshold: ClassVar[float]
    default_nms_iou: ClassVar[float] = DEFAULT_NMS_IOU
    default_small_faces: ClassVar[SmallFaces | None] = None

    def __init__(
        self,
        *,
        max_side: int = DEFAULT_MAX_SIDE,
        score_threshold: float | None = None,
        nms_iou: float | None = None,
        min_face: int = DEFAULT_MIN_FACE,
        small_faces: SmallFaces | EllipsisType | None = ...,
        batch_pixels: int = DEFAULT_BATCH_PIXELS,
        refine: bool = True,
    ) -> None:
        self.max_side = max_side
        self.score_threshold = (
            self.default_score_threshold if score_threshold is None else score_threshold
        )
        self.nms_iou = self.default_nms_iou if nms_iou is None else nms_iou
        self.min_face = min_face
        self.small_faces = (
            self.default_small_faces if isinstance(small_faces, EllipsisType) else small_faces
        )
        self.batch_pixels = batch_pixels
        self.refine = refine

    @abstractmethod
    def _model_path(self) -> str:
        """The ONNX file."""

    @abstractmethod
    def _tensor(self, canvases: list[Pixels]) -> Floats:
        """The network input for RGB canvases of one size."""

    @abstractmethod
    def _decode(
        self, outputs: list[Any], item: int, canvas: tuple[int, int], threshold: float
    ) -> Candidates:
        """Candidates scoring above `threshold` in batch item `item`, in canvas pixels."""

    def _session(self) -> Any:
        return onnx_session(self._model_path())

    def _multiple(self) -> int:
        """Canvases are padded to a multiple of the coarsest stride."""
        return 32

    def _fixed_canvas(self) -> tuple[int, int] | None:
        """(height, width) when the model takes only one input size."""
        dims = fixed_dims(self._session())
        if len(dims) == 4 and dims[2] is not None and dims[3] is not None:
            return dims[2], dims[3]
        return None

    def _max_batch(self) -> int | None:
        """How many canvases one call may take; None for as many as fit `batch_pixels`."""
        session = self._session()
        # outputs without a batch axis hold one image's predictions
        if len(session.get_outputs()[0].shape or ()) == 2:
            return 1
        dims = fixed_dims(session)
        return dims[0] if dims else None

    def detect(self, image: DecodedImage) -> list[DetectedFace]:
        """Faces in the upright image, best first, in original pixel coordinates."""
        return self.detect_batch([image])[0]

    def detect_batch(self, images: list[DecodedImage]) -> list[list[DetectedFace]]:
        """Faces of each image, as `detect` would find them, with canvases batched by size."""
        canvas = self._fixed_canvas()
        views = [
            view
            for i, image in enumerate(images)
            for view in plan_views(
                i,
                image.width,
                image.height,
                max_side=self.max_side,
                small=self.small_faces,
                multiple=self._multiple(),
                canvas=canvas,
            )
        ]
        found: list[list[Candidates]] = [[] for _ in images]
        for view, candidates in zip(
            views, self._run(views, images, self.score_threshold), strict=True
        ):
            found[view.image].append(candidates)
        merged = [self._merge(Candidates.concat(parts)) for parts in found]
        if self.refine:
            # two candidates of one face (a coarse level's partial box beside a fine
            # level's) only overlap enough to be suppressed once both are re-measured
            merged = [self._merge(c) for c in self._refine(images, merged, canvas)]
        return [self._faces(image, c) for image, c in zip(images, merged, strict=True)]

    def _run(
        self, views: list[View], images: list[DecodedImage], threshold: float
    ) -> list[Candidates]:
        """Each view's candidates in source image pixels, cut faces and small ones dropped."""
        results: dict[int, Candidates] = {}
        session = self._session()
        input_name = session.get_inputs()[0].name
        for group in self._calls(list(enumerate(views))):
            shape = group[0][1].placement.canvas
            canvases = []
            for _, v in group:
                rendered = v.placement.render(images[v.image].rgb, self.fill)
                canvases.append(np.ascontiguousarray(rendered[:, ::-1]) if v.mirrored else rendered)
            outputs = session.run(None, {input_name: self._tensor(canvases)})
            for item, (index, view) in enumerate(group):
                candidates = self._decode(outputs, item, shape, threshold)
                if view.mirrored:
                    candidates = _unmirror(candidates, shape[1])
                if view.tile and isinstance(view.placement, Letterbox):
                    candidates = candidates.select(
                        _whole_in_tile(candidates, view.placement, images[view.image])
                    )
                if view.min_face or view.max_face < math.inf:
                    sides = (candidates.boxes[:, 2:] - candidates.boxes[:, :2]).min(axis=1)
                    candidates = candidates.select(
                        (sides >= view.min_face) & (sides < view.max_face)
                    )
                results[index] = _to_source(candidates, view.placement)
        return [results[i] for i in range(len(views))]

    def _merge(self, candidates: Candidates) -> Candidates:
        """One candidate per face, best first: top-K, then non-maximum suppression."""
        if len(candidates) > PRE_NMS_TOP_K:
            candidates = candidates.select(np.argsort(-candidates.scores)[:PRE_NMS_TOP_K])
        if not len(candidates):
            return candidates
        return candidates.select(nms(candidates.boxes, candidates.scores, self.nms_iou))

    def _refine(
        self,
        images: list[DecodedImage],
        merged: list[Candidates],
        canvas: tuple[int, int] | None,
    ) -> list[Candidates]:
        """Boxes and landmarks re-measured on each face at a set scale, and mirrored.

        Faces found on a coarse level carry its rounding (a pixel off there is several in
        the image), tiny faces are better seen enlarged, and averaging with the mirrored
        view cancels the network's left-right bias, so that a mirrored photo reads a
        mirrored head pose. The detection score stays.
        """
        views: list[View] = []
        owners: list[tuple[int, int]] = []
        for i, candidates in enumerate(merged):
            for j, ((x1, y1, x2, y2), points) in enumerate(
                zip(candidates.boxes.tolist(), candidates.points, strict=True)
            ):
                eyes = points[1] - points[0]
                long_side = max(x2 - x1, y2 - y1, 1.0)
                side = REFINE_MAX_SIDE if canvas else refine_side(long_side, self._multiple())
                warp = Warp(
                    centre_x=(x1 + x2) / 2,
                    centre_y=(y1 + y2) / 2,
                    scale=side / (REFINE_CONTEXT * long_side),
                    angle=math.atan2(float(eyes[1]), float(eyes[0])),
                    canvas_width=canvas[1] if canvas else side,
                    canvas_height=canvas[0] if canvas else side,
                )
                for mirrored in (False, True):
                    views.append(View(i, warp, False, mirrored=mirrored))
                    owners.append((i, j))
        if not views:
            return merged
        seen: dict[tuple[int, int], list[tuple[Floats, Floats]]] = defaultdict(list)
        for owner, found in zip(owners, self._run(views, images, REFINE_THRESHOLD), strict=True):
            i, j = owner
            if not len(found):
                continue
            overlap = _iou(merged[i].boxes[j], found.boxes)
            best = int(np.argmax(overlap))
            if overlap[best] >= REFINE_MIN_IOU:
                seen[owner].append((found.boxes[best], found.points[best]))
        refined = []
        for i, candidates in enumerate(merged):
            boxes, points = candidates.boxes.copy(), candidates.points.copy()
            for j in range(len(candidates)):
                if seen[(i, j)]:
                    boxes[j] = np.mean([b for b, _ in seen[(i, j)]], axis=0)
                    points[j] = np.mean([p for _, p in seen[(i, j)]], axis=0)
            refined.append(Candidates(boxes, candidates.scores, points))
        return refined

    def _calls(self, views: list[tuple[int, View]]) -> list[list[tuple[int, View]]]:
        """Views grouped by canvas size, in chunks that fit one call."""
        by_canvas: dict[tuple[int, int], list[tuple[int, View]]] = defaultdict(list)
        for entry in views:
            by_canvas[entry[1].placement.canvas].append(entry)
        fixed_batch = self._max_batch()
        calls = []
        for (h, w), group in by_canvas.items():
            size = fixed_batch or max(1, self.batch_pixels // (h * w))
            calls += [group[i : i + size] for i in range(0, len(group), size)]
        return calls

    def _faces(self, image: DecodedImage, candidates: Candidates) -> list[DetectedFace]:
        faces = []
        for box, score, points in zip(
            candidates.boxes, candidates.scores, candidates.points, strict=True
        ):
            face = self._face(image, box, float(score), points)
            if face is not None:
                faces.append(face)
        return faces

    def _face(
        self, image: DecodedImage, xyxy: Floats, score: float, points: Floats
    ) -> DetectedFace | None:
        left = max(0, round(float(xyxy[0])))
        top = max(0, round(float(xyxy[1])))
        right = min(image.width, round(float(xyxy[2])))
        bottom = min(image.height, round(float(xyxy[3])))
        if min(right - left, bottom - top) < self.min_face:
            return None
        box = Box(left=left, top=top, width=right - left, height=bottom - top)
        landmarks = tuple((float(x), float(y)) for x, y in points)
        pose = head_pose(landmarks)
        sharp = sharpness(image.rgb, box)
        return DetectedFace(
            box=box,
            landmarks=landmarks,
            confidence=score,
            head_pose=pose,
            sharpness=sharp,
            quality=face_quality(score, box, pose, sharp),
        )


class FileFaceDetector(BatchFaceDetector):
    """A BatchFaceDetector over a user's own ONNX file; settings as BatchFaceDetector's."""

    def __init__(self, path: Path | str, **settings: Any) -> None:
        super().__init__(**settings)
        self.path = Path(path)

    def _model_path(self) -> str:
        return str(self.path)


def _to_source(candidates: Candidates, box: Letterbox | Warp) -> Candidates:
    """Canvas candidates in image pixels.

    A box found on a turned canvas keeps its upright size around its centre: the face's
    own extent, whatever its roll, not the bounding box of the turned box.
    """
    b = candidates.boxes
    points = box.to_source(candidates.points)
    if isinstance(box, Letterbox):
        corners = box.to_source(b.reshape(-1, 2, 2)).reshape(-1, 4)
        return Candidates(corners, candidates.scores, points)
    centres = box.to_source(((b[:, :2] + b[:, 2:]) / 2).astype(np.float32))
    half = (b[:, 2:] - b[:, :2]) / (2 * box.scale)
    boxes = np.concatenate([centres - half, centres + half], axis=1).astype(np.float32)
    return Candidates(boxes, candidates.scores, points)


def _whole_in_tile(
    candidates: Candidates, box: Letterbox, image: DecodedImage
) -> npt.NDArray[np.bool_]:
    """Which tile detections stay clear of the tile's inner edges (the image's own are fine)."""
    region = box.region
    b = candidates.boxes
    keep = np.ones(len(candidates), dtype=bool)
    if region.left > 0:
        keep &= b[:, 0] >= EDGE_MARGIN
    if region.top > 0:
        keep &= b[:, 1] >= EDGE_MARGIN
    if region.left + region.width < image.width:
        keep &= b[:, 2] <= box.content_width - EDGE_MARGIN
    if region.top + region.height < image.height:
        keep &= b[:, 3] <= box.content_height - EDGE_MARGIN
    return keep


def _unmirror(candidates: Candidates, width: int) -> Candidates:
    """Candidates found on a mirrored canvas, in the unmirrored canvas's pixels."""
    boxes = candidates.boxes.copy()
    boxes[:, 0] = width - candidates.boxes[:, 2]
    boxes[:, 2] = width - candidates.boxes[:, 0]
    points = candidates.points[:, MIRRORED_POINTS].copy()
    points[:, :, 0] = width - points[:, :, 0]
    return Candidates(boxes, candidates.scores, points)


def _iou(box: Floats, boxes: Floats) -> Floats:
    w = np.maximum(np.minimum(box[2], boxes[:, 2]) - np.maximum(box[0], boxes[:, 0]), 0)
    h = np.maximum(np.minimum(box[3], boxes[:, 3]) - np.maximum(box[1], boxes[:, 1]), 0)
    inter = w * h
    area = (box[2] - box[0]) * (box[3] - box[1])
    areas = (boxes[:, 2] - boxes[:, 0]) * (boxes[:, 3] - boxes[:, 1])
    out: Floats = (inter / np.maximum(area + areas - inter, 1e-9)).astype(np.float32)
    return out
