"""dlib's face-recognition ResNet run by onnxruntime: DlibEmbedder's vectors, batched.

The network is dlib_face_recognition_resnet_model_v1 converted to ONNX at model-fetch
time (vision/convert/dlib_resnet.py, parity with dlib checked by the tests), so the
descriptors match dlib's to float rounding while a whole batch of chips goes through one
onnxruntime run on the shared, thread-limited session. Alignment is DlibEmbedder's own
(dlib's 5-point shape predictor and get_face_chip); flip-averaging and the final L2
normalisation are done the same way, so both embedders give interchangeable vectors.
"""

from __future__ import annotations

from typing import Any

import numpy as np

from openimm.vision.dlib_embedder import CHIP_SIZE, DIM, DlibEmbedder, unit_rows
from openimm.vision.quantised_graphs import EmbeddingNetwork, Feed, sample_chips
from openimm.vision.types import DecodedImage, DetectedFace, Pixels, Vectors

ONNX_MODEL = "dlib_face_recognition_resnet_model_v1.onnx"
# the graph's names, fixed by vision/convert/dlib_resnet.py
INPUT = "chips"
OUTPUT = "descriptors"


class OnnxDlibEmbedder:
    """FaceEmbedder: dlib alignment, dlib's ResNet in onnxruntime, optionally flip-averaged."""

    name = "dlib-resnet-v1-onnx"
    dim = DIM

    def __init__(self, *, flip: bool = True, int8: bool = False) -> None:
        self.flip = flip
        self._aligner = DlibEmbedder(flip=flip)
        self._network = EmbeddingNetwork(ONNX_MODEL, self._calibration if int8 else None)

    def _session(self) -> Any:
        return self._network.session()

    def _calibration(self) -> list[Feed]:
        chips = sample_chips(self.align, mirrored=True)  # as flip-averaging feeds it
        return [{INPUT: np.asarray(chip, dtype=np.uint8)[None]} for chip in chips]

    def align(self, image: DecodedImage, face: DetectedFace) -> Pixels:
        """The 150x150 RGB chip dlib's network expects for this face."""
        return self._aligner.align(image, face)

    def descriptors(self, chips: list[Pixels]) -> Vectors:
        """The network's raw (unnormalised) 128-d outputs, as dlib's compute_face_descriptor."""
        batch = np.stack([np.asarray(c, dtype=np.uint8) for c in chips])
        if batch.shape[1:] != (CHIP_SIZE, CHIP_SIZE, 3):
            raise ValueError(f"chips must be {CHIP_SIZE}x{CHIP_SIZE} RGB, got {batch.shape[1:]}")
        out: Vectors = self._session().run([OUTPUT], {INPUT: batch})[0]
        return out

    def embed(self, chips: list[Pixels]) -> Vectors:
        """(N, 128) float32 unit vectors for aligned chips, in one onnxruntime run."""
        if not chips:
            return np.zeros((0, DIM), dtype=np.float32)
        batch = list(chips)
        if self.flip:
            batch += [c[:, ::-1] for c in chips]
        vectors = unit_rows(self.descriptors(batch).astype(np.float64))
        if self.flip:
            n = len(chips)
            vectors = unit_rows((vectors[:n] + vectors[n:]).astype(np.float64))
        return vectors
