"""The simulated real-time clients, and the audio latency they measure.

Each client speaks the question in a loop as Ogg/Opus at speaking pace: one 80 ms frame every
80 ms on an absolute schedule, for the round's seconds. The N clients of a round run on a thread
and event loop of their own (`ClientThread`), so that their CPU, what browsers would spend, is
measured apart from the sessions'.

- audio latency: for model audio frame k, its arrival at the client minus the
  send time of user frame k + max_delay. The model cannot emit frame k before
  it has heard user frame k + max_delay (its built-in delay of max_delay x 80 ms,
  printed apart), so this is the delay the system adds on top: queueing, the
  step, Opus both ways, the socket. It grows without bound when the server
  cannot keep up.
"""

from __future__ import annotations

import asyncio
import threading
import time
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from kamevoice.runtime.clock import FRAME_SAMPLES, FRAME_SECONDS, SAMPLE_RATE

# Silence between repetitions of the question (seconds), as a pause between turns.
PAUSE_S = 1.0
# Extra time after the last frame for replies to arrive before the round is measured (seconds).
DRAIN_S = 1.0


async def paced_client(url: str, speech: np.ndarray, seconds: float):
    """One client: `speech` (then a pause) in a loop, frame by frame at speaking pace, for `seconds`;
    returns its `ChatClient`, with what it sent and received, after the drain."""
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
        self.results: list[Any] = []  # a `ChatClient` or the exception that ended it, per client
        self.native_id: int | None = None  # the operating system's id of the thread, once started
        self._ready = threading.Event()
        args = (url, speech, seconds, clients)
        self._thread = threading.Thread(target=self._main, args=args, name="bench-clients", daemon=True)

    def _main(self, url: str, speech: np.ndarray, seconds: float, clients: int) -> None:
        self.native_id = threading.get_native_id()
        self._ready.set()

        async def all_clients() -> list[Any]:
            tasks = [paced_client(url, speech, seconds) for _ in range(clients)]
            return await asyncio.gather(*tasks, return_exceptions=True)

        self.results = asyncio.run(all_clients())

    def start(self) -> None:
        """Start the clients; returns once the thread's id is known."""
        self._thread.start()
        self._ready.wait()

    async def join(self) -> list[Any]:
        """Wait (without blocking the caller's loop) until every client is done; their results."""
        await asyncio.to_thread(self._thread.join)
        return self.results


@dataclass(frozen=True)
class ClientFigures:
    """What a round's clients sent and received, and the latency added to model audio."""

    frames_sent: int = 0
    frames_received: int = 0  # whole model frames
    failed_clients: int = 0
    latencies_ms: list[float] = field(default_factory=list)  # added latency of each frame, every client


def frame_arrivals(client) -> list[float]:
    """Arrival time of each whole model frame, from the decoded chunks' sizes and times."""
    arrivals, total = [], 0
    for chunk, at in zip(client.got.audio_chunks, client.got.audio_times, strict=True):
        total += len(chunk)
        while (len(arrivals) + 1) * FRAME_SAMPLES <= total:
            arrivals.append(at)
    return arrivals


def client_figures(results: list[Any], max_delay: int, warmup_s: float) -> ClientFigures:
    """Frames and added latency of `ClientThread.results`, leaving out each client's first `warmup_s`."""
    latencies, sent, received, failed = [], 0, 0, 0
    for client in results:
        if isinstance(client, BaseException):
            failed += 1
            continue
        sent += client.sent_frames
        arrivals = frame_arrivals(client)
        received += len(arrivals)
        warm = client.send_times[0] + warmup_s if client.send_times else 0.0
        for k, at in enumerate(arrivals):
            if k + max_delay < len(client.send_times) and client.send_times[k + max_delay] >= warm:
                latencies.append(at - client.send_times[k + max_delay])
    return ClientFigures(sent, received, failed, [x * 1e3 for x in latencies])
