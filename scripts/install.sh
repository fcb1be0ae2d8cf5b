#!/usr/bin/env bash
# Install kamevoice into ./.venv on a fresh Debian/Ubuntu machine with Python 3.11.
#   bash scripts/install.sh          # the package and its embedded defaults
#   bash scripts/install.sh --dev    # plus what the tests need
set -euo pipefail
cd "$(dirname "$0")/.."

DEV=0
[ "${1:-}" = "--dev" ] && DEV=1

# System packages: flite/espeak-ng voices make the test speech; libsndfile reads audio files.
APT_PACKAGES="libsndfile1 flite espeak-ng"
if command -v apt-get >/dev/null 2>&1; then
  missing=""
  for p in $APT_PACKAGES; do dpkg -s "$p" >/dev/null 2>&1 || missing="$missing $p"; done
  if [ -n "$missing" ]; then
    SUDO=""; [ "$(id -u)" != 0 ] && SUDO="sudo"
    $SUDO apt-get update -qq
    DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -qq $missing
  fi
fi

PY="${PYTHON:-python3.11}"
command -v "$PY" >/dev/null 2>&1 || PY=python3
[ -x .venv/bin/python ] || "$PY" -m venv .venv
.venv/bin/python -m pip install -q --upgrade pip
# moshi pins torch < 2.10: on x86-64 pip resolves that to PyPI's CUDA build (~4 GB download,
# ~7 GB installed, ~6 min the first time, cached afterwards). It runs on the CPU as well.
if [ "$DEV" = 1 ]; then
  .venv/bin/python -m pip install -q -e ".[dev]"
else
  .venv/bin/python -m pip install -q -e .
fi
echo "kamevoice installed in .venv ($(.venv/bin/kamevoice --version))"
