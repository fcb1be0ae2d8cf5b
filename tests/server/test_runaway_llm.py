"""A runaway or hostile LLM server cannot end a conversation, flood its client or eat the memory.

Real parts on loopback: a local OpenAI-compatible streaming server written here (aiohttp,
SSE `data:` lines), a real `KameServer` whose back-end asks it, and a `ChatClient`
speaking the question at real-time pace. Two attacks:

- a runaway: 20,000 chunks as fast as the socket takes them, `max_tokens` ignored;
- a 50 MB line without a newline after a few good words;

and, for the send queue alone, an STT that bursts thousands of events at once.

The server runs in this process, so its memory is this process's (`VmRSS`).
"""

from __future__ import annotations

import asyncio
import json
import threading
import time
from dataclasses import dataclass, field

import numpy as np
from aiohttp import web

from kamevoice.backend.factory import Backend
from kamevoice.backend.llm.openai_compat import OpenAICompatProvider
from kamevoice.backend.llm.settings import OpenAICompatSettings
from kamevoice.backend.scheduler import SchedulerSettings
from kamevoice.backend.stt import make_stt
from kamevoice.backend.stt.base import Hypothesis, STTStream
from kamevoice.config import load_settings
from kamevoice.runtime.messages import COALESCE_S, CancelWhy, EventKind
from kamevoice.server.client import ChatClient
from kamevoice.server.limits import LimitSettings
from kamevoice.server.outbox import Outbox
from tests.server.conftest import running_server

KEY_ENV = "KAMEVOICE_TEST_RUNAWAY_KEY"
RUNAWAY_CHUNKS = 20_000
# Chunks per socket write: the runaway sends as fast as it can, not one syscall per chunk.
CHUNKS_PER_WRITE = 50
LONG_LINE_BYTES = 50 * 1024 * 1024
GOOD_WORDS = ["We ", "open ", "at ", "nine."]
# What the attacks may cost at most (the bounds).
MAX_ORACLE_TEXT_EVENTS = 100
MAX_RSS_GROWTH_BYTES = 50 * 1024 * 1024


@dataclass
class Attack:
    """One request as the attacking server saw it."""

    chunks_sent: int = 0
    bytes_sent: int = 0
    client_left: bool = False
    finished: bool = False
    max_tokens: int | None = None


