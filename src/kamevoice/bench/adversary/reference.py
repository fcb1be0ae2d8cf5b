"""The reference conversation and the probes that watch the server while an attack runs.

- `run_reference`: an honest client asks its question at speaking pace (one 80 ms frame
  every 80 ms, absolute schedule) and keeps talking for the run; the figures are what a
  user would notice: model audio frames received against those due, the largest gap
  between two of them, whether its transcript and an oracle reached it, and any error.
- `HealthProbe`: `/health` every `interval_s`, each answer's latency (the event loop's
  responsiveness as an operator's load balancer sees it).
- `MemoryProbe`: the server's resident memory, sampled.
"""

from __future__ import annotations

import asyncio
import itertools
import statistics
import time
from dataclasses import dataclass, field

import aiohttp
import numpy as np

from kamevoice.runtime.clock import FRAME_SAMPLES, FRAME_SECONDS, SAMPLE_RATE
from kamevoice.runtime.messages import EventKind

# Silence after the question, then it is asked again: a caller who keeps talking.
PAUSE_S = 1.0
# Time after the last frame for the last replies to arrive before counting (seconds).
DRAIN_S = 1.5
# Events by which the server tells a client that part of its conversation is degraded.
TROUBLE = frozenset({EventKind.STT_UNAVAILABLE, EventKind.ORACLE_UNAVAILABLE, EventKind.LLM_ERROR})
# Gaps are counted from this long after the conversation starts: its own start-up (the STT child
# loading its model) is not what an attack does to it, and the attacks begin after it.
SETTLE_S = 1.0


@dataclass
class ReferenceResult:
    """What the honest client got."""

    seconds: float
    frames_sent: int
    frames_due: int  # model frames the server owed it: one every 80 ms from the first to the end
    frames_received: int
    largest_gap_s: float  # between two model audio chunks, once settled (`SETTLE_S`)
    largest_gap_at_s: float  # when it began, seconds after the conversation started
    transcript: list[str]
    oracle: str  # the last oracle text it was shown
    error: str | None
    told: list[str]  # what the server told it went wrong (the kinds of its trouble events)

    @property
    def frame_share(self) -> float:
        return self.frames_received / self.frames_due if self.frames_due else 0.0


async def run_reference(
    url: str, speech: np.ndarray, seconds: float, max_delay_frames: int = 1, settle_s: float = SETTLE_S
) -> ReferenceResult:
    """One honest conversation of `seconds` (see module doc); gaps are counted after `settle_s`."""
    from kamevoice.server.client import ChatClient

    audio = np.concatenate([speech, np.zeros(int(PAUSE_S * SAMPLE_RATE), np.float32)])
    n_frames = int(seconds / FRAME_SECONDS)
    async with ChatClient.connect(url, events=True) as client:
        t0 = time.perf_counter()
        for f in range(n_frames):
            offset = (f * FRAME_SAMPLES) % (len(audio) - FRAME_SAMPLES)
            if client.got.closed:
                break
            await client.send_frame(audio[offset : offset + FRAME_SAMPLES])
            await asyncio.sleep(max(0.0, t0 + (f + 1) * FRAME_SECONDS - time.perf_counter()))
        end = time.perf_counter() + DRAIN_S
        await asyncio.sleep(DRAIN_S)
        times = [t for t in client.got.audio_times if t <= end]
        steady = [t for t in times if t >= t0 + settle_s]
        gaps = [b - a for a, b in itertools.pairwise(steady)]
        oracle = [e["text"] for e in client.events_of(EventKind.ORACLE_TEXT)]
        received = sum(
            len(c) for c, t in zip(client.got.audio_chunks, client.got.audio_times, strict=True) if t <= end
        )
        # The server owes a model frame every 80 ms from its first until the client stops listening.
        due = (
            int((end - times[0]) / FRAME_SECONDS) + 1
            if times
            else max(0, client.sent_frames - max_delay_frames)
        )
        return ReferenceResult(
            seconds=seconds,
            frames_sent=client.sent_frames,
            frames_due=due,
            frames_received=received // FRAME_SAMPLES,
            largest_gap_s=round(max(gaps, default=0.0), 3),
            largest_gap_at_s=round(steady[gaps.index(max(gaps))] - t0, 2) if gaps else 0.0,
            transcript=[e["text"] for e in client.events_of(EventKind.STT_FINAL)],
            oracle=oracle[-1] if oracle else "",
            error=client.got.error,
            told=sorted({e["kind"] for e in client.got.events if e["kind"] in TROUBLE}),
        )


@dataclass
class HealthProbe:
    """Polls `/health` until stopped; `latencies_ms` of each answer (a timeout counts as its limit)."""

    url: str
    interval_s: float = 0.2
    timeout_s: float = 3.0
    latencies_ms: list[float] = field(default_factory=list)
    failures: int = 0

    async def run(self, stop: asyncio.Event) -> None:
        timeout = aiohttp.ClientTimeout(total=self.timeout_s)
        async with aiohttp.ClientSession(timeout=timeout) as http:
            while not stop.is_set():
                start = time.perf_counter()
                try:
                    async with http.get(self.url + "/health") as resp:
                        await resp.read()
                        if resp.status >= 500 and resp.status != 503:
                            self.failures += 1
                except (aiohttp.ClientError, TimeoutError):
                    self.failures += 1
                self.latencies_ms.append((time.perf_counter() - start) * 1e3)
                await asyncio.sleep(self.interval_s)

    def summary(self) -> dict:
        values = sorted(self.latencies_ms)
        if not values:
            return {"polls": 0}
        p90 = values[min(len(values) - 1, int(0.9 * len(values)))]
        return {
            "polls": len(values),
            "median_ms": round(statistics.median(values), 1),
            "p90_ms": round(p90, 1),
            "max_ms": round(values[-1], 1),
            "failures": self.failures,
        }


@dataclass
class MemoryProbe:
    """Samples the server's resident memory (MB) until stopped."""

    read_mb: object  # () -> float
    interval_s: float = 0.2
    samples: list[float] = field(default_factory=list)

    async def run(self, stop: asyncio.Event) -> None:
        while not stop.is_set():
            self.samples.append(self.read_mb())  # type: ignore[operator]
            await asyncio.sleep(self.interval_s)
