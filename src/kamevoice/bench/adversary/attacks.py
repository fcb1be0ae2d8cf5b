"""The attacks, each an unauthenticated client doing one thing a server must survive.

Every attack is `async def attack(target, seconds) -> dict` against a running server:
it attacks for at most `seconds` (or until the server ends it) and returns what it
saw (messages sent, how and when the server ended it). `Target` names the server
and, for the attacks that need the operator's view, its process.
"""

from __future__ import annotations

import asyncio
import base64
import contextlib
import os
import signal
import socket
import time
from dataclasses import dataclass

import aiohttp
import numpy as np

from kamevoice.runtime.clock import FRAME_SAMPLES, FRAME_SECONDS
from kamevoice.runtime.messages import EventKind
from kamevoice.server.protocol import Kind


@dataclass
class Target:
    """The server under attack: its URL, its process id (for the operator's view), what to say."""

    url: str
    server_pid: int | None = None
    speech: np.ndarray | None = None  # what an attacker that speaks says

    def children(self) -> list[int]:
        from kamevoice.bench.adversary.server import children

        return children(self.server_pid) if self.server_pid else []

    @property
    def host_port(self) -> tuple[str, int]:
        host, port = self.url.removeprefix("http://").rsplit(":", 1)
        return host, int(port)


async def _drain(ws: aiohttp.ClientWebSocketResponse) -> dict:
    """Read until closed; the server's error message (0x05) if any."""
    error = None
    with contextlib.suppress(Exception):
        async for msg in ws:
            if msg.type == aiohttp.WSMsgType.BINARY and msg.data[:1] == bytes([Kind.ERROR]):
                error = msg.data[1:].decode("utf-8", errors="replace")
    return {"error": error, "close_code": ws.close_code}


async def _flood(target: Target, seconds: float, message: bytes, query: str) -> dict:
    """Send `message` as fast as the socket takes it until the server ends the conversation."""
    async with aiohttp.ClientSession() as http:
        ws = await http.ws_connect(f"{target.url}/api/chat{query}", max_msg_size=0)
        reader = asyncio.create_task(_drain(ws))
        sent, start = 0, time.perf_counter()
        try:
            while not ws.closed and not reader.done() and time.perf_counter() - start < seconds:
                await ws.send_bytes(message)
                sent += 1
                if sent % 256 == 0:
                    await asyncio.sleep(0)
        except (ConnectionError, aiohttp.ClientError, RuntimeError):
            pass
        ended_after = time.perf_counter() - start
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(asyncio.shield(reader), 5)
        await ws.close()
        outcome = reader.result() if reader.done() else {"error": None, "close_code": None}
        return {"sent": sent, "ended_after_s": round(ended_after, 2), **outcome}


async def message_flood(target: Target, seconds: float) -> dict:
    """Three-byte PCM16 messages (one sample each), as fast as possible."""
    return await _flood(target, seconds, bytes([Kind.PCM16]) + b"\x00\x00", "?audio=pcm16")


async def ping_flood(target: Target, seconds: float) -> dict:
    """Two-byte pings, as fast as possible."""
    return await _flood(target, seconds, bytes([Kind.PING]) + b"hi", "")


# Time an STT child is given to load its engine before it is stopped (seconds): a child frozen while
# it loads is the start timeout's business (30 s), not the pending-audio bound's.
CHILD_LOAD_S = 3.0
# How long before the honest conversation ends an attack stops watching the server's session count
# (seconds): its hang-up must not be taken for the server freeing the attacker's slot.
HONEST_END_MARGIN_S = 1.0
# Linux TCP states (include/net/tcp_states.h).
_TCP_CLOSE, _TCP_CLOSE_WAIT = 7, 8


