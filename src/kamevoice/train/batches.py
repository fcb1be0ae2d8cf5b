"""Deterministic batches from shard directories: which samples a step takes, and on which rank.

The data position is two integers, (epoch, index): `index` counts samples
already taken from that epoch's seeded permutation. Optimiser step s takes
the next `batch_size` samples (running into the next epoch when one ends);
rank r of w takes its contiguous slice of them, split again into
micro-batches. So the samples of a step, and the split, are a pure function
of (seed, position, batch_size, world size): a resumed run and a run on a
different number of processes see exactly the same global batches.
"""

from __future__ import annotations

import random
from dataclasses import dataclass
from pathlib import Path

import torch

from kamevoice.data.augment import NO_AUGMENT, AugmentOptions
from kamevoice.data.copy_episodes import CopyEpisodes
from kamevoice.data.shards import SampleOptions, ShardDataset
from kamevoice.errors import ConfigError
from kamevoice.oracle.ids import TextIds

# Fill value of frames past the end of a shorter sample in a batch: Moshi's zero token, which
# embeds to 0 and is masked out of every loss term.
PAD_FRAME = -1


@dataclass(frozen=True)
class DataPosition:
    """Where the data stream stands: samples already taken from epoch `epoch`'s order."""

    epoch: int = 0
    index: int = 0


class ShardMix:
    """Several shard directories seen as one indexable dataset, with a seeded order per epoch."""

    def __init__(self, dirs: list[str | Path], oracle_ids: TextIds, options: SampleOptions, seed: int):
        if not dirs:
            raise ConfigError("no shard directories given")
        self.parts = [ShardDataset(d, oracle_ids, options) for d in dirs]
        self.offsets = [0]
        for part in self.parts:
            self.offsets.append(self.offsets[-1] + len(part))
        self.seed = seed
        self._orders: dict[int, list[int]] = {}

    def __len__(self) -> int:
        return self.offsets[-1]

    def sample(self, index: int, epoch: int) -> dict[str, torch.Tensor]:
        """Sample `index` (global) of `epoch`: `codes [K, T]`, `oracle [T]` (see `ShardDataset.sample`)."""
        for k, part in enumerate(self.parts):
            if index < self.offsets[k + 1]:
                return part.sample(index - self.offsets[k], epoch)
        raise IndexError(index)

    def order(self, epoch: int) -> list[int]:
        """The seeded permutation of all samples for `epoch` (cached)."""
        if epoch not in self._orders:
            order = list(range(len(self)))
            random.Random(f"{self.seed}/mix-order/{epoch}").shuffle(order)
            self._orders = {epoch: order}  # only the current epoch is kept
        return self._orders[epoch]

    def take(self, position: DataPosition, count: int) -> tuple[list[tuple[int, int]], DataPosition]:
        """The next `count` (epoch, sample index) pairs from `position`, and the position after them."""
        picks = []
        epoch, index = position.epoch, position.index
        while len(picks) < count:
            if index >= len(self):
                epoch, index = epoch + 1, 0
            picks.append((epoch, self.order(epoch)[index]))
            index += 1
        return picks, DataPosition(epoch, index)


def sample_options(seq_len: int | None, dep_q: int, augment: bool, seed: int) -> SampleOptions:
    """`SampleOptions` for an LM with `dep_q` audio codebooks per speaker."""
    return SampleOptions(
        seq_len=seq_len,
        audio_codebooks=dep_q,
        augment=AugmentOptions() if augment else NO_AUGMENT,
        seed=seed,
    )


def rank_slice(picks: list, rank: int, world: int) -> list:
    """Rank `rank`'s contiguous share of a global batch (the batch must divide evenly)."""
    if len(picks) % world:
        raise ConfigError(f"global batch {len(picks)} does not split over {world} processes")
    per = len(picks) // world
    return picks[rank * per : (rank + 1) * per]


def micro_batches(picks: list, size: int) -> list[list]:
    """Consecutive chunks of at most `size`."""
    return [picks[i : i + size] for i in range(0, len(picks), size)]


def collate(
    samples: list[dict[str, torch.Tensor]], oracle_pad: int, target_delays: list[int]
) -> tuple[torch.Tensor, torch.Tensor]:
    """Stack samples of possibly different lengths: `codes [B, K, T]` and `oracle [B, T]`.

    Frames past a sample's end get the zero token -1 in `codes` (no input, no target) and PAD in
    `oracle`; they come after every real frame, so causality keeps them out of real predictions.
    One more rule makes a padded sample count exactly the targets it has alone: a stream delayed
    by d frames has its last d tokens predicted past the sample's end, where the sample alone has
    no prediction at all (`LMOutput`'s mask); those tokens are set to -1 too. They are inputs only
    to predictions of frames past the end, so nothing else changes.

    Args:
        target_delays: the delays of the predicted streams (text + the model's audio, `1 + dep_q`).
    """
    T = max(s["codes"].shape[-1] for s in samples)
    K = samples[0]["codes"].shape[0]
    codes = torch.full((len(samples), K, T), PAD_FRAME, dtype=torch.long)
    oracle = torch.full((len(samples), T), oracle_pad, dtype=torch.long)
    for i, s in enumerate(samples):
        n = s["codes"].shape[-1]
        codes[i, :, :n] = s["codes"]
        oracle[i, :n] = s["oracle"]
        if n < T:
            for k, delay in enumerate(target_delays):
                if delay > 0:
                    codes[i, k, max(0, n - delay) : n] = PAD_FRAME
    return codes, oracle


def load_batch(
    mix: ShardMix | CopyEpisodes, picks: list[tuple[int, int]], oracle_pad: int, target_delays: list[int]
) -> tuple[torch.Tensor, torch.Tensor]:
    """Read and collate the samples `picks` ((epoch, index) pairs) of shards or copy episodes."""
    return collate([mix.sample(index, epoch) for epoch, index in picks], oracle_pad, target_delays)
