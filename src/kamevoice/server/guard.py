"""The listening socket's guard: connections per address, and time to send a request's headers.

aiohttp keeps a connection whose request headers never finish open forever, and
lets one address open as many connections as it likes: 500 half-sent requests
cost 500 sockets and their buffers. `GuardedSite` listens like aiohttp's
`TCPSite`, but wraps each connection's protocol in `_Guard`, which

- refuses a connection beyond `max_connections_per_address` from one address
  (HTTP 429, closed at once: it never reaches the application), and
- closes a connection that has not sent the end of its request headers
  (a blank line) within `header_timeout_s`, and
- sets TCP_USER_TIMEOUT, so that a client that stops reading cannot keep its socket and
  the kernel's buffers after the conversation has ended (`tcp_user_timeout_s`);

- throttles a WebSocket's incoming frames: aiohttp reads and queues every frame that
  arrives before the application looks at any, so a flood of tiny messages became tens
  of megabytes of message objects within 0.2 s. The guard counts frames as bytes
  arrive (`FrameCounter`) and pauses reading when a connection is over twice its
  message budget (`GUARD_SLACK`), so the kernel's buffers, not our memory, hold the
  rest; the conversation's own limiter (the same budget, without the slack) ends it.

After the headers of a plain HTTP request the guard only counts; aiohttp's own
keep-alive timeout applies between requests.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import socket
from collections import Counter
from collections.abc import Callable
from typing import Any

from aiohttp import web

from kamevoice.server.limits import LimitSettings, TokenBucket

log = logging.getLogger(__name__)

# The end of an HTTP request's header block.
HEADERS_END = b"\r\n\r\n"
# Bytes of a request start scanned for the end of its headers; a longer head is refused as well.
MAX_HEADER_BYTES = 64 * 1024
REFUSED = b"HTTP/1.1 429 Too Many Requests\r\nContent-Length: 0\r\nConnection: close\r\n\r\n"
# The guard lets frames through at this many times the conversation's budget: the conversation's
# limiter must see the excess to end the flood, the guard only keeps it out of memory.
GUARD_SLACK = 2.0


class FrameCounter:
    """Counts WebSocket frames in a byte stream as it arrives (RFC 6455 framing, payloads skipped)."""

    def __init__(self) -> None:
        self.frames = 0
        self._head = b""  # bytes of a frame header not yet complete
        self._skip = 0  # payload bytes of the current frame still to pass

    def feed(self, data: bytes) -> int:
        """Frames that *start* in `data`; returns how many."""
        before, i, n = self.frames, 0, len(data)
        while i < n:
            if self._skip:
                step = min(self._skip, n - i)
                self._skip -= step
                i += step
                continue
            take = min(14 - len(self._head), n - i)  # a header is at most 14 bytes
            head = self._head + data[i : i + take]
            size = _header_size(head)
            if size is None or len(head) < size:
                self._head, i = head, i + take
                continue
            self.frames += 1
            used = size - len(self._head)
            self._head = b""
            self._skip = _payload_length(head)
            i += used
        return self.frames - before


def _header_size(head: bytes) -> int | None:
    if len(head) < 2:
        return None
    length = head[1] & 0x7F
    masked = 4 if head[1] & 0x80 else 0
    return 2 + (2 if length == 126 else 8 if length == 127 else 0) + masked


def _payload_length(head: bytes) -> int:
    length = head[1] & 0x7F
    if length == 126:
        return int.from_bytes(head[2:4], "big")
    if length == 127:
        return int.from_bytes(head[2:10], "big")
    return length


class GuardStats:
    """What the guard refused, for the metrics (shared by every connection of a site)."""

    def __init__(self) -> None:
        self.open: Counter[str] = Counter()
        self.refused = 0
        self.header_timeouts = 0


def _set_user_timeout(transport: asyncio.BaseTransport, seconds: float) -> None:
    """TCP_USER_TIMEOUT (Linux): data unacknowledged, or unsent behind a zero window, for this long
    resets the connection in the kernel, whatever the application does."""
    sock = transport.get_extra_info("socket")
    option = getattr(socket, "TCP_USER_TIMEOUT", None)
    if sock is None or option is None or seconds <= 0:
        return
    with contextlib.suppress(OSError):
        sock.setsockopt(socket.IPPROTO_TCP, option, int(seconds * 1000))


class _Guard(asyncio.Protocol):
    """One connection: counts it per address, times its headers, then delegates to aiohttp."""

    def __init__(self, inner: asyncio.Protocol, limits: LimitSettings, stats: GuardStats):
        self.inner, self.limits, self.stats = inner, limits, stats
        self.address = ""
        self.head = b""
        self.headers_done = False
        self.transport: asyncio.Transport | None = None
        self.timer: asyncio.TimerHandle | None = None
        self.admitted = False
        self.websocket: FrameCounter | None = None  # after a WebSocket upgrade request
        self.frames = TokenBucket(limits.max_messages_per_s * GUARD_SLACK, limits.message_burst * GUARD_SLACK)
        self.paused: asyncio.TimerHandle | None = None

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        assert isinstance(transport, asyncio.Transport)
        self.transport = transport
        peer = transport.get_extra_info("peername")
        self.address = str(peer[0]) if isinstance(peer, tuple) and peer else "?"
        limit = self.limits.max_connections_per_address
        if limit and self.stats.open[self.address] >= limit:
            self.stats.refused += 1
            log.info("connection from %s refused: %d open already", self.address, limit)
            transport.write(REFUSED)
            transport.close()
            return
        self.admitted = True
        self.stats.open[self.address] += 1
        _set_user_timeout(transport, self.limits.tcp_user_timeout_s)
        loop = asyncio.get_running_loop()
        self.timer = loop.call_later(self.limits.header_timeout_s, self._headers_too_slow)
        self.inner.connection_made(transport)

    def _headers_too_slow(self) -> None:
        if not self.headers_done and self.transport is not None:
            self.stats.header_timeouts += 1
            log.info("connection from %s closed: no request headers in %g s", self.address,
                     self.limits.header_timeout_s)  # fmt: skip
            self.transport.abort()

    def data_received(self, data: bytes) -> None:
        if not self.admitted:
            return
        if not self.headers_done:
            self.head = (self.head + data)[-MAX_HEADER_BYTES:]
            end = self.head.find(HEADERS_END)
            if end >= 0:
                self.headers_done = True
                if b"upgrade: websocket" in self.head[:end].lower():
                    self.websocket = FrameCounter()
                    self.websocket.feed(self.head[end + len(HEADERS_END) :])  # frames sent at once
                self.head = b""
                if self.timer is not None:
                    self.timer.cancel()
        elif self.websocket is not None:
            frames = self.websocket.feed(data)
            if frames and not self.frames.take(frames) and self.transport is not None and self.paused is None:
                self.transport.pause_reading()  # the kernel holds the rest, not us
                wait = frames / self.frames.rate
                self.paused = asyncio.get_running_loop().call_later(wait, self._resume)
        self.inner.data_received(data)

    def _resume(self) -> None:
        self.paused = None
        if self.transport is not None and not self.transport.is_closing():
            self.transport.resume_reading()

    def eof_received(self) -> bool | None:
        return self.inner.eof_received() if self.admitted else None

    def connection_lost(self, exc: Exception | None) -> None:
        if self.timer is not None:
            self.timer.cancel()
        if self.paused is not None:
            self.paused.cancel()
        if self.admitted:
            self.stats.open[self.address] -= 1
            if self.stats.open[self.address] <= 0:
                del self.stats.open[self.address]
            self.inner.connection_lost(exc)

    def pause_writing(self) -> None:
        if self.admitted:
            self.inner.pause_writing()

    def resume_writing(self) -> None:
        if self.admitted:
            self.inner.resume_writing()


class GuardedSite(web.TCPSite):
    """aiohttp's `TCPSite` with every connection behind a `_Guard` (see module doc)."""

    __slots__ = ("_limits", "_stats")

    def __init__(
        self, runner: web.BaseRunner, host: str, port: int, limits: LimitSettings, stats: GuardStats
    ):
        super().__init__(runner, host, port)
        self._limits, self._stats = limits, stats

    async def start(self) -> None:
        await web.BaseSite.start(self)  # registers the site with its runner
        factory: Callable[[], Any] = self._runner.server
        loop = asyncio.get_running_loop()
        self._server = await loop.create_server(
            lambda: _Guard(factory(), self._limits, self._stats), self._host, self._port
        )
