"""What the scheduler's requests share: the sink they feed, and how they end."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Protocol

from kamevoice.runtime.messages import CancelWhy


class OracleSink(Protocol):
    """Where oracles go (the session's oracle timeline implements this).

    Calls for one generation come in order: `begin`, `update`..., `end`.
    `begin` means "reset the oracle now"; `end(..., cancelled=True)` means no
    more text will come for that generation (the text so far stays valid).
    """

    def begin(self, generation: int) -> None: ...

    def update(self, generation: int, text: str) -> None: ...

    def end(self, generation: int, text: str, cancelled: bool) -> None: ...


def cut_oracle(text: str, max_chars: int) -> str:
    """`text` cut to at most `max_chars`, at the last word boundary when there is one.

    A word cut in half would reach the front-end as a finished word (a capped oracle ends
    complete), so the cut goes back to the space before it; one endless word is cut hard.

    >>> cut_oracle("We open at nine tomorrow", 14)
    'We open at'
    """
    if len(text) <= max_chars:
        return text
    head = text[:max_chars]
    if not (text[max_chars].isspace() or head[-1].isspace()):
        words = head.rsplit(None, 1)  # [before the last space, the cut word] when there is a space
        if len(words) == 2:
            head = words[0]
    return head.rstrip()


@dataclass(frozen=True)
class Stop:
    """Why a running request was stopped: `why` None means superseded by request `by` (a newer
    answer began); otherwise a `CancelWhy`, with the newer request `by` for NEWER_REQUEST."""

    why: CancelWhy | None
    by: int | None = None


class Superseded(Exception):
    """Raised inside a request whose first chunk came after a newer answer began."""

    def __init__(self, by: int):
        super().__init__(by)
        self.by = by
