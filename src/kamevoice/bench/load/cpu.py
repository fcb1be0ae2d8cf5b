"""CPU accounting of a round: this process, its engine and client threads, and the STT children.

Two real-time factors are "compute per second of audio" (1.0 = exactly real time); this module
measures the second (the first, `step_rtf`, is in `rounds`):
`cpu_rtf`: CPU seconds of every part of the sessions (this process: engine
thread, server event loop with WebSocket, Opus, scheduler and knowledge-base
retrieval; plus the STT child processes, one per session) over the audio
served (N x the measured seconds), i.e. the CPU one session costs per second
of conversation; `cpu_cores` is the same CPU over wall time (cores kept busy).
The simulated clients' own CPU (their Opus and WebSocket ends, what a browser
would spend) is `cpu_client_s`, in neither; `cpu_rtf_with_clients` adds it.
The CPU window leaves out the first `rounds.CPU_WARMUP_S`, when the STT children
start and load their models.

Linux only (it reads /proc); elsewhere the threads and children read as zero.
"""

from __future__ import annotations

import os
import time
from dataclasses import dataclass


@dataclass(frozen=True)
class CpuSample:
    """CPU seconds used so far by this process, its engine and client threads and each child process."""

    process_s: float
    engine_s: float
    children: dict[int, float]  # pid -> CPU seconds
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


@dataclass(frozen=True)
class CpuFigures:
    """A round's CPU figures; each field is the `RoundResult` field of the same name."""

    cpu_window_s: float
    cpu_s: float  # all parts: this process + STT children
    cpu_engine_s: float  # the engine thread (codec + model)
    engine_cpu_ms_per_step: float  # the engine thread's CPU per step
    cpu_stt_s: float  # the STT child processes
    cpu_other_s: float  # the rest of this process but the clients (event loop, Opus, retrieval)
    cpu_rtf: float  # cpu_s / (clients x cpu_window_s)
    cpu_client_s: float  # the simulated clients' thread
    cpu_rtf_with_clients: float  # (cpu_s + cpu_client_s) / (clients x cpu_window_s)
    cpu_cores: float  # cpu_s / cpu_window_s
    child_processes: int  # at the last sample


def cpu_figures(first: CpuSample, last: CpuSample, window_s: float, clients: int, steps: int) -> CpuFigures:
    """The CPU between two samples `window_s` apart, for `clients` sessions and `steps` engine steps."""
    window = max(1e-9, window_s)
    stt_cpu = _children_delta(first, last)
    client_cpu = last.clients_s - first.clients_s
    process_cpu = last.process_s - first.process_s - client_cpu
    engine_cpu = last.engine_s - first.engine_s
    total_cpu = process_cpu + stt_cpu
    return CpuFigures(
        cpu_window_s=round(window, 2),
        cpu_s=round(total_cpu, 2),
        cpu_engine_s=round(engine_cpu, 2),
        engine_cpu_ms_per_step=round(1e3 * engine_cpu / max(1, steps), 1),
        cpu_stt_s=round(stt_cpu, 2),
        cpu_other_s=round(process_cpu - engine_cpu, 2),
        cpu_rtf=round(total_cpu / (clients * window), 3),
        cpu_client_s=round(client_cpu, 2),
        cpu_rtf_with_clients=round((total_cpu + client_cpu) / (clients * window), 3),
        cpu_cores=round(total_cpu / window, 2),
        child_processes=len(last.children),
    )
