"""Coalescing: pass on at most one item per interval, always the newest, never losing the last.

For events that carry a whole state (the oracle's text so far): a consumer that sees the
newest one has missed nothing. The first item after a quiet interval goes out at once
(no added latency when things are calm); items arriving within the interval replace each
other and the newest goes out when it ends.
"""

from __future__ import annotations

import asyncio
import math
from collections.abc import Callable
from typing import Generic, TypeVar

T = TypeVar("T")


class Coalescer(Generic[T]):
    """Calls `send(item)` at most once per `every_s` seconds of the running loop's clock.

    `offer` must be called on the event loop's thread; outside a running loop it sends at once.
    """

    def __init__(self, every_s: float, send: Callable[[T], None]):
        self.every_s = every_s
        self._send = send
        self._pending: T | None = None
        self._has_pending = False
        self._last_sent = -math.inf
        self._timer: asyncio.TimerHandle | None = None
        self._loop: asyncio.AbstractEventLoop | None = None
        self.offered = 0
        self.sent = 0

    def offer(self, item: T) -> None:
        """Send `item` now if the interval since the last send has passed, or hold it as the newest."""
        self.offered += 1
        try:
            loop = asyncio.get_running_loop()
        except RuntimeError:
            self._deliver(item, -math.inf)
            return
        now = loop.time()
        if self._timer is None and now - self._last_sent >= self.every_s:
            self._deliver(item, now)
            return
        self._pending, self._has_pending = item, True
        if self._timer is None:
            self._loop = loop
            self._timer = loop.call_at(self._last_sent + self.every_s, self._flush)

    def close(self) -> None:
        """Drop the held item and stop the timer (nothing is sent afterwards)."""
        if self._timer is not None:
            self._timer.cancel()
            self._timer = None
        self._pending, self._has_pending = None, False

    def _flush(self) -> None:
        self._timer = None
        if not self._has_pending or self._loop is None:
            return
        item, self._pending, self._has_pending = self._pending, None, False
        self._deliver(item, self._loop.time())  # type: ignore[arg-type]

    def _deliver(self, item: T, now: float) -> None:
        self._last_sent = now
        self.sent += 1
        self._send(item)
