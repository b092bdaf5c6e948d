"""`openimm models fetch` and `samples fetch` that cannot write end with one line and exit 4."""

from __future__ import annotations

from pathlib import Path

import pytest

from openimm.local.cli import main
from openimm.local.exit_status import ExitStatus


@pytest.mark.parametrize(
    "command", [["models", "fetch", "--dest"], ["samples", "fetch"]], ids=["models", "samples"]
)
def test_fetching_into_an_unwritable_folder_exits_4_with_one_line(
    command: list[str], unwritable: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    assert main([*command, str(unwritable)]) == ExitStatus.ENVIRONMENT

    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "could not be fetched" in err and "Traceback" not in err


@pytest.fixture
def new_recipe(monkeypatch: pytest.MonkeyPatch) -> None:
    """int8 copies under names no earlier test made, and no failure remembered."""
    from openimm.vision import quantised_graphs

    monkeypatch.setattr(quantised_graphs, "RECIPE", f"{quantised_graphs.RECIPE}-test-cli")
    monkeypatch.setattr(quantised_graphs, "_failed", set())


def _calibrate_with(monkeypatch: pytest.MonkeyPatch, chips: object) -> None:
    from openimm.vision import facenet_embedder, onnx_embedder

    for module in (facenet_embedder, onnx_embedder):
        monkeypatch.setattr(module, "sample_chips", chips)


@pytest.mark.usefixtures("new_recipe")
def test_models_fetch_int8_makes_the_embedders_copies(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    import shutil

    from openimm.vision import quantised_graphs
    from openimm.vision.facenet_embedder import MODEL_NAME as FACENET
    from openimm.vision.model_store import model_dir, model_path
    from openimm.vision.onnx_embedder import ONNX_MODEL as DLIB

    made: list[str] = []

    def quantise(source: Path, target: Path, feeds: object) -> None:
        # the wiring, not onnxruntime's quantiser (tests/unit/vision test that): a copy
        made.append(source.name)
        shutil.copyfile(source, target)

    monkeypatch.setattr(quantised_graphs, "quantise", quantise)
    _calibrate_with(monkeypatch, lambda *args, **kwargs: [])
    assert main(["models", "fetch", "--int8"]) == ExitStatus.OK

    assert sorted(made) == sorted([DLIB, FACENET])
    for name in (DLIB, FACENET):
        copy = quantised_graphs.quantised_graph(model_path(name), model_dir())
        assert copy is not None and copy.is_file()
        copy.unlink()
    assert capsys.readouterr().out.splitlines()[-1] == str(model_dir() / quantised_graphs.FOLDER)


@pytest.mark.usefixtures("new_recipe")
def test_models_fetch_int8_that_cannot_make_a_copy_exits_4(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    def offline(*args: object, **kwargs: object) -> list[object]:
        raise OSError("the sample photos cannot be downloaded")

    _calibrate_with(monkeypatch, offline)
    assert main(["models", "fetch", "--int8"]) == ExitStatus.ENVIRONMENT

    last = capsys.readouterr().err.strip().splitlines()[-1]
    assert "int8 copies" in last and "could not be made" in last and "Traceback" not in last
