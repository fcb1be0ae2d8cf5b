"""Fixtures of the training tests: a tokenizer and small shard directories, built once per session."""

from __future__ import annotations

import pytest

from tests.train.helpers import write_random_shards


@pytest.fixture(scope="session")
def shards(tmp_path_factory):
    """Train (8 dialogues of 20-40 frames) and valid (4 of 24) shard directories of random tokens."""
    root = tmp_path_factory.mktemp("train_shards")
    train = write_random_shards(root / "train", 8, [30, 20, 40, 26, 30, 30, 22, 35], seed=0)
    valid = write_random_shards(root / "valid", 4, 24, seed=1)
    return train, valid
