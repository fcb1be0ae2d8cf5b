"""Run a local STT engine in its own process, so its CPU work cannot stall the frame loop.

PocketSphinx decodes while holding Python's GIL: measured in the server, one
thread running it took a batch-1 engine step from 22 ms to 620 ms, and a
GIL-free thread cannot be had from inside the process. `ProcessSTT` hosts any
provider (`make_stt(inner_settings)`) in a child process and relays audio to
it and hypotheses back over a pipe; to the caller it is an `STTStream` like
any other. The parent's event loop watches the pipe with `add_reader`, so no
thread of ours touches the GIL either.

Used by the server (real time). File mode and evaluation keep the engines in
process: there the engine is stepped on the loop, and a pipe would make the
virtual clock's results depend on the machine's speed.
"""

from __future__ import annotations

import asyncio
import contextlib
import multiprocessing as mp
import os
from typing import Any

import numpy as np

from kamevoice.backend.stt.base import ENGINE_RATE, Hypothesis, STTError, STTStream, Word
from kamevoice.backend.stt.settings import STTSettings
from kamevoice.runtime.clock import Clock
from kamevoice.runtime.events import EventLog

# The child runs at a lower CPU priority than the frame loop: on a small machine a Whisper
# decode (hundreds of ms on every core) would otherwise push frame steps past their 80 ms.
CHILD_NICENESS = 10
# How long the child may take to flush its last hypotheses after the audio ended (seconds).
END_TIMEOUT_S = 30.0
# How long a child may take to exit before it is terminated (seconds).
EXIT_TIMEOUT_S = 5.0


def _child(conn, settings_json: str) -> None:
    """The child process: a private event loop around one recognition stream."""
    import kamevoice  # noqa: F401 - sets OMP_WAIT_POLICY and friends before torch loads
    from kamevoice.backend.stt import make_stt

    with contextlib.suppress(OSError, AttributeError):  # not every platform has nice()
        os.nice(CHILD_NICENESS)

    async def main() -> None:
        stt = make_stt(STTSettings.model_validate_json(settings_json))

        async def relay() -> None:
            try:
                async for hyp in stt:
                    words = [(w.word, w.start, w.end) for w in hyp.words]
                    conn.send(("hyp", hyp.text, hyp.is_final, words, hyp.audio_end))
            except Exception as exc:
                conn.send(("error", type(exc).__name__, str(exc)))

        reader = asyncio.create_task(relay())
        loop = asyncio.get_running_loop()
        try:
            while True:
                msg = await loop.run_in_executor(None, conn.recv)
                if msg[0] == "push":
                    await stt.push(msg[1], ENGINE_RATE)
                elif msg[0] == "end":
                    await stt.finish()
                    break
                else:  # "close"
                    await stt.aclose()
                    break
        except EOFError:  # the parent went away
            await stt.aclose()
        except Exception as exc:
            conn.send(("error", type(exc).__name__, str(exc)))
            await stt.aclose()
        await reader
        with contextlib.suppress(OSError):
            conn.send(("ended",))

    asyncio.run(main())


class ProcessSTT(STTStream):
    """An `STTStream` whose engine runs in a child process."""

    name = "process"

    def __init__(self, inner: STTSettings, events: EventLog | None = None, clock: Clock | None = None):
        super().__init__(events=events, clock=clock)
        self.inner = inner
        self.name = f"{inner.provider}@process"
        self._conn = None
        self._process: Any = None
        self._ended = asyncio.Event()
        self._loop: asyncio.AbstractEventLoop | None = None

    async def _prepare(self) -> None:
        if self._process is not None:
            return
        ctx = mp.get_context("spawn")  # a fresh interpreter: no copied threads or locks
        parent, child = ctx.Pipe(duplex=True)
        self._process = ctx.Process(
            target=_child, args=(child, self.inner.model_dump_json()), name="kamevoice-stt", daemon=True
        )
        self._process.start()
        child.close()
        self._conn = parent
        self._loop = asyncio.get_running_loop()
        self._loop.add_reader(parent.fileno(), self._on_readable)

    async def _feed(self, audio: np.ndarray) -> None:
        await self._prepare()
        try:
            self._conn.send(("push", audio.astype(np.float32)))
        except (OSError, ValueError) as exc:
            raise STTError(f"{self.name}: the STT process is gone ({exc})") from exc

    async def _end(self) -> None:
        if self._conn is None:
            return
        with contextlib.suppress(OSError, ValueError):
            self._conn.send(("end",))
        try:
            await asyncio.wait_for(self._ended.wait(), END_TIMEOUT_S)
        except TimeoutError as exc:
            raise STTError(
                f"{self.name}: no end of stream from the STT process in {END_TIMEOUT_S} s"
            ) from exc

    async def _release(self) -> None:
        conn, process = self._conn, self._process
        self._conn = self._process = None
        if conn is not None:
            if self._loop is not None:
                with contextlib.suppress(Exception):
                    self._loop.remove_reader(conn.fileno())
            with contextlib.suppress(OSError, ValueError):
                conn.send(("close",))
        if process is not None:
            await asyncio.to_thread(process.join, EXIT_TIMEOUT_S)
            if process.is_alive():
                process.terminate()
        if conn is not None:
            conn.close()

    def _on_readable(self) -> None:
        conn = self._conn
        if conn is None:
            return
        try:
            while conn.poll():
                msg = conn.recv()
                if msg[0] == "hyp":
                    _, text, is_final, words, audio_end = msg
                    self._publish(Hypothesis(text, is_final, [Word(*w) for w in words], audio_end, 0.0))
                elif msg[0] == "error":
                    self._fail(STTError(f"{self.name}: {msg[1]}: {msg[2]}"))
                elif msg[0] == "ended":
                    self._ended.set()
        except (EOFError, OSError):
            if self._loop is not None:
                with contextlib.suppress(Exception):
                    self._loop.remove_reader(conn.fileno())
            if not self._ended.is_set() and not self._closed:
                self._fail(STTError(f"{self.name}: the STT process exited"))
            self._ended.set()