class RawWebSocket:
    """A WebSocket client written on a bare socket, so that it can stop reading altogether."""

    def __init__(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter):
        self.reader, self.writer = reader, writer

    @classmethod
    async def connect(cls, target: Target, path: str = "/api/chat", host: str | None = None) -> RawWebSocket:
        h, p = target.host_port
        reader, writer = await asyncio.open_connection(h, p)
        key = base64.b64encode(os.urandom(16)).decode()
        writer.write(
            f"GET {path} HTTP/1.1\r\nHost: {host or f'{h}:{p}'}\r\n"
            "Upgrade: websocket\r\nConnection: Upgrade\r\n"
            f"Sec-WebSocket-Key: {key}\r\nSec-WebSocket-Version: 13\r\n\r\n".encode()
        )
        head = await reader.readuntil(b"\r\n\r\n")
        if not head.startswith(b"HTTP/1.1 101"):
            writer.close()
            raise ConnectionError(head.split(b"\r\n", 1)[0].decode())
        return cls(reader, writer)

    def send(self, payload: bytes, opcode: int = 0x2) -> None:
        """Queue one masked frame (clients mask, RFC 6455)."""
        mask = os.urandom(4)
        n = len(payload)
        if n < 126:
            head = bytes([0x80 | opcode, 0x80 | n])
        elif n < 1 << 16:
            head = bytes([0x80 | opcode, 0x80 | 126]) + n.to_bytes(2, "big")
        else:
            head = bytes([0x80 | opcode, 0x80 | 127]) + n.to_bytes(8, "big")
        body = (np.frombuffer(payload, np.uint8) ^ np.resize(np.frombuffer(mask, np.uint8), n)).tobytes()
        self.writer.write(head + mask + body)

    def stop_reading(self) -> None:
        self.writer.transport.pause_reading()  # type: ignore[attr-defined]

    def closed_by_server(self) -> bool:
        """Whether the server has closed the connection, seen without reading a byte: the kernel's
        TCP state (Linux TCP_INFO) is CLOSE_WAIT after the server's FIN, CLOSE after its reset."""
        sock = self.writer.get_extra_info("socket")
        try:
            state = sock.getsockopt(socket.IPPROTO_TCP, socket.TCP_INFO, 1)[0]
        except OSError:
            return True
        return state in (_TCP_CLOSE, _TCP_CLOSE_WAIT)

    async def until_closed_by_server(self, seconds: float) -> float | None:
        """Seconds until `closed_by_server` (None: still open after `seconds`)."""
        start = time.perf_counter()
        while time.perf_counter() - start < seconds:
            if self.closed_by_server():
                return round(time.perf_counter() - start, 2)
            await asyncio.sleep(0.1)
        return None

    def close(self) -> None:
        self.writer.transport.abort()


async def big_pings_unread(target: Target, seconds: float) -> dict:
    """150 pings of 1 MiB from a client that never reads."""
    ws = await RawWebSocket.connect(target)
    ws.stop_reading()
    sent = 0
    try:
        for _ in range(150):
            ws.send(bytes([Kind.PING]) + bytes(1 << 20))
            sent += 1
            await asyncio.wait_for(ws.writer.drain(), 2.0)
    except (ConnectionError, TimeoutError):
        pass
    freed = await ws.until_closed_by_server(seconds)
    ws.close()
    return {"sent": sent, "slot_freed_after_s": freed}


async def frozen_client(target: Target, seconds: float) -> dict:
    """Talks for a second, then stops reading and stays connected: the server must free the slot.
    Seen as an operator sees it (`/health` counts one conversation fewer), since a client that does
    not read cannot see the server close."""
    ws = await RawWebSocket.connect(target, "/api/chat?audio=pcm16")
    for _ in range(int(1 / FRAME_SECONDS)):
        ws.send(bytes([Kind.PCM16]) + bytes(2 * FRAME_SAMPLES))
        await asyncio.sleep(FRAME_SECONDS)
    with_me = await _sessions(target)
    ws.stop_reading()
    # Stop looking before the honest caller hangs up, which would count one fewer too.
    freed = await _until_fewer(target, with_me, seconds - 1.0 - HONEST_END_MARGIN_S)
    ws.close()
    return {"slot_freed_after_s": freed}


async def _sessions(target: Target) -> int:
    async with aiohttp.ClientSession() as http, http.get(target.url + "/health") as resp:
        return int((await resp.json())["sessions"])


async def _until_fewer(target: Target, count: int, seconds: float) -> float | None:
    """Seconds until the server counts fewer than `count` conversations (None: not in `seconds`)."""
    start = time.perf_counter()
    while time.perf_counter() - start < seconds:
        if await _sessions(target) < count:
            return round(time.perf_counter() - start, 2)
        await asyncio.sleep(0.2)
    return None


async def idle_pinger(target: Target, seconds: float, every_s: float = 2.0) -> dict:
    """Connected, no audio, a ping every `every_s`: holds a slot unless idle is measured on audio."""
    async with aiohttp.ClientSession() as http:
        ws = await http.ws_connect(f"{target.url}/api/chat")
        reader = asyncio.create_task(_drain(ws))
        start = time.perf_counter()
        while not reader.done() and time.perf_counter() - start < seconds:
            with contextlib.suppress(Exception):
                await ws.send_bytes(bytes([Kind.PING]) + b"x")
            await asyncio.sleep(every_s)
        ended = round(time.perf_counter() - start, 2) if reader.done() else None
        await ws.close()
    return {"ended_after_s": ended, **(reader.result() if reader.done() else {})}


