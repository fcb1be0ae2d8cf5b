"""Run a local STT engine in its own process, so its CPU work cannot stall the frame loop.

PocketSphinx decodes while holding Python's GIL: measured in the server, one
thread running it took a batch-1 engine step from 22 ms to 620 ms, and a
GIL-free thread cannot be had from inside the process. `ProcessSTT` hosts any
provider (`make_stt(inner_settings)`) in a child process (`process_child`) and
relays audio to it and hypotheses back over a socket pair (`process_wire`);
to the caller it is an `STTStream` like any other.

The parent never blocks on the child. A blocking `Connection.send` on the
event loop froze the whole server when one child stopped reading (SIGSTOP: the
pipe filled, `/health` timed out, every conversation's audio stopped for
10.9 s). The parent's end of the socket is an asyncio transport: the socket is
non-blocking, what the kernel does not take at once waits in the transport's
buffer (counted in bytes) and goes out from the selector's `add_writer`
callback; reads come to `data_received` in whatever pieces the kernel has, and
`FrameBuffer` keeps a half-written frame until its rest arrives. Chosen over a
writer thread fed by a bounded queue: no thread per conversation (nor its GIL
hand-offs), the selector that already watched the reads does the writes, and
the transport reports its buffer in bytes, the bound we enforce.

A child that stops consuming is found by the audio it leaves unprocessed: it
acknowledges each chunk once processed, so pending audio is what was sent and
not yet acknowledged, wherever it waits (our buffer, the socket, the child).
Past `stt.process.max_pending_s` of it, or with audio pending and nothing
heard for `silent_timeout_s`, or no engine loaded `start_timeout_s` after the
start, the stream fails with an `STTError` of cause `stalled` and the child
is killed (SIGKILL: it works on a stopped process too). A child that dies
fails the stream with cause `process_exited`. Either way only this stream
ends; the session goes on without transcripts (`stt.unavailable`).

Used by the server (real time). File mode and evaluation keep the engines in
process: there the engine is stepped on the loop, and a pipe would make the
virtual clock's results depend on the machine's speed.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import multiprocessing as mp
import socket
from typing import Any

import numpy as np

from kamevoice.backend.stt.base import ENGINE_RATE, Hypothesis, STTError, STTStream, Word, cause_of
from kamevoice.backend.stt.process_child import child_main
from kamevoice.backend.stt.process_wire import CLOSE, END, FrameBuffer, frame, push_frame
from kamevoice.backend.stt.settings import STTSettings
from kamevoice.runtime.clock import Clock
from kamevoice.runtime.events import EventLog
from kamevoice.runtime.messages import STTCause

log = logging.getLogger(__name__)

# How long the child may take to flush its last hypotheses after the audio ended (seconds).
END_TIMEOUT_S = 30.0
# How long a child may take to exit before it is killed (seconds).
EXIT_TIMEOUT_S = 5.0
# How often a child's exit is polled (non-blocking waitpid; no thread sits in join()).
EXIT_POLL_S = 0.02
# How often the watchdog looks at the pending audio: detection within a fifth of a second
# of a bound, for a check that costs a subtraction.
WATCH_INTERVAL_S = 0.2
# A child heard from this recently when its bound was passed is working, only too slowly
# (said so in the error: a starved CPU, not a frozen process); it is given up on all the same.
# A working child acknowledges every push, 80 ms apart in the server.
STILL_WORKING_S = 0.5
# Bytes per second of audio on the wire (float32 at ENGINE_RATE): the buffer's bound in bytes.
WIRE_BYTES_PER_S = 4 * ENGINE_RATE


class _Link(asyncio.Protocol):
    """The parent's end of the socket: whole frames to the stream, the end of the link to it."""

    def __init__(self, stream: ProcessSTT):
        self.stream = stream
        self.frames = FrameBuffer()

    def data_received(self, data: bytes) -> None:
        try:
            frames = self.frames.feed(data)
        except STTError as exc:
            self.stream._broken(str(exc))
            return
        for payload in frames:
            self.stream._on_message(payload)

    def connection_lost(self, exc: Exception | None) -> None:
        self.stream._on_lost()


