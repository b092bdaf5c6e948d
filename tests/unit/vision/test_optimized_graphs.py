"""A graph is optimised for this machine once, kept beside the models, and loaded after."""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np
import pytest

from onnx_graphs import conv_model as _conv_model
from onnx_graphs import unwritable_model_dir
from openimm.vision import onnx_session
from openimm.vision.onnx_session import _create
from openimm.vision.optimized_graphs import FOLDER, optimized_graph


@pytest.fixture
def models(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    monkeypatch.setenv("OPENIMM_MODEL_DIR", str(tmp_path))
    return tmp_path


def _run(session: object) -> np.ndarray:
    x = np.linspace(-1, 1, 3 * 16 * 16, dtype=np.float32).reshape(1, 3, 16, 16)
    return np.asarray(session.run(None, {"x": x})[0])  # type: ignore[attr-defined]


def test_the_first_session_keeps_its_graph_and_the_next_loads_it(models: Path) -> None:
    source = _conv_model(models / "conv.onnx")
    first = _create(str(source), None)
    graph = optimized_graph(str(source), models)
    assert graph is not None and graph.is_file() and graph.parent.name == FOLDER
    assert not [p for p in graph.parent.iterdir() if p.name.endswith(".part")]
    kept = graph.stat().st_mtime_ns
    second = _create(str(source), None)
    assert graph.stat().st_mtime_ns == kept  # loaded, not optimised again
    np.testing.assert_array_equal(_run(first), _run(second))


def test_a_changed_model_file_is_optimised_afresh(models: Path) -> None:
    source = _conv_model(models / "conv.onnx")
    _create(str(source), None)
    before = optimized_graph(str(source), models)
    os.utime(source, ns=(1, 1))
    after = optimized_graph(str(source), models)
    assert before != after
    _create(str(source), None)
    assert after is not None and after.is_file()


def test_a_damaged_graph_is_replaced(models: Path) -> None:
    source = _conv_model(models / "conv.onnx")
    reference = _run(_create(str(source), None))
    graph = optimized_graph(str(source), models)
    assert graph is not None
    graph.write_bytes(b"not a graph")
    np.testing.assert_array_equal(_run(_create(str(source), None)), reference)
    assert graph.read_bytes() != b"not a graph"


def test_a_model_folder_that_cannot_be_written_keeps_nothing(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    source = _conv_model(tmp_path / "conv.onnx")
    unwritable_model_dir(tmp_path, monkeypatch)
    assert _run(_create(str(source), None)).shape == (1, 4, 16, 16)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["a-file", "conv.onnx"]


def test_a_graph_built_in_memory_is_not_kept(models: Path) -> None:
    # its graph depends on the code that built it, which the file's name cannot tell
    source = _conv_model(models / "conv.onnx")
    session = _create(f"{source}#y", source.read_bytes)
    assert not (models / FOLDER).exists()
    np.testing.assert_array_equal(_run(session), _run(_create(str(source), None)))


def test_sessions_stay_shared_per_process(models: Path) -> None:
    source = _conv_model(models / "conv.onnx")
    assert onnx_session.onnx_session(source) is onnx_session.onnx_session(str(source))
