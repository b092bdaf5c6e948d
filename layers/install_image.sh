#!/bin/sh
# Install OpenIMM and its models as the ML functions' container image has them.
# Usage: sh layers/install_image.sh PYTHON MODEL_DIR   (from the repository root)
# layers/Dockerfile runs this; .ci/run runs it in a fresh venv where no Docker engine runs.
# Every package at the version layers/constraints.txt pins; fails unless every pinned
# model file is in MODEL_DIR with its sha256, and the embedders' int8 copies are made
# (the folder is read-only where the image runs: without them the embedders run float32).
set -eu
python=$1
models=$2
"$python" -m pip install --no-cache-dir --quiet -c layers/constraints.txt awslambdaric '.[aws]'
"$python" layers/fetch_models.py "$models"
# the calibration photos in a folder of their own, left out of the image; the graphs the
# networks' loading optimised are for this machine's CPU, not the one the image runs on
samples=$(mktemp -d)
OPENIMM_SAMPLE_DIR="$samples" "$python" -m openimm.local.cli models fetch --dest "$models" --int8
rm -rf "$samples" "$models/optimized"
