#!/usr/bin/env bash
# The ML functions' container image, without Docker: layers/install_image.sh (what
# layers/Dockerfile runs) into a fresh venv from a clean clone, then every handler imports
# and every model file is there with its sha256 (install_image.sh fails otherwise), and the
# installed size is printed: above Lambda's 10 GB image limit the build fails.
set -euo pipefail
cd "$(dirname "$0")/.."
work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT
git clone --quiet . "$work/clone"
python=${PYTHON:-python3}
"$python" -m venv "$work/venv"
echo "image: layers/install_image.sh into a fresh venv" >&2
(cd "$work/clone" && sh layers/install_image.sh "$work/venv/bin/python" "$work/models" >/dev/null)
# the image's working directory is the clone's root (WORKDIR /var/task, COPY functions)
(cd "$work/clone" && OPENIMM_MODEL_DIR="$work/models" "$work/venv/bin/python" - <<'PY'
import importlib.util
import sys
import sysconfig
from pathlib import Path

from openimm.vision.model_store import manifest, model_dir, sha256_of

handlers = sorted(Path("functions").glob("*/index.py"))
for path in handlers:
    spec = importlib.util.spec_from_file_location(f"fn_{path.parent.name}", path)
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    assert callable(module.handler), path
files = manifest()
for entry in files:
    assert sha256_of(model_dir() / entry.name) == entry.sha256, entry.name
# the int8 copies under the names a function computes at run time, which it cannot make
from openimm.vision.facenet_embedder import MODEL_NAME as FACENET
from openimm.vision.model_store import model_path
from openimm.vision.onnx_embedder import ONNX_MODEL as DLIB
from openimm.vision.quantised_graphs import quantised_graph

copies = [quantised_graph(model_path(name), model_dir()) for name in (FACENET, DLIB)]
for copy in copies:
    assert copy is not None and copy.is_file(), copy
print(f"image: ok, {len(handlers)} handlers import, {len(files)} model files verified,"
      f" {len(copies)} int8 copies")


def size(root: Path) -> int:
    return sum(path.stat().st_size for path in root.rglob("*") if path.is_file())


# Lambda's limit is on the uncompressed image, base image included (python:3.12-slim:
# about 130 MB more than this Python environment).
LIMIT = 10 * 1024**3
rows = {
    "site-packages": size(Path(sysconfig.get_paths()["purelib"])),
    "models": size(model_dir()),
    "functions": size(Path("functions")),
}
total = sum(rows.values())
print(f"image: {'part':<14} {'MB':>9}")
for name, count in [*rows.items(), ("total", total)]:
    print(f"image: {name:<14} {count / 1e6:>9.2f}")
print(f"image: Lambda's limit {LIMIT / 1e6:>9.2f}")
if total > LIMIT:
    sys.exit(f"image: {total / 1e6:.1f} MB is over Lambda's 10 GB image limit")
PY
)
