"""`kamevoice oracle AUDIO`: the back-end alone. STT partials and oracles, timestamped, as they grow.

The file is pushed in 80 ms chunks paced by the loop's clock: on the virtual
clock (default) that is faster than real time and deterministic for the
offline back-end; with `realtime` it is the wall clock, as from a microphone.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import sys
from pathlib import Path
from typing import TextIO

import numpy as np

from kamevoice.audio import read_audio
from kamevoice.backend.llm.factory import make_llm
from kamevoice.backend.scheduler import OracleScheduler
from kamevoice.backend.stt import make_stt
from kamevoice.runtime.clock import FRAME_SECONDS, LoopClock
from kamevoice.runtime.events import EventLog
from kamevoice.runtime.virtual_loop import run_virtual


class PrintingSink:
    """An `OracleSink` that prints each oracle as it grows (a word at a time)."""

    def __init__(self, clock, out: TextIO):
        self.clock, self.out = clock, out
        self._words = 0

    def _say(self, what: str) -> None:
        print(f"[{self.clock.now():7.2f}s] {what}", file=self.out, flush=True)

    def begin(self, generation: int) -> None:
        self._words = 0

    def update(self, generation: int, text: str) -> None:
        words = len(text.split())
        if words > self._words:
            self._words = words
            self._say(f"oracle #{generation}: {text}")

    def end(self, generation: int, text: str, cancelled: bool) -> None:
        self._say(f"oracle #{generation} {'cancelled' if cancelled else 'done'}: {text}")


async def oracle_session(audio: np.ndarray, rate: int, settings, out: TextIO, events: EventLog | None = None):
    """Run STT + scheduler over `audio`; returns the event log."""
    clock = LoopClock()
    events = events or EventLog(clock)
    events.clock = clock
    stt = make_stt(settings.stt, events=events, clock=clock)
    sink = PrintingSink(clock, out)
    scheduler = OracleScheduler(make_llm(settings.llm), sink, settings=settings.scheduler, events=events)

    async def read() -> None:
        async for hyp in stt:
            label = "final  " if hyp.is_final else "partial"
            print(f"[{clock.now():7.2f}s] {label}: {hyp.text}", file=out, flush=True)
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
    return events


def run_oracle_file(path: str | Path, settings, realtime: bool = False, json_path: str | None = None) -> int:
    """The `kamevoice oracle` command."""
    audio, rate = read_audio(path)
    if audio.ndim == 2:
        audio = audio.mean(axis=1)
    out = sys.stderr if json_path == "-" else sys.stdout

    async def main():
        return await oracle_session(audio, rate, settings, out)

    events = asyncio.run(main()) if realtime else run_virtual(main)
    if json_path:
        lines = "".join(json.dumps(e, ensure_ascii=False) + "\n" for e in events.events)
        if json_path == "-":
            sys.stdout.write(lines)
        else:
            Path(json_path).write_text(lines, encoding="utf-8")
    return 0
