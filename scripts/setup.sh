#!/usr/bin/env bash
# Creates the virtual environment, installs finesweep with its test tools and builds the
# offline task data (Debian's fortunes and espeak-ng; the spoken-digit cache).
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
bash "$(dirname "$0")/install_services.sh"  # PostgreSQL for tests/test_postgres.py
"$VENV/bin/python" -c "import optuna, ray.tune, pytorch_lightning, tensorboard, sklearn; print('finesweep: environment ready')"
# Task data: the text task reads Debian's fortunes, the speech task synthesises its clips with
# espeak-ng. apt-get runs only when one is missing and we are root (CI); otherwise the message
# below says what to install.
if ! { [ -f /usr/share/games/fortunes/zippy ] && command -v espeak-ng >/dev/null; }; then
    if [ "$(id -u)" = 0 ] && command -v apt-get >/dev/null; then
        apt-get update -qq >/dev/null
        DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends \
            fortunes espeak-ng >/dev/null
    fi
fi
"$VENV/bin/python" scripts/prepare_data.py || echo "finesweep: the text and speech tasks need the data above; the image task works without it" >&2
