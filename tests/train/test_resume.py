"""An interrupted run, resumed, gives the same loss curve and weights as an uninterrupted one."""

from __future__ import annotations

import shutil

import pytest
import torch
from safetensors.torch import load_file

from kamevoice.train.logging import latest_per_step, read_log
from kamevoice.train.loop import train
from kamevoice.train.state import TRAINER_STATE, list_checkpoints, read_trainer_state
from tests.train.helpers import tiny_config


@pytest.mark.parametrize("mode", ["full", "lora"])
def test_resume_is_exact(tmp_path, shards, spm_path, mode):
    train_dir, valid_dir = shards
    finetune = {"mode": mode, "lora_rank": 4}
    whole = tiny_config(tmp_path / "whole", train_dir, spm_path, valid_dir, finetune=finetune)
    result = train(whole)
    assert result.step == 6 and len(result.history) == 6

    cut = tiny_config(
        tmp_path / "cut", train_dir, spm_path, valid_dir, finetune=finetune, run={"save_every": 3}
    )
    first = train(cut, stop_at=4)  # saves at step 3, runs step 4, then "crashes" (checkpoint at 4 too)
    assert first.step == 4
    # Drop the step-4 checkpoint: the resume must restart from step 3 and redo step 4.
    latest = list_checkpoints(tmp_path / "cut")[-1]
    assert latest.name == "step-000004"
    shutil.rmtree(latest)
    second = train(cut)
    assert second.step == 6 and [r["step"] for r in second.history] == [4, 5, 6]

    curve = {r["step"]: r["loss"] for r in latest_per_step(read_log(tmp_path / "cut"), "train")}
    reference = {r["step"]: r["loss"] for r in result.history}
    assert curve == reference  # bit-exact on the CPU: same data, same RNG, same optimizer state

    state, _ = read_trainer_state(second.last_checkpoint)
    assert (state.step, state.epoch) == (6, 2) and state.index == 8  # 6 x 4 samples over 8 a epoch
    a = load_file(str(result.last_checkpoint / "model.safetensors"))
    b = load_file(str(second.last_checkpoint / "model.safetensors"))
    assert a.keys() == b.keys() and all(torch.equal(a[k], b[k]) for k in a)
    assert (second.last_checkpoint / TRAINER_STATE).is_file()
