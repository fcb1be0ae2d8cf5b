"""Two CPU processes (gloo, loopback) train exactly like one process with the same global batch.

DDP and FSDP (fp32 on the CPU; bf16 mixed precision is the GPU setting) are
each compared with a single-process run: loss curve and weights after N
steps agree within a tight tolerance (only the order of float additions differs).
"""

from __future__ import annotations

import os
import socket

import pytest
import torch
import torch.multiprocessing as mp
from safetensors.torch import load_file

from kamevoice.train.logging import read_log
from kamevoice.train.loop import train
from tests.train.helpers import tiny_config

WORLD = 2
# Float sums in another order (per-rank halves, then an all-reduce): agreement to ~1e-6 relative.
RTOL, ATOL = 1e-5, 1e-6


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _worker(rank: int, world: int, port: int, config) -> None:
    os.environ.update(
        RANK=str(rank),
        WORLD_SIZE=str(world),
        LOCAL_RANK=str(rank),
        MASTER_ADDR="127.0.0.1",
        MASTER_PORT=str(port),
    )
    torch.set_num_threads(1)
    train(config)


def _weights(run_dir):
    ckpt = sorted((run_dir / "checkpoints").iterdir())[-1]
    return load_file(str(ckpt / "model.safetensors"))


def _losses(run_dir):
    return [r["loss"] for r in read_log(run_dir) if r.get("kind") == "train"]


@pytest.mark.parametrize("strategy", ["ddp", "fsdp"])
def test_two_processes_equal_one(tmp_path, shards, spm_path, strategy):
    train_dir, valid_dir = shards
    common = {"steps": 4, "eval_every": 2}
    single = tiny_config(tmp_path / "single", train_dir, spm_path, valid_dir, run=common)
    torch.set_num_threads(1)
    train(single)

    multi = tiny_config(
        tmp_path / "multi", train_dir, spm_path, valid_dir, run={**common, "strategy": strategy}
    )
    mp.spawn(_worker, args=(WORLD, _free_port(), multi), nprocs=WORLD, join=True)

    info = next(r for r in read_log(tmp_path / "multi") if r.get("kind") == "info")
    assert info["strategy"] == strategy and info["world"] == WORLD
    a, b = _losses(tmp_path / "single"), _losses(tmp_path / "multi")
    assert len(a) == len(b) == 4
    torch.testing.assert_close(torch.tensor(b), torch.tensor(a), rtol=RTOL, atol=ATOL)
    assert a[-1] < a[0]  # it does learn
    valid_a = [r["on/loss"] for r in read_log(tmp_path / "single") if r.get("kind") == "valid"]
    valid_b = [r["on/loss"] for r in read_log(tmp_path / "multi") if r.get("kind") == "valid"]
    torch.testing.assert_close(torch.tensor(valid_b), torch.tensor(valid_a), rtol=RTOL, atol=ATOL)
    wa, wb = _weights(tmp_path / "single"), _weights(tmp_path / "multi")
    assert wa.keys() == wb.keys()
    for key in wa:
        torch.testing.assert_close(wb[key], wa[key], rtol=RTOL, atol=1e-5, msg=key)
