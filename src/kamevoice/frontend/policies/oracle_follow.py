"""Oracle following: a decoding policy that nudges the inner monologue to say its oracle's next token.

A KAME front-end learns to say what its oracle says; a small one learns it
imperfectly. Measured on KAME-tiny (`kamevoice eval tiny`, greedy text): where
the oracle held the right fact, the model still said the wrong kind of sentence
in 10 of 26 price questions ("The product code of ..." with the oracle's
"The pink canyon pillow costs ..." read 0.5 s earlier) and scrambled product codes.

The policy keeps, per conversation, the tokens of the current oracle the model
has *read* (never one it has not: the same information the model has), and a
cursor into them: where the model's own words have got to. Each step:

1. If the model is about to say a word piece (its top text token is neither PAD
   nor end-of-padding, so the policy never changes *when* the model speaks),
   the oracle token at the cursor gets `bias` added to its logit. With greedy
   text and a large bias, the model says the oracle's words in the oracle's order.
2. After the step, the piece the model said moves the cursor: one on when it is
   the expected one or a substitute for it ("six" for "seven"); to just after
   the longest run of the model's last pieces found in the oracle when that run
   is at least `MIN_RESYNC` pieces long (the model skipped or repeated words).

Alignment starts from what the model has said: an opener ("Let me see.") said
before the oracle arrived lines up at the oracle's first match of its last
piece ("."), so the model goes on with the oracle's content, not its opener.
A new oracle (its start id) resets the cursor.

`bias` 0 turns the policy off (the default: a checkpoint trained to follow its
oracle may not need it; KAME-tiny's config.json asks for it). One policy object
serves all slots of a batch; its state is per slot and reset with the slot.
"""

from __future__ import annotations

from collections import deque
from collections.abc import Sequence
from dataclasses import dataclass, field

import torch

from kamevoice.frontend.policies import DecodingPolicy
from kamevoice.oracle.ids import TextIds

# Pieces of the model's speech compared with the oracle when lining them up.
MATCH_MAX = 4
# A realignment away from the cursor needs this many pieces in agreement: one common
# piece ("the", "in") found later in the oracle would skip the words between.
MIN_RESYNC = 2


@dataclass
class FollowState:
    """One conversation's view of its oracle."""

    oracle: list[int] = field(default_factory=list)  # pieces of the current oracle, as read
    said: deque = field(default_factory=lambda: deque(maxlen=MATCH_MAX))  # the model's last pieces
    cursor: int | None = None  # index in `oracle` of the piece expected next; None: not aligned yet
    nudged: int = 0  # steps whose logits got the bias (for the event log and tests)


def _longest_match(oracle: list[int], said: list[int], start: int) -> tuple[int, int]:
    """(length, end) of the longest suffix of `said` found in `oracle` ending at or after `start`
    (`end`: index just after the match); the earliest end wins a tie; (0, -1) when none."""
    for length in range(min(len(said), MATCH_MAX), 0, -1):
        tail = said[-length:]
        for end in range(max(start, length), len(oracle) + 1):
            if oracle[end - length : end] == tail:
                return length, end
    return 0, -1


class OracleFollower(DecodingPolicy):
    """The policy for a batch of `batch_size` conversations (see module doc)."""

    def __init__(self, batch_size: int, bias: float, ids: TextIds):
        self.bias = float(bias)
        self.ids = ids
        self.states = [FollowState() for _ in range(batch_size)]

    @property
    def enabled(self) -> bool:
        return self.bias > 0

    def reset(self, slot: int) -> None:
        self.states[slot] = FollowState()

    def read_oracle(self, slot: int, step: int, oracle_id: int) -> None:
        state = self.states[slot]
        if oracle_id == self.ids.start:
            state.oracle, state.cursor = [], None
        elif oracle_id != self.ids.pad and oracle_id >= 0:
            state.oracle.append(oracle_id)
            _align(state)

    def expected(self, slot: int) -> int | None:
        """The oracle piece the model should say next, if it is aligned and the oracle has it."""
        state = self.states[slot]
        if state.cursor is None or state.cursor >= len(state.oracle):
            return None
        return state.oracle[state.cursor]

    def on_text_logits(self, logits: torch.Tensor, slots: Sequence[int]) -> None:
        """Add the bias, in place, to each live row's expected piece. `logits`: [rows, card]."""
        if not self.enabled:
            return
        top = logits.argmax(dim=-1).tolist()
        for row, slot in enumerate(slots):
            if slot < 0 or top[row] in self.ids.timing:
                continue
            piece = self.expected(slot)
            if piece is not None and piece < logits.shape[-1]:
                logits[row, piece] += self.bias
                self.states[slot].nudged += 1

    def on_text_tokens(self, tokens: torch.Tensor, slots: Sequence[int]) -> None:
        pieces = tokens.tolist()
        for row, slot in enumerate(slots):
            if slot >= 0:
                self.said(slot, pieces[row])

    def said(self, slot: int, piece: int) -> None:
        """The text token the model produced (timing ids are ignored): moves the cursor."""
        if piece in self.ids.timing or piece < 0:
            return
        state = self.states[slot]
        state.said.append(piece)
        if state.cursor is None:
            _align(state)
            return
        if state.cursor >= len(state.oracle):
            return
        if state.oracle[state.cursor] == piece:
            state.cursor += 1
            return
        length, end = _longest_match(state.oracle, list(state.said), state.cursor)
        state.cursor = end if length >= MIN_RESYNC else state.cursor + 1


def _align(state: FollowState) -> None:
    """Set the cursor of an unaligned state after the oracle's first run of the model's last pieces."""
    if state.cursor is None and state.said and state.oracle:
        length, end = _longest_match(state.oracle, list(state.said), 0)
        if length:
            state.cursor = end
