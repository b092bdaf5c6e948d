"""Build the Function Compute layers: the dependencies per Python runtime, and the models.

Usage: python layers/build_fc_layer.py [--python 3.10 3.12] [--out layers/build/fc]

Writes openimm-deps-py310.zip, openimm-deps-py312.zip (FC unpacks a layer into /opt, and
its python runtimes put /opt/python on the path) and openimm-models.zip (/opt/openimm/models,
the same for both runtimes), prints their sizes and the biggest packages, and exits 1 when a
layer is above FC's limit or holds a native library that the runtime's glibc cannot load.

Wheels come from pip with `--platform manylinux_2_X_x86_64 --only-binary=:all:` for every
manylinux tag the runtime's glibc accepts (pip does not widen a manylinux_2_X platform to
older ones by itself), so nothing is compiled here and nothing built for this machine's
newer glibc slips in. The few dependencies published only as source are pure Python and
are installed from source without their dependencies; the layer's requirement closure is
checked afterwards against every installed distribution's metadata.
"""

from __future__ import annotations

import argparse
import importlib.util
import os
import re
import shutil
import subprocess
import sys
import zipfile
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from pathlib import Path
from types import ModuleType

from packaging.markers import default_environment
from packaging.requirements import Requirement
from packaging.utils import canonicalize_name

try:
    import tomllib
except ModuleNotFoundError:  # Python 3.10: the same parser, as a package
    import tomli as tomllib

ROOT = Path(__file__).resolve().parents[1]
MODEL_STORE = ROOT / "shared" / "openimm" / "vision" / "model_store.py"
MB = 1024 * 1024

# FC 3.0 runtimes: python3.10 on Debian 10 (glibc 2.28), python3.12 on Debian 11 (glibc 2.31)
RUNTIME_GLIBC = {"3.10": 28, "3.12": 31}
# FC 3.0: a code package (and so a layer) uploaded by the tools or from OSS, zipped
MAX_ZIPPED = 500 * MB
# Published only as source, all pure Python: installed from source, without dependencies.
SOURCE_ONLY = [
    "oss2>=2.18,<3",
    "aliyun-python-sdk-core>=2.13.12",
    "aliyun-python-sdk-kms>=2.4.1",
    "crcmod>=1.7",
]
# ... whose own dependencies that have wheels, installed with the rest
SOURCE_ONLY_DEPS = [
    "requests>=2.20",
    "pycryptodome>=3.4.7",
    "jmespath>=0.9.3,<1",
    "cryptography>=3.0",
    "six",
]
# Tablestore caps protobuf<6, which onnx cannot take: installed without its dependencies
# (the aliyun extra lists the others), as the tests run it.
TABLESTORE = "tablestore>=6.4,<7"
# a requirement the layer knowingly does not meet, and why it runs anyway
KNOWN_UNMET = {"tablestore": {"protobuf"}}


@dataclass(frozen=True)
class Layer:
    """One built layer: its zip, its size unpacked and the sizes of its top entries."""

    name: str
    zip_path: Path
    unzipped: int
    parts: dict[str, int]

    @property
    def zipped(self) -> int:
        return self.zip_path.stat().st_size


def main(argv: Sequence[str] | None = None) -> int:
    """Build the layers; exit status 1 when one is above FC's limits or cannot load."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--python", nargs="+", default=sorted(RUNTIME_GLIBC))
    parser.add_argument("--out", type=Path, default=ROOT / "layers" / "build" / "fc")
    parser.add_argument(
        "--models-from",
        type=Path,
        default=Path.home() / ".cache" / "openimm" / "models",
        help="a model directory to copy verified files from before fetching the rest",
    )
    args = parser.parse_args(argv)
    unknown = set(args.python) - set(RUNTIME_GLIBC)
    if unknown:
        parser.error(
            f"FC 3.0 has no python runtime {sorted(unknown)}; known: {sorted(RUNTIME_GLIBC)}"
        )
    args.out.mkdir(parents=True, exist_ok=True)
    layers = [build_deps(version, args.out) for version in args.python]
    layers.append(build_models(args.out, args.models_from))
    problems = [p for layer in layers for p in check_limits(layer)]
    for version in args.python:
        target = args.out / _deps_name(version) / "python"
        problems += check_glibc(target, version)
        problems += check_closure(target, version)
        problems += smoke_import(target, version)
    print_table(layers)
    for problem in problems:
        print(f"FAIL: {problem}", file=sys.stderr)
    return 1 if problems else 0


# ------------------------------------------------------------ building


def runtime_requirements() -> list[str]:
    """The project's dependencies and its aliyun extra, as pyproject.toml declares them."""
    project = tomllib.loads((ROOT / "pyproject.toml").read_text(encoding="utf-8"))["project"]
    return [*project["dependencies"], *project["optional-dependencies"]["aliyun"]]


