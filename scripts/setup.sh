#!/usr/bin/env bash
# Creates the virtual environment and installs finesweep with its test tools.
# Usage: scripts/setup.sh [python] [venv dir]   (the Makefile calls it; idempotent)
set -euo pipefail
PYTHON=${1:-python3}
VENV=${2:-.venv}

[ -x "$VENV/bin/python" ] || "$PYTHON" -m venv "$VENV"
PIP=("$VENV/bin/python" -m pip install --quiet --disable-pip-version-check)
"${PIP[@]}" --upgrade pip
# The CPU build of torch first, when torch is missing: finesweep's `torch>=2.2` is then
# already met, where an unpinned torch would pull a multi-GB CUDA build.
if ! "$VENV/bin/python" -c "import torch" 2>/dev/null; then
    "${PIP[@]}" "torch==2.13.0"
fi
"${PIP[@]}" -e ".[test]"
"$VENV/bin/python" -c "import optuna, ray.tune, pytorch_lightning, tensorboard, sklearn; print('finesweep: environment ready')"
