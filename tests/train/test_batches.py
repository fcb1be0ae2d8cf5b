"""Batches: a padded sample trains like the sample alone; data order and rank split are deterministic."""

from __future__ import annotations

import torch

from kamevoice.oracle.ids import TextIds
from kamevoice.train.batches import DataPosition, ShardMix, collate, micro_batches, rank_slice, sample_options
from kamevoice.train.losses import loss_terms
from tests.frontend.helpers import small_lm

PAD = 3


def _sample(model, frames: int, seed: int) -> dict[str, torch.Tensor]:
    g = torch.Generator().manual_seed(seed)
    codes = torch.randint(0, model.card, (model.num_codebooks, frames), generator=g)
    codes[0] = torch.randint(0, 8, (frames,), generator=g)
    return {"codes": codes, "oracle": torch.randint(0, model.text_card, (frames,), generator=g)}


def test_padded_sample_has_the_targets_and_losses_it_has_alone():
    model = small_lm()  # delays [0, 0, 1, 0, 1]: the acoustic stream is delayed one frame
    short, long = _sample(model, 7, 0), _sample(model, 12, 1)
    delays = list(model.delays[: 1 + model.dep_q])
    with torch.no_grad():
        codes, oracle = collate([short], PAD, delays)
        alone = loss_terms(model(codes, oracle=oracle), codes, PAD)
        codes, oracle = collate([short, long], PAD, delays)
        assert codes[0, 2, 6] == -1 and codes[0, 1, 6] != -1  # last acoustic token: predicted past the end
        together = loss_terms(model(codes[:1], oracle=oracle[:1]), codes[:1], PAD)
    assert torch.equal(alone.counts, together.counts)
    torch.testing.assert_close(alone.sums, together.sums, rtol=1e-5, atol=1e-5)


def test_take_order_and_rank_split_are_deterministic(shards):
    train_dir, _ = shards
    ids = TextIds(pad=PAD, end_of_padding=0, start=160)
    mix = ShardMix([train_dir, train_dir], ids, sample_options(24, 2, True, seed=5), seed=5)
    assert len(mix) == 16
    picks, after = mix.take(DataPosition(0, 12), 6)  # runs into the next epoch
    assert after == DataPosition(1, 2) and [e for e, _ in picks] == [0] * 4 + [1] * 2
    assert picks == mix.take(DataPosition(0, 12), 6)[0]
    assert sorted(mix.order(3)) == list(range(16)) and mix.order(3) != mix.order(4)
    assert rank_slice(picks, 1, 2) == picks[3:] and micro_batches(picks[:3], 2) == [picks[:2], picks[2:3]]
    a, b = mix.sample(3, 1), mix.sample(3, 1)
    assert torch.equal(a["codes"], b["codes"]) and torch.equal(a["oracle"], b["oracle"])
