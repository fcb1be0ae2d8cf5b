"""Incremental tokenisation of streamed LLM text into pieces that can no longer change.

The published server tokenised each streamed fragment on its own, so word
pieces differed from training, where whole strings are tokenised (docs/kame.md
section 9, defect 2). Here the *accumulated* text is tokenised every time it
grows, and a piece is released only when later text can no longer change it:
SentencePiece (with Moshi's default whitespace splitting) tokenises each
whitespace-separated word on its own, so every word that is followed by
whitespace is final; only the last, possibly unfinished, word is held back. `finish()` releases
the rest when the answer is complete.

Invariant (tested): for any chunking of a text, the pieces released by
`update` calls followed by `finish()` equal `tokenizer.encode(text)`.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from typing import Protocol


class TextTokenizer(Protocol):
    """The slice of `sentencepiece.SentencePieceProcessor` that we use."""

    def encode(self, text: str) -> list[int]: ...

    def id_to_piece(self, id: int) -> str: ...


# The last whitespace run (and the unfinished word after it, if any): everything before it is final.
_LAST_BOUNDARY = re.compile(r"\s+\S*$")


@dataclass
class IncrementalTokenizer:
    """Turns a growing text into a stream of stable token ids."""

    tokenizer: TextTokenizer
    _emitted: list[int] = field(default_factory=list)
    _text: str = ""
    revisions: int = 0  # times the whole-text tokenisation disagreed with what was already released

    def reset(self) -> None:
        """Forget the current text (a new answer begins)."""
        self._emitted = []
        self._text = ""

    def update(self, text: str) -> list[int]:
        """Give the accumulated text so far; returns the ids that became final since the last call."""
        if not text.startswith(self._text):
            # The source rewrote earlier text: restart the comparison from the new text, keeping
            # what was already released (it cannot be taken back from the frames it entered).
            self.revisions += 1
        self._text = text
        match = _LAST_BOUNDARY.search(text)
        if match is None:
            return []
        return self._release(self.tokenizer.encode(text[: match.start()]))

    def finish(self) -> list[int]:
        """The answer is complete: release every remaining id."""
        return self._release(self.tokenizer.encode(self._text)) if self._text.strip() else []

    @property
    def emitted(self) -> list[int]:
        """All ids released so far for the current text."""
        return list(self._emitted)

    def _release(self, ids: list[int]) -> list[int]:
        done = len(self._emitted)
        if ids[:done] != self._emitted:
            # Released ids already entered frames and cannot be taken back; count the
            # disagreement and go on from the same position so the stream never stalls.
            self.revisions += 1
        new = ids[done:]
        self._emitted.extend(new)
        return new
