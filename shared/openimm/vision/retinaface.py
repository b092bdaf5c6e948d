"""RetinaFace (MobileNet-0.25 backbone) face detector on onnxruntime.

The network takes BGR pixels minus the per-channel mean of its training set, NCHW float32,
and predicts, for every anchor, a box offset (`loc`), a face/background softmax (`conf`)
and five landmark offsets (`landmarks`). Anchors are square, centred on the cells of the
stride-8, -16 and -32 feature maps, two sizes per stride; offsets are encoded relative
to the anchor with variances 0.1 (centre) and 0.2 (log size), as in the RetinaFace paper.

Images are resized so that the long side is at most `max_side` px and padded to a multiple
of 32 so that the feature maps tile the input exactly. Small images are not upscaled:
on the sample photos, face crops of 60 to 200 px were all found unscaled (confidence
> 0.93), and upscaling to 320 px only raised confidences that were already high.

The score threshold of 0.8 leaves a margin on both sides: on the sample photos every
real face scores > 0.98 at 640 px (> 0.88 at 320 px) and nothing else reaches 0.2.
"""

from __future__ import annotations

import os
import threading
from functools import lru_cache
from typing import Any

import numpy as np
import numpy.typing as npt

from openimm.vision.face_quality import face_quality, head_pose, sharpness
from openimm.vision.model_store import model_path
from openimm.vision.types import Box, DecodedImage, DetectedFace

MODEL_NAME = "retinaface-mnet.onnx"
THREADS_ENV = "OPENIMM_THREADS"

# The network's training mean in BGR order (Pytorch_Retinaface).
BGR_MEAN = np.array([104.0, 117.0, 123.0], dtype=np.float32)
STRIDES = (8, 16, 32)
ANCHOR_SIZES = ((16.0, 32.0), (64.0, 128.0), (256.0, 512.0))
CENTRE_VARIANCE = 0.1
SIZE_VARIANCE = 0.2
PAD_MULTIPLE = 32

DEFAULT_MAX_SIDE = 640
DEFAULT_SCORE_THRESHOLD = 0.8
DEFAULT_NMS_IOU = 0.4
DEFAULT_MIN_FACE = 20
# Candidates kept before NMS; a photo rarely has more than a few hundred faces.
PRE_NMS_TOP_K = 2000

Floats = npt.NDArray[np.float32]

_session_lock = threading.Lock()
_sessions: dict[str, Any] = {}


def _threads() -> int:
    try:
        return max(1, int(os.environ.get(THREADS_ENV, "2")))
    except ValueError:
        return 2


def _session() -> Any:
    """The process-wide onnxruntime session, created on first use."""
    path = str(model_path(MODEL_NAME))
    with _session_lock:
        session = _sessions.get(path)
        if session is None:
            import onnxruntime as ort

            options = ort.SessionOptions()
            options.intra_op_num_threads = _threads()
            options.inter_op_num_threads = 1
            options.execution_mode = ort.ExecutionMode.ORT_SEQUENTIAL
            options.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
            session = ort.InferenceSession(
                path, sess_options=options, providers=["CPUExecutionProvider"]
            )
            _sessions[path] = session
    return session


@lru_cache(maxsize=16)
def anchors(height: int, width: int) -> Floats:
    """(N, 4) anchors (cx, cy, w, h) in input pixels, in the network's output order."""
    parts = []
    for stride, sizes in zip(STRIDES, ANCHOR_SIZES, strict=True):
        rows, cols = -(-height // stride), -(-width // stride)
        ys, xs = np.meshgrid(np.arange(rows), np.arange(cols), indexing="ij")
        centres = (np.stack([xs.ravel(), ys.ravel()], axis=1) + 0.5) * stride
        per_cell = len(sizes)
        block = np.empty((rows * cols * per_cell, 4), dtype=np.float32)
        block[:, :2] = np.repeat(centres, per_cell, axis=0)
        block[:, 2:] = np.tile(np.repeat(np.asarray(sizes)[:, None], 2, axis=1), (rows * cols, 1))
        parts.append(block)
    result = np.concatenate(parts)
    result.setflags(write=False)
    return result


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


class RetinaFaceDetector:
    """FaceDetector: RetinaFace-MobileNet with five landmarks, scored for quality."""

    def __init__(
        self,
        *,
        max_side: int = DEFAULT_MAX_SIDE,
        score_threshold: float = DEFAULT_SCORE_THRESHOLD,
        nms_iou: float = DEFAULT_NMS_IOU,
        min_face: int = DEFAULT_MIN_FACE,
    ) -> None:
        self.max_side = max_side
        self.score_threshold = score_threshold
        self.nms_iou = nms_iou
        self.min_face = min_face

    def detect(self, image: DecodedImage) -> list[DetectedFace]:
        """Faces in the upright image, best first, in original pixel coordinates."""
        tensor, scale = self._prepare(image.rgb)
        loc, conf, marks = _session().run(None, {"input": tensor})
        boxes, scores, points = self._decode(loc[0], conf[0], marks[0], tensor.shape[2:])
        boxes_px = (boxes / np.tile(scale, 2)).astype(np.float32)
        points_px = (points / scale).astype(np.float32)
        faces = []
        for box_xyxy, score, pts in zip(boxes_px, scores, points_px, strict=True):
            face = self._face(image, box_xyxy, float(score), pts)
            if face is not None:
                faces.append(face)
        return faces

    def _prepare(self, rgb: npt.NDArray[np.uint8]) -> tuple[Floats, Floats]:
        import cv2

        height, width = rgb.shape[:2]
        scale = min(1.0, self.max_side / max(height, width))
        if scale < 1.0:
            size = (max(1, round(width * scale)), max(1, round(height * scale)))
            rgb = np.asarray(cv2.resize(rgb, size, interpolation=cv2.INTER_AREA), dtype=np.uint8)
        h, w = rgb.shape[:2]
        padded_h = -(-h // PAD_MULTIPLE) * PAD_MULTIPLE
        padded_w = -(-w // PAD_MULTIPLE) * PAD_MULTIPLE
        # zeros after mean subtraction: the padding looks like the average training pixel
        tensor = np.zeros((1, 3, padded_h, padded_w), dtype=np.float32)
        bgr = rgb[:, :, ::-1].astype(np.float32) - BGR_MEAN
        tensor[0, :, :h, :w] = bgr.transpose(2, 0, 1)
        # per axis: rounding the resized size makes the two factors differ slightly
        return tensor, np.array([w / width, h / height], dtype=np.float32)

    def _decode(
        self, loc: Floats, conf: Floats, marks: Floats, shape: tuple[int, ...]
    ) -> tuple[Floats, Floats, Floats]:
        prior = anchors(int(shape[0]), int(shape[1]))
        scores = conf[:, 1]
        candidates = np.flatnonzero(scores > self.score_threshold)
        if candidates.size > PRE_NMS_TOP_K:
            top = np.argsort(-scores[candidates])[:PRE_NMS_TOP_K]
            candidates = candidates[top]
        prior, scores = prior[candidates], scores[candidates]
        loc, marks = loc[candidates], marks[candidates]
        centre = prior[:, :2] + loc[:, :2] * CENTRE_VARIANCE * prior[:, 2:]
        size = prior[:, 2:] * np.exp(loc[:, 2:] * SIZE_VARIANCE)
        boxes = np.concatenate([centre - size / 2, centre + size / 2], axis=1)
        points = prior[:, None, :2] + marks.reshape(-1, 5, 2) * CENTRE_VARIANCE * prior[:, None, 2:]
        keep = nms(boxes, scores, self.nms_iou)
        return boxes[keep], scores[keep], points[keep]

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
