"""Silence on demand: make one conversation's front-end silent from its next step until released.

A client may tell the front-end to stop talking at once (the Realtime door's `response.cancel`
and `conversation.item.truncate`, or a session that only speaks when asked). As with the
evaluation's forced delay (`kamevoice.frontend.policies.silence`), the model's own outputs are
forced, not hidden: while a slot is silenced, every inner-monologue token it draws is replaced
by PAD and every audio token by the codec's code for silence, before they enter the model's
context. The model therefore really has been silent (it conditions on that) while the user's
audio and the oracle keep flowing in, and it can speak again as soon as it is released.

Everything drawn from the step after `set(slot, True)` is forced, whichever audio frame a
codebook belongs to (the acoustic delays put the last frames of a word in flight across one or
two steps): "at once" wins over a clean last frame, which nobody hears (the door drops it).

Thread model: `set` is called from the asyncio thread, the hooks run on the engine thread.
The state is one set of silenced slots; adding, removing and testing membership are atomic in
CPython, so no lock is needed, as with the slots' oracle inboxes. A slot's state is cleared when
the slot starts a new conversation (`reset`); a conversation only switches its own slot while it
holds it (`EngineStream.set_silent` ignores a stream that has left).
"""

from __future__ import annotations

from collections.abc import Sequence

import torch

from kamevoice.frontend.policies import DecodingPolicy
from kamevoice.frontend.policies.silence import silence_codes


class SilenceOnDemand(DecodingPolicy):
    """A forcing policy: silent text and audio for the slots switched on (see module doc).

    `silence` is the codec's code of a silent frame per codebook (`silence_codes`),
    `text_pad_id` the text vocabulary's PAD.
    """

    def __init__(self, silence: torch.Tensor, text_pad_id: int):
        self.silence = silence
        self.text_pad_id = text_pad_id
        self.forced_steps = 0  # slot-steps forced so far (for tests and the benchmarks)
        self._silent: set[int] = set()

    @classmethod
    def for_model(cls, model, codec) -> SilenceOnDemand:
        """A policy for a loaded model and its codec (encodes a moment of silence once)."""
        return cls(silence_codes(codec, model.dep_q), model.text_ids.pad)

    def set(self, slot: int, silent: bool) -> None:
        """Silence `slot` from its next step on, or release it (any thread)."""
        if silent:
            self._silent.add(slot)
        else:
            self._silent.discard(slot)

    def is_silent(self, slot: int) -> bool:
        """Whether `slot` is silenced now."""
        return slot in self._silent

    def reset(self, slot: int) -> None:
        self._silent.discard(slot)

    def on_text_tokens(self, tokens: torch.Tensor, slots: Sequence[int]) -> None:
        if not self._silent:
            return
        for row, slot in enumerate(slots):
            if slot >= 0 and slot in self._silent:
                tokens[row] = self.text_pad_id
                self.forced_steps += 1

    def on_audio_tokens(self, tokens: torch.Tensor, slots: Sequence[int]) -> None:
        if not self._silent:
            return
        silence = None
        for row, slot in enumerate(slots):
            if slot >= 0 and slot in self._silent:
                if silence is None:
                    silence = self.silence.to(tokens.device, tokens.dtype)
                tokens[row] = silence[: tokens.shape[1]]
