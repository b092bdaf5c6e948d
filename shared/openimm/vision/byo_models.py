"""Bring-your-own models: the detector and embedder named by configuration.

A model spec is `KIND` for a built-in model or `KIND:PATH` for a user's ONNX file with the
standard public inputs and outputs of that kind (split at the first colon, so the path may
hold colons):

- OPENIMM_DETECTOR: `retinaface` (built in, the default), `scrfd:PATH` (insightface
  det_*.onnx), `yunet:PATH` (OpenCV zoo face_detection_yunet_*.onnx);
- OPENIMM_EMBEDDER: `dlib` (built in, the default), `facenet` and `fused` (dlib + FaceNet,
  vision/fused_embedder.py; built in), `arcface:PATH` (insightface w600k_*,
  glint360k_*: 112x112, 512-d), `sface:PATH` (OpenCV zoo face_recognition_sface_*:
  112x112, 128-d);
- OPENIMM_SMALL_FACES: the finest scale of the small-face search (see
  vision/batch_detector.py; `1` looks at native pixels), or `off`; it applies to every
  detector.

Changing the embedder changes the vectors: figures embedded by another model are not
comparable, which the embedder's name (stored with each vector) makes visible.
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from pathlib import Path

from openimm.vision.arcface import ArcFaceEmbedder, SFaceEmbedder
from openimm.vision.batch_detector import SmallFaces
from openimm.vision.retinaface import DEFAULT_SMALL_FACES, RetinaFaceDetector
from openimm.vision.scrfd import ScrfdDetector
from openimm.vision.types import FaceDetector, FaceEmbedder
from openimm.vision.yunet import YuNetDetector

__all__ = [
    "DETECTOR_ENV",
    "EMBEDDER_ENV",
    "SMALL_FACES_ENV",
    "ArcFaceEmbedder",
    "ModelSpecError",
    "SFaceEmbedder",
    "ScrfdDetector",
    "YuNetDetector",
    "detector_from_config",
    "detector_from_env",
    "embedder_from_config",
    "embedder_from_env",
    "small_faces_from_config",
]

DETECTOR_ENV = "OPENIMM_DETECTOR"
EMBEDDER_ENV = "OPENIMM_EMBEDDER"
SMALL_FACES_ENV = "OPENIMM_SMALL_FACES"

DETECTOR_KINDS = ("retinaface", "scrfd", "yunet")
EMBEDDER_KINDS = ("dlib", "facenet", "fused", "arcface", "sface")
_OFF = ("", "0", "off", "none", "false", "no")


class ModelSpecError(ValueError):
    """A model spec names an unknown kind or a file that is not there."""


def _split(spec: str, kinds: tuple[str, ...], what: str) -> tuple[str, Path | None]:
    kind, sep, path = spec.strip().partition(":")
    kind = kind.strip().lower()
    if kind not in kinds:
        raise ModelSpecError(f"unknown {what} {kind!r}; expected one of {', '.join(kinds)}")
    if not sep:
        return kind, None
    file = Path(path.strip()).expanduser()
    if not file.is_file():
        raise ModelSpecError(f"{what} file not found: {file}")
    return kind, file


def small_faces_from_config(value: str | None) -> SmallFaces | None:
    """The small-face search for a finest scale such as `1` or `0.75`; None for `off`."""
    if value is None:
        return DEFAULT_SMALL_FACES
    text = value.strip().lower()
    if text in _OFF:
        return None
    try:
        scale = float(text)
    except ValueError as exc:
        raise ModelSpecError(f"small-face scale must be a number or 'off', not {value!r}") from exc
    if not 0.0 < scale <= 4.0:
        raise ModelSpecError(f"small-face scale must be in (0, 4], not {scale}")
    return SmallFaces(scale=scale)


def detector_from_config(
    spec: str | None, *, small_faces: SmallFaces | None = DEFAULT_SMALL_FACES
) -> FaceDetector:
    """The detector a spec names: `retinaface`, `scrfd:PATH` or `yunet:PATH`."""
    kind, path = _split(spec or "retinaface", DETECTOR_KINDS, "detector")
    if kind == "retinaface":
        if path is not None:
            raise ModelSpecError("retinaface is built in; it takes no file")
        return RetinaFaceDetector(small_faces=small_faces)
    if path is None:
        raise ModelSpecError(f"{kind} needs a model file: {kind}:PATH")
    if kind == "scrfd":
        return ScrfdDetector(path, small_faces=small_faces)
    return YuNetDetector(path, small_faces=small_faces)


def embedder_from_config(spec: str | None) -> FaceEmbedder:
    """The embedder a spec names: `dlib`, `facenet`, `fused`, `arcface:PATH` or `sface:PATH`."""
    kind, path = _split(spec or "dlib", EMBEDDER_KINDS, "embedder")
    if kind == "dlib":
        if path is not None:
            raise ModelSpecError("dlib is built in; it takes no file")
        from openimm.vision import default_embedder

        return default_embedder()
    if kind == "facenet":
        if path is not None:
            raise ModelSpecError("facenet is built in; it takes no file")
        from openimm.vision.facenet_embedder import FaceNetEmbedder

        return FaceNetEmbedder()
    if kind == "fused":
        if path is not None:
            raise ModelSpecError("fused is built in; it takes no file")
        from openimm.vision.fused_embedder import dlib_facenet_fusion

        return dlib_facenet_fusion()
    if path is None:
        raise ModelSpecError(f"{kind} needs a model file: {kind}:PATH")
    if kind == "arcface":
        return ArcFaceEmbedder(path)
    return SFaceEmbedder(path)


def detector_from_env(env: Mapping[str, str] | None = None) -> FaceDetector:
    """The detector $OPENIMM_DETECTOR and $OPENIMM_SMALL_FACES name."""
    env = os.environ if env is None else env
    small = small_faces_from_config(env.get(SMALL_FACES_ENV))
    return detector_from_config(env.get(DETECTOR_ENV), small_faces=small)


def embedder_from_env(env: Mapping[str, str] | None = None) -> FaceEmbedder:
    """The embedder $OPENIMM_EMBEDDER names."""
    env = os.environ if env is None else env
    return embedder_from_config(env.get(EMBEDDER_ENV))
