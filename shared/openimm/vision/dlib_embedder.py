"""Face embeddings with dlib's ResNet (dlib_face_recognition_resnet_model_v1), 128-d.

Alignment: dlib's 5-point shape predictor runs inside a box derived from the detector's
box, and `get_face_chip` warps the face to the 150x150 crop (padding 0.25) the network was
trained on. The shape predictor was trained on dlib's own detector boxes, which are square
and sit lower and tighter than RetinaFace's (measured on the sample photos: side about
1.125 x box width and 0.79 x box height, centre 4% of the height lower), so the box is
mapped to that shape first.

Embedding: the network's descriptors for a batch of chips; with `flip` the mirrored
chips are embedded too and averaged with the originals (test-time augmentation that
steadies the vectors against pose and lighting asymmetry); then L2-normalised, float32.

dlib is imported only here, and only when a model is first needed.
"""

from __future__ import annotations

import threading
from typing import Any

import numpy as np

from openimm.vision.model_store import model_path
from openimm.vision.types import DecodedImage, DetectedFace, Pixels, Vectors

SHAPE_MODEL = "shape_predictor_5_face_landmarks.dat"
EMBED_MODEL = "dlib_face_recognition_resnet_model_v1.dat"
CHIP_SIZE = 150
CHIP_PADDING = 0.25
DIM = 128
# detector box -> dlib detector-like box (see the module docstring)
BOX_WIDTH_FACTOR = 1.125
BOX_HEIGHT_FACTOR = 0.788
BOX_SHIFT_DOWN = 0.04

_lock = threading.Lock()
# a dlib network keeps its activations in the object: one forward pass at a time
_forward_lock = threading.Lock()
_models: dict[str, Any] = {}


def _model(name: str) -> Any:
    """Load a dlib model once per process."""
    with _lock:
        model = _models.get(name)
        if model is None:
            import dlib

            path = str(model_path(name))
            model = (
                dlib.shape_predictor(path)
                if name == SHAPE_MODEL
                else dlib.face_recognition_model_v1(path)
            )
            _models[name] = model
    return model


def unit_rows(vectors: np.ndarray[Any, np.dtype[np.float64]]) -> Vectors:
    """Each row scaled to length 1 (a zero row stays zero), as float32."""
    norms = np.linalg.norm(vectors, axis=1, keepdims=True)
    out: Vectors = (vectors / np.maximum(norms, 1e-12)).astype(np.float32)
    return out


class DlibEmbedder:
    """FaceEmbedder: dlib 5-point alignment and ResNet descriptors, optionally flip-averaged."""

    name = "dlib-resnet-v1"
    dim = DIM

    def __init__(self, *, flip: bool = True) -> None:
        self.flip = flip

    def align(self, image: DecodedImage, face: DetectedFace) -> Pixels:
        """The 150x150 RGB chip dlib's network expects for this face."""
        import dlib

        box = face.box
        side = (BOX_WIDTH_FACTOR * box.width + BOX_HEIGHT_FACTOR * box.height) / 2
        cx = box.left + box.width / 2
        cy = box.top + box.height / 2 + BOX_SHIFT_DOWN * box.height
        rect = dlib.rectangle(
            round(cx - side / 2), round(cy - side / 2), round(cx + side / 2), round(cy + side / 2)
        )
        shape = _model(SHAPE_MODEL)(image.rgb, rect)
        chip: Pixels = np.asarray(
            dlib.get_face_chip(image.rgb, shape, size=CHIP_SIZE, padding=CHIP_PADDING),
            dtype=np.uint8,
        )
        return chip

    def embed(self, chips: list[Pixels]) -> Vectors:
        """(N, 128) float32 unit vectors for aligned chips."""
        if not chips:
            return np.zeros((0, DIM), dtype=np.float32)
        batch = [np.ascontiguousarray(c, dtype=np.uint8) for c in chips]
        if self.flip:
            batch += [np.ascontiguousarray(c[:, ::-1]) for c in batch]
        network = _model(EMBED_MODEL)
        with _forward_lock:
            descriptors = network.compute_face_descriptor(batch)
        raw = np.array(descriptors, dtype=np.float64)
        vectors = unit_rows(raw)
        if self.flip:
            n = len(chips)
            vectors = unit_rows((vectors[:n] + vectors[n:]).astype(np.float64))
        return vectors
