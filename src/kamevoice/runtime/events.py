"""The session event log: every stage stamps what it did, in seconds since the session start.

Events are plain dicts `{"t": seconds, "kind": EventKind, ...fields}`, of the kinds and
fields declared in `kamevoice.runtime.messages` (an undeclared kind or field is a bug and
raises). The log keeps them in memory (for latency computation), writes them as JSONL
when given a path, and forwards them to subscribers (the WebSocket client, metrics).
"""

from __future__ import annotations

import json
import os
from collections.abc import Callable
from pathlib import Path
from typing import IO, Any

from kamevoice.runtime.clock import Clock, WallClock
from kamevoice.runtime.messages import EventKind, spec

Event = dict[str, Any]


class EventLog:
    """Append-only log of one session's events."""

    def __init__(self, clock: Clock | None = None, path: str | Path | None = None, keep: bool = True):
        self.clock = clock or WallClock()
        self.events: list[Event] = []
        self._keep = keep
        self.path: Path | None = Path(path) if path else None
        self._file: IO[str] | None = _open_private(self.path) if self.path else None
        self._subscribers: list[Callable[[Event], None]] = []

    def subscribe(self, callback: Callable[[Event], None]) -> None:
        """Call `callback(event)` for every event emitted from now on."""
        self._subscribers.append(callback)

    def emit(self, kind: EventKind, t: float | None = None, **fields: Any) -> Event:
        """Record an event stamped `t` (default: the clock's now) and return it."""
        declared = spec(kind).fields
        if not declared.issuperset(fields):
            undeclared = sorted(set(fields) - declared)
            raise ValueError(
                f"event {kind}: field(s) {undeclared} not declared in kamevoice.runtime.messages"
            )
        event: Event = {
            "t": round(self.clock.now() if t is None else t, 6),
            "kind": EventKind(kind),
            **fields,
        }
        if self._keep:
            self.events.append(event)
        if self._file is not None:
            self._file.write(json.dumps(event, ensure_ascii=False) + "\n")
            self._file.flush()
        for callback in self._subscribers:
            callback(event)
        return event

    def of_kind(self, kind: EventKind) -> list[Event]:
        """The kept events of one kind, in order."""
        return [e for e in self.events if e["kind"] == kind]

    def rename(self, name: str) -> None:
        """Give the log's file a new name in its folder (a front door learns a call's ids only
        after the log opened); the open file keeps being written. Nothing without a file."""
        if self.path is None or "/" in name or name in ("", ".", ".."):
            return
        target = self.path.with_name(name)
        os.replace(self.path, target)
        self.path = target

    def close(self) -> None:
        if self._file is not None:
            self._file.close()
            self._file = None


# Event logs hold what a user said: readable by their owner only, as are the folders made for them.
LOG_FILE_MODE = 0o600


def _open_private(path: Path) -> IO[str]:
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, LOG_FILE_MODE)
    os.fchmod(fd, LOG_FILE_MODE)  # a file that existed keeps its mode otherwise
    return os.fdopen(fd, "w", encoding="utf-8")


def read_events(path: str | Path) -> list[Event]:
    """Read a JSONL event log back."""
    with open(path, encoding="utf-8") as f:
        return [json.loads(line) for line in f if line.strip()]
