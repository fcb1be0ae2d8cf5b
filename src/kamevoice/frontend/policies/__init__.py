"""Decoding policies: small objects that act on each step of the batched generator.

A front-end samples its inner-monologue text token, then its audio tokens, once
per 80 ms step. A decoding policy may change how: `OracleFollower` nudges the text
logits toward the oracle's next piece; `SilenceForcer` makes the model silent in
given windows (the evaluation's forced delay); `SilenceOnDemand` (`on_demand.py`) makes one
conversation silent until released (a client's cancel). The generator runs a list of them
through one protocol, in list order, at fixed points of every step:

1. `read_oracle(slot, step, oracle_id)`: per active slot, the oracle id its model
   reads at this step (and the slot's step index since it started);
2. `on_text_logits(logits, slots)`: `[rows, text_card]` text logits before the token is
   drawn; a policy may edit them in place;
3. `on_text_tokens(tokens, slots)`: `[rows]` the drawn text tokens, before they enter the
   model's context and the depth transformer; a forcing policy may overwrite them in
   place, every other policy only observes (so a forcing policy goes first);
4. `on_audio_tokens(tokens, slots)`: `[rows, dep_q]` the drawn audio tokens, likewise;

and `reset(slot)` when a slot starts a new conversation. Tensors are indexed by the
batch's rows; `slots[row]` is the conversation (slot) in each row, -1 for an idle
row (rows move when the batch is resized; slots never do). Policies keep per-slot
state and never touch the generator: only `kamevoice.frontend.generator` attaches
to moshi's hooks.
"""

from __future__ import annotations

from collections.abc import Sequence

import torch


class DecodingPolicy:
    """The protocol, with every hook a no-op: a policy overrides what it needs."""

    def reset(self, slot: int) -> None:
        """A new conversation in `slot`."""

    def read_oracle(self, slot: int, step: int, oracle_id: int) -> None:
        """The oracle id `slot` reads at its step `step`."""

    def on_text_logits(self, logits: torch.Tensor, slots: Sequence[int]) -> None:
        """`[rows, text_card]` logits before the text token is drawn (edit in place to act)."""

    def on_text_tokens(self, tokens: torch.Tensor, slots: Sequence[int]) -> None:
        """`[rows]` drawn text tokens before they enter the context (forcing policies may overwrite)."""

    def on_audio_tokens(self, tokens: torch.Tensor, slots: Sequence[int]) -> None:
        """`[rows, dep_q]` drawn audio tokens before they enter the context (likewise)."""
