#!/usr/bin/env bash
# The newcomer's path, as README.md gives it: a clean clone, no venv, an empty model folder,
# then the first command. The sample photos' one repeated person (Barack Obama, in six of
# the nine) must come out as one cluster, and the command must exit 0.
# A clone holds what is committed: run it on a clean tree, as CI does.
set -euo pipefail
cd "$(dirname "$0")/.."
work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT
git clone --quiet . "$work/clone"
echo "newcomer: scripts/quickstart.sh in a clean clone with an empty model folder" >&2
started=$SECONDS
status=0
(cd "$work/clone" && OPENIMM_MODEL_DIR="$work/models" bash scripts/quickstart.sh --json) \
  >"$work/report.json" || status=$?
echo "newcomer: exit status $status after $((SECONDS - started)) s" >&2
python3 .ci/check_quickstart.py "$work/report.json" "$status"
