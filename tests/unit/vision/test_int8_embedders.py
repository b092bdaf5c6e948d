"""The embedders' int8 networks give the float32 networks' vectors, near enough to mix."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import numpy as np
import pytest

from openimm.vision import FaceEmbedder, Pixels
from openimm.vision.facenet_embedder import FaceNetEmbedder
from openimm.vision.onnx_embedder import OnnxDlibEmbedder
from openimm.vision.quantised_graphs import FOLDER


@pytest.mark.models
@pytest.mark.parametrize(
    "make",
    [
        lambda int8: FaceNetEmbedder(flip=False, int8=int8),
        lambda int8: OnnxDlibEmbedder(int8=int8),
    ],
    ids=["facenet", "dlib"],
)
def test_int8_vectors_stay_with_the_float32_ones(
    model_dir: Path,
    aligned_sample_chips: Callable[..., list[Pixels]],
    make: Callable[[bool], FaceEmbedder],
) -> None:
    fp32, int8 = make(False), make(True)
    # the session runs the kept int8 copy (or this machine's optimised graph of it)
    session = int8._session()  # type: ignore[attr-defined]
    name = Path(session._model_path).name
    assert "-int8-" in name
    assert any(name.startswith(kept.stem) for kept in (model_dir / FOLDER).iterdir())
    chips = aligned_sample_chips(fp32.align)
    assert len(chips) >= 10
    reference, quantised = fp32.embed(chips), int8.embed(chips)
    assert quantised.shape == reference.shape and quantised.dtype == np.float32
    np.testing.assert_allclose(np.linalg.norm(quantised, axis=1), 1, atol=1e-5)
    cosines = np.sum(reference * quantised, axis=1)
    assert cosines.min() > 0.99
    # each face is still nearest its own float32 vector
    nearest = np.argmax(quantised @ reference.T, axis=1)
    assert list(nearest) == list(range(len(chips)))
