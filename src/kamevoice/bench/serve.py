"""`kamevoice bench serve`: load on a real server, measured.

For each client count N, a `KameServer` with `max_sessions=N` (so the engine
steps a batch of N) is started in-process on loopback, and N simulated
clients connect over WebSocket, each sending the question speech in a loop as
Ogg/Opus at speaking pace (one 80 ms frame every 80 ms on an absolute
schedule) for `seconds`, with the back-end (STT + LLM) on unless told
otherwise. Clients and server share this process and its CPU, as a browser
on the same laptop would.

Figures per N (the first `WARMUP_S` are left out):
- step time percentiles of the engine (the batch step: encode, generate, decode),
- overruns (paced steps longer than 80 ms) and underruns (a client's frame late),
- audio latency: for model audio frame k, its arrival at the client minus the
  send time of user frame k + max_delay. The model cannot emit frame k before
  it has heard user frame k + max_delay (its built-in delay of max_delay x 80 ms,
  printed apart), so this is the delay the system adds on top: queueing, the
  step, Opus both ways, the socket. It grows without bound when the server
  cannot keep up.
- memory: resident set size of the process at the end of the round, and its peak.
- real time held: overruns under 5 % of steps and p90 added latency under
  `REALTIME_LATENCY_S`.
"""

from __future__ import annotations

import asyncio
import resource
import time
from dataclasses import asdict, dataclass
from typing import Any

import numpy as np

from kamevoice.clock import FRAME_SAMPLES, FRAME_SECONDS, SAMPLE_RATE

# Left out of the figures: connection set-up and the first (slower) steps.
WARMUP_S = 1.0
# A round "held real time" when p90 added latency stays under this (seconds) ...
REALTIME_LATENCY_S = 0.3
# ... and at most this share of steps overran the 80 ms budget.
REALTIME_OVERRUN_SHARE = 0.05
# A short round before the measured ones, whose figures are dropped (seconds).
WARMUP_ROUND_S = 3.0
# Silence between repetitions of the question (seconds), as a pause between turns.
PAUSE_S = 1.0
# Columns of the printed table when stdout is not a terminal.
TABLE_WIDTH = 150
# Extra time after the last frame for replies to arrive before the round is measured (seconds).
DRAIN_S = 1.0


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


def _pct(values, q: float) -> float | None:
    return round(float(np.percentile(values, q)), 1) if len(values) else None


def _rss_mb() -> tuple[float, float]:
    current = 0.0
    with open("/proc/self/status", encoding="ascii") as f:
        for line in f:
            if line.startswith("VmRSS:"):
                current = int(line.split()[1]) / 1024
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024  # KiB on Linux
    return round(current, 1), round(peak, 1)


def _frame_arrivals(client) -> list[float]:
    """Arrival time of each whole model frame, from the decoded chunks' sizes and times."""
    arrivals, total = [], 0
    for chunk, at in zip(client.got.audio_chunks, client.got.audio_times, strict=True):
        total += len(chunk)
        while (len(arrivals) + 1) * FRAME_SAMPLES <= total:
            arrivals.append(at)
    return arrivals


async def _client(url: str, speech: np.ndarray, seconds: float, start: float):
    from kamevoice.server.client import ChatClient

    loop_audio = np.concatenate([speech, np.zeros(int(PAUSE_S * SAMPLE_RATE), np.float32)])
    n_frames = int(seconds / FRAME_SECONDS)
    async with ChatClient.connect(url) as client:
        t0 = time.perf_counter()
        for f in range(n_frames):
            offset = (f * FRAME_SAMPLES) % (len(loop_audio) - FRAME_SAMPLES)
            await client.send_frame(loop_audio[offset : offset + FRAME_SAMPLES])
            await asyncio.sleep(max(0.0, t0 + (f + 1) * FRAME_SECONDS - time.perf_counter()))
        await asyncio.sleep(DRAIN_S)
        return client


async def run_round(frontend, settings, clients: int, seconds: float, speech: np.ndarray) -> RoundResult:
    """One client count: a fresh server, N paced clients, the figures."""
    from kamevoice.server.app import KameServer

    server_settings = settings.model_copy(
        update={"server": settings.server.model_copy(update={"max_sessions": clients, "port": 0})}
    )
    server = KameServer(frontend, server_settings)
    host, port = await server.start("127.0.0.1", 0)
    url = f"http://{host}:{port}"
    stats = server.engine.stats
    try:
        started = time.perf_counter()
        tasks = [asyncio.create_task(_client(url, speech, seconds, started)) for _ in range(clients)]
        await asyncio.sleep(WARMUP_S)
        steps0, over0, under0 = stats.steps, stats.overruns, stats.underruns
        results = await asyncio.gather(*tasks, return_exceptions=True)
        steps = stats.steps - steps0
        step_ms = list(stats.step_ms)[-steps:] if steps > 0 else []
        overruns, underruns = stats.overruns - over0, stats.underruns - under0
    finally:
        await server.stop()
    delay = server.engine.max_delay
    latencies, sent, received, failed = [], 0, 0, 0
    for client in results:
        if isinstance(client, BaseException):
            failed += 1
            continue
        sent += client.sent_frames
        arrivals = _frame_arrivals(client)
        received += len(arrivals)
        warm = client.send_times[0] + WARMUP_S if client.send_times else 0.0
        for k, at in enumerate(arrivals):
            if k + delay < len(client.send_times) and client.send_times[k + delay] >= warm:
                latencies.append(at - client.send_times[k + delay])
    rss, peak = _rss_mb()
    lat_ms = [x * 1e3 for x in latencies]
    p90 = _pct(lat_ms, 90)
    realtime = (
        failed == 0
        and steps > 0
        and overruns <= REALTIME_OVERRUN_SHARE * steps
        and p90 is not None
        and p90 < REALTIME_LATENCY_S * 1e3
    )
    return RoundResult(
        clients=clients,
        seconds=seconds,
        steps=steps,
        step_ms_p50=_pct(step_ms, 50) or 0.0,
        step_ms_p90=_pct(step_ms, 90) or 0.0,
        step_ms_p99=_pct(step_ms, 99) or 0.0,
        step_ms_max=round(max(step_ms), 1) if step_ms else 0.0,
        overruns=overruns,
        underruns=underruns,
        latency_ms_p50=_pct(lat_ms, 50),
        latency_ms_p90=p90,
        latency_ms_p99=_pct(lat_ms, 99),
        model_delay_ms=round(delay * FRAME_SECONDS * 1e3, 1),
        frames_sent=sent,
        frames_received=received,
        rss_mb=rss,
        peak_rss_mb=peak,
        failed_clients=failed,
        realtime=realtime,
    )