def platform_args(version: str) -> list[str]:
    """pip's options for wheels that FC's python<version> runtime can load."""
    glibc = RUNTIME_GLIBC[version]
    tags = [f"manylinux_2_{minor}_x86_64" for minor in range(glibc, 16, -1)]
    tags.append("manylinux2014_x86_64")  # pip widens this one to manylinux2010 and 1
    args = ["--python-version", version, "--implementation", "cp", "--only-binary=:all:"]
    for tag in tags:
        args += ["--platform", tag]
    return args


def build_deps(version: str, out: Path) -> Layer:
    """The dependency layer of one runtime: /opt/python."""
    root = out / _deps_name(version)
    shutil.rmtree(root, ignore_errors=True)
    target = root / "python"
    # --no-warn-conflicts: pip would weigh the target against the environment running
    # it, which the layer never meets; _complete checks the layer's own requirements
    install = ["install", "--quiet", "--no-compile", "--no-warn-conflicts", "--target", str(target)]
    wanted = [r for r in runtime_requirements() if not r.startswith("oss2")]
    _pip([*install, *platform_args(version), *wanted, *SOURCE_ONLY_DEPS])
    _pip([*install, *platform_args(version), "--no-deps", TABLESTORE])
    _pip([*install, "--no-deps", *SOURCE_ONLY])
    _complete(target, version)
    # A source install may have compiled an optional C speed-up for this machine's
    # Python (crcmod); the runtime would ignore it, so it is left out.
    for built in target.rglob("*.so"):
        if f"cpython-{sys.version_info.major}{sys.version_info.minor}" in built.name:
            built.unlink()
    _strip(target)
    return _zip(root, out / f"{_deps_name(version)}.zip", part_depth=2)


def build_models(out: Path, models_from: Path) -> Layer:
    """The model layer: /opt/openimm/models, verified against the pinned manifest."""
    root = out / "openimm-models"
    dest = root / "openimm" / "models"
    shutil.rmtree(root, ignore_errors=True)
    dest.mkdir(parents=True)
    store = _model_store()
    sources = {entry.source for entry in store.manifest() if entry.derived}
    if models_from.is_dir():  # saves the downloads; fetch_models verifies every file
        for entry in store.manifest():
            cached = models_from / entry.name
            if cached.is_file():
                shutil.copy2(cached, dest / entry.name)
    subprocess.run(
        [sys.executable, str(ROOT / "layers" / "fetch_models.py"), str(dest)],
        check=True,
        stdout=subprocess.DEVNULL,
    )
    # The files converted into the ONNX the runtime loads are not shipped.
    for name in sources:
        (dest / name).unlink(missing_ok=True)
    return _zip(root, out / "openimm-models.zip", part_depth=3)


def _model_store() -> ModuleType:
    # loaded by path, as fetch_models.py does: the build needs no openimm installed
    spec = importlib.util.spec_from_file_location("openimm_model_store", MODEL_STORE)
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module
    spec.loader.exec_module(module)
    return module


def _pip(args: list[str]) -> None:
    subprocess.run([sys.executable, "-m", "pip", *args], check=True)


def _strip(target: Path) -> None:
    """Drop what the runtime never reads: caches and the packages' own test suites."""
    for cache in list(target.rglob("__pycache__")):
        shutil.rmtree(cache, ignore_errors=True)
    for tests in [*target.glob("*/tests"), *target.glob("*/testing/_data")]:
        if tests.is_dir():
            shutil.rmtree(tests)
    shutil.rmtree(target / "bin", ignore_errors=True)


def _zip(root: Path, zip_path: Path, part_depth: int) -> Layer:
    unzipped = 0
    parts: dict[str, int] = {}
    zip_path.unlink(missing_ok=True)
    with zipfile.ZipFile(zip_path, "w", zipfile.ZIP_DEFLATED, compresslevel=6) as archive:
        for path in sorted(root.rglob("*")):
            if not path.is_file():
                continue
            relative = path.relative_to(root)
            size = path.stat().st_size
            unzipped += size
            part = "/".join(relative.parts[:part_depth])
            parts[part] = parts.get(part, 0) + size
            archive.write(path, relative.as_posix())
    return Layer(zip_path.stem, zip_path, unzipped, parts)


def _deps_name(version: str) -> str:
    return f"openimm-deps-py{version.replace('.', '')}"


# ------------------------------------------------------------ checks


def check_limits(layer: Layer) -> list[str]:
    """FC's documented size limit of a layer (zipped)."""
    if layer.zipped > MAX_ZIPPED:
        return [f"{layer.name}: {layer.zipped / MB:.0f} MB zipped, FC takes {MAX_ZIPPED / MB:.0f}"]
    return []


_GLIBC = re.compile(rb"GLIBC_2\.(\d+)")


def check_glibc(target: Path, version: str) -> list[str]:
    """Native libraries asking for a newer glibc than the runtime's (their symbol versions)."""
    limit = RUNTIME_GLIBC[version]
    problems = []
    for library in _native_libraries(target):
        needed = max((int(m) for m in _GLIBC.findall(library.read_bytes())), default=0)
        if needed > limit:
            problems.append(f"{library.relative_to(target)} needs glibc 2.{needed} > 2.{limit}")
    return problems


