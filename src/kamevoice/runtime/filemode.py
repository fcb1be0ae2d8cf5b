"""File mode: play an audio file into a session and record both sides.

`kamevoice run question.wav --out reply.wav --events events.jsonl`

On the virtual clock (default) the whole session runs on a `VirtualTimeLoop`
with the engine stepped on the loop: the knowledge-base back-end's latency is
simulated by its settings (first-token and per-word delays), results are
deterministic for a seed, and the run is as fast as the machine allows. With
`--realtime` it runs on the wall clock (engine on its thread, audio pushed at
speaking pace), so a real LLM's latency is real.

Outputs: a stereo WAV aligned with the input (user left, model right: model
frame f at f x 80 ms), the event log (JSONL), and a transcript JSON with both
sides and the per-turn latencies.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch

from kamevoice.audio import resample, to_mono, write_stereo
from kamevoice.backend.factory import Backend
from kamevoice.frontend.policies import DecodingPolicy
from kamevoice.frontend.sampling import SamplingOptions
from kamevoice.runtime.clock import FRAME_SECONDS, LoopClock
from kamevoice.runtime.engine import Engine, EngineOptions
from kamevoice.runtime.events import Event, EventLog
from kamevoice.runtime.latency import summarize, turn_latencies
from kamevoice.runtime.messages import EndCause, EventKind
from kamevoice.runtime.session import WORD_START, OutputKind, Session, SessionOutput
from kamevoice.runtime.virtual_loop import run_virtual

# Silence played after the file so the reply can finish (seconds).
DEFAULT_TAIL_S = 4.0


@dataclass
class FileRunResult:
    """What a file run produced."""

    user: np.ndarray  # [samples] float32 at `sample_rate`
    model: np.ndarray  # [samples] float32, model audio aligned with `user`
    sample_rate: int
    events: list[dict]
    transcript: dict[str, Any] = field(default_factory=dict)


async def _session_run(
    frontend: Any,
    audio: np.ndarray,
    backend: Backend | None,
    events_path: str | Path | None,
    tail_s: float,
    sampling: SamplingOptions,
    realtime: bool,
    policies: Sequence[DecodingPolicy],
) -> FileRunResult:
    codec = frontend.codec
    rate, size = codec.sample_rate, codec.frame_size
    events = EventLog(LoopClock(), events_path)
    stt = backend.stt(events) if backend is not None and backend.stt is not None else None
    llm = backend.llm() if backend is not None and backend.llm is not None else None
    engine = Engine(
        frontend.model,
        codec,
        EngineOptions(max_sessions=1, sampling=sampling, paced=realtime),
        policies=policies,
    )
    model_frames: dict[int, np.ndarray] = {}

    def on_output(out: SessionOutput) -> None:
        if out.kind is OutputKind.AUDIO and out.pcm is not None:
            model_frames[out.frame] = out.pcm

    session = Session(
        engine,
        frontend.tokenizer,
        stt=stt,
        llm=llm,
        events=events,
        on_output=on_output,
        sample_rate=rate,
        scheduler_settings=backend.scheduler if backend is not None else None,
    )
    total_frames = -(-len(audio) // size) + round(tail_s / FRAME_SECONDS)
    padded = np.zeros(total_frames * size, dtype=np.float32)
    padded[: len(audio)] = audio
    loop = asyncio.get_running_loop()
    if realtime:
        engine.start()
    else:
        engine.__enter__()
    try:
        await session.start()
        if not realtime:
            engine.admit()
        t0 = loop.time()
        for f in range(total_frames):  # the file, then `tail_s` of silence for the reply to finish
            await asyncio.sleep(max(0.0, t0 + f * FRAME_SECONDS - loop.time()))
            await session.push_audio(padded[f * size : (f + 1) * size])
            if not realtime:
                engine.step()
            await asyncio.sleep(0)
        await session.end_input()
        if realtime:
            await asyncio.sleep(0.5)  # the last frames' results hop back from the engine thread
        if session.scheduler is not None:
            await asyncio.wait_for(session.scheduler.wait_idle(), timeout=30)
    finally:
        await session.close("end of file", EndCause.END_OF_INPUT)
        if llm is not None:
            with contextlib.suppress(Exception):
                await llm.aclose()
        if realtime:
            engine.stop()
        engine.__exit__(None, None, None)

    model = np.zeros_like(padded)
    for frame, pcm in model_frames.items():
        if 0 <= frame < total_frames:
            model[frame * size : (frame + 1) * size] = pcm
    logged = events.events
    return FileRunResult(padded, model, rate, logged, transcript_of(logged))


def transcript_of(events: list[Event]) -> dict[str, Any]:
    """Both sides of a session and its per-turn latency, from its event log."""
    return {
        "user": [
            {"text": e["text"], "start": e["start"], "end": e["end"]}
            for e in events
            if e["kind"] == EventKind.USER_TURN
        ],
        "assistant": "".join(e["piece"] for e in events if e["kind"] == EventKind.FRONTEND_TEXT)
        .replace(WORD_START, " ")
        .strip(),
        "oracles": [e["text"] for e in events if e["kind"] == EventKind.ORACLE_END],
        "latency": summarize(turn_latencies(events)),
    }


def run_file(
    frontend: Any,
    audio: np.ndarray,
    audio_rate: int,
    *,
    backend: Backend | None = None,
    events_path: str | Path | None = None,
    tail_s: float = DEFAULT_TAIL_S,
    sampling: SamplingOptions = SamplingOptions(),
    seed: int = 42,
    realtime: bool = False,
    policies: Sequence[DecodingPolicy] = (),
) -> FileRunResult:
    """Run one audio file through a session (see module doc).

    `backend`: the conversation's STT and LLM (None: the front-end alone, the oracle stream
    stays PAD); `policies`: decoding policies for the front-end (e.g. forced silence).
    """
    if frontend.codec is None:
        raise ValueError("file mode needs a front-end with its codec loaded")
    torch.manual_seed(seed)
    mono = resample(to_mono(audio), audio_rate, frontend.codec.sample_rate)

    def main():
        return _session_run(frontend, mono, backend, events_path, tail_s, sampling, realtime, policies)

    return asyncio.run(main()) if realtime else run_virtual(main)


def write_outputs(
    result: FileRunResult, out_wav: str | Path | None, transcript_path: str | Path | None
) -> None:
    if out_wav is not None:
        write_stereo(out_wav, result.user, result.model, result.sample_rate)
    if transcript_path is not None:
        Path(transcript_path).write_text(json.dumps(result.transcript, indent=2) + "\n", encoding="utf-8")
