"""Whitespace tokens of a text with their character offsets (shared by the engines' word mapping)."""

from __future__ import annotations

import re
from typing import NamedTuple

_TOKEN = re.compile(r"\S+")


class Token(NamedTuple):
    """One whitespace-separated token and its [start, end) character offsets."""

    text: str
    start: int
    end: int


def tokenize(text: str) -> list[Token]:
    """Split `text` on whitespace, keeping character offsets."""
    return [Token(m.group(), m.start(), m.end()) for m in _TOKEN.finditer(text)]


def token_at(tokens: list[Token], offset: int) -> int | None:
    """Index of the token covering character `offset`, else the next one; None past the end."""
    for i, tok in enumerate(tokens):
        if offset < tok.end:
            return i
    return None
