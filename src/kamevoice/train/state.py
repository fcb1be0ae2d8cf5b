"""Checkpoints of a run: the published layout plus what an exact resume needs.

`RUN/checkpoints/step-000100/` holds:

- `config.json`, `model.safetensors`, tokenizer (and codec) files: the
  published layout (`kamevoice.frontend.checkpoint.save_checkpoint`, LoRA
  merged), which serving and the published KAME code load as they are;
- `trainable.safetensors`: the trained parameters in their training form
  and master dtype (fp32, LoRA adapters unmerged). A resume rebuilds the model
  from the run's initial source, then loads these: frozen weights never
  change, so the rebuilt model is the interrupted one, bit for bit;
- `trainer_state.pt`: step, data position (epoch, index), optimizer state,
  the learning-rate schedule (a pure function of the step, stored for the
  record), the run's config;
- `rng-rank{R}.pt`: every rank's python / numpy / torch (and CUDA) RNG states.

A checkpoint directory is written under a temporary name and renamed when
complete, so an interrupted save never looks like a checkpoint.
"""

from __future__ import annotations

import random
import re
import shutil
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch
from safetensors.torch import load_file, save_file

from kamevoice.errors import CheckpointError

CHECKPOINTS = "checkpoints"
TRAINER_STATE = "trainer_state.pt"
TRAINABLE = "trainable.safetensors"
_STEP_DIR = re.compile(r"^step-(\d+)$")


@dataclass
class TrainerState:
    """Everything besides weights that a resume restores."""

    step: int  # optimiser steps done
    epoch: int  # data position: epoch ...
    index: int  # ... and samples already taken from it
    optimizer: dict
    schedule: dict  # the LR schedule's settings (it is a function of `step`)
    config: dict  # the run's TrainConfig, for the record
    frames_seen: int = 0  # valid frames trained on so far (all ranks)


def step_dir(run_dir: Path, step: int) -> Path:
    return Path(run_dir) / CHECKPOINTS / f"step-{step:06d}"


def list_checkpoints(run_dir: Path) -> list[Path]:
    """Complete checkpoint directories of a run, oldest first."""
    root = Path(run_dir) / CHECKPOINTS
    if not root.is_dir():
        return []
    found = [(int(m.group(1)), p) for p in root.iterdir() if (m := _STEP_DIR.match(p.name)) and p.is_dir()]
    return [p for _, p in sorted(found) if (p / TRAINER_STATE).is_file()]


def latest_checkpoint(run_dir: Path) -> Path | None:
    found = list_checkpoints(run_dir)
    return found[-1] if found else None


def staging_dir(final: Path) -> Path:
    """Where a checkpoint is written before its rename."""
    return final.with_name(final.name + ".partial")


def write_trainer_files(
    directory: Path, state: TrainerState, trainable: dict[str, torch.Tensor], rank: int, main: bool
) -> None:
    """Write this rank's RNG file, and on the main rank the trainable weights and trainer state."""
    directory.mkdir(parents=True, exist_ok=True)
    torch.save(rng_state(), directory / f"rng-rank{rank}.pt")
    if main:
        save_file({k: v.contiguous() for k, v in trainable.items()}, str(directory / TRAINABLE))
        torch.save(state.__dict__, directory / TRAINER_STATE)


def finish_checkpoint(staging: Path, final: Path, run_dir: Path, keep: int) -> None:
    """Rename a complete checkpoint into place and delete all but the newest `keep` (main rank)."""
    if final.exists():
        shutil.rmtree(final)
    staging.rename(final)
    for old in list_checkpoints(run_dir)[:-keep]:
        shutil.rmtree(old, ignore_errors=True)


def read_trainer_state(directory: Path) -> tuple[TrainerState, dict[str, torch.Tensor]]:
    """The trainer state and trainable weights of a checkpoint directory."""
    path = directory / TRAINER_STATE
    try:
        raw = torch.load(path, map_location="cpu", weights_only=False)
    except (OSError, RuntimeError, EOFError) as exc:
        raise CheckpointError(f"{path}: unreadable trainer state ({exc})") from exc
    return TrainerState(**raw), load_file(str(directory / TRAINABLE))


def rng_state() -> dict[str, Any]:
    """This process's RNG states."""
    state = {"python": random.getstate(), "numpy": np.random.get_state(), "torch": torch.get_rng_state()}
    if torch.cuda.is_available() and torch.cuda.is_initialized():
        state["cuda"] = torch.cuda.get_rng_state_all()
    return state


def restore_rng(directory: Path, rank: int) -> None:
    """Restore the RNG states this rank saved (no file: a resume on more ranks; left as seeded)."""
    path = directory / f"rng-rank{rank}.pt"
    if not path.exists():
        return
    state = torch.load(path, map_location="cpu", weights_only=False)
    random.setstate(state["python"])
    np.random.set_state(state["numpy"])
    torch.set_rng_state(state["torch"])
    if "cuda" in state and torch.cuda.is_available():
        torch.cuda.set_rng_state_all(state["cuda"])
