"""One round: a fresh server for N sessions, N paced clients against it, the round's figures.

Figures of the engine and the back-end (the first `WARMUP_S` are left out):
- step time percentiles of the engine (the batch step: encode, generate, decode),
- overruns (paced steps longer than 80 ms) and underruns (a client's frame late),
- `step_rtf_p50` / `p90`: the engine's batch step (codec encode, model, codec
  decode) over the 80 ms frame it produces, for all N sessions at once
  (a real-time factor, "compute per second of audio", 1.0 = exactly real time),
- back-end lag: mean lag of STT partials and finals behind the audio (the STT
  children run niced: on a full machine they fall behind before frames do).
Audio latency is defined in `clients`, CPU in `cpu`, memory in `memory`, real time in `realtime`.
"""

from __future__ import annotations

import asyncio
import time
from dataclasses import asdict, dataclass
from typing import Any

import numpy as np

from kamevoice.bench.load.clients import ClientThread, client_figures
from kamevoice.bench.load.cpu import CpuSample, cpu_figures, cpu_sample
from kamevoice.bench.load.memory import rss_mb
from kamevoice.bench.load.realtime import backend_realtime, frames_realtime
from kamevoice.runtime.clock import FRAME_SECONDS

# Left out of the figures: connection set-up and the first (slower) steps.
WARMUP_S = 1.0
# CPU figures start this long into a round (at most half of it): STT children load their models first.
CPU_WARMUP_S = 3.0
# The round's server listens here: loopback, on a port the system picks.
HOST = "127.0.0.1"


@dataclass
class RoundResult:
    """Figures of one client count."""

    clients: int
    seconds: float
    steps: int
    step_ms_p50: float
    step_ms_p90: float
    step_ms_p99: float
    step_ms_max: float
    overruns: int
    underruns: int
    latency_ms_p50: float | None
    latency_ms_p90: float | None
    latency_ms_p99: float | None
    model_delay_ms: float
    frames_sent: int
    frames_received: int
    rss_mb: float
    peak_rss_mb: float
    failed_clients: int
    realtime: bool
    frames_realtime: bool = False  # the frame loop alone: overruns and added latency
    step_rtf_p50: float = 0.0
    step_rtf_p90: float = 0.0
    cpu_window_s: float = 0.0
    cpu_s: float = 0.0  # all parts: this process + STT children
    cpu_engine_s: float = 0.0  # the engine thread (codec + model)
    # The engine thread's CPU per step: the step's cost without the waiting a busy machine adds to
    # its wall time (a step's RTF on an idle machine is about this / 80 ms).
    engine_cpu_ms_per_step: float = 0.0
    cpu_stt_s: float = 0.0  # the STT child processes
    cpu_other_s: float = 0.0  # the rest of this process but the clients (event loop, Opus, retrieval)
    cpu_rtf: float = 0.0  # cpu_s / (clients x cpu_window_s): CPU per second of one conversation
    cpu_client_s: float = 0.0  # the simulated clients' thread (not part of a session)
    cpu_rtf_with_clients: float = 0.0  # (cpu_s + cpu_client_s) / (clients x cpu_window_s)
    cpu_cores: float = 0.0  # cpu_s / cpu_window_s
    child_processes: int = 0  # STT children (one per session) and multiprocessing helpers
    stt_partial_lag_s: float | None = None
    stt_final_lag_s: float | None = None


@dataclass(frozen=True)
class _Driven:
    """What driving a round's clients left: their results, the engine's counters, two CPU samples."""

    clients: list[Any]
    steps: int
    step_ms: list[float]
    overruns: int
    underruns: int
    cpu_first: CpuSample
    cpu_last: CpuSample
    cpu_steps: int  # engine steps between the two CPU samples


def percentile(values, q: float) -> float | None:
    """The q-th percentile of `values`, to 0.1 (None when there are none)."""
    return round(float(np.percentile(values, q)), 1) if len(values) else None


def stt_lags(metrics) -> tuple[float | None, float | None]:
    """Mean lag of STT partials and finals (seconds) from the server's `stt_lag_seconds` histogram."""
    sums: dict[str, float] = {}
    counts: dict[str, float] = {}
    for metric in metrics.registry.collect():
        if not metric.name.endswith("stt_lag_seconds"):
            continue
        for sample in metric.samples:
            final = sample.labels.get("final", "")
            if sample.name.endswith("_sum"):
                sums[final] = sample.value
            elif sample.name.endswith("_count"):
                counts[final] = sample.value

    def mean(label: str) -> float | None:
        return round(sums[label] / counts[label], 3) if counts.get(label) else None

    return mean("false"), mean("true")