async def slow_headers(target: Target, seconds: float, connections: int = 200) -> dict:
    """Opens many connections whose request headers never finish (slowloris); counts how the server
    ends them: refused (HTTP 429, or reset before it could be read) or closed after its header timeout."""
    h, p = target.host_port
    opened: list[tuple[asyncio.StreamReader, asyncio.StreamWriter]] = []
    for _ in range(connections):
        with contextlib.suppress(OSError):
            reader, writer = await asyncio.open_connection(h, p)
            writer.write(b"GET /health HTTP/1.1\r\nHost: localhost\r\nX-Slow: ")
            opened.append((reader, writer))

    async def fate(reader: asyncio.StreamReader) -> str:
        try:
            data = await reader.read(200)
        except (ConnectionError, OSError):
            return "reset"
        return "refused" if data.startswith(b"HTTP/1.1 429") else "closed" if not data else "answered"

    tasks = [asyncio.create_task(fate(r)) for r, _ in opened]
    done, pending = await asyncio.wait(tasks, timeout=seconds) if tasks else (set(), set())
    for task in pending:
        task.cancel()
    for _, writer in opened:
        writer.close()
    fates = [t.result() for t in done]
    return {
        "opened": len(opened),
        "refused_429": fates.count("refused"),
        "reset": fates.count("reset"),
        "closed_by_server": fates.count("closed"),
        "answered": fates.count("answered"),
        "left_open": len(pending),
    }


async def dns_rebinding(target: Target, seconds: float) -> dict:
    """A page on another name resolving to this address: every route must refuse its Host."""
    statuses = {}
    async with aiohttp.ClientSession() as http:
        for path in ("/health", "/metrics", "/", "/api/chat"):
            headers = {"Host": "rebind.attacker.example", "Origin": "http://rebind.attacker.example"}
            async with http.get(target.url + path, headers=headers) as resp:
                statuses[path] = resp.status
    return {"statuses": statuses}


async def stt_child_stopped(target: Target, seconds: float) -> dict:
    """An honest-looking call whose STT child process is then stopped (SIGSTOP): the operator's
    view of a child that freezes."""
    from kamevoice.server.client import ChatClient

    assert target.server_pid is not None and target.speech is not None
    before = set(target.children())
    async with ChatClient.connect(target.url, events=True) as client:
        child, start, seen, stopped = None, time.perf_counter(), 0.0, False
        t0, f = time.perf_counter(), 0
        while time.perf_counter() - start < seconds and not client.got.closed:
            offset = (f * FRAME_SAMPLES) % (len(target.speech) - FRAME_SAMPLES)
            await client.send_frame(target.speech[offset : offset + FRAME_SAMPLES])
            f += 1
            if child is None and (new := [c for c in target.children() if c not in before]):
                child, seen = new[-1], time.perf_counter()
            if child is not None and not stopped and time.perf_counter() - seen > CHILD_LOAD_S:
                os.kill(child, signal.SIGSTOP)  # once it has loaded its engine: a freeze mid-call
                stopped = True
            await asyncio.sleep(max(0.0, t0 + f * FRAME_SECONDS - time.perf_counter()))
        told = bool(client.events_of(EventKind.STT_UNAVAILABLE))
    if child is not None:
        with contextlib.suppress(ProcessLookupError):
            os.kill(child, signal.SIGCONT)
    return {
        "stopped_child": child if stopped else None,
        "told_stt_unavailable": told,
        "error": client.got.error,
    }


async def honest_caller(target: Target, seconds: float) -> dict:
    """Not an attack: a second honest caller (the control scenario; it also lets the server grow its
    batch to two conversations before the attacks, so their memory figures compare like with like)."""
    from kamevoice.bench.adversary.reference import run_reference

    assert target.speech is not None
    result = await run_reference(target.url, target.speech, seconds)
    return {"frame_share": round(result.frame_share, 3), "error": result.error}


ATTACKS = {
    "honest_caller": honest_caller,
    "message_flood": message_flood,
    "message_flood_again": message_flood,
    "ping_flood": ping_flood,
    "big_pings_unread": big_pings_unread,
    "frozen_client": frozen_client,
    "idle_pinger": idle_pinger,
    "slow_headers": slow_headers,
    "dns_rebinding": dns_rebinding,
    "stt_child_stopped": stt_child_stopped,
}
