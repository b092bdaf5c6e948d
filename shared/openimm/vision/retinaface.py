"""RetinaFace (MobileNet-0.25 backbone) face detector on onnxruntime.

The network takes BGR pixels minus the per-channel mean of its training set, NCHW float32,
and predicts, for every anchor, a box offset (`loc`), a face/background softmax (`conf`)
and five landmark offsets (`landmarks`). Anchors are square, centred on the cells of the
stride-8, -16 and -32 feature maps, two sizes per stride; offsets are encoded relative
to the anchor with variances 0.1 (centre) and 0.2 (log size), as in the RetinaFace paper.
Letterboxing, batching, the small-face pyramid and merging are in vision/batch_detector.py.

Small faces. At a 640 px long side a 4000x3000 photo is shrunk 6x, and faces under about
100 px vanish; the network itself finds faces from about 24 px of input. Measured on 20
synthetic 4000x3000 photos (1270 LFW faces pasted at 16 to 120 px box width onto
face-free Kodak photos, JPEG q88; recall at IoU >= 0.4; input megapixels run per photo;
milliseconds per photo on the shared 2-core machine, refinement of ~64 faces included):

    strategy                  MP   16px  20px  24px  28px  32px  40px  48px  60px  80px   ms
    whole image, 640 px      0.3    0     0     0     0     0     0     0     0    .13   154
    whole image, 1280 px     1.2    0     0     0     0     0    .04   .25   .72   .99   343
    pyramid to scale 0.5     4.3    0    .01   .04   .08   .23   .67   .94   .99    1    857
    pyramid to scale 0.75    9.2    0    .16   .42   .74   .92   .99   .99    1     1   1767
    pyramid to scale 1.0    15.1   .20   .57   .91   .97    1     1     1     1     1   1955
    pyramid to scale 1.25   23.3   .62   .94   .99    1     1     1     1     1     1   2733

A single whole-image pass at native size finds what the 1.0 pyramid finds (12.3 MP) but
needs ~450 MB for a 12 MP photo and grows with the photo; the pyramid bounds memory by
tiling. The default is the pyramid to native pixels (SmallFaces(scale=1.0)): faces from
24 px at >= 0.9 recall, 20 px at 0.57, for ~15 MP of network input per 12 MP photo (on a
face-free 12 MP photo 1.06 s against 0.06 s at 640 px). Upscaling (1.25) reaches 20 px
but costs 1.5x more and invents faces: on three face-free 3840x2048 mosaics of Kodak
photos at native size it found 2 faces >= 0.8, the 0.75 and 1.0 pyramids none. On 140
real photos (celeb5 and face_recognition examples) the default finds the same 148 faces
as the old 640 px pass, no more. (The table was measured with levels at most 3x apart
and 2048 px tiles; the present 4x and 1024 px find the same faces on the recall sets of
bench/vision.py, for about 5% more network input per 12 MP photo.) Scale 0.75 (faces
from 32 px) costs 0.6x; `None` is the old single pass.

The score threshold of 0.8 leaves a margin on both sides: on the sample photos every
real face scores > 0.98 at 640 px (> 0.88 at 320 px) and nothing else reaches 0.2.
"""

from __future__ import annotations

from functools import lru_cache
from typing import Any

import numpy as np
import numpy.typing as npt

from openimm.vision.batch_detector import (
    BatchFaceDetector,
    Candidates,
    SmallFaces,
    nms,
    planar_tensor,
)
from openimm.vision.model_store import model_path
from openimm.vision.types import Pixels

__all__ = ["RetinaFaceDetector", "anchors", "nms"]

MODEL_NAME = "retinaface-mnet.onnx"

# The network's training mean in BGR order (Pytorch_Retinaface).
BGR_MEAN = (104.0, 117.0, 123.0)
STRIDES = (8, 16, 32)
ANCHOR_SIZES = ((16.0, 32.0), (64.0, 128.0), (256.0, 512.0))
CENTRE_VARIANCE = 0.1
SIZE_VARIANCE = 0.2

DEFAULT_SCORE_THRESHOLD = 0.8
DEFAULT_SMALL_FACES = SmallFaces()

Floats = npt.NDArray[np.float32]


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


class RetinaFaceDetector(BatchFaceDetector):
    """FaceDetector: RetinaFace-MobileNet with five landmarks, scored for quality."""

    # the padding looks like the average training pixel: zero after mean subtraction
    fill = (123, 117, 104)

    default_score_threshold = DEFAULT_SCORE_THRESHOLD
    default_small_faces = DEFAULT_SMALL_FACES

    def _model_path(self) -> str:
        return str(model_path(MODEL_NAME))

    def _tensor(self, canvases: list[Pixels]) -> Floats:
        return planar_tensor(canvases, bgr=True, mean=BGR_MEAN)

    def _decode(
        self, outputs: list[Any], item: int, canvas: tuple[int, int], threshold: float
    ) -> Candidates:
        loc, conf, marks = outputs[0][item], outputs[1][item], outputs[2][item]
        scores = conf[:, 1]
        hits = np.flatnonzero(scores > threshold)
        prior = anchors(*canvas)[hits]
        loc, marks = loc[hits], marks[hits]
        centre = prior[:, :2] + loc[:, :2] * CENTRE_VARIANCE * prior[:, 2:]
        size = prior[:, 2:] * np.exp(loc[:, 2:] * SIZE_VARIANCE)
        boxes = np.concatenate([centre - size / 2, centre + size / 2], axis=1)
        points = prior[:, None, :2] + marks.reshape(-1, 5, 2) * CENTRE_VARIANCE * prior[:, None, 2:]
        return Candidates(
            boxes.astype(np.float32), scores[hits].astype(np.float32), points.astype(np.float32)
        )
