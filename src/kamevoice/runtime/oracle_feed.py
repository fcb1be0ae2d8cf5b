"""The oracle feed: where the scheduler's streamed answers go on their way into the front-end.

It implements the scheduler's `OracleSink` (`begin`, `update`, `end` per generation):
it keeps the newest generation only (staleness by generation number, no locks),
turns the growing text into word pieces that can no longer change
(`IncrementalTokenizer`: the accumulated text is tokenised, never a fragment on its
own), hands those ids to its target (an engine stream's oracle timeline), and logs
`oracle.begin`, `oracle.text` (the oracle as it grows) and `oracle.end`.

`oracle.text` carries the whole text, so it is logged when the text gained a word, not
on every streamed chunk (a chunk is often a few characters: per chunk, the log and the
clients would get the text again and again), and once more at the end when the last
words came after the last one logged: the last `oracle.text` of a generation is its final text.

Without a tokenizer and target (the back-end alone, `kamevoice oracle`) it only logs.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any, Protocol

from kamevoice.oracle.pieces import IncrementalTokenizer
from kamevoice.runtime.events import EventLog
from kamevoice.runtime.messages import EventKind


class OracleTarget(Protocol):
    """What receives the oracle's ids: `EngineStream` implements it."""

    def begin_oracle(self) -> None: ...

    def feed_oracle(self, tokens: list[int]) -> None: ...


class OracleFeed:
    """One session's oracle: scheduler output in, stable ids out (see module doc)."""

    def __init__(
        self,
        events: EventLog,
        tokenizer: Any | None = None,
        target: OracleTarget | None = None,
        frame: Callable[[], int] = lambda: -1,
    ):
        self.events = events
        self.target = target
        self._frame = frame  # the session's current frame, stamped on `oracle.begin`
        self._pieces = IncrementalTokenizer(tokenizer) if tokenizer is not None else None
        self.generation = 0  # the generation shown now (0: none yet)
        self.text = ""  # its text so far
        self._logged = ""  # its text in the last `oracle.text`
        self._logged_words = 0

    def begin(self, generation: int) -> None:
        """A new oracle: reset the timeline at the next frame."""
        self.generation, self.text = generation, ""
        self._logged, self._logged_words = "", 0
        if self._pieces is not None:
            self._pieces.reset()
        if self.target is not None:
            self.target.begin_oracle()
        self.events.emit(EventKind.ORACLE_BEGIN, gen=generation, frame=self._frame())

    def update(self, generation: int, text: str) -> None:
        """The oracle's whole text so far."""
        if generation != self.generation:
            return  # an older answer: a newer one began
        self.text = text
        if self._pieces is not None:
            self._feed(self._pieces.update(text))
        words = len(text.split())
        if words > self._logged_words:
            self._logged_words = words
            self._log_text(generation, text)

    def end(self, generation: int, text: str, cancelled: bool) -> None:
        """No more text will come for `generation` (a completed answer's last word is final too)."""
        if generation != self.generation:
            return
        self.text = text
        pieces = 0
        if self._pieces is not None:
            ids = self._pieces.update(text)
            if not cancelled:
                ids += self._pieces.finish()
            self._feed(ids)
            pieces = len(self._pieces.emitted)
        if text and text != self._logged:
            self._log_text(generation, text)
        self.events.emit(EventKind.ORACLE_END, gen=generation, text=text, cancelled=cancelled, pieces=pieces)

    def _log_text(self, generation: int, text: str) -> None:
        self._logged = text
        self.events.emit(EventKind.ORACLE_TEXT, gen=generation, text=text)

    def _feed(self, ids: list[int]) -> None:
        if ids and self.target is not None:
            self.target.feed_oracle(ids)
