"""Benchmark fusions: production's keep production's gains, a candidate's uses its own spread."""

from __future__ import annotations

import numpy as np

from bench_scripts import load_bench
from openimm.vision.fused_embedder import DLIB_IMPOSTOR_SD, dlib_facenet_gains, fuse

embedders = load_bench("embedders")


def _unit(rows: int, dim: int, seed: int) -> np.ndarray:
    v = np.random.default_rng(seed).normal(size=(rows, dim))
    return (v / np.linalg.norm(v, axis=1, keepdims=True)).astype(np.float32)


def test_production_fusion_is_built_as_production_builds_it() -> None:
    parts = {"onnx-dlib": _unit(4, 128, 0), "facenet-noflip": _unit(4, 512, 1)}
    built = embedders.fusion_vectors("fused", parts)
    expected = fuse([parts["onnx-dlib"], parts["facenet-noflip"]], dlib_facenet_gains(0.5))
    assert np.array_equal(built, expected)


def test_candidate_fusion_weighs_cosines_by_its_spread() -> None:
    dlib, faceres = _unit(3, 128, 2), _unit(3, 1024, 3)
    fused = embedders.fusion_vectors("fused-faceres", {"onnx-dlib": dlib, "faceres": faceres})
    assert fused.shape == (3, 128 + 1024)
    assert np.allclose(np.linalg.norm(fused, axis=1), 1.0, atol=1e-5)
    gains = (0.7 / DLIB_IMPOSTOR_SD, 0.3 / embedders.FACERES_IMPOSTOR_SD)
    # the fused cosine is the gain-weighted mean of the parts' cosines
    expected = (gains[0] * (dlib[0] @ dlib[1]) + gains[1] * (faceres[0] @ faceres[1])) / sum(gains)
    assert abs(float(fused[0] @ fused[1]) - expected) < 1e-5
