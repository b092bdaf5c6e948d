"""An int8 copy of a network is made once per machine, kept beside the models, reused, and
float32 serves wherever it cannot be made."""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np
import onnx
import onnxruntime as ort
import pytest

from onnx_graphs import conv_model as _conv_model
from onnx_graphs import unwritable_model_dir
from openimm.vision import quantised_graphs
from openimm.vision.model_store import manifest
from openimm.vision.quantised_graphs import (
    FOLDER,
    Feed,
    failed_copies,
    int8_model,
    quantise,
    quantised_graph,
)


def _feeds() -> list[Feed]:
    rng = np.random.default_rng(1)
    return [{"x": rng.uniform(-1, 1, (1, 3, 16, 16)).astype(np.float32)} for _ in range(4)]


def _run(path: Path, feed: Feed) -> np.ndarray:
    session = ort.InferenceSession(str(path), providers=["CPUExecutionProvider"])
    return np.asarray(session.run(None, feed)[0])


@pytest.fixture
def models(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    monkeypatch.setenv("OPENIMM_MODEL_DIR", str(tmp_path))
    monkeypatch.setattr(quantised_graphs, "_failed", set())
    return tmp_path


def test_the_int8_copy_is_made_once_kept_and_reused(models: Path) -> None:
    source = _conv_model(models / "conv.onnx")
    asked = []

    def calibration() -> list[Feed]:
        asked.append(1)
        return _feeds()

    graph = int8_model(source, calibration)
    assert graph is not None and graph.is_file() and graph.parent.name == FOLDER
    assert graph == quantised_graph(source, models)
    assert not [p for p in graph.parent.iterdir() if p.name.endswith(".part")]
    ops = {node.op_type for node in onnx.load(str(graph)).graph.node}
    assert {"QuantizeLinear", "DequantizeLinear"} <= ops
    kept = graph.stat().st_mtime_ns
    assert int8_model(source, calibration) == graph
    assert len(asked) == 1 and graph.stat().st_mtime_ns == kept
    feed = _feeds()[0]
    reference, int8 = _run(source, feed), _run(graph, feed)
    assert np.abs(int8 - reference).max() < 0.05 * np.abs(reference).max()


def test_the_copy_is_the_same_bytes_each_time_it_is_made(tmp_path: Path) -> None:
    source = _conv_model(tmp_path / "conv.onnx")
    quantise(source, tmp_path / "a.onnx", _feeds())
    quantise(source, tmp_path / "b.onnx", _feeds())
    assert (tmp_path / "a.onnx").read_bytes() == (tmp_path / "b.onnx").read_bytes()


def test_a_changed_model_file_gets_a_new_copy(models: Path) -> None:
    source = _conv_model(models / "conv.onnx")
    before = int8_model(source, _feeds)
    os.utime(source, ns=(1, 1))
    after = int8_model(source, _feeds)
    assert before != after and after is not None and after.is_file()


def test_a_model_folder_that_cannot_be_written_falls_back_to_float32(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    source = _conv_model(tmp_path / "conv.onnx")
    unwritable_model_dir(tmp_path, monkeypatch)
    monkeypatch.setattr(quantised_graphs, "_failed", set())
    assert int8_model(source, _feeds) is None
    assert sorted(p.name for p in tmp_path.iterdir()) == ["a-file", "conv.onnx"]


def test_a_copy_that_cannot_be_made_falls_back_and_is_not_tried_again(models: Path) -> None:
    source = _conv_model(models / "conv.onnx")
    asked = []

    def offline() -> list[Feed]:
        asked.append(1)
        raise OSError("the sample photos cannot be downloaded")

    assert int8_model(source, offline) is None
    assert int8_model(source, offline) is None
    assert len(asked) == 1
    assert failed_copies() == [quantised_graph(source, models)]
    assert not list((models / FOLDER).iterdir())


def test_int8_can_be_turned_off(models: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    source = _conv_model(models / "conv.onnx")
    monkeypatch.setenv("OPENIMM_INT8", "0")
    assert int8_model(source, _feeds) is None
    assert not (models / FOLDER).exists()


def test_a_pinned_model_keeps_its_copy_s_name_wherever_it_is_packed(tmp_path: Path) -> None:
    # an image or a layer built elsewhere: another folder, another time, the same sha256
    pinned = next(e for e in manifest() if e.name.endswith(".onnx") and e.sha256)
    built, deployed = tmp_path / "built", tmp_path / "deployed"
    names = []
    for folder, when in ((built, 10**18), (deployed, 2 * 10**18)):
        folder.mkdir()
        source = folder / pinned.name
        with source.open("wb") as file:
            file.truncate(pinned.size)  # the size the model store checks on its hot path
        os.utime(source, ns=(when, when))
        graph = quantised_graph(source, folder)
        assert graph is not None and graph.parent == folder / FOLDER
        names.append(graph.name)
    assert names[0] == names[1]
    # a file of another size is not the pinned one: named by path, size and time
    with (deployed / pinned.name).open("ab") as file:
        file.write(b"x")
    other = quantised_graph(deployed / pinned.name, deployed)
    assert other is not None and other.name != names[0]
