"""kamevoice: KAME "speak while thinking" voice assistants.

A full-duplex speech front-end (Kyutai's Moshi with a fourth, *oracle*, input
stream) answers at once, while a back-end (streaming STT + any text LLM) keeps
streaming better candidate answers into it.
"""

import os as _os

# OpenMP spin-waiting makes the small per-frame torch steps 3-20x slower on
# 2-vCPU machines (see docs/components.md). It must be set before torch loads
# libgomp, so it is set here, at the package's first import; a user's own
# setting wins.
_os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")

# numpy's OpenBLAS busy-waits on its worker threads too, and our numpy work (resampling, VAD,
# Opus buffers, retrieval) is small: more threads only burn CPU that the sessions need
# (docs/results.md). Set before numpy loads OpenBLAS; a user's own setting wins.
_os.environ.setdefault("OPENBLAS_NUM_THREADS", "1")

# moshi wraps a few hot functions in torch.compile, read at import time. On the CPU this buys
# nothing and costs seconds of compilation per new shape, so it is off unless
# KAMEVOICE_TORCH_COMPILE=1 (worth trying on a GPU).
if _os.environ.get("KAMEVOICE_TORCH_COMPILE", "0") != "1":
    _os.environ.setdefault("NO_TORCH_COMPILE", "1")

__version__ = "0.1.0"