@dataclass
class HostileLLM:
    """A local OpenAI-compatible server: `mode` "runaway" or "long_line" once `armed`, a short
    proper answer before (the warm-up that loads what a conversation loads once)."""

    mode: str
    armed: bool = False
    attacks: list[Attack] = field(default_factory=list)
    base_url: str = ""
    _runner: web.AppRunner | None = None

    async def start(self) -> str:
        app = web.Application()
        app.router.add_post("/v1/chat/completions", self._handle)
        self._runner = web.AppRunner(app, access_log=None)
        await self._runner.setup()
        site = web.TCPSite(self._runner, "127.0.0.1", 0)
        await site.start()
        host, port = self._runner.addresses[0][:2]
        self.base_url = f"http://{host}:{port}/v1"
        return self.base_url

    async def stop(self) -> None:
        if self._runner is not None:
            await self._runner.cleanup()

    async def _handle(self, request: web.Request) -> web.StreamResponse:
        body = await request.json()
        resp = web.StreamResponse(headers={"Content-Type": "text/event-stream"})
        await resp.prepare(request)
        if not self.armed:
            await resp.write(b"".join(_chunk(word) for word in GOOD_WORDS) + b"data: [DONE]\n\n")
            await resp.write_eof()
            return resp
        attack = Attack(max_tokens=body.get("max_tokens"))
        self.attacks.append(attack)
        try:
            if self.mode == "runaway":
                await self._runaway(resp, attack)
            else:
                await self._long_line(resp, attack)
            await resp.write(b"data: [DONE]\n\n")
            attack.finished = True
            await resp.write_eof()
        except ConnectionError:  # the client hung up (aiohttp's ClientConnectionResetError is one)
            attack.client_left = True
        return resp

    async def _runaway(self, resp: web.StreamResponse, attack: Attack) -> None:
        chunk = _chunk("word ")
        for _ in range(RUNAWAY_CHUNKS // CHUNKS_PER_WRITE):  # max_tokens ignored
            await resp.write(chunk * CHUNKS_PER_WRITE)
            attack.chunks_sent += CHUNKS_PER_WRITE
            attack.bytes_sent += len(chunk) * CHUNKS_PER_WRITE

    async def _long_line(self, resp: web.StreamResponse, attack: Attack) -> None:
        for word in GOOD_WORDS:
            await resp.write(_chunk(word))
            attack.chunks_sent += 1
        piece = b"x" * (1 << 16)  # one reused 64 KiB piece: the attacker itself holds no 50 MB
        await resp.write(b"data: ")
        for _ in range(LONG_LINE_BYTES // len(piece)):
            await resp.write(piece)
            attack.bytes_sent += len(piece)


def _chunk(text: str) -> bytes:
    obj = {"id": "c1", "choices": [{"index": 0, "delta": {"content": text}, "finish_reason": None}]}
    return f"data: {json.dumps(obj)}\n\n".encode()


class RSSSampler:
    """The largest resident set size of this process while running (a thread: the loop may block)."""

    def __init__(self, every_s: float = 0.005):
        self.every_s = every_s
        self.start = rss_bytes()
        self.peak = self.start
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)

    def __enter__(self) -> RSSSampler:
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        self._thread.join()
        self.end = rss_bytes()
        self.peak = max(self.peak, self.end)

    def _run(self) -> None:
        while not self._stop.wait(self.every_s):
            self.peak = max(self.peak, rss_bytes())


def rss_bytes() -> int:
    """VmRSS of this process, from /proc/self/status."""
    with open("/proc/self/status", encoding="ascii") as f:
        for line in f:
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) * 1024
    raise RuntimeError("no VmRSS in /proc/self/status")


def backend_against(base_url: str) -> Backend:
    """PocketSphinx alone listens (partials and finals): Whisper's buffers, allocated anew on
    worker threads now and then, would blur what the attack costs in memory."""
    settings = load_settings(stt={"provider": "sphinx"})

    def llm() -> OpenAICompatProvider:
        return OpenAICompatProvider(OpenAICompatSettings(base_url=base_url, model="x", api_key_env=KEY_ENV))

    return Backend(stt=lambda events: make_stt(settings.stt, events=events), llm=llm)


async def send_real_time(client: ChatClient, audio: np.ndarray) -> None:
    """`audio` as 80 ms frames, frame i leaving at i * 80 ms (sleeping 80 ms a frame would drift)."""
    t0 = time.perf_counter()
    for i, start in enumerate(range(0, len(audio) - 1919, 1920)):
        await client.send_frame(audio[start : start + 1920])
        await asyncio.sleep(max(0.0, t0 + (i + 1) * 0.08 - time.perf_counter()))


async def converse(frontend, question_24k, attacker: HostileLLM) -> tuple[ChatClient, dict, list]:
    """A warm-up question answered properly, then the question twice against the armed attacker.

    Returns what the client got, figures of the attack, and the server's event log of the session.
    """
    warm_up = np.concatenate([question_24k, np.zeros(24_000, np.float32)])
    silence = np.zeros(48_000, np.float32)
    attack = np.concatenate([question_24k, silence, question_24k, silence])
    base_url = await attacker.start()
    try:
        async with (
            running_server(frontend, backend=backend_against(base_url), max_sessions=1) as (srv, url),
            ChatClient.connect(url) as client,
        ):
            started = time.perf_counter()
            (conn,) = srv.connections
            server_log = conn.session.events.events
            # The warm-up loads what a conversation loads once (the STT's models, the engine's buffers).
            await send_real_time(client, warm_up)
            await client.wait_for(lambda c: c.events_of(EventKind.ORACLE_TEXT), 10)
            attacker.armed = True
            before = len(client.audio())
            with RSSSampler() as rss:
                await send_real_time(client, attack)
                last_sent = time.perf_counter()
                sent = client.sent_frames
                await client.wait_for(lambda c: len(c.audio()) >= (sent - 5) * 1920, 10)
            figures = {
                "attack_frames": len(attack) // 1920,
                "attack_audio_frames": (len(client.audio()) - before) / 1920,
                "sent_frames": sent,
                "rss_start": rss.start,
                "rss_peak": rss.peak,
                "rss_end": rss.end,
                "last_audio_after_last_send_s": client.got.audio_times[-1] - last_sent,
                "elapsed_s": time.perf_counter() - started,
                "connections": len(srv.connections),
                "closed_by_server": client.got.closed,
            }
        return client, figures, server_log
    finally:
        await attacker.stop()


