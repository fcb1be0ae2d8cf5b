"""`kamevoice train CONFIG` end to end on shards encoded by a (reduced, random) Mimi, then `train plot`.

The run starts from a published-layout checkpoint, fine-tunes with LoRA,
validates with the oracle on and off, and writes a checkpoint that
`load_frontend` loads back, codec included.
"""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch

from kamevoice.cli import main
from kamevoice.data.align import AlignSettings
from kamevoice.data.shard_build import build_shards
from kamevoice.frontend.loading import load_frontend
from kamevoice.train.logging import read_log
from tests.data.helpers import write_finetune_item
from tests.frontend.helpers import save_codec_checkpoint
from tests.train.helpers import TRAIN_TEST_LM


@pytest.fixture(scope="module")
def mimi_checkpoint(tmp_path_factory):
    """A published-layout checkpoint: the test LM with 2048-entry codebooks and a reduced 2-codebook Mimi."""
    from kamevoice.frontend.checkpoint import build_lm
    from tests.conftest import train_spm

    root = tmp_path_factory.mktemp("mimi_ckpt")
    torch.manual_seed(0)
    return save_codec_checkpoint(
        root, train_spm(root / "tok.model"), model=build_lm(dict(TRAIN_TEST_LM)), lm_kwargs=TRAIN_TEST_LM
    )


def test_train_command_end_to_end_then_plot(tmp_path, mimi_checkpoint):
    rng = np.random.default_rng(0)
    data = tmp_path / "data"
    for i in range(3):
        write_finetune_item(data, f"item{i}", 3.0, 24000, rng, event_times_ms=(500,))
    shards = tmp_path / "shards"
    b = AlignSettings(speaker="B")  # the test dialogues' oracle events are for speaker B
    summary = build_shards(data, shards, str(mimi_checkpoint), align=b, per_shard=2, progress=False)
    assert summary.items == 3 and summary.oracle_events == 3

    run = tmp_path / "run"
    config = tmp_path / "train.toml"
    config.write_text(
        f"""
[model]
checkpoint = "{mimi_checkpoint}"

[finetune]
mode = "lora"
lora_rank = 4

[data]
train = ["{shards}"]
valid = ["{shards}"]
seq_len = 32
valid_samples = 2

[optim]
lr = 3e-3
warmup_steps = 1
batch_size = 2

[run]
out_dir = "{run}"
steps = 3
device = "cpu"
log_every = 1
eval_every = 3
progress = false
"""
    )
    assert main(["train", str(config)]) == 0
    records = read_log(run)
    train_records = [r for r in records if r["kind"] == "train"]
    assert [r["step"] for r in train_records] == [1, 2, 3]
    for key in ("loss/text_non_pad", "loss/text_pad", "loss/semantic", "loss/acoustic", "acc/semantic"):
        assert key in train_records[0]
    assert all(r["frames_per_s"] > 0 and r["mem_mb"] > 0 for r in train_records)
    (valid,) = [r for r in records if r["kind"] == "valid"]
    assert valid["on/loss"] > 0 and valid["off/loss"] > 0 and "oracle_gain" in valid

    ckpt = run / "checkpoints" / "step-000003"
    frontend = load_frontend(ckpt, device="cpu")
    assert frontend.codec is not None and frontend.model.card == 2048
    cfg = json.loads((ckpt / "config.json").read_text())
    assert cfg["kamevoice"]["train_step"] == 3 and "gradient_checkpointing" not in cfg
    # LoRA merged on export: plain Moshi key names only; the oracle table trained in full.
    state = frontend.model.state_dict()
    assert not any("lora" in k or "frozen_W" in k for k in state)
    base = load_frontend(mimi_checkpoint, device="cpu", load_codec=False).model.state_dict()
    assert not torch.equal(state["oracle_emb.weight"], base["oracle_emb.weight"])
    assert torch.equal(state["emb.0.weight"], base["emb.0.weight"])  # embeddings: not adapted, frozen
    changed = [k for k in state if k.startswith("transformer.") and not torch.equal(state[k], base[k])]
    assert changed  # adapters merged into the temporal transformer

    assert main(["train", "plot", str(run)]) == 0
    png = run / "loss.png"
    assert png.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n" and png.stat().st_size > 10_000
