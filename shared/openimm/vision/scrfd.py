"""SCRFD face detector (insightface det_*.onnx files) on onnxruntime, for a user's own model.

Input: RGB, (x - 127.5) / 128, NCHW float32; the letterbox pads with black, as insightface
does. Outputs, in the file's order: the face scores of every stride (already sigmoid), then
the box distances of every stride, then the landmark offsets: 9 outputs for strides 8, 16
and 32, or 15 for strides 8 to 128 (a file without landmarks cannot align faces and is
refused). Each stride's map has `anchors` (2 in the public files) predictions per cell,
cells in row-major order, the anchors of a cell adjacent. A cell's anchor centre is
(column, row) * stride, not the cell's middle. Boxes are distances (left, top, right,
bottom) from that centre and landmarks offsets (dx, dy) from it, all in strides. Outputs
are (batch, N, C) or, in files exported for one image, (N, C).

No registry package ships SCRFD weights; the decoding is tested on small ONNX graphs
with the same inputs and outputs, built in the tests.
"""

from __future__ import annotations

from typing import Any

import numpy as np
import numpy.typing as npt

from openimm.vision.batch_detector import (
    Candidates,
    FileFaceDetector,
    planar_tensor,
)
from openimm.vision.types import Pixels

# insightface's own defaults for these files
DEFAULT_SCORE_THRESHOLD = 0.5
INPUT_MEAN = 127.5
INPUT_STD = 128.0
STRIDES_BY_OUTPUTS = {9: (8, 16, 32), 15: (8, 16, 32, 64, 128)}

Floats = npt.NDArray[np.float32]


class ScrfdDetector(FileFaceDetector):
    """FaceDetector over a user's SCRFD ONNX file (scores, boxes and 5 landmarks per stride)."""

    default_score_threshold = DEFAULT_SCORE_THRESHOLD

    def _strides(self) -> tuple[int, ...]:
        count = len(self._session().get_outputs())
        strides = STRIDES_BY_OUTPUTS.get(count)
        if strides is None:
            raise ValueError(
                f"{self.path.name}: {count} outputs; an SCRFD file with landmarks has 9 or 15"
            )
        return strides

    def _multiple(self) -> int:
        return max(self._strides())

    def _tensor(self, canvases: list[Pixels]) -> Floats:
        mean = (INPUT_MEAN, INPUT_MEAN, INPUT_MEAN)
        return planar_tensor(canvases, bgr=False, mean=mean, scale=1 / INPUT_STD)

    def _decode(
        self, outputs: list[Any], item: int, canvas: tuple[int, int], threshold: float
    ) -> Candidates:
        strides = self._strides()
        levels = len(strides)
        parts = []
        for k, stride in enumerate(strides):
            scores, dist, offsets = (_item(outputs[k + levels * j], item) for j in range(3))
            rows, cols = -(-canvas[0] // stride), -(-canvas[1] // stride)
            anchors = scores.shape[0] // (rows * cols)
            ys, xs = np.meshgrid(np.arange(rows), np.arange(cols), indexing="ij")
            centres = np.stack([xs.ravel(), ys.ravel()], axis=1).astype(np.float32) * stride
            centres = np.repeat(centres, anchors, axis=0)
            hits = np.flatnonzero(scores.reshape(-1) > threshold)
            c, d = centres[hits], dist[hits] * stride
            boxes = np.concatenate([c - d[:, :2], c + d[:, 2:4]], axis=1)
            points = c[:, None, :] + offsets[hits].reshape(-1, 5, 2) * stride
            parts.append(
                Candidates(
                    boxes.astype(np.float32),
                    scores.reshape(-1)[hits].astype(np.float32),
                    points.astype(np.float32),
                )
            )
        return Candidates.concat(parts)


def _item(output: Any, item: int) -> Floats:
    array = np.asarray(output, dtype=np.float32)
    out: Floats = array[item] if array.ndim == 3 else array
    return out