class ProcessSTT(STTStream):
    """An `STTStream` whose engine runs in a child process."""

    name = "process"

    def __init__(self, inner: STTSettings, events: EventLog | None = None, clock: Clock | None = None):
        super().__init__(events=events, clock=clock)
        self.inner = inner
        self.limits = inner.process
        self.name = f"{inner.provider}@process"
        self._process: Any = None
        self._pid: int | None = None
        self._transport: asyncio.Transport | None = None
        self._starting: asyncio.Task | None = None
        self._watchdog: asyncio.Task | None = None
        self._reaper: asyncio.Task | None = None
        self._ended = asyncio.Event()  # the child said "ended", died, or was given up on
        self._ready = False
        self._sent = 0  # samples written to the child
        self._acked = 0  # samples the child has processed
        self._started_at = 0.0
        self._heard_at = 0.0  # the last message from the child (loop time)
        self._waiting_since = 0.0  # when audio became pending after none was
        # Unsent bytes allowed in our buffer: all the audio of a slow start and the pending bound.
        self.buffer_limit = int(WIRE_BYTES_PER_S * (self.limits.start_timeout_s + self.limits.max_pending_s))

    # -- what the owner may look at --------------------------------------------------------------

    @property
    def pid(self) -> int | None:
        """The child's process id (None before it was started)."""
        return self._pid

    @property
    def ready(self) -> bool:
        """Whether the child has loaded its engine."""
        return self._ready

    @property
    def pending_s(self) -> float:
        """Seconds of audio sent to the child and not yet processed by it."""
        return (self._sent - self._acked) / ENGINE_RATE

    @property
    def unsent_bytes(self) -> int:
        """Bytes waiting in our buffer for the socket to take them (bounded by `buffer_limit`)."""
        return self._transport.get_write_buffer_size() if self._transport is not None else 0

    # -- the stream ------------------------------------------------------------------------------

    async def _prepare(self) -> None:
        if self._starting is None:
            self._starting = asyncio.ensure_future(self._start())
        await asyncio.shield(self._starting)

    async def _start(self) -> None:
        loop = asyncio.get_running_loop()
        ctx = mp.get_context("spawn")  # a fresh interpreter: no copied threads or locks
        parent, child = socket.socketpair()
        self._process = ctx.Process(
            target=child_main, args=(child, self.inner.model_dump_json()), name="kamevoice-stt", daemon=True
        )
        try:
            self._process.start()
        finally:
            child.close()
        self._pid = self._process.pid
        self._started_at = self._heard_at = loop.time()
        transport, _ = await loop.create_unix_connection(lambda: _Link(self), sock=parent)
        self._transport = transport
        self._watchdog = asyncio.create_task(self._watch(), name=f"{self.name}-watchdog")

    async def _feed(self, audio: np.ndarray) -> None:
        await self._prepare()
        if self._sent == self._acked:
            self._waiting_since = asyncio.get_running_loop().time()
        self._write(push_frame(audio))
        self._sent += len(audio)
        self._check()
        if self._error is not None:
            raise self._error

    async def _end(self) -> None:
        if self._transport is None:
            return
        self._write(frame(END))
        try:
            await asyncio.wait_for(self._ended.wait(), END_TIMEOUT_S)
        except TimeoutError as exc:
            raise STTError(
                f"{self.name}: no end of stream from the STT process in {END_TIMEOUT_S:g} s",
                cause=STTCause.STALLED,
            ) from exc

    async def _release(self) -> None:
        if self._watchdog is not None:
            self._watchdog.cancel()
        if self._reaper is not None:
            self._reaper.cancel()
        if self._starting is not None and not self._starting.done():
            with contextlib.suppress(Exception, asyncio.CancelledError):
                await self._starting  # a start in flight: let it finish, then stop what it started
        transport, process = self._transport, self._process
        if transport is not None and not transport.is_closing():
            transport.write(frame(CLOSE))
        if process is not None:
            if self._error is None or cause_of(self._error) is not STTCause.STALLED:  # a stuck one: kill now
                await _wait_exit(process, EXIT_TIMEOUT_S)
            if process.is_alive():
                process.kill()
                await _wait_exit(process, EXIT_TIMEOUT_S)
            with contextlib.suppress(ValueError):  # still running after a kill: leave it to the OS
                process.close()
        if transport is not None:
            transport.abort()
        self._transport = self._process = None

    def _write(self, data: bytes) -> None:
        """Hand bytes to the transport: it sends what the socket takes now and buffers the rest."""
        transport = self._transport
        if transport is None or transport.is_closing():
            raise STTError(f"{self.name}: the STT process is gone", cause=STTCause.EXITED)
        transport.write(data)

    # -- watching the child ----------------------------------------------------------------------

    async def _watch(self) -> None:
        while self._error is None and not self._closed and not self._ended.is_set():
            await asyncio.sleep(WATCH_INTERVAL_S)
            self._check()

    def _check(self) -> None:
        """Give up on a child that stopped consuming (see the module's docstring)."""
        if self._error is not None or self._closed or self._ended.is_set():
            return
        now = asyncio.get_running_loop().time()
        limits, pending = self.limits, self.pending_s
        silent = now - max(self._heard_at, self._waiting_since)
        buffered = self.unsent_bytes
        if not self._ready and now - self._started_at > limits.start_timeout_s:
            self._stall(f"the STT process did not load its engine in {limits.start_timeout_s:g} s")
        elif self._ready and pending > limits.max_pending_s:
            how = "fell behind" if silent < STILL_WORKING_S else "stopped reading"
            self._stall(f"the STT process {how}: {pending:.1f} s of audio pending")
        elif self._ready and pending > 0 and silent > limits.silent_timeout_s:
            self._stall(
                f"the STT process sent nothing for {silent:.1f} s with {pending:.1f} s of audio pending"
            )
        elif buffered > self.buffer_limit:
            self._stall(f"the STT process stopped reading: {buffered} bytes unsent")

    def _stall(self, why: str) -> None:
        log.warning("%s: %s; killing it (pid %s)", self.name, why, self._pid)
        self._fail(STTError(f"{self.name}: {why}", cause=STTCause.STALLED))
        self._kill()

    def _broken(self, why: str) -> None:
        log.warning("%s: %s; killing it (pid %s)", self.name, why, self._pid)
        self._fail(STTError(f"{self.name}: {why}", cause=STTCause.INTERNAL))
        self._kill()

    def _kill(self) -> None:
        """SIGKILL the child, drop what waits for it, wake `_end`."""
        if self._process is not None and self._process.is_alive():
            self._process.kill()
            self._reap()
        if self._transport is not None:
            self._transport.abort()
        self._ended.set()

    def _reap(self) -> None:
        """Collect a dead child's exit now, not when the conversation ends (no zombie meanwhile)."""
        if self._process is not None and self._reaper is None:
            self._reaper = asyncio.ensure_future(_wait_exit(self._process, EXIT_TIMEOUT_S))

    # -- the child's messages --------------------------------------------------------------------

    def _on_message(self, payload: bytes) -> None:
        self._heard_at = asyncio.get_running_loop().time()
        try:
            message = json.loads(payload)
            kind = message[0]
            if kind == "ack":
                self._acked = int(message[1])
            elif kind == "hyp":
                _, text, is_final, words, audio_end = message
                self._publish(Hypothesis(text, bool(is_final), [Word(*w) for w in words], float(audio_end)))
            elif kind == "ready":
                self._ready = True
            elif kind == "error":
                _, cause, kind_name, text = message
                self._fail(STTError(f"{self.name}: {kind_name}: {text}", cause=_cause(cause)))
            elif kind == "ended":
                self._ended.set()
        except (ValueError, TypeError, IndexError, KeyError) as exc:
            self._broken(f"the STT process sent a malformed message ({type(exc).__name__}: {exc})")

    def _on_lost(self) -> None:
        self._transport = None
        if not self._ended.is_set() and not self._closed:
            code = self._process.exitcode if self._process is not None else None  # None: not reaped yet
            how = f" (exit code {code})" if code is not None else ""
            self._fail(STTError(f"{self.name}: the STT process exited{how}", cause=STTCause.EXITED))
            self._reap()
        self._ended.set()


def _cause(value: Any) -> STTCause:
    """The child's cause, read back (an unknown one is the engine's)."""
    try:
        return STTCause(value)
    except ValueError:
        return STTCause.ENGINE


async def _wait_exit(process: Any, timeout: float) -> None:
    """Wait up to `timeout` s for `process` to exit, polling (it is reaped when it has)."""
    loop = asyncio.get_running_loop()
    deadline = loop.time() + timeout
    while process.is_alive() and loop.time() < deadline:
        await asyncio.sleep(EXIT_POLL_S)
