#!/usr/bin/env bash
# The ML functions' container image, without Docker: layers/install_image.sh (what
# layers/Dockerfile runs) into a fresh venv from a clean clone, then every handler imports
# and every model file is there with its sha256 (install_image.sh fails otherwise).
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
print(f"image: ok, {len(handlers)} handlers import, {len(files)} model files verified")
PY
)
