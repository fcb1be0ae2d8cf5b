"""`kamevoice bench serve`: load on a real server, measured.

For each client count N, a `KameServer` with `max_sessions=N` (so the engine
steps a batch of N) is started in-process on loopback, and N simulated
clients connect over WebSocket, each sending the question speech in a loop as
Ogg/Opus at speaking pace (one 80 ms frame every 80 ms on an absolute
schedule) for `seconds`, with the back-end (STT + LLM) on unless told
otherwise. Clients and server share this process and its cores, as a browser
on the same laptop would; the clients run on a thread (and event loop) of their
own, so that their CPU is measured apart from the session's.

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
- real-time factors (two, both "compute per second of audio", 1.0 = exactly real time):
  `step_rtf_p50` / `p90`: the engine's batch step (codec encode, model, codec
  decode) over the 80 ms frame it produces, for all N sessions at once;
  `cpu_rtf`: CPU seconds of every part of the sessions (this process: engine
  thread, server event loop with WebSocket, Opus, scheduler and knowledge-base
  retrieval; plus the STT child processes, one per session) over the audio
  served (N x the measured seconds), i.e. the CPU one session costs per second
  of conversation; `cpu_cores` is the same CPU over wall time (cores kept busy).
  The simulated clients' own CPU (their Opus and WebSocket ends, what a browser
  would spend) is `cpu_client_s`, in neither; `cpu_rtf_with_clients` adds it.
  The CPU window leaves out the first `CPU_WARMUP_S`, when the STT children
  start and load their models.
- back-end lag: mean lag of STT partials and finals behind the audio (the STT
  children run niced: on a full machine they fall behind before frames do).
- real time held: overruns under 5 % of steps, p90 added latency under
  `REALTIME_LATENCY_S`, and (back-end on) mean STT partial lag (final lag
  for an STT without partials) under `REALTIME_STT_LAG_S`.
  `max_realtime_sessions` is the largest N whose round, and every smaller
  measured N's, held real time.
"""

from __future__ import annotations

import asyncio
import os
import resource
import threading
import time
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import numpy as np

from kamevoice.runtime.clock import FRAME_SAMPLES, FRAME_SECONDS, SAMPLE_RATE

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
# CPU figures start this long into a round (at most half of it): STT children load their models first.
CPU_WARMUP_S = 3.0
# With the back-end on, a round holds real time only while STT partials lag the audio by less than this
# on average (seconds): sphinx partials normally lag 0.1-0.3 s.
REALTIME_STT_LAG_S = 1.0


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


@dataclass
class CpuSample:
    """CPU seconds used so far by this process, its engine and client threads and each child process."""

    process_s: float
    engine_s: float
    children: dict[int, float]
    clients_s: float = 0.0


def _stat_cpu(path: str) -> tuple[int, float] | None:
    """(parent pid, user + system CPU seconds) from a /proc `stat` file, None when it is gone."""
    try:
        with open(path, encoding="ascii", errors="replace") as f:
            fields = f.read().rsplit(")", 1)[1].split()
    except (OSError, IndexError):
        return None
    tick = os.sysconf("SC_CLK_TCK")
    return int(fields[1]), (int(fields[11]) + int(fields[12])) / tick  # ppid, utime + stime


def cpu_sample(engine_thread: int | None, client_thread: int | None = None) -> CpuSample:
    """Where the CPU time of this process has gone so far (Linux /proc; zeros elsewhere)."""
    engine = _stat_cpu(f"/proc/self/task/{engine_thread}/stat") if engine_thread else None
    clients = _stat_cpu(f"/proc/self/task/{client_thread}/stat") if client_thread else None
    children: dict[int, float] = {}
    me = os.getpid()
    if os.path.isdir("/proc"):
        for entry in os.scandir("/proc"):
            if entry.name.isdigit():
                stat = _stat_cpu(f"/proc/{entry.name}/stat")
                if stat is not None and stat[0] == me:
                    children[int(entry.name)] = stat[1]
    engine_s, clients_s = (engine[1] if engine else 0.0), (clients[1] if clients else 0.0)
    return CpuSample(time.process_time(), engine_s, children, clients_s)


