#!/usr/bin/env bash
# Install OpenIMM with its development tools into .venv, lint, type-check and run the tests.
set -euo pipefail
cd "$(dirname "$0")/.."
python=${PYTHON:-python3}
TABLESTORE_SDK='tablestore>=6.4,<7'
if [ ! -x .venv/bin/pytest ] || [ pyproject.toml -nt .venv/.installed ]; then
  "$python" -m venv .venv
  .venv/bin/python -m pip install --quiet --upgrade pip
  # aliyun, aws: the cloud adapters' contract tests run here too, never skipped
  .venv/bin/python -m pip install --quiet -e '.[dev,aliyun,aws]'
  # without its protobuf<6 cap, which onnx's pin contradicts: see the aliyun extra
  .venv/bin/python -m pip install --quiet --no-deps "$TABLESTORE_SDK"
  touch .venv/.installed
fi
.venv/bin/ruff check .
.venv/bin/mypy
.venv/bin/openimm models fetch >/dev/null
.venv/bin/python -m pytest -q -p no:cacheprovider "$@"
