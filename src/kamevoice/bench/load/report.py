"""The load bench's figures for people and programs: the printed table, the JSON payload, the files.

The table and the JSON keys are read by users and the README: keep them as they are.
"""

from __future__ import annotations

import os
import sys
from dataclasses import asdict
from pathlib import Path
from typing import Any

from kamevoice.bench.load.options import STDOUT, ReportOptions
from kamevoice.bench.load.realtime import REALTIME_LATENCY_S, REALTIME_OVERRUN_SHARE, REALTIME_STT_LAG_S
from kamevoice.bench.load.rounds import CPU_WARMUP_S, WARMUP_S
from kamevoice.bench.load.run import LoadBenchResult
from kamevoice.runtime.clock import FRAME_SECONDS

# Columns of the printed table when stdout is not a terminal.
TABLE_WIDTH = 150

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


def print_table(result: LoadBenchResult) -> None:
    """One row per client count, and a note on what the figures leave out."""
    from rich.console import Console
    from rich.table import Table

    options = result.options
    backend = "on" if options.backend else "off"
    table = Table(title=f"{options.title} ({result.device}, {options.checkpoint}, back-end {backend})")
    columns = (
        "clients", "step p50/p90/p99/max ms", "overruns", "underruns",
        "added latency p50/p90/p99 ms", "frames in/out", "step RTF p50", "CPU RTF / cores",
        "STT lag partial/final s", "RSS / peak MB", "real time",
    )  # fmt: skip
    for col in columns:
        table.add_column(col, justify="right")
    for r in result.rounds:
        lags = f"{r.stt_partial_lag_s}/{r.stt_final_lag_s}" if options.backend else "-"
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
        f"added latency excludes the model's built-in delay of {result.rounds[0].model_delay_ms:.0f} ms; "
        f"first {WARMUP_S:g} s left out ({CPU_WARMUP_S:g} s for CPU); "
        f"{_capacity_note(result.options.max_sessions)}; "
        f"RTF = compute per second of audio (step: batch step / 80 ms; CPU: the sessions' CPU, "
        f"clients apart, / (N x seconds)); {os.cpu_count()} CPU cores"
    )


def payload(result: LoadBenchResult) -> dict[str, Any]:
    """The JSON of a load bench: what it ran on, the definitions, every round's figures."""
    import torch

    options, settings = result.options, result.settings
    return {
        "device": result.device,
        "torch": torch.__version__,
        "threads": torch.get_num_threads(),
        "cpu_cores": os.cpu_count(),
        "checkpoint": str(options.checkpoint),
        "backend": options.backend,
        "stt": settings.stt.provider if options.backend else None,
        "llm": settings.llm.provider if options.backend else None,
        "knowledge_base": str(settings.llm.knowledge.path) if options.backend else None,
        "question": options.question,
        "max_sessions": options.max_sessions,
        "frame_budget_ms": FRAME_SECONDS * 1e3,
        "definitions": DEFINITIONS,
        "max_realtime_sessions": result.max_realtime_sessions,
        "results": [asdict(r) for r in result.rounds],
    }


def summary_line(data: dict[str, Any]) -> str:
    """The first round's real-time factors and CPU split, and the sessions that held real time."""
    one = data["results"][0]
    return (
        f"{one['clients']} session(s): step RTF p50 {one['step_rtf_p50']:.2f} "
        f"(p90 {one['step_rtf_p90']:.2f}), "
        f"CPU RTF {one['cpu_rtf']:.2f} per session (engine {one['cpu_engine_s']:.1f} s, STT "
        f"{one['cpu_stt_s']:.1f} s, rest {one['cpu_other_s']:.1f} s of CPU in "
        f"{one['cpu_window_s']:.1f} s; clients apart {one['cpu_client_s']:.1f} s, "
        f"{one['cpu_rtf_with_clients']:.2f} with them; "
        f"engine {one['engine_cpu_ms_per_step']:.0f} ms of CPU per step); "
        f"real time held up to {data['max_realtime_sessions']} session(s) of those measured"
    )


def report(result: LoadBenchResult, output: ReportOptions) -> dict[str, Any]:
    """Print the table; write the JSON and plot where `output` says (JSON on stdout last); the payload."""
    from kamevoice.bench.load.plot import plot_rounds
    from kamevoice.bench.report import write_json

    print_table(result)
    data = payload(result)
    written: list[Path] = []
    for destination in output.json:
        if destination != STDOUT:
            Path(destination).parent.mkdir(parents=True, exist_ok=True)
            write_json(data, destination)
            written.append(Path(destination))
    if output.plot is not None:
        Path(output.plot).parent.mkdir(parents=True, exist_ok=True)
        written.append(plot_rounds(data, output.plot))
    if output.summary:
        print(summary_line(data))
    if written:
        names = [str(p) for p in written]
        print("wrote " + (f"{', '.join(names[:-1])} and {names[-1]}" if len(names) > 1 else names[0]))
    if STDOUT in output.json:
        write_json(data, STDOUT)
    return data


def _capacity_note(max_sessions: int | None) -> str:
    return f"max_sessions={max_sessions}" if max_sessions else "each N runs with max_sessions=N"
