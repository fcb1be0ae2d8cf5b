"""The listening socket's guard: connections per address, and time to send a request's headers.

aiohttp keeps a connection whose request headers never finish open forever, and
lets one address open as many connections as it likes: 500 half-sent requests
cost 500 sockets and their buffers. `GuardedSite` listens like aiohttp's
`TCPSite`, but wraps each connection's protocol in `_Guard`, which

- refuses a connection beyond `max_connections_per_address` from one address
  (HTTP 429, closed at once: it never reaches the application), and
- closes a connection that has not sent the end of its request headers
  (a blank line) within `header_timeout_s`.

After the headers of the first request the guard only counts; aiohttp's own
keep-alive timeout applies between requests.
"""

from __future__ import annotations

import asyncio
import logging
from collections import Counter
from collections.abc import Callable
from typing import Any

from aiohttp import web

from kamevoice.server.limits import LimitSettings

log = logging.getLogger(__name__)

# The end of an HTTP request's header block.
HEADERS_END = b"\r\n\r\n"
# Bytes of a request start scanned for the end of its headers; a longer head is refused as well.
MAX_HEADER_BYTES = 64 * 1024
REFUSED = b"HTTP/1.1 429 Too Many Requests\r\nContent-Length: 0\r\nConnection: close\r\n\r\n"


class GuardStats:
    """What the guard refused, for the metrics (shared by every connection of a site)."""

    def __init__(self) -> None:
        self.open: Counter[str] = Counter()
        self.refused = 0
        self.header_timeouts = 0


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
            if HEADERS_END in self.head:
                self.headers_done = True
                self.head = b""
                if self.timer is not None:
                    self.timer.cancel()
        self.inner.data_received(data)

    def eof_received(self) -> bool | None:
        return self.inner.eof_received() if self.admitted else None

    def connection_lost(self, exc: Exception | None) -> None:
        if self.timer is not None:
            self.timer.cancel()
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