def assert_conversation_survived(client: ChatClient, figures: dict) -> None:
    assert client.got.error is None, client.got.error
    assert not figures["closed_by_server"] and figures["connections"] == 1
    # Audio for the whole run, and still arriving at its end.
    assert len(client.audio()) >= (figures["sent_frames"] - 5) * 1920, (len(client.audio()), figures)
    assert figures["attack_audio_frames"] >= figures["attack_frames"] - 5, figures
    assert figures["last_audio_after_last_send_s"] > -0.5, figures


async def test_events_are_shed_and_coalesced_when_the_send_queue_backs_up():
    clock = [0.0]
    box = Outbox(max_delay_s=5.0, max_events=4, clock=lambda: clock[0])
    box.put(b"audio-1")
    for i in range(10):
        box.put_event(f"event-{i}".encode())
    box.put_event(b"partial-1", key="partial")
    box.put_event(b"partial-2", key="partial")  # replaces the first, in its place
    box.put(b"audio-2")
    sent = [await box.get() for _ in range(len(box))]
    assert sent[0] == b"audio-1" and sent[-1] == b"audio-2"  # conversation messages are never dropped
    assert b"partial-2" in sent and b"partial-1" not in sent
    assert sum(s.startswith(b"event-") for s in sent) == 3 and box.dropped == 8  # 4 at most queued
    box.put(b"audio-3")
    clock[0] = 6.0
    assert box.stalled  # the oldest audio waited past max_delay_s: the client stopped reading


async def test_a_runaway_llm_is_cut_at_the_cap_and_does_not_flood_the_client(
    frontend, question_24k, monkeypatch
):
    monkeypatch.setenv(KEY_ENV, "test-key")
    attacker = HostileLLM("runaway")
    client, figures, server_log = await converse(frontend, question_24k, attacker)
    cap = SchedulerSettings().max_oracle_chars
    texts = client.events_of(EventKind.ORACLE_TEXT)
    longest = max((len(e["text"]) for e in texts), default=0)
    logged = sum(1 for e in server_log if e["kind"] == EventKind.ORACLE_TEXT)
    requests = len(attacker.attacks)
    print(
        f"\nrunaway: {requests} requests of {RUNAWAY_CHUNKS} chunks, oracle.text events: {len(texts)} "
        f"at the client, {logged} in the server's log; longest oracle at the client {longest} chars "
        f"(cap {cap}); events at the client in all {len(client.got.events)}; {figures}"
    )
    assert_conversation_survived(client, figures)
    assert attacker.attacks and all(a.max_tokens is not None for a in attacker.attacks)
    # Each request that began was cut at the cap and its stream closed: the whole runaway fits in
    # loopback's socket buffers, so the server's log says so, not the attacker.
    began = {e["gen"] for e in server_log if e["kind"] == EventKind.LLM_FIRST_TOKEN}
    cut = {
        e["gen"] for e in server_log if e["kind"] == EventKind.LLM_CANCEL and e["why"] == CancelWhy.TOO_LONG
    }
    attacked = {e["gen"] for e in server_log if e["kind"] == EventKind.LLM_REQUEST}
    attacked = set(sorted(attacked)[-len(attacker.attacks) :])
    assert attacked & began and attacked & began <= cut, (began, cut, attacked)
    assert all(len(e["text"]) <= cap for e in server_log if e["kind"] == EventKind.ORACLE_END)
    assert texts, "the oracle never reached the client"
    assert longest <= cap
    assert len(texts) < MAX_ORACLE_TEXT_EVENTS
    # Coalesced: at most one per COALESCE_S (the newest, so a client's count is below the log's).
    assert len(texts) <= figures["elapsed_s"] / COALESCE_S + 1
    assert client.events_of(EventKind.LLM_FIRST_TOKEN)


