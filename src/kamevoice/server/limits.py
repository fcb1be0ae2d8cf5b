"""What one client may cost the server: rates, queues, timeouts, connections (all settings).

Every limit bounds what an unauthenticated client can make the server do, so that a
flood, a frozen client or a half-open connection costs only its own conversation:

- messages and bytes per second, each a token bucket (`RateLimiter`): a client over
  either is told and ended, before its backlog can delay anyone's frames;
- the send queue in seconds of delay and in droppable events (`kamevoice.server.outbox`);
- idle time measured on audio only, a WebSocket heartbeat for clients that vanish;
- per-address connections and the time to send a request's headers
  (`kamevoice.server.guard`).

The defaults are several times what real clients use: Moshi's clients send an Ogg/Opus
page every 20-80 ms (12-50 messages, 3-8 KB a second), our page one 80 ms PCM frame
(12.5 messages, 48 KB a second).
"""

from __future__ import annotations

import time

from pydantic import Field

from kamevoice.section import Section


class LimitSettings(Section):
    """Limits of one client connection (see module doc)."""

    max_messages_per_s: float = Field(
        100.0, gt=0, description="sustained WebSocket messages a second (real clients send 12-50)"
    )
    message_burst: int = Field(400, ge=1, description="messages a client may send at once above that rate")
    max_bytes_per_s: int = Field(
        256 * 1024, ge=1024, description="sustained bytes a second (24 kHz PCM16 is 48 KB/s, Opus 3-8 KB/s)"
    )
    byte_burst: int = Field(
        4 << 20, ge=1024, description="bytes a client may send at once above that rate (>= one message)"
    )
    max_ping_bytes: int = Field(
        125, ge=0, description="largest ping (0x06) payload echoed; a WebSocket control frame's limit"
    )
    max_send_delay_s: float = Field(
        5.0, gt=0, description="a client whose oldest unsent audio or text is this old stopped reading"
    )
    max_queued_events: int = Field(
        64, ge=1, description="JSON events queued for a slow client before the oldest are dropped"
    )
    # A client that stops reading is found by the heartbeat within 1.5 intervals even while the
    # kernel's socket buffers still take our audio (megabytes on a fast link: over a minute).
    heartbeat_s: float = Field(
        5.0, ge=0, description="WebSocket ping interval; no pong within half of it ends the call (0: off)"
    )
    tcp_user_timeout_s: float = Field(
        20.0,
        ge=0,
        description="the kernel resets a connection whose sent data waits this long unread "
        "(TCP_USER_TIMEOUT: a client that stopped reading cannot hold a socket and its buffers; "
        "0: the kernel's default)",
    )
    header_timeout_s: float = Field(
        10.0, gt=0, description="time a new connection has to send its request headers"
    )
    max_connections_per_address: int = Field(
        32, ge=0, description="open TCP connections from one address (0: unlimited; raise it behind a proxy)"
    )
    yield_every_messages: int = Field(
        16, ge=1, description="messages handled before the reader lets other conversations run"
    )


class TokenBucket:
    """`rate` tokens a second up to `burst`; `take(n)` is False when the bucket cannot pay."""

    def __init__(self, rate: float, burst: float, clock=time.monotonic):
        self.rate, self.burst, self._clock = rate, float(burst), clock
        self._tokens = float(burst)
        self._at = clock()

    def take(self, n: float = 1.0) -> bool:
        now = self._clock()
        self._tokens = min(self.burst, self._tokens + (now - self._at) * self.rate)
        self._at = now
        if n > self._tokens:
            return False
        self._tokens -= n
        return True


class RateLimiter:
    """One connection's message and byte budgets."""

    def __init__(self, limits: LimitSettings, clock=time.monotonic):
        self.messages = TokenBucket(limits.max_messages_per_s, limits.message_burst, clock)
        self.bytes = TokenBucket(limits.max_bytes_per_s, limits.byte_burst, clock)

    def over(self, size: int) -> str | None:
        """None while the client keeps to its budgets, else what it exceeded (readable)."""
        if not self.messages.take():
            return f"more than {self.messages.rate:g} messages a second"
        if not self.bytes.take(size):
            return f"more than {self.bytes.rate:g} bytes a second"
        return None
