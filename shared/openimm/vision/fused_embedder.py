"""Two or more face embedders fused into one vector whose cosine is their fused score.

Score fusion adds each embedder's cosine distance after z-normalising it by fixed
constants: the mean and standard deviation of its impostor distances, measured once on
labelled faces (bench/verification.py). Only the standard deviations change the ranking,
and the weighted sum of cosines, w_i / sd_i each, is what this embedder's vector gives
directly: part i's unit vector is scaled by sqrt(w_i / sd_i) and the parts are
concatenated, then divided by their (constant) norm. The dot product of two fused vectors
is then the weighted mean of the parts' cosines, weights w_i / sd_i, so clustering and
search keep working on one unit vector per face and a fused threshold transfers.

Each part needs its own aligned chip; `align` lays them side by side in one strip (every
chip square, its side given by the part) so the detect stage can store one array per face.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np

from openimm.vision.types import DecodedImage, DetectedFace, FaceEmbedder, Pixels, Vectors


@dataclass(frozen=True)
class FusionPart:
    """One embedder in a fusion: its square chip side, weight and impostor spread."""

    embedder: FaceEmbedder
    chip_side: int
    weight: float
    # standard deviation of its cosine distances between different people
    impostor_sd: float

    @property
    def gain(self) -> float:
        """The weight of this part's cosine in the fused cosine, before normalising."""
        return self.weight / self.impostor_sd


def fuse(vectors: Sequence[Vectors], gains: Sequence[float]) -> Vectors:
    """One unit vector per row from each part's unit vectors, part i's cosine weighing gains[i]."""
    total = sum(gains)
    return np.concatenate(
        [
            v.astype(np.float32) * np.float32(math.sqrt(g / total))
            for v, g in zip(vectors, gains, strict=True)
        ],
        axis=1,
    )


class FusedEmbedder:
    """FaceEmbedder: the parts' unit vectors, scaled and concatenated into one unit vector."""

    def __init__(self, parts: Sequence[FusionPart]) -> None:
        if len(parts) < 2:
            raise ValueError("a fusion needs at least two embedders")
        if any(p.weight <= 0 or p.impostor_sd <= 0 or p.chip_side <= 0 for p in parts):
            raise ValueError("fusion weights, spreads and chip sides must be positive")
        self.parts = tuple(parts)
        self.dim = sum(p.embedder.dim for p in parts)
        self.name = "fused(" + ",".join(f"{p.embedder.name}*{p.weight:g}" for p in parts) + ")"
        self._height = max(p.chip_side for p in parts)

    def align(self, image: DecodedImage, face: DetectedFace) -> Pixels:
        """Every part's chip of this face, side by side, top-aligned, zero-padded below."""
        strip = np.zeros((self._height, sum(p.chip_side for p in self.parts), 3), np.uint8)
        left = 0
        for part in self.parts:
            chip = part.embedder.align(image, face)
            if chip.shape != (part.chip_side, part.chip_side, 3):
                raise ValueError(f"{part.embedder.name} chip is {chip.shape}, not square RGB")
            strip[: part.chip_side, left : left + part.chip_side] = chip
            left += part.chip_side
        return strip

    def embed(self, chips: list[Pixels]) -> Vectors:
        """(N, dim) float32 unit vectors for strips made by `align`."""
        if not chips:
            return np.zeros((0, self.dim), dtype=np.float32)
        pieces = []
        left = 0
        for part in self.parts:
            side = part.chip_side
            own = [np.ascontiguousarray(c[:side, left : left + side]) for c in chips]
            pieces.append(part.embedder.embed(own))
            left += side
        return fuse(pieces, [p.gain for p in self.parts])


# Impostor cosine-distance spreads on lfw-dev (7171 faces, 100k impostor pairs, seed 0),
# each embedder flip-averaged; the means (dlib 0.1604, FaceNet 0.9493) do not change ranks.
DLIB_IMPOSTOR_SD = 0.0346
FACENET_IMPOSTOR_SD = 0.1420


def dlib_facenet_gains(dlib_weight: float = 0.5) -> tuple[float, float]:
    """The gains of dlib's and FaceNet's cosines in their fusion."""
    return dlib_weight / DLIB_IMPOSTOR_SD, (1 - dlib_weight) / FACENET_IMPOSTOR_SD


def dlib_facenet_fusion(
    dlib_weight: float = 0.5, *, facenet_flip: bool = False, int8: bool = True
) -> FusedEmbedder:
    """dlib's ResNet (flip-averaged) and FaceNet, both in onnxruntime, fused.

    FaceNet is not flip-averaged by default: its mirrored pass is half the CPU time of a
    photo's analysis at 250 px (85 of 177 ms) and buys little once fused with dlib's
    flip-averaged vector. On lfw-dev (bench/verification.py, bench/cluster_quality.py,
    bench/search.py) with and without FaceNet's flip: accuracy 0.9939 / 0.9938, TAR at
    FAR 1e-3 0.984 / 0.983, identification rank-1 0.973 / 0.970, and figure clustering
    BCubed P 0.995 F 0.931 at join 0.88 / P 0.994 F 0.932 at join 0.875. A face's fused
    vector made either way is within a cosine of 0.99 of the other (median 0.999 on
    lfw-dev), far above any threshold, so faces embedded before and after cluster together.

    With `int8` (the default) both networks run as int8 copies made on this machine where
    they can be (vision/quantised_graphs.py): FaceNet 1.9x and dlib 1.6x less CPU a face,
    a 250 px photo's analysis 92 -> 65 ms. On lfw-dev float32 / int8: TAR at FAR 1e-3
    0.9825 / 0.9837, rank-1 0.9701 / 0.9708, BCubed as in bench/README.md ("quantised.py");
    a face's int8 vector is within a cosine of 0.984 of its float32 one (median 0.9993) and
    pairs of one of each verify as well (0.9832), so a folder embedded partly in float32
    (a read-only model folder, OPENIMM_INT8=0) still clusters as one.
    """
    from openimm.vision.dlib_embedder import CHIP_SIZE as DLIB_CHIP
    from openimm.vision.facenet_embedder import CHIP_SIZE as FACENET_CHIP
    from openimm.vision.facenet_embedder import FaceNetEmbedder
    from openimm.vision.onnx_embedder import OnnxDlibEmbedder

    return FusedEmbedder(
        [
            FusionPart(OnnxDlibEmbedder(int8=int8), DLIB_CHIP, dlib_weight, DLIB_IMPOSTOR_SD),
            FusionPart(
                FaceNetEmbedder(flip=facenet_flip, int8=int8),
                FACENET_CHIP,
                1 - dlib_weight,
                FACENET_IMPOSTOR_SD,
            ),
        ]
    )
