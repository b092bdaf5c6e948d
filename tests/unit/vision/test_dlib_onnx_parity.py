"""dlib's ResNet converted to ONNX gives dlib's own descriptors, face for face."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import numpy as np
import pytest

from openimm.vision import DlibEmbedder, Pixels
from openimm.vision.convert.dlib_resnet import (
    DlibFormatError,
    convert_dlib_resnet,
    read_dlib_resnet,
)
from openimm.vision.model_store import manifest, sha256_of
from openimm.vision.onnx_embedder import ONNX_MODEL, OnnxDlibEmbedder

DAT = "dlib_face_recognition_resnet_model_v1.dat"


@pytest.fixture(scope="module")
def sample_chips(aligned_sample_chips: Callable[..., list[Pixels]]) -> list[Pixels]:
    """The aligned chip of every face RetinaFace finds in the sample photos."""
    return aligned_sample_chips(DlibEmbedder().align)


def _cosines(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    return np.sum(a * b, axis=1) / (np.linalg.norm(a, axis=1) * np.linalg.norm(b, axis=1))


@pytest.mark.models
def test_onnx_descriptors_match_dlib(model_dir: Path, sample_chips: list[Pixels]) -> None:
    import dlib

    assert len(sample_chips) >= 10
    reference = np.array(
        dlib.face_recognition_model_v1(str(model_dir / DAT)).compute_face_descriptor(sample_chips)
    )
    converted = OnnxDlibEmbedder().descriptors(sample_chips).astype(np.float64)
    assert converted.shape == reference.shape == (len(sample_chips), 128)
    max_diff = float(np.abs(converted - reference).max())
    min_cos = float(_cosines(converted, reference).min())
    print(f"{len(sample_chips)} faces: max |onnx - dlib| {max_diff:.2e}, min cosine {min_cos:.9f}")
    assert max_diff < 1e-4
    assert min_cos > 0.99999


@pytest.mark.models
def test_embedders_agree_with_and_without_flip(sample_chips: list[Pixels]) -> None:
    for flip in (True, False):
        dlib_vectors = DlibEmbedder(flip=flip).embed(sample_chips)
        onnx_vectors = OnnxDlibEmbedder(flip=flip).embed(sample_chips)
        assert onnx_vectors.shape == dlib_vectors.shape and onnx_vectors.dtype == np.float32
        assert np.allclose(np.linalg.norm(onnx_vectors, axis=1), 1.0, atol=1e-5)
        assert float(_cosines(onnx_vectors, dlib_vectors).min()) > 0.99999


@pytest.mark.models
def test_batch_size_does_not_change_a_descriptor(sample_chips: list[Pixels]) -> None:
    embedder = OnnxDlibEmbedder(flip=False)
    together = embedder.descriptors(sample_chips[:5])
    alone = np.concatenate([embedder.descriptors([chip]) for chip in sample_chips[:5]])
    assert float(np.abs(together - alone).max()) < 1e-5
    assert embedder.embed([]).shape == (0, 128)
    assert embedder.name == "dlib-resnet-v1-onnx" and embedder.dim == 128


@pytest.mark.models
def test_wrong_chip_size_is_refused(model_dir: Path) -> None:
    with pytest.raises(ValueError, match="150x150"):
        OnnxDlibEmbedder().descriptors([np.zeros((112, 112, 3), dtype=np.uint8)])


@pytest.mark.models
def test_conversion_reproduces_the_pinned_bytes(model_dir: Path, tmp_path: Path) -> None:
    pinned = {e.name: e for e in manifest()}[ONNX_MODEL]
    convert_dlib_resnet(model_dir / DAT, tmp_path / ONNX_MODEL)
    assert sha256_of(tmp_path / ONNX_MODEL) == pinned.sha256


@pytest.mark.models
def test_a_damaged_or_different_network_is_refused(model_dir: Path) -> None:
    data = (model_dir / DAT).read_bytes()
    with pytest.raises(DlibFormatError, match="truncated"):
        read_dlib_resnet(data[:-100])
    with pytest.raises(DlibFormatError, match="1 bytes left"):
        read_dlib_resnet(data + b"\0")
    with pytest.raises(DlibFormatError, match="found 'avg_pool_2'"):
        read_dlib_resnet(data.replace(b"max_pool_2", b"avg_pool_2"))
