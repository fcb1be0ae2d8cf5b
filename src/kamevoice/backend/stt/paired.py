"""Fast partials from PocketSphinx, accurate finals from Whisper.

PocketSphinx gives a partial tens of milliseconds after each chunk but
mishears often; Whisper hears well but needs a few hundred milliseconds per
decode. Paired, each utterance streams Sphinx's partials and ends with one
Whisper decode of the whole utterance as its final. Order is kept per
stream: partials of the next utterance that arrive while Whisper is still
decoding the previous one wait (only the newest is kept) and follow its final.
"""

from __future__ import annotations

import asyncio
import time
from typing import Any

import numpy as np

from kamevoice.backend.stt.base import Hypothesis, STTError
from kamevoice.backend.stt.endpoint import SpeechAudio, SpeechEnd, SpeechEvent, SpeechStart
from kamevoice.backend.stt.settings import EndpointSettings, SphinxSettings, WhisperSettings
from kamevoice.backend.stt.sphinx import SphinxSTT
from kamevoice.backend.stt.whisper import decode, load_model
from kamevoice.errors import ConfigError
from kamevoice.runtime.clock import Clock
from kamevoice.runtime.events import EventLog


class PairedSTT(SphinxSTT):
    """PocketSphinx partials + faster-whisper finals, one endpointer for both."""

    name = "paired"

    def __init__(
        self,
        sphinx: SphinxSettings | None = None,
        whisper: WhisperSettings | None = None,
        endpoint: EndpointSettings | None = None,
        events: EventLog | None = None,
        clock: Clock | None = None,
        model: Any = None,
    ):
        super().__init__(sphinx, endpoint, events, clock)
        self.whisper = whisper or WhisperSettings()
        self._model = model
        self._utt_audio: list[np.ndarray] = []
        self._utt_t0 = 0.0
        self._finals: asyncio.Queue[tuple[float, np.ndarray, float] | None] = asyncio.Queue()
        self._pending_finals = 0
        self._held: Hypothesis | None = None
        self._worker: asyncio.Task[None] | None = None

    async def _run(self, events: list[SpeechEvent]) -> None:
        for hyp in await self._recognise(events):
            if not hyp.is_final:
                self._hold_or_publish(hyp)
        for ev in events:
            if isinstance(ev, SpeechStart):
                self._utt_audio, self._utt_t0 = [], ev.t
            elif isinstance(ev, SpeechAudio):
                self._utt_audio.append(ev.audio)
            elif isinstance(ev, SpeechEnd):
                audio = np.concatenate(self._utt_audio) if self._utt_audio else np.zeros(0, np.float32)
                self._pending_finals += 1
                self._finals.put_nowait((self._utt_t0, audio, ev.t))
                self._utt_audio = []
                if self._worker is None:
                    self._worker = asyncio.create_task(self._work(), name="paired-finals")

    async def _prepare(self) -> None:
        await super()._prepare()
        if self._model is None:
            self._model = await asyncio.to_thread(load_model, self.whisper)

    def _hold_or_publish(self, hyp: Hypothesis) -> None:
        if self._pending_finals:
            self._held = hyp
        else:
            self._publish(hyp)

    async def _end(self) -> None:
        await super()._end()
        self._finals.put_nowait(None)
        if self._worker is not None:
            await self._worker
        if self._error is not None:
            raise self._error

    async def _release(self) -> None:
        if self._worker is not None and not self._worker.done():
            self._worker.cancel()

    async def _work(self) -> None:
        try:
            if self._model is None:
                self._model = await asyncio.to_thread(load_model, self.whisper)
            while (job := await self._finals.get()) is not None:
                t0, audio, end = job
                start = time.perf_counter()
                words = await asyncio.to_thread(decode, self._model, audio, t0, self.whisper)
                compute = round(time.perf_counter() - start, 3)
                self._pending_finals -= 1
                self._publish(
                    Hypothesis(" ".join(w.word for w in words), True, words, end), compute_s=compute
                )
                if self._held is not None and not self._pending_finals:
                    held, self._held = self._held, None
                    self._publish(held)
        except asyncio.CancelledError:
            raise
        except ConfigError as exc:
            self._fail(exc)
        except Exception as exc:
            self._fail(STTError(f"faster-whisper failed: {type(exc).__name__}: {exc}"))
