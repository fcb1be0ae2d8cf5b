"""Batches that follow the live conversations: how many rows to step, and carrying rows across a resize.

Moshi's streaming modules compute every row of their batch, masked or not, so an
engine sized for 16 conversations that serves 4 would pay for 16. The generator
therefore steps a batch of `rows_for(live)` rows (a power of two, at most the
capacity) and resizes when the live count leaves it: streaming state is rebuilt
at the new size and each live row's state is copied into its new row
(`carry_rows`), so a conversation goes on exactly as if nothing had happened
(tested bit for bit).

`carry_rows` copies between two streaming states of the same module tree built at
different batch sizes (moshi's `get_streaming_state()` dicts, or any objects):
in every tensor the batch dimension is the one dimension whose size differs
between the two, so no module's layout needs to be known; a tensor of the same
shape in both (no batch dimension) is copied whole, as are plain numbers.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import torch

# Steps a batch must stay at most half full before it shrinks: a conversation that ends
# and another that starts a moment later should not cost two resizes.
SHRINK_AFTER_STEPS = 25
# Attributes of streaming states that belong to the new batch, never carried over.
_OWN_FIELDS = frozenset({"batch_size", "device"})


def rows_for(live: int, capacity: int) -> int:
    """The batch that serves `live` conversations: the smallest power of two >= live (at least 1),
    at most `capacity`."""
    rows = 1
    while rows < live:
        rows *= 2
    return max(1, min(rows, capacity))


def carry_rows(old: Any, new: Any, rows: Sequence[tuple[int, int]], where: str = "state") -> None:
    """Copy rows `(old_row, new_row)` of every tensor in `old` into the same place in `new`."""
    if isinstance(old, dict) and isinstance(new, dict):
        for name, value in new.items():
            if name in old:
                carry_rows(old[name], value, rows, f"{where}.{name}" if where else name)
        return
    if old is None or new is None or not hasattr(new, "__dict__"):
        return
    for name, value in vars(new).items():
        if name in _OWN_FIELDS or name.startswith("__"):
            continue
        before = getattr(old, name, None)
        if isinstance(value, torch.Tensor) and isinstance(before, torch.Tensor):
            _carry_tensor(before, value, rows, f"{where}.{name}")
        elif isinstance(before, bool | int | float) and isinstance(value, bool | int | float):
            setattr(new, name, before)  # per-batch counters (moshi's offset_cpu)
        elif type(before) is type(value) and hasattr(value, "__dict__") and not callable(value):
            carry_rows(before, value, rows, f"{where}.{name}")  # e.g. a ring KV cache


@torch.no_grad()
def _carry_tensor(old: torch.Tensor, new: torch.Tensor, rows: Sequence[tuple[int, int]], where: str) -> None:
    if old.shape == new.shape:
        new.copy_(old)
        return
    differ = [d for d, (a, b) in enumerate(zip(old.shape, new.shape, strict=True)) if a != b]
    if old.dim() != new.dim() or len(differ) != 1:
        raise ValueError(
            f"{where}: cannot find the batch dimension of {tuple(old.shape)} -> {tuple(new.shape)}"
        )
    if not rows:
        return
    dim = differ[0]
    src = torch.tensor([r for r, _ in rows], device=old.device)
    dst = torch.tensor([r for _, r in rows], device=new.device)
    new.index_copy_(dim, dst, old.index_select(dim, src).to(new.dtype))