def _children_delta(first: CpuSample, last: CpuSample) -> float:
    """CPU the children used between two samples (a child born in between counts from its start)."""
    return sum(cpu - first.children.get(pid, 0.0) for pid, cpu in last.children.items())


def _stt_lags(metrics) -> tuple[float | None, float | None]:
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


async def _client(url: str, speech: np.ndarray, seconds: float):
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


class ClientThread:
    """N paced clients on a thread and event loop of their own (their CPU is measured apart)."""

    def __init__(self, url: str, speech: np.ndarray, seconds: float, clients: int):
        self.results: list[Any] = []
        self.native_id: int | None = None
        self._ready = threading.Event()
        args = (url, speech, seconds, clients)
        self._thread = threading.Thread(target=self._main, args=args, name="bench-clients", daemon=True)

    def _main(self, url: str, speech: np.ndarray, seconds: float, clients: int) -> None:
        self.native_id = threading.get_native_id()
        self._ready.set()

        async def all_clients() -> list[Any]:
            tasks = [_client(url, speech, seconds) for _ in range(clients)]
            return await asyncio.gather(*tasks, return_exceptions=True)

        self.results = asyncio.run(all_clients())

    def start(self) -> None:
        self._thread.start()
        self._ready.wait()

    async def join(self) -> list[Any]:
        await asyncio.to_thread(self._thread.join)
        return self.results


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
    engine_thread = server.engine.thread_id
    cpu_from = min(CPU_WARMUP_S, seconds / 2)
    try:
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
    finally:
        await server.stop()
    partial_lag, final_lag = _stt_lags(server.metrics)
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
    frames_realtime = (
        failed == 0
        and steps > 0
        and overruns <= REALTIME_OVERRUN_SHARE * steps
        and p90 is not None
        and p90 < REALTIME_LATENCY_S * 1e3
    )
    backend_on = bool(settings.server.oracle)
    # An STT without partials (Whisper with `partials` off) is judged by its finals.
    stt_lag = partial_lag if partial_lag is not None else final_lag
    backend_ok = not backend_on or (stt_lag is not None and stt_lag < REALTIME_STT_LAG_S)
    window = max(1e-9, seconds - cpu_from)
    stt_cpu = _children_delta(cpu0, cpu1)
    client_cpu = cpu1.clients_s - cpu0.clients_s
    process_cpu = cpu1.process_s - cpu0.process_s - client_cpu
    engine_cpu = cpu1.engine_s - cpu0.engine_s
    total_cpu = process_cpu + stt_cpu
    p50 = _pct(step_ms, 50) or 0.0
    p90_step = _pct(step_ms, 90) or 0.0
    frame_ms = FRAME_SECONDS * 1e3
    return RoundResult(
        clients=clients,
        seconds=seconds,
        steps=steps,
        step_ms_p50=p50,
        step_ms_p90=p90_step,
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
        realtime=frames_realtime and backend_ok,
        frames_realtime=frames_realtime,
        step_rtf_p50=round(p50 / frame_ms, 3),
        step_rtf_p90=round(p90_step / frame_ms, 3),
        cpu_window_s=round(window, 2),
        cpu_s=round(total_cpu, 2),
        cpu_engine_s=round(engine_cpu, 2),
        engine_cpu_ms_per_step=round(1e3 * engine_cpu / max(1, cpu_steps1 - cpu_steps0), 1),
        cpu_stt_s=round(stt_cpu, 2),
        cpu_other_s=round(process_cpu - engine_cpu, 2),
        cpu_rtf=round(total_cpu / (clients * window), 3),
        cpu_client_s=round(client_cpu, 2),
        cpu_rtf_with_clients=round((total_cpu + client_cpu) / (clients * window), 3),
        cpu_cores=round(total_cpu / window, 2),
        child_processes=len(cpu1.children),
        stt_partial_lag_s=partial_lag,
        stt_final_lag_s=final_lag,
    )


