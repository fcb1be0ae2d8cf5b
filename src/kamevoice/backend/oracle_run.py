"""The back-end alone: STT partials and oracles, timestamped, as they grow (`kamevoice oracle`).

Audio is pushed in 80 ms chunks paced by the loop's clock: on the virtual clock
(default) that is faster than real time and deterministic for the offline
back-end; with `realtime` it is the wall clock, as from a microphone. The
oracles go into an `OracleFeed` without a front-end, so the event log holds the
same `oracle.*` events (the oracle's text as it grows) a full session logs.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import sys
from pathlib import Path
from typing import TextIO

import numpy as np

from kamevoice.audio import read_audio, to_mono
from kamevoice.backend.factory import Backend
from kamevoice.backend.scheduler import OracleScheduler
from kamevoice.runtime.clock import FRAME_SECONDS, LoopClock
from kamevoice.runtime.events import Event, EventLog
from kamevoice.runtime.messages import EventKind
from kamevoice.runtime.oracle_feed import OracleFeed
from kamevoice.runtime.virtual_loop import run_virtual


class OraclePrinter:
    """Prints transcripts and each oracle as it grows (a word at a time); subscribe it to a log."""

    def __init__(self, out: TextIO):
        self.out = out
        self._words = 0

    def __call__(self, event: Event) -> None:
        kind, t = event["kind"], event["t"]
        if kind in (EventKind.STT_PARTIAL, EventKind.STT_FINAL):
            label = "final  " if kind == EventKind.STT_FINAL else "partial"
            self._say(t, f"{label}: {event['text']}")
        elif kind == EventKind.ORACLE_BEGIN:
            self._words = 0
        elif kind == EventKind.ORACLE_TEXT:
            words = len(event["text"].split())
            if words > self._words:
                self._words = words
                self._say(t, f"oracle #{event['gen']}: {event['text']}")
        elif kind == EventKind.ORACLE_END:
            state = "cancelled" if event["cancelled"] else "done"
            self._say(t, f"oracle #{event['gen']} {state}: {event['text']}")

    def _say(self, t: float, what: str) -> None:
        print(f"[{t:7.2f}s] {what}", file=self.out, flush=True)


async def oracle_session(
    audio: np.ndarray, rate: int, backend: Backend, out: TextIO | None = None
) -> EventLog:
    """Run the back-end's STT and scheduler over `audio`; returns the event log."""
    events = EventLog(LoopClock())
    if out is not None:
        events.subscribe(OraclePrinter(out))
    if backend.stt is None or backend.llm is None:
        raise ValueError("the back-end alone needs an STT and an LLM")
    stt = backend.stt(events)
    llm = await asyncio.to_thread(backend.llm)
    scheduler = OracleScheduler(llm, OracleFeed(events), settings=backend.scheduler, events=events)
    scheduler.warm_up()

    async def read() -> None:
        async for hyp in stt:
            if hyp.text.strip():
                scheduler.on_transcript(hyp.text, hyp.is_final)

    reader = asyncio.create_task(read())
    loop = asyncio.get_running_loop()
    chunk = max(1, int(rate * FRAME_SECONDS))
    t0 = loop.time()
    try:
        for i, start in enumerate(range(0, len(audio), chunk)):
            await asyncio.sleep(max(0.0, t0 + i * FRAME_SECONDS - loop.time()))
            await stt.push(audio[start : start + chunk], rate)
        await stt.finish()
        await reader
        await asyncio.wait_for(scheduler.wait_idle(), timeout=60)
    finally:
        reader.cancel()
        with contextlib.suppress(asyncio.CancelledError, Exception):
            await reader
        await scheduler.aclose()
        with contextlib.suppress(Exception):
            await llm.aclose()
    return events


def run_oracle(
    audio: np.ndarray, rate: int, backend: Backend, *, realtime: bool = False, out: TextIO | None = None
) -> list[Event]:
    """`oracle_session` on the virtual clock (or the wall clock); returns the events."""

    async def main() -> EventLog:
        return await oracle_session(to_mono(audio), rate, backend, out)

    events = asyncio.run(main()) if realtime else run_virtual(main)
    return events.events


def run_oracle_file(
    path: str | Path, backend: Backend, realtime: bool = False, json_path: str | None = None
) -> int:
    """The `kamevoice oracle` command: prints as it goes, writes the events as JSONL on request."""
    audio, rate = read_audio(path)
    out = sys.stderr if json_path == "-" else sys.stdout
    events = run_oracle(audio, rate, backend, realtime=realtime, out=out)
    if json_path:
        lines = "".join(json.dumps(e, ensure_ascii=False) + "\n" for e in events)
        if json_path == "-":
            sys.stdout.write(lines)
        else:
            Path(json_path).write_text(lines, encoding="utf-8")
    return 0
