"""A client's send queue, bounded by how late it runs rather than how long it is.

Two kinds of messages go out: the conversation itself (model audio, text pieces,
pongs, the handshake and the closing error), which is never dropped, and JSON
events (transcripts, the oracle, latency), which are there to be looked at: a
client that reads slowly loses the oldest of those first (counted), and an event
of the same kind still waiting is replaced by the newer one when only the newest
matters (the oracle's text as it grows). Conversation messages may carry a tag, and a door
can take back the ones still queued under a tag (the audio of a reply the client cancelled:
it must stop at once, not after the queue has drained). A client whose oldest conversation message
has waited `max_delay_s` has stopped reading: the outbox reports it, and the
connection ends that conversation only. A door may also take back conversation
messages it tagged while they still wait (`discard`): a phone call drops the model's
queued speech when the caller talks over it.

Single-threaded (the event loop); `get()` is awaited by the connection's sender task.
"""

from __future__ import annotations

import asyncio
import time
from collections import deque
from dataclasses import dataclass


@dataclass
class _Item:
    payload: bytes | str | None  # None: the end of the stream
    essential: bool
    at: float
    key: str | None = None  # events with a key: a newer one replaces an older one still queued
    tag: str | None = None  # conversation messages a door may take back while queued (`discard`)


class Outbox:
    """Queued messages for one client (see module doc)."""

    def __init__(self, max_delay_s: float, max_events: int, clock=time.monotonic):
        self.max_delay_s = max_delay_s
        self.max_events = max_events
        self.dropped = 0  # events dropped or replaced for a slow client
        self._clock = clock
        self._items: deque[_Item] = deque()
        self._events = 0
        self._ready = asyncio.Event()

    def put(self, payload: bytes | str, tag: str | None = None) -> None:
        """A conversation message (never dropped; with `tag`, `discard(tag)` may take it back)."""
        self._append(_Item(payload, True, self._clock(), tag=tag))

    def discard(self, tag: str) -> list[bytes | str]:
        """Take back the queued messages tagged `tag` (not yet sent); returns them in order."""
        taken = [item.payload for item in self._items if item.tag == tag and item.payload is not None]
        if taken:
            self._items = deque(item for item in self._items if item.tag != tag or item.payload is None)
        return taken

    def put_event(self, payload: bytes | str, key: str | None = None) -> None:
        """A droppable event; with `key`, it replaces a queued event of the same key."""
        if key is not None:
            for item in self._items:
                if item.key == key:
                    item.payload = payload  # the newest wins, in the older one's place
                    self.dropped += 1
                    return
        if self._events >= self.max_events:
            self._drop_oldest_event()
        self._append(_Item(payload, False, self._clock(), key))
        self._events += 1

    def close(self) -> None:
        """No more messages: the sender stops once the queue is sent."""
        self._append(_Item(None, True, self._clock()))

    def late_s(self) -> float:
        """How long the oldest queued conversation message has waited (0 when none)."""
        for item in self._items:
            if item.essential and item.payload is not None:
                return self._clock() - item.at
        return 0.0

    @property
    def stalled(self) -> bool:
        """The client has stopped reading: a conversation message waited over `max_delay_s`."""
        return self.late_s() > self.max_delay_s

    def __len__(self) -> int:
        return len(self._items)

    async def get(self) -> bytes | str | None:
        """The next message to send (None: the end)."""
        while not self._items:
            self._ready.clear()
            await self._ready.wait()
        item = self._items.popleft()
        if not item.essential:
            self._events -= 1
        return item.payload

    def _append(self, item: _Item) -> None:
        self._items.append(item)
        self._ready.set()

    def _drop_oldest_event(self) -> None:
        for i, item in enumerate(self._items):
            if not item.essential:
                del self._items[i]
                self._events -= 1
                self.dropped += 1
                return