def max_realtime_sessions(results: list[RoundResult]) -> int:
    """The largest client count that held real time, with every smaller measured count (0: none)."""
    best = 0
    for r in sorted(results, key=lambda r: r.clients):
        if not r.realtime:
            break
        best = r.clients
    return best


async def run_bench(frontend, settings, client_counts: list[int], seconds: float, speech: np.ndarray):
    """Every client count in turn (after an unreported warm-up round); returns their `RoundResult`s."""
    await run_round(frontend, settings, 1, WARMUP_ROUND_S, speech)  # first-use costs: allocations, caches
    return [await run_round(frontend, settings, n, seconds, speech) for n in client_counts]


def question_speech(text: str = "What time does the store open on Saturday?") -> np.ndarray:
    """The benchmark's question, spoken by espeak-ng, as float32 24 kHz mono with a pause before it."""
    from kamevoice.audio import resample
    from kamevoice.tts import get_engine

    speech = get_engine("espeak").synthesize(text)
    audio = resample(np.asarray(speech.audio, dtype=np.float32), speech.sample_rate, SAMPLE_RATE)
    return np.concatenate([np.zeros(SAMPLE_RATE // 2, np.float32), audio])


def kb_question(kb_path: str | Path) -> str:
    """A question for the load: the knowledge base's first question, up to its first comma.

    KAME-tiny's knowledge-base questions gather several paraphrases ("What is the price of the
    vuma pillow, how much does it cost, ..."); the first is what a caller would say.
    """
    from kamevoice.knowledge.base import KnowledgeBase
    from kamevoice.knowledge.settings import KnowledgeSettings

    entries = KnowledgeBase.load(KnowledgeSettings(path=Path(kb_path), retriever="bm25")).entries
    question = next((e.question for e in entries if e.question), entries[0].answer)
    return question.split(",")[0].rstrip("?.! ") + "?"


def serve_command(args: Any) -> int:
    """Handler of `kamevoice bench serve`."""
    from kamevoice.startup import resolve, settings_from_args

    if args.kb and not Path(args.kb).is_file():
        from kamevoice.errors import ConfigError

        raise ConfigError(f"--kb: {args.kb} does not exist")
    settings = resolve(settings_from_args(args))  # the default every command runs: KAME-tiny, its KB
    checkpoint = settings.frontend.checkpoint
    question = args.question or "What time does the store open on Saturday?"
    payload = run_and_report(args, settings, checkpoint, question, "kamevoice bench serve")
    if args.json:
        from kamevoice.bench.report import write_json

        write_json(payload, args.json)
    if args.plot:
        print(f"plot: {plot_rounds(payload, args.plot)}")
    return 0


def tiny_command(args: Any) -> int:
    """Handler of `kamevoice bench tiny`: the tiny preset's sessions with STT and the knowledge base."""
    from kamevoice.bench.report import write_json
    from kamevoice.errors import ConfigError
    from kamevoice.startup import resolve, settings_from_args
    from kamevoice.tiny.defaults import tiny_back_end, tiny_knowledge_base

    kb = Path(args.kb) if args.kb else tiny_knowledge_base()
    if not kb.is_file():
        raise ConfigError(f"--kb: {kb} does not exist")
    settings = tiny_back_end(resolve(settings_from_args(args)), kb)  # a tiny-shaped model's world
    checkpoint = settings.frontend.checkpoint
    question = args.question or kb_question(kb)
    payload = run_and_report(args, settings, checkpoint, question, "kamevoice bench tiny")
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    write_json(payload, str(out / "bench.json"))
    plot = plot_rounds(payload, out / "bench.png")
    one = payload["results"][0]
    print(
        f"{one['clients']} session(s): step RTF p50 {one['step_rtf_p50']:.2f} "
        f"(p90 {one['step_rtf_p90']:.2f}), "
        f"CPU RTF {one['cpu_rtf']:.2f} per session (engine {one['cpu_engine_s']:.1f} s, STT "
        f"{one['cpu_stt_s']:.1f} s, rest {one['cpu_other_s']:.1f} s of CPU in "
        f"{one['cpu_window_s']:.1f} s; clients apart {one['cpu_client_s']:.1f} s, "
        f"{one['cpu_rtf_with_clients']:.2f} with them; "
        f"engine {one['engine_cpu_ms_per_step']:.0f} ms of CPU per step); "
        f"real time held up to {payload['max_realtime_sessions']} session(s) of those measured"
    )
    print(f"wrote {out / 'bench.json'} and {plot}")
    if args.json:
        write_json(payload, "-")
    return 0


def run_and_report(args: Any, settings, checkpoint: str, question: str, title: str) -> dict[str, Any]:
    """Run every client count of `args.clients`, print the table, return the JSON payload."""
    import sys

    import torch
    from rich.console import Console
    from rich.table import Table

    from kamevoice.errors import ConfigError
    from kamevoice.frontend.device import apply_cpu_threads
    from kamevoice.frontend.loading import load_frontend

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
    apply_cpu_threads(fs.cpu_threads)
    frontend = load_frontend(checkpoint, device=args.device or fs.device, dtype=fs.dtype)
    results = asyncio.run(run_bench(frontend, settings, counts, args.seconds, question_speech(question)))

    device = str(next(frontend.model.parameters()).device)
    backend = "off" if args.no_oracle else "on"
    table = Table(title=f"{title} ({device}, {checkpoint}, back-end {backend})")
    columns = (
        "clients", "step p50/p90/p99/max ms", "overruns", "underruns",
        "added latency p50/p90/p99 ms", "frames in/out", "step RTF p50", "CPU RTF / cores",
        "STT lag partial/final s", "RSS / peak MB", "real time",
    )  # fmt: skip
    for col in columns:
        table.add_column(col, justify="right")
    for r in results:
        lags = f"{r.stt_partial_lag_s}/{r.stt_final_lag_s}" if not args.no_oracle else "-"
        table.add_row(
            str(r.clients),
            f"{r.step_ms_p50}/{r.step_ms_p90}/{r.step_ms_p99}/{r.step_ms_max}",
            f"{r.overruns}/{r.steps}",
            str(r.underruns),
            f"{r.latency_ms_p50}/{r.latency_ms_p90}/{r.latency_ms_p99}",
            f"{r.frames_sent}/{r.frames_received}",
            f"{r.step_rtf_p50:.2f}",
            f"{r.cpu_rtf:.2f} / {r.cpu_cores:.2f}",
            lags,
            f"{r.rss_mb:.0f} / {r.peak_rss_mb:.0f}",
            ("yes" if r.realtime else "no") + (f" ({r.failed_clients} failed)" if r.failed_clients else ""),
        )
    # Wide enough for the table when the output is a pipe or a file (rich assumes 80 columns there).
    console = Console(width=None if sys.stdout.isatty() else TABLE_WIDTH)
    console.print(table)
    console.print(
        f"added latency excludes the model's built-in delay of {results[0].model_delay_ms:.0f} ms; "
        f"first {WARMUP_S:g} s left out ({CPU_WARMUP_S:g} s for CPU); each N runs with max_sessions=N; "
        f"RTF = compute per second of audio (step: batch step / 80 ms; CPU: the sessions' CPU, "
        f"clients apart, / (N x seconds)); {os.cpu_count()} CPU cores"
    )
    return {
        "device": device,
        "torch": torch.__version__,
        "threads": torch.get_num_threads(),
        "cpu_cores": os.cpu_count(),
        "checkpoint": str(checkpoint),
        "backend": not args.no_oracle,
        "stt": settings.stt.provider if not args.no_oracle else None,
        "llm": settings.llm.provider if not args.no_oracle else None,
        "knowledge_base": str(settings.llm.knowledge.path) if not args.no_oracle else None,
        "question": question,
        "frame_budget_ms": FRAME_SECONDS * 1e3,
        "definitions": DEFINITIONS,
        "max_realtime_sessions": max_realtime_sessions(results),
        "results": [asdict(r) for r in results],
    }


# What the figures mean, written into the JSON next to them.
DEFINITIONS = {
    "step_rtf": "engine batch step time (codec encode + model + codec decode, all sessions) / 80 ms frame",
    "cpu_rtf": "CPU seconds of this process but the simulated clients' thread (engine, event loop, "
    "Opus, scheduler, retrieval) and its STT child processes / (sessions x measured seconds): one "
    "session's CPU per second of conversation. A cost only where the round held real time: on a "
    "saturated CPU it is what the machine had to give, and work (steps, decodes) was skipped or delayed",
    "cpu_cores": "the same CPU seconds / measured seconds: cores kept busy",
    "cpu_rtf_with_clients": "cpu_rtf plus the simulated clients' CPU (their Opus encode and decode and "
    "WebSocket ends, what browsers would spend) per session and second",
    "engine_cpu_ms_per_step": "CPU of the engine thread per batch step: the step's cost without the "
    "waiting for a core that a busy machine adds to its wall time",
    "realtime": f"overruns <= {REALTIME_OVERRUN_SHARE:.0%} of steps, p90 added latency < "
    f"{REALTIME_LATENCY_S * 1e3:.0f} ms, and with the back-end on mean STT partial lag (final lag "
    "without partials) < "
    f"{REALTIME_STT_LAG_S:g} s",
    "max_realtime_sessions": "largest client count that held real time, with every smaller one measured",
}


def plot_rounds(payload: dict[str, Any], path: str | Path) -> Path:
    """Step time and real-time factors against the number of sessions, as a PNG."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    rounds = payload["results"]
    n = [r["clients"] for r in rounds]
    fig, (left, right) = plt.subplots(1, 2, figsize=(11, 4))
    left.plot(n, [r["step_ms_p50"] for r in rounds], "o-", label="step p50")
    left.plot(n, [r["step_ms_p90"] for r in rounds], "s--", label="step p90")
    left.axhline(payload["frame_budget_ms"], color="red", lw=1, label="80 ms frame")
    left.set(title="engine step time", xlabel="concurrent sessions", ylabel="ms", ylim=(0, None))
    left.legend()
    right.plot(n, [r["step_rtf_p50"] for r in rounds], "o-", label="step RTF p50 (batch)")
    right.plot(n, [r["cpu_rtf"] for r in rounds], "s-", label="CPU RTF per session")
    right.plot(n, [r["cpu_cores"] for r in rounds], "^:", label="cores busy")
    right.axhline(0.5, color="orange", lw=1, label="target 0.5")
    right.axhline(1.0, color="red", lw=1, label="real time")
    for r in rounds:
        if not r["realtime"]:
            right.annotate("lost", (r["clients"], r["cpu_rtf"]), color="red", fontsize=8)
    right.set(title="real-time factors", xlabel="concurrent sessions", ylim=(0, None))
    right.legend(fontsize=8)
    backend = "STT + knowledge base" if payload["backend"] else "front-end alone"
    fig.suptitle(f"{Path(payload['checkpoint']).name} on {payload['device']}, {backend}, "
                 f"{payload['cpu_cores']} cores: real time up to {payload['max_realtime_sessions']} "
                 "session(s)")  # fmt: skip
    fig.tight_layout()
    path = Path(path)
    fig.savefig(path, dpi=100)
    plt.close(fig)
    return path
