"""Server-sent events (the `text/event-stream` format every streaming LLM API uses).

Two incremental pieces, both bounded so that a hostile or broken server cannot make
us hold more than a set size of its stream in memory:

- `LineSplitter`: raw bytes in, complete lines out (CR, LF or CRLF ends a line);
  a line longer than its cap raises `StreamLimitError` while it is still arriving,
  never after it was read whole;
- `SSEParser`: lines in, events out; an event whose data grows past its cap raises too.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

_EOL = re.compile(rb"[\r\n]")
_LF = 0x0A
_CR = 0x0D


class StreamLimitError(ValueError):
    """A line or an event of the stream is over its cap (the caller turns it into its own error)."""


@dataclass(frozen=True)
class SSEEvent:
    """One dispatched event: its `event:` name ("message" when absent) and joined `data:` lines."""

    event: str
    data: str


class LineSplitter:
    """Bytes of a stream in any chunking, out as decoded lines (without their end-of-line).

    At most `max_line_bytes` of an unfinished line are held: the byte past that raises
    `StreamLimitError`. Lines are UTF-8 (the SSE format says so); a line that is not
    raises `UnicodeDecodeError`.
    """

    def __init__(self, max_line_bytes: int):
        self.max_line_bytes = max_line_bytes
        self._buf = bytearray()
        self._after_cr = False  # the last chunk ended with CR: an LF opening the next one belongs to it

    def feed(self, chunk: bytes) -> list[str]:
        """The lines `chunk` completes (the part of a line after its last end-of-line is kept)."""
        lines: list[str] = []
        start, n = 0, len(chunk)
        if self._after_cr and n and chunk[0] == _LF:
            start = 1
        if n:
            self._after_cr = False
        while start < n:
            match = _EOL.search(chunk, start)
            if match is None:
                self._append(chunk, start, n)
                break
            end = match.start()
            self._append(chunk, start, end)
            lines.append(self._buf.decode("utf-8"))
            self._buf.clear()
            start = end + 1
            if chunk[end] == _CR:
                if start < n:
                    start += chunk[start] == _LF
                else:
                    self._after_cr = True
        return lines

    def finish(self) -> str | None:
        """The last line when the stream ended without an end-of-line, if any."""
        if not self._buf:
            return None
        line = self._buf.decode("utf-8")
        self._buf.clear()
        return line

    def _append(self, chunk: bytes, start: int, end: int) -> None:
        if len(self._buf) + (end - start) > self.max_line_bytes:
            self._buf.clear()
            raise StreamLimitError(f"line over {self.max_line_bytes} bytes")
        self._buf += chunk[start:end]


class SSEParser:
    """Incremental parser: feed it lines (without their end-of-line), collect events.

    Follows the WHATWG rules that matter for LLM streams: `data:` lines of one
    event are joined by newlines, a blank line dispatches, `:` starts a
    comment, one space after the colon is dropped, `id:`/`retry:` are ignored.
    With `max_data_chars`, an event whose data grows past it raises `StreamLimitError`
    (many `data:` lines without the blank line that ends the event).
    """

    def __init__(self, max_data_chars: int | None = None) -> None:
        self.max_data_chars = max_data_chars
        self._event = ""
        self._data: list[str] = []
        self._size = 0

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
            self._size += len(value) + 1
            if self.max_data_chars is not None and self._size > self.max_data_chars:
                self._event, self._data, self._size = "", [], 0
                raise StreamLimitError(f"event data over {self.max_data_chars} characters")
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
        self._event, self._data, self._size = "", [], 0
        return event
