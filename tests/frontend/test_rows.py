"""Batches that follow the live conversations: the row count grows and shrinks, and a conversation
that goes on across a resize produces exactly what it produces alone (model and codecs)."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from kamevoice.frontend.generator import BatchedGenerator
from kamevoice.frontend.rows import SHRINK_AFTER_STEPS, carry_rows, rows_for
from kamevoice.frontend.sampling import SamplingOptions
from tests.frontend.helpers import make_test_codec, small_lm

GREEDY = SamplingOptions(greedy=True)


@pytest.fixture(scope="module")
def model():
    return small_lm()


def test_rows_for_is_the_next_power_of_two_within_the_capacity():
    assert [rows_for(n, 16) for n in (0, 1, 2, 3, 4, 5, 9, 16)] == [1, 1, 2, 4, 4, 8, 16, 16]
    assert rows_for(5, 6) == 6 and rows_for(7, 6) == 6


def _codes(model, steps, seed):
    g = torch.Generator().manual_seed(seed)
    return torch.randint(0, model.card, (steps, model.n_q - model.dep_q), generator=g)


@torch.no_grad()
def test_a_conversation_goes_on_bit_for_bit_while_others_join_and_leave(model):
    steps = 30 + 2 * SHRINK_AFTER_STEPS
    user = _codes(model, steps, 1)
    oracle = list(range(10, 40))

    def run(capacity: int, others: bool) -> tuple[list[tuple[int, tuple]], list[int]]:
        said, rows = [], []
        with BatchedGenerator(model, capacity, GREEDY) as gen:
            me = gen.start()
            gen.begin_oracle(me)
            gen.feed_oracle(me, oracle)
            guests = []
            for s in range(steps):
                if others and s in (3, 4, 6):  # three guests: the batch grows 1 -> 2 -> 4
                    guests.append(gen.start())
                if others and s == 12:  # all leave: it shrinks back after SHRINK_AFTER_STEPS
                    for g in guests:
                        gen.stop(g)
                codes = torch.zeros(capacity, model.n_q - model.dep_q, dtype=torch.long)
                codes[me.slot] = user[s]
                for g in guests:
                    if gen.is_current(g):
                        codes[g.slot] = user[(s * 7) % steps]
                out = gen.step(codes)
                said.append((int(out.text[me.slot]), tuple(out.frame_tokens[me.slot].tolist())))
                rows.append(gen.rows)
        return said, rows

    alone, alone_rows = run(1, others=False)
    crowded, crowded_rows = run(8, others=True)
    assert crowded == alone
    assert set(alone_rows) == {1}
    assert crowded_rows[2] == 1 and crowded_rows[3] == 2 and crowded_rows[6] == 4  # grows as they join
    assert 4 in crowded_rows[12 : 12 + SHRINK_AFTER_STEPS - 1]  # not at once: they may come back
    assert crowded_rows[-1] == 1  # one live conversation: one row


def test_carry_rows_moves_every_tensor_along_its_batch_dimension():
    class State:
        def __init__(self, b):
            self.cache = torch.arange(2 * b * 3).reshape(2, b, 3).float() if b == 4 else torch.zeros(2, b, 3)
            self.offset = torch.arange(b) if b == 4 else torch.zeros(b, dtype=torch.long)
            self.shared = torch.tensor([7.0]) if b == 4 else torch.zeros(1)
            self.counter = 5 if b == 4 else 0

    old, new = State(4), State(2)
    carry_rows({"s": old}, {"s": new}, [(3, 0), (1, 1)])
    assert torch.equal(new.cache, old.cache[:, [3, 1]])
    assert new.offset.tolist() == [3, 1] and new.shared.item() == 7.0 and new.counter == 5


@pytest.mark.parametrize("codec_kind", ["codec2", "mimi"])
def test_codecs_carry_their_rows_across_a_resize(codec_kind):
    if codec_kind == "codec2":
        from kamevoice.frontend.codec2 import Codec2Codec

        codec = Codec2Codec()
    else:
        codec, _ = make_test_codec(num_codebooks=2, bins=32)
    rng = np.random.default_rng(0)
    frames = [
        torch.from_numpy(rng.uniform(-0.3, 0.3, (1, 1, codec.frame_size)).astype(np.float32))
        for _ in range(8)
    ]
    codes = [
        torch.randint(
            0, codec.cardinality, (1, codec.num_codebooks), generator=torch.Generator().manual_seed(i)
        )
        for i in range(8)
    ]

    def run(moving: bool) -> list[torch.Tensor]:
        out = []
        with codec.streaming(1):
            for i, (f, c) in enumerate(zip(frames, codes, strict=True)):
                if moving and i in (3, 6):
                    codec.resize(4, [(0, 2)]) if i == 3 else codec.resize(1, [(2, 0)])  # row 0 -> 2 -> 0
                rows = 4 if moving and 3 <= i < 6 else 1
                row = 2 if rows == 4 else 0
                pcm = torch.zeros(rows, 1, codec.frame_size)
                pcm[row] = f[0]
                tokens = torch.zeros(rows, codec.num_codebooks, dtype=torch.long)
                tokens[row] = c[0]
                out += [codec.encode_frame(pcm)[row], codec.decode_frame(tokens)[row]]
        return out

    # Codec 2 runs row by row: exact. Mimi's convolutions round differently in a batch of 4 than of
    # 1 (about 1e-7, with or without a resize), so its decoded audio is compared to that tolerance.
    for a, b in zip(run(False), run(True), strict=True):
        if a.is_floating_point() and codec_kind == "mimi":
            torch.testing.assert_close(a, b, rtol=0, atol=1e-6)
        else:
            assert torch.equal(a, b)
