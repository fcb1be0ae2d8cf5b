"""What a run reports: JSON lines in `RUN/log.jsonl`, a console progress bar, TensorBoard if present.

Records are flat dicts with a `kind` ("train", "valid", "info") and a
`step`. Train records hold `loss`, `loss/<term>`, `acc/<term>` (terms of
`kamevoice.train.losses.TERMS`), `lr`, `grad_norm`, `frames_per_s`,
`mem_mb` (RSS on the CPU, max allocated on a GPU). Valid records hold the
same losses and accuracies with the oracle on (`on/...`) and off (`off/...`).
Only the main rank logs.
"""

from __future__ import annotations

import json
import math
import os
import resource
from pathlib import Path
from typing import Any

import torch

LOG_NAME = "log.jsonl"
# Figures shown on the progress bar (label: record key), in this order; the JSONL file gets everything.
CONSOLE_KEYS = {
    "loss": "loss",
    "text": "loss/text_non_pad",
    "sem": "loss/semantic",
    "text_acc": "acc/text_non_pad",
    "frames/s": "frames_per_s",
    "MB": "mem_mb",
}


def memory_mb(device: torch.device) -> float:
    """Peak memory: max allocated on a CUDA device, else this process's resident set (MiB)."""
    if device.type == "cuda":
        return torch.cuda.max_memory_allocated(device) / 2**20
    try:
        with open("/proc/self/statm") as f:
            pages = int(f.read().split()[1])
        return pages * os.sysconf("SC_PAGE_SIZE") / 2**20
    except (OSError, ValueError):
        return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def read_log(run_dir: str | Path) -> list[dict[str, Any]]:
    """Every record of a run's log (a truncated last line, from a crash, is skipped)."""
    records = []
    path = Path(run_dir) / LOG_NAME
    for line in path.read_text(encoding="utf-8").splitlines():
        try:
            records.append(json.loads(line))
        except json.JSONDecodeError:
            continue
    return records


def latest_per_step(records: list[dict[str, Any]], kind: str) -> list[dict[str, Any]]:
    """One record of `kind` per step, in step order (a resumed run logs some steps twice: the later wins)."""
    by_step = {r["step"]: r for r in records if r.get("kind") == kind and "step" in r}
    return [by_step[s] for s in sorted(by_step)]


def _clean(value: Any) -> Any:
    if isinstance(value, float) and not math.isfinite(value):
        return None  # JSON has no NaN
    return value


class RunLogger:
    """Writes records to the JSONL log (and TensorBoard) and drives the console progress bar."""

    def __init__(
        self,
        run_dir: Path,
        total_steps: int,
        start_step: int,
        enabled: bool,
        progress: bool,
        tensorboard: bool,
    ):
        self.enabled = enabled
        self._file = None
        self._bar = None
        self._tb = None
        if not enabled:
            return
        run_dir.mkdir(parents=True, exist_ok=True)
        self._file = open(run_dir / LOG_NAME, "a", encoding="utf-8")  # noqa: SIM115 - closed in close()
        if progress:
            from tqdm import tqdm

            self._bar = tqdm(
                total=total_steps, initial=start_step, desc="train", unit="step", dynamic_ncols=True
            )
        if tensorboard:
            try:
                from torch.utils.tensorboard import SummaryWriter

                self._tb = SummaryWriter(str(run_dir / "tensorboard"))
            except ImportError:
                self.write({"kind": "info", "message": "tensorboard not installed: skipped"})

    def write(self, record: dict[str, Any]) -> None:
        """Append one record (main rank only; others ignore it)."""
        if not self.enabled or self._file is None:
            return
        self._file.write(json.dumps({k: _clean(v) for k, v in record.items()}) + "\n")
        self._file.flush()
        if self._tb is not None and "step" in record:
            prefix = record.get("kind", "train")
            for key, value in record.items():
                if isinstance(value, int | float) and key != "step" and math.isfinite(value):
                    self._tb.add_scalar(f"{prefix}/{key}", value, record["step"])
        if record.get("kind") == "valid":
            self.message(
                "valid step {step}: loss oracle on {on} / off {off}".format(
                    step=record["step"], on=_fmt(record.get("on/loss")), off=_fmt(record.get("off/loss"))
                )
            )

    def advance(self, steps: int, record: dict[str, Any] | None = None) -> None:
        """Move the progress bar; show a train record's main figures on it."""
        if self._bar is None:
            return
        if record is not None:
            self._bar.set_postfix_str(
                " ".join(f"{label}={_fmt(record[k])}" for label, k in CONSOLE_KEYS.items() if k in record)
            )
        self._bar.update(steps)

    def message(self, text: str) -> None:
        if not self.enabled:
            return
        if self._bar is not None:
            self._bar.write(text)
        else:
            print(text, flush=True)

    def close(self) -> None:
        if self._bar is not None:
            self._bar.close()
        if self._file is not None:
            self._file.close()
        if self._tb is not None:
            self._tb.close()


def _fmt(value: Any) -> str:
    if isinstance(value, float):
        return f"{value:.4g}" if abs(value) < 1e4 else f"{value:.0f}"
    return str(value)
