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

The hooks sit on Moshi's `LMGen` text and audio hooks, which receive the
sampled tensors before they are written into the delay cache; editing them in
place changes what the model reads back. Engines here run one session
(file mode), so the hook counts steps itself: step s is user frame s.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch

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


class SilenceForcer:
    """Installs itself on an engine's generator (use as `run_file(..., on_engine=forcer.install)`)."""

    def __init__(self, windows: list[ForcedWindow], silence: torch.Tensor, text_pad_id: int):
        self.windows = windows
        self.silence = silence
        self.text_pad_id = text_pad_id
        self.step = -1
        self.forced_text = 0
        self.forced_audio = 0
        self._delays: list[int] = []

    def _forced(self, frame: int) -> bool:
        return any(frame in w for w in self.windows)

    def install(self, engine) -> None:
        """Wrap the generator's text hook and set its audio hook (one-session engines only)."""
        if engine.options.max_sessions != 1:
            raise ValueError("forced silence counts steps itself: use a one-session engine")
        lm_gen = engine.generator.lm_gen
        model = engine.generator.model
        self._delays = list(model.delays[1 : model.dep_q + 1])
        keep_text, keep_audio = lm_gen.on_text_hook, lm_gen.on_audio_hook
        self.silence = self.silence.to(model.device)

        def on_text(text: torch.Tensor) -> None:
            self.step += 1
            if self._forced(self.step):
                text.fill_(self.text_pad_id)
                self.forced_text += 1
            if keep_text is not None:
                keep_text(text)

        def on_audio(audio: torch.Tensor) -> None:
            # Codebook k sampled at step s belongs to audio frame s - delay_k.
            for k, delay in enumerate(self._delays):
                if self._forced(self.step - delay):
                    audio[:, k] = self.silence[k]
                    self.forced_audio += 1
            if keep_audio is not None:
                keep_audio(audio)

        lm_gen.on_text_hook = on_text
        lm_gen.on_audio_hook = on_audio
