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
import json
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch

from kamevoice.audio import resample, to_mono, write_stereo
from kamevoice.frontend.generator import SamplingOptions
from kamevoice.runtime.clock import FRAME_SECONDS, LoopClock
from kamevoice.runtime.engine import Engine, EngineOptions
from kamevoice.runtime.events import EventLog
from kamevoice.runtime.latency import summarize, turn_latencies
from kamevoice.runtime.session import Session, SessionOutput
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
    frontend,
    audio: np.ndarray,
    stt,
    llm,
    events_path,
    tail_s: float,
    sampling: SamplingOptions,
    realtime: bool,
    scheduler_settings=None,
    on_engine=None,
) -> FileRunResult:
    codec = frontend.codec
    rate, size = codec.sample_rate, codec.frame_size
    clock = LoopClock()
    events = EventLog(clock, events_path)
    if stt is not None:
        stt.events, stt.clock = events, clock
    engine = Engine(frontend.model, codec, EngineOptions(max_sessions=1, sampling=sampling, paced=realtime))
    if on_engine is not None:
        on_engine(engine)  # e.g. evaluation hooks on the generator (kamevoice.frontend.policies.silence)
    model_frames: dict[int, np.ndarray] = {}

    def on_output(out: SessionOutput) -> None:
        if out.kind == "audio" and out.pcm is not None:
            model_frames[out.frame] = out.pcm

    session = Session(
        engine,
        frontend.tokenizer,
        stt=stt,
        llm=llm,
        events=events,
        on_output=on_output,
        sample_rate=rate,
        scheduler_settings=scheduler_settings,
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
            engine._handle_requests()
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
        await session.close("end of file")
        if realtime:
            engine.stop()
        engine.__exit__(None, None, None)

    model = np.zeros_like(padded)
    for frame, pcm in model_frames.items():
        if 0 <= frame < total_frames:
            model[frame * size : (frame + 1) * size] = pcm
    logged = events.events
    latencies = turn_latencies(logged)
    transcript = {
        "user": [
            {"text": e["text"], "start": e["start"], "end": e["end"]}
            for e in logged
            if e["kind"] == "user_turn"
        ],
        "assistant": "".join(e["piece"] for e in logged if e["kind"] == "text")
        .replace("\u2581", " ")
        .strip(),
        "oracles": [e["text"] for e in logged if e["kind"] == "oracle_end"],
        "latency": summarize(latencies),
    }
    return FileRunResult(padded, model, rate, logged, transcript)


def run_file(
    frontend,
    audio: np.ndarray,
    audio_rate: int,
    *,
    stt=None,
    llm=None,
    events_path: str | Path | None = None,
    tail_s: float = DEFAULT_TAIL_S,
    sampling: SamplingOptions = SamplingOptions(),
    seed: int = 42,
    realtime: bool = False,
    scheduler_settings=None,
    on_engine: Callable[[Engine], None] | None = None,
) -> FileRunResult:
    """Run one audio file through a session (see module doc).

    `on_engine(engine)` is called once the session's engine is built, before its first step.
    """
    if frontend.codec is None:
        raise ValueError("file mode needs a front-end with its codec loaded")
    torch.manual_seed(seed)
    mono = resample(to_mono(audio), audio_rate, frontend.codec.sample_rate)

    def main():
        return _session_run(
            frontend, mono, stt, llm, events_path, tail_s, sampling, realtime, scheduler_settings, on_engine
        )

    return asyncio.run(main()) if realtime else run_virtual(main)


def write_outputs(
    result: FileRunResult, out_wav: str | Path | None, transcript_path: str | Path | None
) -> None:
    if out_wav is not None:
        write_stereo(out_wav, result.user, result.model, result.sample_rate)
    if transcript_path is not None:
        Path(transcript_path).write_text(json.dumps(result.transcript, indent=2) + "\n", encoding="utf-8")
