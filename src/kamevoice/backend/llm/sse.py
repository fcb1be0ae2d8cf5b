"""Server-sent events (the `text/event-stream` format every streaming LLM API uses)."""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class SSEEvent:
    """One dispatched event: its `event:` name ("message" when absent) and joined `data:` lines."""

    event: str
    data: str


class SSEParser:
    """Incremental parser: feed it lines (without their end-of-line), collect events.

    Follows the WHATWG rules that matter for LLM streams: `data:` lines of one
    event are joined by newlines, a blank line dispatches, `:` starts a
    comment, one space after the colon is dropped, `id:`/`retry:` are ignored.
    """

    def __init__(self) -> None:
        self._event = ""
        self._data: list[str] = []

    def feed(self, line: str) -> SSEEvent | None:
        """Consume one line; return the event it completes, if any."""
        if line == "":
            return self._dispatch()
        if line.startswith(":"):
            return None
        field, sep, value = line.partition(":")
        if sep and value.startswith(" "):
            value = value[1:]
        if field == "data":
            self._data.append(value)
        elif field == "event":
            self._event = value
        return None

    def finish(self) -> SSEEvent | None:
        """The event left open when the stream ended without a final blank line, if any."""
        return self._dispatch()

    def _dispatch(self) -> SSEEvent | None:
        if not self._data:
            self._event = ""
            return None
        event = SSEEvent(self._event or "message", "\n".join(self._data))
        self._event, self._data = "", []
        return event
