"""The streaming speech-to-text interface every STT provider implements.

A provider is an `STTStream`: the caller pushes PCM at any common sample rate
and reads `Hypothesis` objects from the stream as an async iterator, partials
(``is_final=False``, the current utterance so far, may still change) followed
by one final per utterance. Times are seconds of audio since the stream's
first sample; `emitted_at` is the stream clock's time when the hypothesis
came out.

    stt = make_stt(settings.stt, events=log)
    async def feed():
        async for chunk in mic: await stt.push(chunk, 48_000)
        await stt.finish()
    async for hyp in stt: ...   # ends after finish() has drained

Providers subclass `STTStream` and implement `_feed(audio)` (mono float32 at
`ENGINE_RATE`) and `_end()`; they report with `_publish(hyp)` and `_fail(exc)`.
Errors from the engine or the network reach the reader of the iterator as
`STTError`; bad input raises `kamevoice.errors.InputError` from `push`.
"""

from __future__ import annotations

import asyncio
from abc import ABC, abstractmethod
from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from kamevoice.audio import StreamResampler, int16_to_float
from kamevoice.errors import ConfigError, InputError, KameVoiceError
from kamevoice.runtime.clock import Clock, WallClock
from kamevoice.runtime.events import EventLog
from kamevoice.runtime.messages import EventKind, STTCause

# Every provider here decodes 16 kHz mono: what PocketSphinx's and Whisper's
# models were trained on and what Google's and Deepgram's LINEAR16 streams use.
ENGINE_RATE = 16_000
# Input rates `push` accepts: telephone, wideband, CD/DAT and their halves,
# Mimi's 24 kHz. Anything else is more likely a bug (e.g. a frame count passed
# as the rate) than a real device.
SUPPORTED_RATES: tuple[int, ...] = (8_000, 11_025, 12_000, 16_000, 22_050, 24_000, 32_000, 44_100, 48_000)
# Float PCM is expected in [-1, 1]; a peak above this means integer samples
# were passed as floats (a common mistake that would otherwise be clipped noise).
MAX_FLOAT_PEAK = 2.0
# Channels we down-mix; more suggests a (channels, frames) array given the wrong way round.
MAX_CHANNELS = 8


class STTError(KameVoiceError):
    """The recogniser or the hosted service failed (connection lost, protocol error, engine error).

    `cause` says which kind of failure it was (one of `STTCause`, what clients and metrics read);
    the message says the rest.
    """

    default_cause = STTCause.ENGINE

    def __init__(self, message: str = "", *, cause: STTCause | None = None):
        super().__init__(message)
        self.cause = cause or self.default_cause


class STTAuthError(STTError):
    """The hosted service refused the credentials."""

    default_cause = STTCause.AUTH


def cause_of(exc: BaseException) -> STTCause:
    """The fixed kind of an STT failure: an `STTError`'s own, a settings problem, or a bug."""
    if isinstance(exc, STTError):
        return exc.cause
    if isinstance(exc, ConfigError):
        return STTCause.CONFIG
    return STTCause.INTERNAL


@dataclass(frozen=True)
class Word:
    """One recognised word and where it lies in the stream, in seconds."""

    word: str
    start: float
    end: float


@dataclass(frozen=True)
class Hypothesis:
    """What the recogniser believes the current utterance says.

    `audio_end` is the stream time up to which the recogniser had heard when it
    formed this hypothesis; `emitted_at` is the clock time it was published.
    """

    text: str
    is_final: bool
    words: list[Word] = field(default_factory=list)
    audio_end: float = 0.0
    emitted_at: float = 0.0


def to_mono_float(pcm: Any) -> np.ndarray:
    """Check a PCM chunk and return it as mono float32 in [-1, 1].

    Accepts int16 or float (32/64) arrays shaped (frames,) or (frames, channels);
    channels are averaged. Raises `InputError` naming what is wrong.
    """
    if not isinstance(pcm, np.ndarray):
        raise InputError(f"PCM must be a numpy array, got {type(pcm).__name__}")
    if pcm.ndim == 2:
        if not 1 <= pcm.shape[1] <= MAX_CHANNELS:
            raise InputError(
                f"PCM shaped {pcm.shape} must be (frames,) or (frames, channels) with at most "
                f"{MAX_CHANNELS} channels; transpose a (channels, frames) array"
            )
    elif pcm.ndim != 1:
        raise InputError(f"PCM must be shaped (frames,) or (frames, channels), got shape {pcm.shape}")
    if pcm.dtype == np.int16:
        audio = int16_to_float(pcm)
    elif pcm.dtype in (np.float32, np.float64):
        audio = pcm.astype(np.float32, copy=False)
        if audio.size and not np.isfinite(audio).all():
            raise InputError("PCM holds NaN or infinite samples")
        peak = float(np.abs(audio).max()) if audio.size else 0.0
        if peak > MAX_FLOAT_PEAK:
            raise InputError(
                f"float PCM must lie in [-1, 1], peak is {peak:.1f}: pass integer samples as int16"
            )
    else:
        raise InputError(f"PCM dtype must be int16 or float32/float64, got {pcm.dtype}")
    if audio.ndim == 2:
        audio = audio.mean(axis=1)
    return np.ascontiguousarray(audio, dtype=np.float32)


class _Closed:
    """Queue sentinel: no more hypotheses."""


