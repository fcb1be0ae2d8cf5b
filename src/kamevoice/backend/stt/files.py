"""Audio files into a recognition stream: reading (soundfile) and pushing in 80 ms chunks."""

from __future__ import annotations

import asyncio
import time
from pathlib import Path

import numpy as np

from kamevoice.audio import read_audio
from kamevoice.backend.stt.base import Hypothesis, STTStream
from kamevoice.runtime.clock import FRAME_SECONDS


async def stream_audio(
    stt: STTStream, audio: np.ndarray, rate: int, realtime: bool = False, chunk_s: float = FRAME_SECONDS
) -> None:
    """Push `audio` into `stt` in `chunk_s` chunks (80 ms: one front-end frame), then `finish()` it.

    With `realtime` the chunks are paced by the wall clock, as from a microphone;
    otherwise they go as fast as the recogniser takes them (yielding to the loop
    between chunks so readers keep up).
    """
    step = max(1, round(chunk_s * rate))
    t0 = time.monotonic()
    try:
        for k, i in enumerate(range(0, len(audio), step)):
            if realtime:
                delay = t0 + k * chunk_s - time.monotonic()
                if delay > 0:
                    await asyncio.sleep(delay)
            await stt.push(audio[i : i + step], rate)
            await asyncio.sleep(0)
    finally:
        await stt.finish()


async def stream_file(
    stt: STTStream, path: str | Path, realtime: bool = False, chunk_s: float = FRAME_SECONDS
) -> float:
    """`stream_audio` for a file; returns the file's duration in seconds."""
    audio, rate = read_audio(path)
    await stream_audio(stt, audio, rate, realtime, chunk_s)
    return len(audio) / rate


async def transcribe_audio(
    stt: STTStream, audio: np.ndarray, rate: int, realtime: bool = False
) -> list[Hypothesis]:
    """Stream `audio` through `stt` and collect every hypothesis (partials and finals) in order."""
    feeder = asyncio.create_task(stream_audio(stt, audio, rate, realtime))
    try:
        hyps = [hyp async for hyp in stt]
    except BaseException:
        feeder.cancel()
        await asyncio.gather(feeder, return_exceptions=True)
        await stt.aclose()
        raise
    await feeder
    return hyps


async def transcribe_file(stt: STTStream, path: str | Path, realtime: bool = False) -> list[Hypothesis]:
    """`transcribe_audio` for a file."""
    audio, rate = read_audio(path)
    return await transcribe_audio(stt, audio, rate, realtime)
