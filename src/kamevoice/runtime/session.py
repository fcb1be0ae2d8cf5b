"""One conversation: user audio to the engine and the STT, transcripts to the oracle scheduler,
oracles to the front-end, and everything the front-end produces back out, all in one event log.

    session = Session(engine, tokenizer, stt=stt, llm=llm, events=log, on_output=send)
    await session.start()
    await session.push_audio(pcm_24k)      # as audio arrives
    ...
    await session.close("client closed", EndCause.CLIENT_CLOSED)

The session never blocks the frame loop: the engine calls back from its own
thread and the session hops onto the asyncio loop. A failure of the STT or
the LLM degrades this session only (no transcript / no oracle), logged.

Every event it writes is declared in `kamevoice.runtime.messages`; with
`forward_events` the kinds marked for clients go to `on_output` as well
(private fields left out; the kinds marked `coalesce`, at most one per `COALESCE_S`
and kind, the newest). Latency per turn is computed from the log
(`kamevoice.runtime.latency`).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import threading
from collections.abc import Callable
from dataclasses import dataclass
from enum import StrEnum
from typing import Any

import numpy as np

from kamevoice.backend.scheduler import OracleScheduler, SchedulerSettings
from kamevoice.backend.stt.base import cause_of
from kamevoice.runtime.clock import FRAME_SECONDS
from kamevoice.runtime.coalesce import Coalescer
from kamevoice.runtime.engine import Engine, EngineStream, FrameResult
from kamevoice.runtime.events import Event, EventLog
from kamevoice.runtime.latency import GAP_S
from kamevoice.runtime.messages import CLIENT_KINDS, COALESCE_S, EndCause, EventKind, spec
from kamevoice.runtime.oracle_feed import OracleFeed

log = logging.getLogger(__name__)

# Emit an `engine.frame_stats` event every this many frames (per-frame events would swamp the log).
STATS_EVERY_FRAMES = 25
# SentencePiece's word-start marker, shown to people as a space.
WORD_START = "\u2581"


class OutputKind(StrEnum):
    """What a `SessionOutput` carries."""

    AUDIO = "audio"
    TEXT = "text"
    EVENT = "event"


@dataclass
class SessionOutput:
    """Something for the client: model audio, a front-end text piece, or an event to show."""

    kind: OutputKind
    pcm: np.ndarray | None = None  # audio: [frame_size] float32, model audio of frame `frame`
    text: str = ""  # text: the piece, SentencePiece markers replaced by spaces
    frame: int = -1
    event: Event | None = None


class Session:
    """A live conversation bound to one engine slot."""

    def __init__(
        self,
        engine: Engine,
        tokenizer: Any,
        *,
        stt: Any | None = None,
        llm: Any | None = None,
        events: EventLog,
        scheduler_settings: SchedulerSettings | None = None,
        on_output: Callable[[SessionOutput], None] | None = None,
        sample_rate: int = 24_000,
        forward_events: bool = False,
    ):
        self.engine = engine
        self.tokenizer = tokenizer
        self.stt = stt
        self.events = events
        self.sample_rate = sample_rate
        self.on_output = on_output or (lambda out: None)
        self.text_ids = engine.model.text_ids
        self.oracle = OracleFeed(events, tokenizer, frame=lambda: self.frames)
        self.scheduler = (
            OracleScheduler(llm, self.oracle, settings=scheduler_settings, events=events)
            if llm is not None
            else None
        )
        self._stream: EngineStream | None = None
        self._loop: asyncio.AbstractEventLoop | None = None
        self._loop_thread = 0
        self._stt_task: asyncio.Task | None = None
        self._stt_failed = False
        self._audio_s = 0.0
        self.closed = False
        self.end_reason = ""
        self.end_cause: EndCause | None = None
        self.frames = 0
        self._last_text_t: float | None = None
        self._coalescers: dict[EventKind, Coalescer[Event]] = {}  # per coalesced kind, for clients
        if forward_events:
            events.subscribe(self._forward)

    # -- lifetime ---------------------------------------------------------------------------------

    async def start(self) -> None:
        """Join the engine and start reading the STT."""
        self._loop = asyncio.get_running_loop()
        self._loop_thread = threading.get_ident()
        self.events.emit(EventKind.SESSION_START, sample_rate=self.sample_rate)
        self._stream = self.engine.open(self._from_engine)
        self.oracle.target = self._stream
        if self.scheduler is not None:
            self.scheduler.warm_up()
        if self.stt is not None:
            self._stt_task = asyncio.create_task(self._read_stt(), name="session-stt")

    @property
    def joined(self) -> bool:
        """Whether the engine has given this session its slot (frames flow from then on)."""
        return self._stream is not None and self._stream.joined.is_set()

    async def push_audio(self, pcm: np.ndarray) -> None:
        """User audio: float32 mono at `sample_rate` (the codec's rate)."""
        if self.closed or self._stream is None:
            return
        self._stream.push(pcm)  # raises InputError on malformed audio
        self._audio_s += len(pcm) / self.sample_rate
        self.events.emit(
            EventKind.AUDIO_IN, seconds=round(len(pcm) / self.sample_rate, 4), total_s=round(self._audio_s, 4)
        )
        if self.stt is not None and not self._stt_failed:
            try:
                await self.stt.push(pcm, self.sample_rate)
            except Exception as exc:  # the STT is gone: the conversation goes on without transcripts
                self._stt_unavailable(exc)

    def set_silent(self, silent: bool) -> None:
        """Silence the front-end from its next frame on, or release it (a client's cancel); the
        model is forced silent, so it conditions on having stopped (`SilenceOnDemand`)."""
        if self._stream is not None:
            self._stream.set_silent(silent)

    @property
    def silent(self) -> bool:
        """Whether the front-end is silenced now."""
        return self._stream is not None and self._stream.silent

    @property
    def instructions(self) -> str | None:
        """The back-end LLM's system prompt for this conversation (None: no back-end)."""
        return self.scheduler.system_prompt if self.scheduler is not None else None

    def set_instructions(self, text: str | None) -> None:
        """This conversation's system prompt for the back-end LLM from its next request on
        (None: the configured one); without a back-end there is nothing to instruct."""
        if self.scheduler is not None:
            self.scheduler.set_system_prompt(text)

    async def end_input(self) -> None:
        """The user's audio is over (file mode): flush the STT, let the engine run without input."""
        if self._stream is not None:
            self._stream.end_input()
        if self.stt is not None and not self._stt_failed:
            with contextlib.suppress(Exception):
                await self.stt.finish()

    async def close(self, reason: str = "closed", cause: EndCause = EndCause.CLIENT_CLOSED) -> None:
        """Leave the engine, stop the back-end, close the log (`reason`: readable, `cause`: its kind)."""
        if self.closed:
            return
        self.closed = True
        self.end_reason, self.end_cause = reason, cause
        for coalescer in self._coalescers.values():
            coalescer.close()
        if self._stream is not None:
            self._stream.close()
        if self.scheduler is not None:
            await self.scheduler.aclose()
        if self.stt is not None:
            with contextlib.suppress(Exception):
                await self.stt.aclose()
        if self._stt_task is not None:
            self._stt_task.cancel()
            with contextlib.suppress(asyncio.CancelledError, Exception):
                await self._stt_task
        self.events.emit(
            EventKind.SESSION_END,
            reason=reason,
            cause=cause,
            frames=self.frames,
            audio_s=round(self._audio_s, 3),
        )
        self.events.close()

    # -- STT -> scheduler ---------------------------------------------------------------------------

    async def _read_stt(self) -> None:
        try:
            async for hyp in self.stt:
                if hyp.is_final and hyp.words:
                    self.events.emit(
                        EventKind.USER_TURN,
                        text=hyp.text,
                        start=round(hyp.words[0].start, 3),
                        end=round(hyp.words[-1].end, 3),
                        words=[[w.word, round(w.start, 3), round(w.end, 3)] for w in hyp.words],
                    )
                if self.scheduler is not None and hyp.text.strip():
                    self.scheduler.on_transcript(hyp.text, hyp.is_final)
        except asyncio.CancelledError:
            raise
        except Exception as exc:
            self._stt_unavailable(exc)

    def _stt_unavailable(self, exc: Exception) -> None:
        if self._stt_failed:  # the push and the reader both hear the same failure: report it once
            return
        self._stt_failed = True
        self.events.emit(EventKind.STT_UNAVAILABLE, cause=cause_of(exc), error=f"{exc}")

    # -- engine -> client -----------------------------------------------------------------------------

    def _from_engine(self, result: FrameResult) -> None:
        if threading.get_ident() == self._loop_thread:
            self._on_frame(result)  # stepped on the loop (file mode)
        elif self._loop is not None and not self._loop.is_closed():
            self._loop.call_soon_threadsafe(self._on_frame, result)

    def _on_frame(self, r: FrameResult) -> None:
        if self.closed:
            return
        self.frames = r.step + 1
        t_frame = round(r.step * FRAME_SECONDS, 4)
        ids = self.text_ids
        if r.oracle_id != ids.pad:
            if r.oracle_id == ids.start:
                self.events.emit(EventKind.ORACLE_PIECE, frame=r.step, frame_t=t_frame, start=True)
            else:
                piece = self.tokenizer.id_to_piece(r.oracle_id)
                self.events.emit(
                    EventKind.ORACLE_PIECE, frame=r.step, frame_t=t_frame, id=r.oracle_id, piece=piece
                )
        if r.text_id not in ids.timing and 0 <= r.text_id < self.tokenizer.vocab_size():
            piece = self.tokenizer.id_to_piece(r.text_id)
            if self._last_text_t is None or t_frame - self._last_text_t >= GAP_S:
                # A new stretch of speech begins (the rule `kamevoice.runtime.latency` uses for onsets).
                self.events.emit(EventKind.REPLY_ONSET, frame=r.step, frame_t=t_frame)
            self._last_text_t = t_frame
            self.events.emit(
                EventKind.FRONTEND_TEXT, frame=r.step, frame_t=t_frame, id=r.text_id, piece=piece
            )
            if self.scheduler is not None:
                self.scheduler.on_assistant_text(piece)
            self.on_output(SessionOutput(OutputKind.TEXT, text=piece.replace(WORD_START, " "), frame=r.step))
        if r.pcm is not None:
            self.on_output(SessionOutput(OutputKind.AUDIO, pcm=r.pcm, frame=r.audio_frame))
        if r.step % STATS_EVERY_FRAMES == 0:
            stats = self.engine.stats
            self.events.emit(
                EventKind.FRAME_STATS,
                frame=r.step,
                step_ms=round(r.step_ms, 2),
                p50_ms=round(stats.percentile(0.5), 2),
                p99_ms=round(stats.percentile(0.99), 2),
                overruns=stats.overruns,
                underruns=stats.underruns,
            )

    def _forward(self, event: Event) -> None:
        kind = event["kind"]
        if kind not in CLIENT_KINDS:
            return
        declared = spec(kind)
        if not declared.coalesce:
            self._send_event(declared.for_client(event))
            return
        coalescer = self._coalescers.get(kind)
        if coalescer is None:
            coalescer = self._coalescers[kind] = Coalescer(COALESCE_S, self._send_event)
        coalescer.offer(declared.for_client(event))

    def _send_event(self, event: Event) -> None:
        if not self.closed:
            self.on_output(SessionOutput(OutputKind.EVENT, event=event))
