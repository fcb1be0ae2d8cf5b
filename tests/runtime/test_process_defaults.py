"""Process-wide defaults the package sets at import, before torch and numpy load their libraries."""

from __future__ import annotations

import os
import subprocess
import sys


def _env_after_import(**env: str) -> dict[str, str]:
    clean = {k: v for k, v in os.environ.items() if k not in ("OMP_WAIT_POLICY", "OPENBLAS_NUM_THREADS")}
    code = "import kamevoice, os; print(os.environ['OMP_WAIT_POLICY'], os.environ['OPENBLAS_NUM_THREADS'])"
    out = subprocess.run([sys.executable, "-c", code], env={**clean, **env}, capture_output=True, text=True)
    assert out.returncode == 0, out.stderr
    wait, blas = out.stdout.split()
    return {"OMP_WAIT_POLICY": wait, "OPENBLAS_NUM_THREADS": blas}


def test_no_spin_waiting_and_one_blas_thread_unless_the_user_says_otherwise():
    assert _env_after_import() == {"OMP_WAIT_POLICY": "PASSIVE", "OPENBLAS_NUM_THREADS": "1"}
    chosen = _env_after_import(OMP_WAIT_POLICY="ACTIVE", OPENBLAS_NUM_THREADS="2")
    assert chosen == {"OMP_WAIT_POLICY": "ACTIVE", "OPENBLAS_NUM_THREADS": "2"}