async def run_bench(frontend, settings, client_counts: list[int], seconds: float, speech: np.ndarray):
    """Every client count in turn (after an unreported warm-up round); returns their `RoundResult`s."""
    await run_round(frontend, settings, 1, WARMUP_ROUND_S, speech)  # first-use costs: allocations, caches
    return [await run_round(frontend, settings, n, seconds, speech) for n in client_counts]


def question_speech() -> np.ndarray:
    """The benchmark's question, spoken by espeak-ng, as float32 24 kHz mono with a pause before it."""
    from kamevoice.backend.stt.resample import resample
    from kamevoice.data.tts import get_engine

    speech = get_engine("espeak").synthesize("What time does the store open on Saturday?")
    audio = resample(np.asarray(speech.audio, dtype=np.float32), speech.sample_rate, SAMPLE_RATE)
    return np.concatenate([np.zeros(SAMPLE_RATE // 2, np.float32), audio])


def serve_command(args: Any) -> int:
    """Handler of `kamevoice bench serve`."""
    import sys

    import torch
    from rich.console import Console
    from rich.table import Table

    from kamevoice.commands import NO_DEFAULT_MODEL
    from kamevoice.config import load_settings
    from kamevoice.errors import ConfigError
    from kamevoice.frontend.loading import load_frontend

    settings = load_settings()
    checkpoint = args.checkpoint or settings.frontend.checkpoint
    if not checkpoint:
        raise ConfigError(NO_DEFAULT_MODEL)
    counts = [int(c) for c in str(args.clients).split(",") if c.strip()]
    if not counts or min(counts) < 1:
        raise ConfigError(f"--clients: expected positive counts, got {args.clients!r}")
    if not 2 * WARMUP_S < args.seconds <= 150:  # the engine keeps the last 2000 step times (160 s)
        raise ConfigError(f"--seconds must be in ({2 * WARMUP_S:g}, 150], got {args.seconds}")
    if args.no_oracle:
        settings = settings.model_copy(
            update={"server": settings.server.model_copy(update={"oracle": False})}
        )
    fs = settings.frontend
    frontend = load_frontend(checkpoint, device=args.device or fs.device, dtype=fs.dtype)
    results = asyncio.run(run_bench(frontend, settings, counts, args.seconds, question_speech()))

    device = str(next(frontend.model.parameters()).device)
    table = Table(
        title=f"kamevoice bench serve ({device}, {checkpoint}, back-end {'off' if args.no_oracle else 'on'})"
    )
    columns = (
        "clients", "step p50/p90/p99/max ms", "overruns", "underruns",
        "added latency p50/p90/p99 ms", "frames in/out", "RSS / peak MB", "real time",
    )  # fmt: skip
    for col in columns:
        table.add_column(col, justify="right")
    for r in results:
        table.add_row(
            str(r.clients),
            f"{r.step_ms_p50}/{r.step_ms_p90}/{r.step_ms_p99}/{r.step_ms_max}",
            f"{r.overruns}/{r.steps}",
            str(r.underruns),
            f"{r.latency_ms_p50}/{r.latency_ms_p90}/{r.latency_ms_p99}",
            f"{r.frames_sent}/{r.frames_received}",
            f"{r.rss_mb:.0f} / {r.peak_rss_mb:.0f}",
            ("yes" if r.realtime else "no") + (f" ({r.failed_clients} failed)" if r.failed_clients else ""),
        )
    # Wide enough for the table when the output is a pipe or a file (rich assumes 80 columns there).
    console = Console(width=None if sys.stdout.isatty() else TABLE_WIDTH)
    console.print(table)
    console.print(
        f"added latency excludes the model's built-in delay of {results[0].model_delay_ms:.0f} ms; "
        f"first {WARMUP_S:g} s left out; each N runs with max_sessions=N"
    )
    if args.json:
        payload = {
            "device": device,
            "torch": torch.__version__,
            "threads": torch.get_num_threads(),
            "checkpoint": str(checkpoint),
            "backend": not args.no_oracle,
            "frame_budget_ms": FRAME_SECONDS * 1e3,
            "results": [asdict(r) for r in results],
        }
        from kamevoice.bench.report import write_json

        write_json(payload, args.json)
    return 0