async def test_a_50_mb_line_ends_its_request_and_memory_stays_bounded(frontend, question_24k, monkeypatch):
    monkeypatch.setenv(KEY_ENV, "test-key")
    attacker = HostileLLM("long_line")
    client, figures, _ = await converse(frontend, question_24k, attacker)
    growth = figures["rss_peak"] - figures["rss_start"]
    errors = client.events_of(EventKind.LLM_ERROR)
    texts = client.events_of(EventKind.ORACLE_TEXT)
    end_growth = figures["rss_end"] - figures["rss_start"]
    print(
        f"\nlong line: {len(attacker.attacks)} requests; bytes of the line the attacker got out per request "
        f"{[a.bytes_sent for a in attacker.attacks]}; VmRSS {figures['rss_start'] / 2**20:.0f} MiB before, "
        f"peak +{growth / 2**20:.1f} MiB, after +{end_growth / 2**20:.1f} MiB; "
        f"llm.error {[e['error'] for e in errors]}; oracle.text events {len(texts)}"
    )
    assert_conversation_survived(client, figures)
    assert attacker.attacks and all(a.client_left and not a.finished for a in attacker.attacks)
    # The client read ~1 MiB of each line, not 50 MB (what sits in socket buffers aside).
    assert all(a.bytes_sent < 16 * 1024 * 1024 for a in attacker.attacks), attacker.attacks
    # The peak, not only before/after: a line read whole is freed again once refused.
    assert growth < MAX_RSS_GROWTH_BYTES, growth
    assert errors and {e["error"] for e in errors} == {"malformed"}
    # The session kept its best oracle: the good words before the line reached the client.
    assert texts and texts[-1]["text"] == "".join(GOOD_WORDS)


# Events of one burst: five times what a slow client may have queued, all before the sender can run.
BURST_EVENTS = 5 * LimitSettings().max_queued_events


class BurstSTT(STTStream):
    """An STT that publishes `BURST_EVENTS` partials in one go on the first audio, then nothing."""

    name = "burst-stt"
    burst_done = False

    async def _feed(self, audio: np.ndarray) -> None:
        if not self.burst_done:
            self.burst_done = True
            for i in range(BURST_EVENTS):
                self._publish(Hypothesis(f"word {i}", is_final=False))

    async def _end(self) -> None:
        return None


async def test_a_burst_of_events_is_shed_not_the_conversation(frontend, question_24k):
    backend = Backend(stt=lambda events: BurstSTT(events=events))
    audio = np.concatenate([question_24k, np.zeros(24_000, np.float32)])
    async with (
        running_server(frontend, backend=backend, max_sessions=1) as (srv, url),
        ChatClient.connect(url) as client,
    ):
        (conn,) = srv.connections
        await send_real_time(client, audio)
        sent = client.sent_frames
        await client.wait_for(lambda c: len(c.audio()) >= (sent - 5) * 1920, 10)
        connections, dropped = len(srv.connections), conn.outbox.dropped
    partials = client.events_of(EventKind.STT_PARTIAL)
    print(f"\nburst: {BURST_EVENTS} events at once, {len(partials)} reached the client, {dropped} shed")
    assert client.got.error is None and connections == 1
    assert len(client.audio()) >= (sent - 5) * 1920
    assert dropped > 0 and len(partials) + dropped == BURST_EVENTS
