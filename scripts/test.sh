#!/usr/bin/env bash
# Install OpenIMM with its development tools into .venv, lint, type-check and run the tests.
set -euo pipefail
cd "$(dirname "$0")/.."
python=${PYTHON:-python3}
if [ ! -x .venv/bin/pytest ] || [ pyproject.toml -nt .venv/.installed ]; then
  "$python" -m venv .venv
  .venv/bin/python -m pip install --quiet --upgrade pip
  # aws: the AWS adapters' contract tests run here too (against moto), never skipped
  .venv/bin/python -m pip install --quiet -e '.[dev,aws]'
  touch .venv/.installed
fi
.venv/bin/ruff check .
.venv/bin/mypy
.venv/bin/openimm models fetch >/dev/null
.venv/bin/python -m pytest -q -p no:cacheprovider "$@"
