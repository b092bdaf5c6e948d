"""A deployed function's handler, loaded from the path a deployment file names."""

from __future__ import annotations

import importlib.util
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]


def load_handler(spec: str) -> Any:
    """The callable `spec` names, relative to the repository: `functions/api/index.handler`."""
    module_path, name = spec.rsplit(".", 1)
    file = ROOT / f"{module_path}.py"
    # one module a file: deployments name each function's own index.py
    loaded = importlib.util.spec_from_file_location(f"deployed_{file.parent.name}", file)
    assert loaded is not None and loaded.loader is not None, spec
    module = importlib.util.module_from_spec(loaded)
    loaded.loader.exec_module(module)
    return getattr(module, name)
