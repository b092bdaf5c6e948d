"""layers/build_fc_layer.py's checks: wheel platforms, glibc symbols, requirement closure."""

from __future__ import annotations

import importlib.util
import sys
from pathlib import Path
from types import ModuleType

import pytest

SCRIPT = Path(__file__).resolve().parents[2] / "layers" / "build_fc_layer.py"


@pytest.fixture(scope="module")
def build() -> ModuleType:
    spec = importlib.util.spec_from_file_location("build_fc_layer", SCRIPT)
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module  # dataclasses look their module up
    spec.loader.exec_module(module)
    return module


def test_wheels_for_every_manylinux_the_runtime_glibc_loads(build: ModuleType) -> None:
    args = build.platform_args("3.10")
    platforms = [args[i + 1] for i, arg in enumerate(args) if arg == "--platform"]
    assert platforms[0] == "manylinux_2_28_x86_64"
    assert "manylinux_2_17_x86_64" in platforms and "manylinux2014_x86_64" in platforms
    assert "manylinux_2_29_x86_64" not in platforms
    assert args[args.index("--python-version") + 1] == "3.10"
    assert "--only-binary=:all:" in args
    assert "manylinux_2_31_x86_64" in build.platform_args("3.12")


def _library(root: Path, name: str, versions: list[str]) -> None:
    path = root / "pkg" / name
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(b"\x7fELF\x00" + b"\x00".join(f"GLIBC_{v}".encode() for v in versions))


def test_a_library_needing_a_newer_glibc_is_refused(build: ModuleType, tmp_path: Path) -> None:
    _library(tmp_path, "ok.so", ["2.2.5", "2.17", "2.28"])
    assert build.check_glibc(tmp_path, "3.10") == []
    _library(tmp_path, "_rust.abi3.so", ["2.17", "2.34"])
    assert build.check_glibc(tmp_path, "3.10") == ["pkg/_rust.abi3.so needs glibc 2.34 > 2.28"]
    assert build.check_glibc(tmp_path, "3.12") == ["pkg/_rust.abi3.so needs glibc 2.34 > 2.31"]


def _dist(root: Path, name: str, version: str, requires: list[str]) -> None:
    info = root / f"{name}-{version}.dist-info"
    info.mkdir(parents=True)
    lines = ["Metadata-Version: 2.1", f"Name: {name}", f"Version: {version}"]
    lines += [f"Requires-Dist: {r}" for r in requires]
    (info / "METADATA").write_text("\n".join(lines) + "\n\nA description: not a header\n")


def test_the_closure_is_checked_at_the_runtime_python(build: ModuleType, tmp_path: Path) -> None:
    _dist(
        tmp_path,
        "aiohttp",
        "3.12.0",
        [
            "yarl>=1.17",
            'async-timeout<6,>=4; python_version < "3.11"',
            'brotli; extra == "speedups"',
        ],
    )
    _dist(tmp_path, "yarl", "1.9.0", [])
    _dist(tmp_path, "tablestore", "6.4.8", ["protobuf<6"])  # knowingly unmet
    problems = build.check_closure(tmp_path, "3.10")
    assert problems == [
        "py3.10: aiohttp needs yarl>=1.17, has 1.9.0",
        'py3.10: aiohttp needs async-timeout<6,>=4; python_version < "3.11", has none',
    ]
    assert build.check_closure(tmp_path, "3.12") == ["py3.12: aiohttp needs yarl>=1.17, has 1.9.0"]


def test_a_layer_above_the_limit_fails(
    build: ModuleType, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    zipped = tmp_path / "layer.zip"
    zipped.write_bytes(b"x" * 2048)
    layer = build.Layer("layer", zipped, 4096, {})
    assert build.check_limits(layer) == []
    monkeypatch.setattr(build, "MAX_ZIPPED", 1024)
    [problem] = build.check_limits(layer)
    assert problem.startswith("layer: ") and "FC takes" in problem
