"""ArcFace and SFace embedders for a user's own ONNX file, on the standard 5-point template.

Alignment: the least-squares similarity taking the five landmarks onto the ArcFace
template (the arcface_dst points of insightface, which OpenCV's FaceRecognizerSF uses
too) warps a 112x112 RGB chip.

- ArcFace (insightface w600k_*, glint360k_* and the like): input 1x3x112x112 RGB,
  (x - 127.5) / 127.5; output 512 floats.
- SFace (OpenCV zoo face_recognition_sface_2021dec): input 1x3x112x112 float 0..255 in
  RGB order (OpenCV's FaceRecognizerSF swaps its BGR chip to RGB when building the blob);
  output 128 floats.

The batch axis is used when the file leaves it free, else chips go one at a time. With
`flip` the mirrored chips are embedded too and averaged with the originals. Vectors are
L2-normalised float32. The embedder's `name` carries the file's sha256 prefix, so vectors
of different files are never mistaken for each other.

No registry package ships these weights; the code is tested on small ONNX graphs with the
same inputs and outputs, built in the tests.
"""

from __future__ import annotations

import hashlib
from pathlib import Path
from typing import Any

import numpy as np
import numpy.typing as npt

from openimm.vision.face_chip import similarity, warp_chip
from openimm.vision.onnx_session import fixed_dims, onnx_session
from openimm.vision.types import DecodedImage, DetectedFace, Pixels, Vectors

CHIP_SIZE = 112
# insightface's arcface_dst: where the five landmarks sit in a 112x112 chip
ARCFACE_TEMPLATE = np.array(
    [
        [38.2946, 51.6963],
        [73.5318, 51.5014],
        [56.0252, 71.7366],
        [41.5493, 92.3655],
        [70.7299, 92.2041],
    ]
)


def file_digest(path: Path) -> str:
    """Hex sha256 of a file, read in chunks."""
    digest = hashlib.sha256()
    with path.open("rb") as stream:
        for chunk in iter(lambda: stream.read(1 << 20), b""):
            digest.update(chunk)
    return digest.hexdigest()


def align_112(image: DecodedImage, face: DetectedFace) -> Pixels:
    """The 112x112 RGB chip that puts the face's landmarks on the ArcFace template."""
    return warp_chip(image.rgb, similarity(face.landmarks, ARCFACE_TEMPLATE), CHIP_SIZE)


class TemplateEmbedder:
    """FaceEmbedder over a 112x112 ONNX network: alignment, batching, flip, normalisation."""

    kind = "onnx"
    mean = 0.0
    std = 1.0

    def __init__(self, path: Path | str, *, flip: bool = True) -> None:
        self.path = Path(path)
        self.flip = flip
        self.name = f"{self.kind}-{file_digest(self.path)[:16]}"
        # loading the file here makes a wrong path or a broken file fail at start-up
        stated = _output_length(self._session())
        blank = np.zeros((1, 3, CHIP_SIZE, CHIP_SIZE), dtype=np.float32)
        self.dim = stated or int(self._run(blank).shape[1])

    def _session(self) -> Any:
        return onnx_session(self.path)

    def align(self, image: DecodedImage, face: DetectedFace) -> Pixels:
        """The 112x112 RGB chip on the ArcFace template."""
        return align_112(image, face)

    def embed(self, chips: list[Pixels]) -> Vectors:
        """(N, dim) float32 unit vectors for aligned chips."""
        if not chips:
            return np.zeros((0, self.dim), dtype=np.float32)
        batch = np.stack([np.asarray(c, dtype=np.uint8) for c in chips])
        if batch.shape[1:] != (CHIP_SIZE, CHIP_SIZE, 3):
            raise ValueError(f"chips must be {CHIP_SIZE}x{CHIP_SIZE} RGB, got {batch.shape[1:]}")
        if self.flip:
            batch = np.concatenate([batch, batch[:, :, ::-1]])
        tensor = ((batch.astype(np.float32) - self.mean) / self.std).transpose(0, 3, 1, 2)
        raw = self._run(tensor).astype(np.float64)
        if self.flip:
            n = len(chips)
            raw = _unit_rows(raw[:n]) + _unit_rows(raw[n:])
        out: Vectors = _unit_rows(raw).astype(np.float32)
        return out

    def _run(self, tensor: npt.NDArray[Any]) -> npt.NDArray[np.float32]:
        session = self._session()
        name = session.get_inputs()[0].name
        tensor = np.ascontiguousarray(tensor, dtype=np.float32)
        if fixed_dims(session)[:1] == (1,):
            rows = [session.run(None, {name: tensor[i : i + 1]})[0] for i in range(len(tensor))]
            return np.concatenate(rows).reshape(len(tensor), -1).astype(np.float32)
        out = session.run(None, {name: tensor})[0]
        return np.asarray(out, dtype=np.float32).reshape(len(tensor), -1)


class ArcFaceEmbedder(TemplateEmbedder):
    """FaceEmbedder: a user's ArcFace ONNX file (RGB, (x - 127.5) / 127.5, 512-d)."""

    kind = "arcface"
    mean = 127.5
    std = 127.5


class SFaceEmbedder(TemplateEmbedder):
    """FaceEmbedder: a user's SFace ONNX file (RGB 0..255, 128-d)."""

    kind = "sface"


def _output_length(session: Any) -> int | None:
    """The output vector's length when the file states it."""
    shape = session.get_outputs()[0].shape
    last = shape[-1] if shape else None
    return last if isinstance(last, int) and last > 0 else None


def _unit_rows(vectors: npt.NDArray[np.float64]) -> npt.NDArray[np.float64]:
    norms = np.linalg.norm(vectors, axis=1, keepdims=True)
    out: npt.NDArray[np.float64] = vectors / np.maximum(norms, 1e-12)
    return out
