"""YuNet face detector (OpenCV zoo face_detection_yunet_2023mar.onnx) on onnxruntime.

Input: BGR, 0..255 as is, NCHW float32, padded with black at the right and bottom to a
multiple of 32, as OpenCV's FaceDetectorYN does. Outputs, for strides 8, 16 and 32, one
prediction per cell in row-major order: `cls_<s>` and `obj_<s>` (N, 1) probabilities,
whose geometric mean (each clipped to 0..1) is the score; `bbox_<s>` (N, 4): centre
(column + dx, row + dy) * stride and size exp(dw, dh) * stride; `kps_<s>` (N, 10): five
points (column + dx, row + dy) * stride, in the same order as ours. Outputs are found by
these names, or else taken in that order (cls, obj, bbox, kps; strides ascending).

No registry package ships YuNet weights; the decoding is tested on small ONNX graphs with
the same inputs and outputs, built in the tests.
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

# the OpenCV zoo demo's defaults for this file
DEFAULT_SCORE_THRESHOLD = 0.9
DEFAULT_YUNET_NMS_IOU = 0.3
STRIDES = (8, 16, 32)
HEADS = ("cls", "obj", "bbox", "kps")

Floats = npt.NDArray[np.float32]


class YuNetDetector(FileFaceDetector):
    """FaceDetector over a user's YuNet ONNX file (cls, obj, bbox, kps per stride)."""

    default_score_threshold = DEFAULT_SCORE_THRESHOLD
    default_nms_iou = DEFAULT_YUNET_NMS_IOU

    def _order(self) -> list[int]:
        """Output index of cls_8, cls_16, cls_32, obj_8, ..., kps_32."""
        names = [o.name for o in self._session().get_outputs()]
        wanted = [f"{head}_{stride}" for head in HEADS for stride in STRIDES]
        if all(name in names for name in wanted):
            return [names.index(name) for name in wanted]
        if len(names) != len(wanted):
            raise ValueError(f"{self.path.name}: {len(names)} outputs; YuNet has {len(wanted)}")
        return list(range(len(wanted)))

    def _tensor(self, canvases: list[Pixels]) -> Floats:
        return planar_tensor(canvases, bgr=True)

    def _decode(
        self, outputs: list[Any], item: int, canvas: tuple[int, int], threshold: float
    ) -> Candidates:
        order = self._order()
        parts = []
        for k, stride in enumerate(STRIDES):
            cls, obj, bbox, kps = (
                _item(outputs[order[k + len(STRIDES) * j]], item) for j in range(4)
            )
            cols = -(-canvas[1] // stride)
            score = np.sqrt(np.clip(cls.reshape(-1), 0, 1) * np.clip(obj.reshape(-1), 0, 1))
            hits = np.flatnonzero(score > threshold)
            cells = np.stack([hits % cols, hits // cols], axis=1).astype(np.float32)
            b = bbox[hits]
            centre = (cells + b[:, :2]) * stride
            half = np.exp(b[:, 2:4]) * stride / 2
            points = (cells[:, None, :] + kps[hits].reshape(-1, 5, 2)) * stride
            parts.append(
                Candidates(
                    np.concatenate([centre - half, centre + half], axis=1).astype(np.float32),
                    score[hits].astype(np.float32),
                    points.astype(np.float32),
                )
            )
        return Candidates.concat(parts)


def _item(output: Any, item: int) -> Floats:
    array = np.asarray(output, dtype=np.float32)
    out: Floats = array[item] if array.ndim == 3 else array
    return out
