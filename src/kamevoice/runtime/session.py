"""One conversation: user audio to the engine and the STT, transcripts to the oracle scheduler,
oracles to the front-end, and everything the front-end produces back out, all in one event log.

    session = Session(engine, tokenizer, stt=stt, llm=llm, events=log, on_output=send)
    await session.start()
    await session.push_audio(pcm_24k)      # as audio arrives
    ...
    await session.close()

The session never blocks the frame loop: the engine calls back from its own
thread and the session hops onto the asyncio loop. A failure of the STT or
the LLM degrades this session only (no transcript / no oracle), logged.

Events (`EventLog`, JSONL): `session_start`, `audio_in` (seconds received),
`stt_partial` / `stt_final` (from the STT), `user_turn` (a final utterance
with its word times), `llm_*` (from the scheduler), `oracle_begin`,
`oracle_text` (the oracle as it grows), `oracle_piece` (an oracle id that
entered the model, with its frame), `text` (a front-end piece with its
frame), `reply_onset` (the first piece after a pause of `GAP_S`), `frame_stats`,
`session_end`. Latency per turn is computed from this
log (`kamevoice.runtime.latency`).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import threading
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import numpy as np

from kamevoice.backend.scheduler import OracleScheduler, SchedulerSettings
from kamevoice.oracle.pieces import IncrementalTokenizer
from kamevoice.runtime.clock import FRAME_SECONDS
from kamevoice.runtime.engine import Engine, EngineStream, FrameResult
from kamevoice.runtime.events import EventLog
from kamevoice.runtime.latency import GAP_S

log = logging.getLogger(__name__)

# Moshi's text ids that carry no piece: end-of-padding (0) and PAD (3).
SILENT_TEXT_IDS = frozenset({0, 3})
# Emit a `frame_stats` event every this many frames (per-frame events would swamp the log).
STATS_EVERY_FRAMES = 25


@dataclass
class SessionOutput:
    """Something for the client: model audio, a front-end text piece, or an event to show."""

    kind: str  # "audio" | "text" | "event"
    pcm: np.ndarray | None = None  # audio: [frame_size] float32, model audio of frame `frame`
    text: str = ""  # text: the piece, SentencePiece markers replaced by spaces
    frame: int = -1
    event: dict | None = None


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
        forward_events: tuple[str, ...] = (
            "stt_partial",
            "stt_final",
            "oracle_text",
            "llm_first_token",
            "llm_request",
            "oracle_unavailable",
            "user_turn",
            "frame_stats",
        ),
    ):
        self.engine = engine
        self.tokenizer = tokenizer
        self.stt = stt
        self.events = events
        self.sample_rate = sample_rate
        self.on_output = on_output or (lambda out: None)
        self.scheduler = (
            OracleScheduler(llm, self, settings=scheduler_settings, events=events)
            if llm is not None
            else None
        )
        self._pieces = IncrementalTokenizer(tokenizer)
        self._oracle_gen = 0
        self._stream: EngineStream | None = None
        self._loop: asyncio.AbstractEventLoop | None = None
        self._loop_thread = 0
        self._stt_task: asyncio.Task | None = None
        self._audio_s = 0.0
        self.closed = False
        self.end_reason = ""
        self.frames = 0
        self._oracle_pad = engine.model.oracle_pad_id
        self._oracle_start = engine.model.oracle_start_id
        self._forward = set(forward_events)
        self._last_text_t: float | None = None
        events.subscribe(self._maybe_forward)

    # -- lifetime ---------------------------------------------------------------------------------

    async def start(self) -> None:
        """Join the engine and start reading the STT."""
        self._loop = asyncio.get_running_loop()
        self._loop_thread = threading.get_ident()
        self.events.emit("session_start", sample_rate=self.sample_rate)
        self._stream = self.engine.open(self._from_engine)
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
            "audio_in", seconds=round(len(pcm) / self.sample_rate, 4), total_s=round(self._audio_s, 4)
        )
        if self.stt is not None and not self._stt_failed:
            try:
                await self.stt.push(pcm, self.sample_rate)
            except Exception as exc:  # the STT is gone: the conversation goes on without transcripts
                self._stt_failed = True
                self.events.emit("stt_unavailable", error=f"{type(exc).__name__}: {exc}")

    _stt_failed = False

    async def end_input(self) -> None:
        """The user's audio is over (file mode): flush the STT, let the engine run without input."""
        if self._stream is not None:
            self._stream.end_input()
        if self.stt is not None and not self._stt_failed:
            with contextlib.suppress(Exception):
                await self.stt.finish()

    async def close(self, reason: str = "closed") -> None:
        """Leave the engine, stop the back-end, close the log."""
        if self.closed:
            return
        self.closed = True
        self.end_reason = reason
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
        self.events.emit("session_end", reason=reason, frames=self.frames, audio_s=round(self._audio_s, 3))
        self.events.close()

    # -- STT -> scheduler ---------------------------------------------------------------------------

    async def _read_stt(self) -> None:
        try:
            async for hyp in self.stt:
                if hyp.is_final and hyp.words:
                    self.events.emit(
                        "user_turn",
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
            self._stt_failed = True
            self.events.emit("stt_unavailable", error=f"{type(exc).__name__}: {exc}")

    # -- scheduler -> oracle (the OracleSink protocol) ----------------------------------------------

    def begin(self, generation: int) -> None:
        self._oracle_gen = generation
        self._pieces.reset()
        if self._stream is not None:
            self._stream.begin_oracle()
        self.events.emit("oracle_begin", gen=generation, frame=self.frames)

    def update(self, generation: int, text: str) -> None:
        if generation != self._oracle_gen:
            return
        self._feed(self._pieces.update(text))
        self.events.emit("oracle_text", gen=generation, text=text)

    def end(self, generation: int, text: str, cancelled: bool) -> None:
        if generation != self._oracle_gen:
            return
        ids = self._pieces.update(text)
        if not cancelled:
            ids += self._pieces.finish()  # the answer is complete: its last word is final too
        self._feed(ids)
        self.events.emit(
            "oracle_end", gen=generation, text=text, cancelled=cancelled, pieces=len(self._pieces.emitted)
        )

    def _feed(self, ids: list[int]) -> None:
        if ids and self._stream is not None:
            self._stream.feed_oracle(ids)

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
        if r.oracle_id != self._oracle_pad:
            if r.oracle_id == self._oracle_start:
                self.events.emit("oracle_piece", frame=r.step, frame_t=t_frame, start=True)
            else:
                self.events.emit(
                    "oracle_piece",
                    frame=r.step,
                    frame_t=t_frame,
                    id=r.oracle_id,
                    piece=self.tokenizer.id_to_piece(r.oracle_id),
                )
        if r.text_id not in SILENT_TEXT_IDS and 0 <= r.text_id < self.tokenizer.vocab_size():
            piece = self.tokenizer.id_to_piece(r.text_id)
            if self._last_text_t is None or t_frame - self._last_text_t >= GAP_S:
                # A new stretch of speech begins (the rule `kamevoice.runtime.latency` uses for reply onsets).
                self.events.emit("reply_onset", frame=r.step, frame_t=t_frame)
            self._last_text_t = t_frame
            self.events.emit("text", frame=r.step, frame_t=t_frame, id=r.text_id, piece=piece)
            if self.scheduler is not None:
                self.scheduler.on_assistant_text(piece)
            self.on_output(SessionOutput("text", text=piece.replace("\u2581", " "), frame=r.step))
        if r.pcm is not None:
            self.on_output(SessionOutput("audio", pcm=r.pcm, frame=r.audio_frame))
        if r.step % STATS_EVERY_FRAMES == 0:
            stats = self.engine.stats
            self.events.emit(
                "frame_stats",
                frame=r.step,
                step_ms=round(r.step_ms, 2),
                p50_ms=round(stats.percentile(0.5), 2),
                p99_ms=round(stats.percentile(0.99), 2),
                overruns=stats.overruns,
                underruns=stats.underruns,
            )

    def _maybe_forward(self, event: dict) -> None:
        if event["kind"] in self._forward:
            self.on_output(SessionOutput("event", event=event))
