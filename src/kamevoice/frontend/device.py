"""Device and dtype choices shared by every command."""

from __future__ import annotations

import torch

from kamevoice.errors import ConfigError

_DTYPES = {"float32": torch.float32, "bfloat16": torch.bfloat16, "float16": torch.float16}


def resolve_device(name: str = "auto") -> torch.device:
    """'auto' picks CUDA when available, else the CPU; anything else must be a valid torch device."""
    if name == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    try:
        device = torch.device(name)
    except RuntimeError as exc:
        raise ConfigError(f"device '{name}' is not a valid torch device") from exc
    if device.type == "cuda" and not torch.cuda.is_available():
        raise ConfigError(f"device '{name}' asked for, but this machine has no usable CUDA GPU")
    return device


def apply_cpu_threads(threads: int) -> None:
    """Set torch's intra-op threads for this process (0: leave torch's default)."""
    if threads > 0 and torch.get_num_threads() != threads:
        torch.set_num_threads(threads)


def resolve_dtype(name: str, device: torch.device) -> torch.dtype:
    """'auto' is bfloat16 on a GPU (the published weights' dtype) and float32 on the CPU."""
    if name == "auto":
        return torch.bfloat16 if device.type == "cuda" else torch.float32
    if name not in _DTYPES:
        raise ConfigError(f"dtype '{name}' unknown; use one of auto, {', '.join(_DTYPES)}")
    return _DTYPES[name]