class STTStream(ABC):
    """One streaming recognition session: push audio in, read hypotheses out."""

    #: Short provider name used in events and messages.
    name: str = "stt"

    def __init__(self, events: EventLog | None = None, clock: Clock | None = None):
        self.events = events
        self.clock = clock or (events.clock if events is not None else WallClock())
        self._queue: asyncio.Queue[Hypothesis | _Closed | BaseException] = asyncio.Queue()
        self._resampler: StreamResampler | None = None
        self._in_rate: int | None = None
        self._engine_samples = 0
        self._finishing = False
        self._closed = False
        self._error: BaseException | None = None

    # -- the caller's side -------------------------------------------------------------

    @property
    def audio_pushed_s(self) -> float:
        """Seconds of audio pushed so far."""
        return self._engine_samples / ENGINE_RATE

    async def prepare(self) -> None:
        """Load the engine or open the connection now, so the first audio is not kept waiting.

        Optional: the first `push` does it otherwise.
        """
        if self._error is None and not self._finishing:
            await self._prepare()

    async def push(self, pcm: np.ndarray, sample_rate: int) -> None:
        """Feed the next chunk of audio (int16 or float, mono or (frames, channels)) at `sample_rate` Hz."""
        if self._finishing:
            raise InputError(f"{self.name}: push() after finish()")
        if self._error is not None:
            raise self._error  # the failure that ended the stream, with its own type
        if isinstance(sample_rate, bool) or not isinstance(sample_rate, int | np.integer):
            raise InputError(f"sample_rate must be an int in Hz, got {sample_rate!r}")
        sample_rate = int(sample_rate)
        if sample_rate not in SUPPORTED_RATES:
            raise InputError(f"unsupported sample rate {sample_rate} Hz; supported: {list(SUPPORTED_RATES)}")
        if self._in_rate is None:
            self._in_rate = sample_rate
            self._resampler = StreamResampler(sample_rate, ENGINE_RATE)
        elif sample_rate != self._in_rate:
            raise InputError(
                f"{self.name}: sample rate changed mid-stream ({self._in_rate} -> {sample_rate} Hz)"
            )
        audio = to_mono_float(pcm)
        assert self._resampler is not None
        try:
            await self._accept(self._resampler.process(audio))
        except KameVoiceError as exc:  # the engine or the service failed: the reader hears it too
            self._fail(exc)
            raise
        except Exception as exc:  # an engine bug: same, named
            error = STTError(f"{self.name}: {type(exc).__name__}: {exc}")
            self._fail(error)
            raise error from exc

    async def finish(self) -> None:
        """Say that the audio has ended: flush the engine, emit the last final, then end the iterator."""
        if self._finishing:
            return
        self._finishing = True
        try:
            if self._resampler is not None and self._error is None:
                await self._accept(self._resampler.flush())
            if self._error is None:
                await self._end()
        except KameVoiceError as exc:
            self._fail(exc)
        except Exception as exc:  # an engine bug must still end the iterator
            self._fail(STTError(f"{self.name}: {type(exc).__name__}: {exc}"))
        finally:
            await self.aclose()

    def __aiter__(self) -> AsyncIterator[Hypothesis]:
        return self._iterate()

    async def _iterate(self) -> AsyncIterator[Hypothesis]:
        while True:
            item = await self._queue.get()
            if isinstance(item, _Closed):
                return
            if isinstance(item, BaseException):
                raise item
            yield item

    async def aclose(self) -> None:
        """Release the engine or connection and end the iterator (idempotent)."""
        if self._closed:
            return
        self._closed = True
        self._finishing = True
        try:
            await self._release()
        finally:
            self._queue.put_nowait(_Closed())

    async def __aenter__(self) -> STTStream:
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.aclose()

    # -- the provider's side -----------------------------------------------------------

    async def _accept(self, audio: np.ndarray) -> None:
        self._engine_samples += len(audio)
        if len(audio):
            await self._feed(audio)

    @abstractmethod
    async def _feed(self, audio: np.ndarray) -> None:
        """Process mono float32 audio at `ENGINE_RATE` (the next samples of the stream)."""

    @abstractmethod
    async def _end(self) -> None:
        """The audio has ended: publish what is pending, including the last final."""

    async def _prepare(self) -> None:  # noqa: B027 - optional hook
        """Load models / connect ahead of the audio."""

    async def _release(self) -> None:  # noqa: B027 - optional hook
        """Free resources (connections, threads); called once."""

    def _publish(self, hyp: Hypothesis, **extra: Any) -> None:
        """Hand a hypothesis to the reader, stamping `emitted_at` and logging its lag."""
        if self._closed:
            return
        now = self.clock.now()
        hyp = Hypothesis(hyp.text, hyp.is_final, list(hyp.words), round(hyp.audio_end, 4), now)
        lag = max(0.0, self.audio_pushed_s - hyp.audio_end)
        if self.events is not None:
            self.events.emit(
                EventKind.STT_FINAL if hyp.is_final else EventKind.STT_PARTIAL,
                t=now,
                provider=self.name,
                text=hyp.text,
                words=len(hyp.words) if hyp.words else len(hyp.text.split()),
                audio_end=hyp.audio_end,
                lag_s=round(lag, 4),
                **extra,
            )
        self._queue.put_nowait(hyp)

    def _fail(self, exc: BaseException) -> None:
        """Report a fatal error to the reader; later pushes raise it too."""
        if self._error is not None or self._closed:
            return
        self._error = exc
        if self.events is not None:
            self.events.emit(EventKind.STT_ERROR, provider=self.name, cause=cause_of(exc), error=str(exc))
        self._queue.put_nowait(exc)
