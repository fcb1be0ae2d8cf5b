"""Tiny shard directories and configs for training tests (no codec needed: tokens written directly)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np

from kamevoice.data.align import TokenizedOracle
from kamevoice.data.shards import Example, ShardWriter
from kamevoice.train.config import TrainConfig, parse_train_config
from tests.frontend.helpers import SMALL_TEST_LM

# The small test LM with Mimi's 2048-entry codebooks, so shards encoded by a (reduced) Mimi fit it.
TRAIN_TEST_LM: dict[str, Any] = {**SMALL_TEST_LM, "card": 2048}
K = TRAIN_TEST_LM["dep_q"]  # codebooks per speaker
PAD = 3


def write_random_shards(
    out: Path, items: int, frames: int | list[int], seed: int, vocab: int = 150, per_shard: int = 3
) -> Path:
    """Random dialogues: sparse text (mostly PAD), random audio tokens, two oracle events each."""
    rng = np.random.default_rng(seed)
    writer = ShardWriter(out, per_shard=per_shard)
    lengths = frames if isinstance(frames, list) else [frames] * items
    for i, n in enumerate(lengths):
        text = np.full(n, PAD, dtype=np.int32)
        words = rng.choice(n, size=max(1, n // 4), replace=False)
        text[words] = rng.integers(4, vocab, size=len(words))
        first = int(rng.integers(1, max(2, n // 3)))
        oracles = [
            TokenizedOracle(first, tuple(int(t) for t in rng.integers(4, vocab, size=6)), 0),
            TokenizedOracle(first + 5, tuple(int(t) for t in rng.integers(4, vocab, size=4)), 0),
        ]
        writer.add(
            Example(
                f"item{i:03d}",
                text,
                rng.integers(0, TRAIN_TEST_LM["card"], size=(K, n)).astype(np.int16),
                rng.integers(0, TRAIN_TEST_LM["card"], size=(K, n)).astype(np.int16),
                oracles,
            )
        )
    writer.flush()
    return out


def tiny_config(
    run_dir: Path, train: Path, tokenizer: Path, valid: Path | None = None, **sections: dict[str, Any]
) -> TrainConfig:
    """A from-scratch config for the test LM with a larger lr (sections override per key)."""
    raw: dict[str, Any] = {
        "model": {"lm_kwargs": dict(TRAIN_TEST_LM), "tokenizer": str(tokenizer), "init_seed": 0},
        "data": {
            "train": [str(train)],
            "valid": [str(valid)] if valid else [],
            "seq_len": 24,
            "augment": True,
            "valid_samples": 4,
        },
        "optim": {"lr": 3e-3, "warmup_steps": 2, "batch_size": 4, "micro_batch": 2},
        "run": {
            "out_dir": str(run_dir),
            "steps": 6,
            "device": "cpu",
            "log_every": 1,
            "eval_every": 0,
            "save_every": 0,
            "progress": False,
        },
    }
    for name, values in sections.items():
        raw.setdefault(name, {}).update(values)
    return parse_train_config(raw, "test config")
