"""The load bench's one run function: every client count in turn against a fresh server.

    frontend = load_bench_frontend(settings, options)
    result = run_load_bench(frontend, settings, options)   # LoadBenchResult

`kamevoice bench serve` and `kamevoice bench tiny` both run through here; they differ only in
their `LoadBenchOptions` and settings (see `commands`).
"""

from __future__ import annotations

import asyncio
from dataclasses import dataclass
from typing import Any

import numpy as np

from kamevoice.bench.load.options import LoadBenchOptions
from kamevoice.bench.load.question import question_speech
from kamevoice.bench.load.realtime import max_realtime_sessions
from kamevoice.bench.load.rounds import RoundResult, run_round

# A short round before the measured ones, whose figures are dropped (seconds).
WARMUP_ROUND_S = 3.0


@dataclass(frozen=True)
class LoadBenchResult:
    """The figures of a load bench, with what they were measured on."""

    options: LoadBenchOptions
    settings: Any  # the settings the servers ran with (`server.oracle` off without the back-end)
    device: str  # where the front-end's weights are ("cpu", "cuda:0")
    rounds: tuple[RoundResult, ...]  # one per client count, in the options' order

    @property
    def max_realtime_sessions(self) -> int:
        """The largest client count that held real time, with every smaller measured count (0: none)."""
        return max_realtime_sessions(self.rounds)


def bench_settings(settings, options: LoadBenchOptions):
    """`settings` as the bench's servers run them: without the back-end, `server.oracle` off."""
    if options.backend:
        return settings
    return settings.model_copy(update={"server": settings.server.model_copy(update={"oracle": False})})


def load_bench_frontend(settings, options: LoadBenchOptions) -> Any:
    """The front-end of `options.checkpoint` on `options.device` (default: the settings'), loaded
    through the start-up path (the settings' threads and dtype)."""
    from kamevoice.startup import load_frontend

    update = {"checkpoint": options.checkpoint, **({"device": options.device} if options.device else {})}
    frontend, _ = load_frontend(
        settings.model_copy(update={"frontend": settings.frontend.model_copy(update=update)})
    )
    return frontend


async def _rounds(frontend, settings, options: LoadBenchOptions, speech: np.ndarray) -> list[RoundResult]:
    """Every client count in turn (after an unreported warm-up round)."""
    await run_round(frontend, settings, 1, WARMUP_ROUND_S, speech)  # first-use costs: allocations, caches
    return [
        await run_round(frontend, settings, n, options.seconds, speech, options.max_sessions)
        for n in options.client_counts
    ]


def run_load_bench(frontend, settings, options: LoadBenchOptions) -> LoadBenchResult:
    """Measure `frontend` served with `settings` under every client count of `options`."""
    settings = bench_settings(settings, options)
    speech = question_speech(options.question)
    rounds = asyncio.run(_rounds(frontend, settings, options, speech))
    device = str(next(frontend.model.parameters()).device)
    return LoadBenchResult(options=options, settings=settings, device=device, rounds=tuple(rounds))
