"""FaceNet converted to ONNX gives what OpenCV's dnn module computes from the same .pb."""

from __future__ import annotations

import time
from collections.abc import Callable
from pathlib import Path

import numpy as np
import pytest

from openimm.vision import Pixels, RetinaFaceDetector, decode_image
from openimm.vision.convert.facenet_tf import (
    convert_facenet,
    read_graph_def,
    without_control_inputs,
)
from openimm.vision.convert.tf_onnx import window
from openimm.vision.facenet_embedder import (
    CHIP_SIZE,
    MODEL_NAME,
    PIXEL_MEAN,
    PIXEL_SCALE,
    FaceNetEmbedder,
)
from openimm.vision.model_store import manifest, sha256_of

PB = "facenet-vggface2.pb"


@pytest.fixture(scope="module")
def sample_chips(aligned_sample_chips: Callable[..., list[Pixels]]) -> list[Pixels]:
    """FaceNet's aligned chip of every face RetinaFace finds in the sample photos."""
    return aligned_sample_chips(FaceNetEmbedder().align)


def _opencv_embeddings(model_dir: Path, chips: list[Pixels]) -> tuple[np.ndarray, float]:
    """The reference: OpenCV's TensorFlow importer on the shipped graph, one face at a time."""
    import cv2

    graph = without_control_inputs((model_dir / PB).read_bytes())
    net = cv2.dnn.readNetFromTensorflow(np.frombuffer(graph, dtype=np.uint8))
    pixels = (np.stack(chips).astype(np.float32) - PIXEL_MEAN) * PIXEL_SCALE
    out = []
    start = time.perf_counter()
    for face in pixels:
        net.setInput(np.ascontiguousarray(face.transpose(2, 0, 1)[None]))
        out.append(np.asarray(net.forward(), dtype=np.float64).reshape(-1))
    return np.array(out), (time.perf_counter() - start) / len(chips)


@pytest.mark.models
def test_onnx_embeddings_match_opencv(model_dir: Path, sample_chips: list[Pixels]) -> None:
    assert len(sample_chips) >= 10
    assert all(c.shape == (CHIP_SIZE, CHIP_SIZE, 3) for c in sample_chips)
    reference, opencv_s = _opencv_embeddings(model_dir, sample_chips)
    embedder = FaceNetEmbedder(flip=False)
    embedder.raw_embeddings(sample_chips[:1])  # session creation is not per-face cost
    start = time.perf_counter()
    converted = embedder.raw_embeddings(sample_chips).astype(np.float64)
    onnx_s = (time.perf_counter() - start) / len(sample_chips)
    assert converted.shape == reference.shape == (len(sample_chips), 512)
    max_diff = float(np.abs(converted - reference).max())
    cosines = np.sum(converted * reference, axis=1) / (
        np.linalg.norm(converted, axis=1) * np.linalg.norm(reference, axis=1)
    )
    min_cos = float(cosines.min())
    print(
        f"{len(sample_chips)} faces: max |onnx - opencv| {max_diff:.2e}, min cosine "
        f"{min_cos:.9f}; ms/face onnxruntime {onnx_s * 1e3:.1f} (batched), "
        f"opencv {opencv_s * 1e3:.1f}"
    )
    assert max_diff < 1e-4
    assert min_cos > 0.9999


@pytest.mark.models
def test_embeddings_are_unit_and_separate_people(
    model_dir: Path, sample_photos: Path, sample_chips: list[Pixels]
) -> None:
    detector, embedder = RetinaFaceDetector(), FaceNetEmbedder()
    chips = []
    for name in ("obama.jpg", "obama2.jpg", "obama3.jpg", "biden.jpg"):
        image = decode_image((sample_photos / name).read_bytes())
        chips.append(embedder.align(image, detector.detect(image)[0]))
    vectors = embedder.embed(chips)
    assert vectors.shape == (4, 512) and vectors.dtype == np.float32
    assert np.allclose(np.linalg.norm(vectors, axis=1), 1.0, atol=1e-5)
    sim = vectors @ vectors.T
    same = [sim[0, 1], sim[0, 2], sim[1, 2]]
    different = [sim[0, 3], sim[1, 3], sim[2, 3]]
    assert min(same) - max(different) > 0.2
    assert embedder.embed([]).shape == (0, 512)


@pytest.mark.models
def test_conversion_reproduces_the_pinned_file(model_dir: Path, tmp_path: Path) -> None:
    pinned = {e.name: e for e in manifest()}[MODEL_NAME]
    assert pinned.kind == "derived" and pinned.source == PB
    built = tmp_path / MODEL_NAME
    convert_facenet(model_dir / PB, built)
    assert sha256_of(built) == pinned.sha256
    assert built.stat().st_size == pinned.size


def test_window_follows_tensorflow_padding() -> None:
    assert window(160, 3, 2, 1, "VALID") == (79, 0, 0)
    assert window(17, 3, 1, 1, "SAME") == (17, 1, 1)
    # the odd padding pixel goes after, as in TensorFlow
    assert window(8, 3, 2, 1, "SAME") == (4, 0, 1)
    assert window(7, 3, 1, 2, "SAME") == (7, 2, 2)


def test_control_inputs_are_dropped_and_the_rest_kept() -> None:
    def field(number: int, payload: bytes) -> bytes:
        return bytes([number << 3 | 2, len(payload)]) + payload

    def node(name: str, op: str, *inputs: str) -> bytes:
        return (
            field(1, name.encode())
            + field(2, op.encode())
            + b"".join(field(3, i.encode()) for i in inputs)
        )

    graph = (
        field(1, node("input", "Placeholder"))
        + field(1, node("shape", "Const", "^input"))
        + field(1, node("out", "Reshape", "input:0", "shape"))
        + field(4, b"\x08\x1a")  # versions: kept byte for byte
    )
    stripped = without_control_inputs(graph)
    assert stripped.endswith(field(4, b"\x08\x1a"))
    nodes = read_graph_def(stripped)
    assert [(n.name, n.op, n.inputs) for n in nodes.values()] == [
        ("input", "Placeholder", []),
        ("shape", "Const", []),
        ("out", "Reshape", ["input", "shape"]),
    ]
    assert read_graph_def(graph)["shape"].inputs == []