def _native_libraries(target: Path) -> Iterable[Path]:
    for path in target.rglob("*"):
        if path.is_file() and (path.suffix == ".so" or ".so." in path.name):
            yield path


def check_closure(target: Path, version: str) -> list[str]:
    """Every installed distribution's requirements are installed too (at the runtime's
    Python version), but for the ones the layer knowingly leaves unmet."""
    missing, wrong = _unmet(target, version)
    return wrong + [f"py{version}: {needed_by} needs {req}, has none" for needed_by, req in missing]


def _unmet(target: Path, version: str) -> tuple[list[tuple[str, Requirement]], list[str]]:
    """The requirements nothing installed provides, and those installed at a wrong version."""
    installed: dict[str, str] = {}
    requires: dict[str, list[str]] = {}
    for info in target.glob("*.dist-info"):
        fields = _metadata(info / "METADATA")
        name = canonicalize_name(fields["Name"][0])
        installed[name] = fields["Version"][0]
        requires[name] = fields.get("Requires-Dist", [])
    environment = {**default_environment(), "python_version": version}
    environment["python_full_version"] = f"{version}.0"
    missing: list[tuple[str, Requirement]] = []
    wrong: list[str] = []
    for name, wanted in sorted(requires.items()):
        for text in wanted:
            requirement = Requirement(text)
            marker = requirement.marker
            if marker and not marker.evaluate({**environment, "extra": ""}):
                continue
            dep = canonicalize_name(requirement.name)
            if dep in KNOWN_UNMET.get(name, set()):
                continue
            have = installed.get(dep)
            if have is None:
                missing.append((name, requirement))
            elif not requirement.specifier.contains(have, prereleases=True):
                wrong.append(f"py{version}: {name} needs {requirement}, has {have}")
    return missing, wrong


def _complete(target: Path, version: str) -> None:
    """Install what the installed distributions need at the runtime's Python version.

    pip evaluates environment markers for the Python that runs it, not for
    `--python-version`: a dependency only older Pythons need (aiohttp's async-timeout
    below 3.11) is left out by a build running on a newer one.
    """
    for _ in range(5):
        missing, _wrong = _unmet(target, version)
        if not missing:
            return
        wanted = sorted({f"{r.name}{r.specifier}" for _, r in missing})
        _pip(["install", "--quiet", "--no-compile", "--no-warn-conflicts",
              "--target", str(target), *platform_args(version), *wanted])  # fmt: skip


# what the functions import from the layer, natively compiled parts first
SMOKE = (
    "numpy, cv2, onnxruntime, PIL, pydantic, dlib, usearch, tablestore, oss2, mns, aiohttp,"
    " openimm.adapters.aliyun, openimm.platform.entry"
)


def smoke_import(target: Path, version: str) -> list[str]:
    """Import what the functions use with the layer and the code package's shared/ alone on
    the path, when this machine has that Python (its glibc may be newer than FC's: the
    symbol-version check above is what holds for FC's)."""
    python = shutil.which(f"python{version}")
    probe = "import sys; print('%d.%d' % sys.version_info[:2])"
    found = python and subprocess.run([python, "-c", probe], capture_output=True, text=True)
    if not found or found.stdout.strip() != version:  # none, or a shim that runs no Python
        print(f"no python{version} here: the layer's imports were not tried")
        return []
    code = f"import sys; sys.path[:0] = {[str(target), str(ROOT / 'shared')]!r}; import {SMOKE}"
    done = subprocess.run(
        [python, "-I", "-W", "ignore", "-c", code], capture_output=True, text=True
    )
    if done.returncode != 0:
        return [f"py{version}: import failed: {done.stderr.strip().splitlines()[-1]}"]
    print(f"python{version} imports {SMOKE} from the layer")
    return []


def _metadata(path: Path) -> dict[str, list[str]]:
    fields: dict[str, list[str]] = {}
    for line in path.read_text(encoding="utf-8", errors="replace").splitlines():
        if not line.strip():
            break  # the headers end where the description begins
        key, sep, value = line.partition(": ")
        if sep and not line.startswith(" "):
            fields.setdefault(key, []).append(value.strip())
    return fields


# ------------------------------------------------------------ report


def print_table(layers: list[Layer]) -> None:
    """Sizes per layer and its ten biggest parts, in MB."""
    print(f"{'layer':<24}{'unzipped MB':>12}{'zipped MB':>11}  limit: {MAX_ZIPPED // MB} MB zipped")
    for layer in layers:
        print(f"{layer.name:<24}{layer.unzipped / MB:>12.1f}{layer.zipped / MB:>11.1f}")
    for layer in layers:
        print(f"\nbiggest in {layer.name} (unzipped MB):")
        biggest = sorted(layer.parts.items(), key=lambda item: -item[1])[:10]
        for part, size in biggest:
            print(f"  {size / MB:8.1f}  {part}")


if __name__ == "__main__":
    os.environ.setdefault("PIP_DISABLE_PIP_VERSION_CHECK", "1")
    sys.exit(main())
