"""Forced delay: make the front-end emit silence until D seconds after each user turn ends.

The paper traces a latency-quality curve by "forcing the front-end to wait
(emit silence for a fixed delay)". The faithful way is to force the model's
own outputs, not to hide or shift a recording: while forced, every sampled
inner-monologue token is replaced by PAD and every model audio token by the
codec's code for silence, *before* they enter the model's context. The model
therefore really has been silent (it conditions on that), while the user's
audio and the oracle keep flowing in; when the window ends it speaks with all
the oracle it has read by then. Replaying a recorded reply later could not
show the effect the curve is about (more oracle read before speaking).

Window of turn i: from the turn's first word to its last word's end + D
(the model neither talks over the user nor starts before D). Turn times
come from the synthesiser's word timings (ground truth), so the curve
isolates the delay from endpointing errors. `D = 0` is "wait for the end of
the turn"; the unforced KAME system is the free-running reference.

It is a decoding policy (`kamevoice.frontend.policies`): it overwrites the drawn
tokens before they are written into the model's context, so editing them changes
what the model reads back. Step s of a slot is its user frame s.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import torch

from kamevoice.frontend.policies import DecodingPolicy
from kamevoice.runtime.clock import FRAME_SECONDS

# Frames of silence encoded to find the codec's silence codes: enough for the
# encoder's receptive field to see nothing but zeros around the middle frame.
SILENCE_PROBE_FRAMES = 8


@dataclass(frozen=True)
class ForcedWindow:
    """Frames [first, stop) during which the front-end is silent."""

    first: int
    stop: int

    def __contains__(self, frame: int) -> bool:
        return self.first <= frame < self.stop


def forced_windows(turns, delay_s: float) -> list[ForcedWindow]:
    """One window per turn: from the turn's start to its end + `delay_s` (see module doc)."""
    return [
        ForcedWindow(int(t.start / FRAME_SECONDS), round((t.end + delay_s) / FRAME_SECONDS + 0.5))
        for t in turns
    ]


def silence_codes(codec, n_codebooks: int) -> torch.Tensor:
    """The codec's tokens for a frame of digital silence: `[n_codebooks]` int64."""
    zeros = torch.zeros(1, 1, codec.frame_size * SILENCE_PROBE_FRAMES)
    codes = codec.encode(zeros)  # [1, K, frames]
    return codes[0, :n_codebooks, codes.shape[-1] // 2].cpu().long()


class SilenceForcer(DecodingPolicy):
    """A forcing policy: silent text and audio inside `windows` (frames of each slot's own steps).

    Give it to file mode as `run_file(..., policies=[forcer])`; windows apply to every slot, each
    counted from its own start. `silence` is the codec's code of a silent frame per codebook
    (`silence_codes`), `delays` the model's acoustic delays (`model.delays[1 : dep_q + 1]`).
    """

    def __init__(
        self, windows: list[ForcedWindow], silence: torch.Tensor, text_pad_id: int, delays: list[int]
    ):
        self.windows = windows
        self.silence = silence
        self.text_pad_id = text_pad_id
        self.delays = list(delays)
        self.forced_text = 0
        self.forced_audio = 0
        self._step: dict[int, int] = {}

    @classmethod
    def for_frontend(cls, windows: list[ForcedWindow], model, codec) -> SilenceForcer:
        """A forcer for a loaded front-end's model and codec."""
        return cls(
            windows,
            silence_codes(codec, model.dep_q),
            model.text_ids.pad,
            list(model.delays[1 : model.dep_q + 1]),
        )

    def _forced(self, frame: int) -> bool:
        return any(frame in w for w in self.windows)

    def reset(self, slot: int) -> None:
        self._step.pop(slot, None)

    def read_oracle(self, slot: int, step: int, oracle_id: int) -> None:
        self._step[slot] = step

    def on_text_tokens(self, tokens: torch.Tensor, slots: Sequence[int]) -> None:
        for row, slot in enumerate(slots):
            if slot >= 0 and self._forced(self._step[slot]):
                tokens[row] = self.text_pad_id
                self.forced_text += 1

    def on_audio_tokens(self, tokens: torch.Tensor, slots: Sequence[int]) -> None:
        silence = self.silence.to(tokens.device)
        for row, slot in enumerate(slots):
            if slot < 0:
                continue
            # Codebook k sampled at step s belongs to audio frame s - delay_k.
            for k, delay in enumerate(self.delays):
                if self._forced(self._step[slot] - delay):
                    tokens[row, k] = silence[k]
                    self.forced_audio += 1