async def _drive(server, url: str, clients: int, seconds: float, speech: np.ndarray, cpu_from: float):
    """Run the clients against `server`; sample its counters after the warm-up and CPU at both ends."""
    stats = server.engine.stats
    engine_thread = server.engine.thread_id
    started = time.perf_counter()
    client_thread = ClientThread(url, speech, seconds, clients)
    client_thread.start()
    await asyncio.sleep(WARMUP_S)
    steps0, over0, under0 = stats.steps, stats.overruns, stats.underruns
    await asyncio.sleep(max(0.0, started + cpu_from - time.perf_counter()))
    cpu0, cpu_steps0 = cpu_sample(engine_thread, client_thread.native_id), stats.steps

    async def last_sample() -> tuple[CpuSample, int]:  # when the clients stop talking, before the drain
        await asyncio.sleep(max(0.0, started + seconds - time.perf_counter()))
        return cpu_sample(engine_thread, client_thread.native_id), stats.steps

    ending = asyncio.create_task(last_sample())
    results = await client_thread.join()
    cpu1, cpu_steps1 = await ending
    steps = stats.steps - steps0
    step_ms = list(stats.step_ms)[-steps:] if steps > 0 else []
    overruns, underruns = stats.overruns - over0, stats.underruns - under0
    return _Driven(results, steps, step_ms, overruns, underruns, cpu0, cpu1, cpu_steps1 - cpu_steps0)


async def run_round(
    frontend, settings, clients: int, seconds: float, speech: np.ndarray, max_sessions: int | None = None
) -> RoundResult:
    """One client count: a fresh server, N paced clients, the figures."""
    from kamevoice.server.app import KameServer

    server_settings = settings.model_copy(
        update={
            "server": settings.server.model_copy(update={"max_sessions": max_sessions or clients, "port": 0})
        }
    )
    server = KameServer(frontend, server_settings)
    host, port = await server.start(HOST, 0)
    cpu_from = min(CPU_WARMUP_S, seconds / 2)
    try:
        driven = await _drive(server, f"http://{host}:{port}", clients, seconds, speech, cpu_from)
    finally:
        await server.stop()
    partial_lag, final_lag = stt_lags(server.metrics)
    delay = server.engine.max_delay
    frames = client_figures(driven.clients, delay, WARMUP_S)
    cpu = cpu_figures(driven.cpu_first, driven.cpu_last, seconds - cpu_from, clients, driven.cpu_steps)
    rss, peak = rss_mb()
    step_ms, lat_ms = driven.step_ms, frames.latencies_ms
    p90 = percentile(lat_ms, 90)
    frames_ok = frames_realtime(frames.failed_clients, driven.steps, driven.overruns, p90)
    backend_ok = backend_realtime(bool(settings.server.oracle), partial_lag, final_lag)
    p50 = percentile(step_ms, 50) or 0.0
    p90_step = percentile(step_ms, 90) or 0.0
    frame_ms = FRAME_SECONDS * 1e3
    return RoundResult(
        clients=clients,
        seconds=seconds,
        steps=driven.steps,
        step_ms_p50=p50,
        step_ms_p90=p90_step,
        step_ms_p99=percentile(step_ms, 99) or 0.0,
        step_ms_max=round(max(step_ms), 1) if step_ms else 0.0,
        overruns=driven.overruns,
        underruns=driven.underruns,
        latency_ms_p50=percentile(lat_ms, 50),
        latency_ms_p90=p90,
        latency_ms_p99=percentile(lat_ms, 99),
        model_delay_ms=round(delay * FRAME_SECONDS * 1e3, 1),
        frames_sent=frames.frames_sent,
        frames_received=frames.frames_received,
        rss_mb=rss,
        peak_rss_mb=peak,
        failed_clients=frames.failed_clients,
        realtime=frames_ok and backend_ok,
        frames_realtime=frames_ok,
        step_rtf_p50=round(p50 / frame_ms, 3),
        step_rtf_p90=round(p90_step / frame_ms, 3),
        **asdict(cpu),
        stt_partial_lag_s=partial_lag,
        stt_final_lag_s=final_lag,
    )
