"""Oracle following: the inner monologue is nudged toward the oracle's next piece, and only then."""

from __future__ import annotations

import random

import torch

from kamevoice.frontend.generator import BatchedGenerator
from kamevoice.frontend.policies.oracle_follow import OracleFollower
from kamevoice.frontend.sampling import SamplingOptions
from kamevoice.oracle.ids import TextIds
from tests.frontend.helpers import small_lm

START, PAD, EPAD = 1000, 3, 0
CARD = 64
# Pieces of "Let me check . The pink canyon pillow costs two hundred dollars ." as ids.
LET, ME, CHECK, DOT, THE, PINK, CANYON, PILLOW, COSTS, TWO, HUNDRED, DOLLARS = range(10, 22)
ORACLE = [LET, ME, CHECK, DOT, THE, PINK, CANYON, PILLOW, COSTS, TWO, HUNDRED, DOLLARS, DOT]
SEE, PRODUCT, SIX = 30, 31, 32


IDS = TextIds(pad=PAD, end_of_padding=EPAD, start=START)


def _follower(bias: float = 5.0) -> OracleFollower:
    return OracleFollower(2, bias, IDS)


def _read(f: OracleFollower, ids, slot: int = 0) -> None:
    f.read_oracle(slot, 0, START)
    for step, i in enumerate(ids, start=1):
        f.read_oracle(slot, step, i)


def _logits(top: int, rows: int = 2) -> torch.Tensor:
    logits = torch.zeros(rows, CARD)
    logits[:, top] = 3.0
    return logits


def test_an_opener_said_before_the_oracle_lines_up_with_the_oracles_content():
    f = _follower()
    for piece in (LET, ME, SEE, DOT):  # "Let me see." before any oracle
        f.said(0, piece)
    assert f.expected(0) is None  # nothing read yet
    _read(f, ORACLE[:6])
    assert f.expected(0) == THE  # after the oracle's ".": its content, not its opener


def test_the_model_is_nudged_to_the_oracles_next_piece_only_when_it_speaks():
    f = _follower(bias=5.0)
    _read(f, ORACLE)
    for piece in (LET, ME, CHECK, DOT, THE):
        f.said(0, piece)
    logits = _logits(PRODUCT)
    f.on_text_logits(logits, [0])
    assert logits[0].argmax() == PINK and logits[0, PINK] == 5.0  # in place
    for timing in (PAD, EPAD):  # the model chose to wait or to end a word: untouched
        logits = _logits(timing)
        f.on_text_logits(logits, [0])
        assert logits[0].argmax() == timing and logits[0, PINK] == 0
    logits = _logits(PRODUCT)
    f.on_text_logits(logits, [1])  # slot 1 has no oracle: untouched, and slot 0 is not listed
    assert logits[0].argmax() == PRODUCT and logits[1].argmax() == PRODUCT
    assert f.states[0].nudged == 1 and f.states[1].nudged == 0


def test_a_piece_not_yet_read_is_never_expected():
    f = _follower()
    _read(f, ORACLE[:5])  # up to "The"
    for piece in (LET, ME, CHECK, DOT, THE):
        f.said(0, piece)
    assert f.expected(0) is None
    f.read_oracle(0, 6, PINK)
    assert f.expected(0) == PINK


def test_a_substitute_moves_the_cursor_on_and_a_skip_realigns_on_two_pieces():
    f = _follower()
    _read(f, ORACLE)
    for piece in (DOT, THE, PINK, CANYON, PILLOW, COSTS):
        f.said(0, piece)
    f.said(0, SIX)  # said instead of "two"
    assert f.expected(0) == HUNDRED
    g = _follower()
    _read(g, ORACLE)
    for piece in (DOT, THE, PINK):
        g.said(0, piece)
    g.said(0, COSTS)  # skipped "canyon pillow": one piece is not enough to jump ...
    assert g.expected(0) == PILLOW
    g.said(0, TWO)  # ... two in agreement ("costs two") are
    assert g.expected(0) == HUNDRED


def test_a_new_oracle_resets_the_cursor_and_the_end_of_one_stops_the_nudge():
    f = _follower()
    _read(f, ORACLE)
    for piece in ORACLE:
        f.said(0, piece)
    assert f.expected(0) is None  # said it all
    _read(f, [THE, PINK, CANYON])  # a newer oracle
    assert f.states[0].oracle == [THE, PINK, CANYON]
    assert f.expected(0) is None  # the last piece said (".") is not in it: not aligned
    f.said(0, THE)
    assert f.expected(0) == PINK


def test_expected_has_no_side_effects():
    f = _follower()
    _read(f, ORACLE)
    f.said(0, DOT)
    before = (f.states[0].cursor, list(f.states[0].oracle))
    assert f.expected(0) == f.expected(0) == THE
    assert (f.states[0].cursor, list(f.states[0].oracle)) == before


def test_bias_zero_is_off():
    f = _follower(bias=0.0)
    _read(f, ORACLE)
    f.said(0, DOT)
    logits = _logits(PRODUCT)
    f.on_text_logits(logits, [0])
    assert not f.enabled and logits[0].argmax() == PRODUCT


class _RecordingFollower(OracleFollower):
    """The policy, noting at each step what it expected of the one slot and what the model preferred."""

    def __init__(self, bias: float, ids: TextIds):
        super().__init__(1, bias, ids)
        self.steps: list[tuple[int, int | None]] = []

    def on_text_logits(self, logits, slots):
        self.steps.append((int(logits[0].argmax()), self.expected(0)))
        super().on_text_logits(logits, slots)


@torch.no_grad()
def test_a_streaming_model_with_a_large_bias_says_its_oracle_in_order():
    """Random weights say arbitrary pieces; the oracle is every word piece of the vocabulary,
    shuffled, so the model soon says one of them and lines up. From then on, whenever the model
    would speak and the oracle's next piece has been read, it says that piece. Without the
    policy's bias it hardly ever does."""
    model = small_lm()
    pieces = [i for i in range(model.text_card) if i not in (PAD, EPAD)]
    random.Random(0).shuffle(pieces)

    def run(bias: float) -> tuple[int, int]:
        follower = _RecordingFollower(bias, model.text_ids)
        gen = BatchedGenerator(model, 1, SamplingOptions(greedy=True), policies=[follower])
        said = []
        with gen:
            handle = gen.start()
            gen.begin_oracle(handle)
            gen.feed_oracle(handle, pieces)
            for _ in range(60):
                said.append(int(gen.step(torch.zeros(1, model.n_q - model.dep_q, dtype=torch.long)).text[0]))
        chances = [(s, e) for s, (top, e) in zip(said, follower.steps, strict=True)
                   if e is not None and top not in (PAD, EPAD)]  # fmt: skip
        return sum(s == e for s, e in chances), len(chances)

    followed, chances = run(1e4)
    assert chances >= 10 and followed == chances
    followed_off, chances_off = run(1e-6)  # the policy runs, but its bias changes no choice
    assert chances_off >= 10 and followed_off <= 2
