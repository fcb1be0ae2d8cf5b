"""The oracle prompt: the default system prompt, the running conversation, and its rendering.

The conversation is kept as segments in arrival order: what the user said
(final STT results, then the pending partial) and what the front-end said
(its inner-monologue text, arriving as SentencePiece pieces). The LLM sees
it as alternating chat messages ending with the user's latest words, trimmed
to a character budget from the oldest end.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field

from kamevoice.backend.llm.base import ChatMessage, Role

# SentencePiece marks a word start with U+2581 ("▁") in front of the piece.
SPM_SPACE = "\u2581"
# Byte-fallback pieces (<0xE2>) carry raw UTF-8 bytes of characters outside the vocabulary.
_BYTE_PIECE = re.compile(r"<0x([0-9A-Fa-f]{2})>")

DEFAULT_SYSTEM_PROMPT = """\
You are the voice of a spoken assistant, and you are being consulted while a \
conversation is still going on: the user may not have finished speaking yet. \
Work out what the user is asking or about to ask, and write the reply the \
assistant should say out loud next.
- Answer straight away with your best guess of the full answer. Never ask the user to confirm or \
repeat, never say you are waiting for them to finish.
- Keep it to one or two short sentences, at most 30 words.
- If the assistant has already said something wrong or off-track, your reply should set it right.
- Write only words that are spoken: no lists, markdown, emoji, URLs or symbols; spell out numbers \
and units the way a person would say them."""

# Put before the front-end's latest words when they came after the user's, so
# that the conversation still ends with a user message (some APIs require it).
DEFAULT_SPOKEN_SO_FAR_NOTE = "The assistant has already started replying aloud with:"

# Opening user message for conversations in which the assistant speaks first:
# chat APIs (Anthropic, Gemini) want the first message to be the user's.
DEFAULT_OPENING_USER_TEXT = "(The call has just started.)"


def detokenize_pieces(pieces: list[str]) -> str:
    """Join SentencePiece pieces into text: `▁` becomes a space, `<0xNN>` pieces become UTF-8.

    >>> detokenize_pieces(["▁Hello", ",", "▁wor", "ld", "!"])
    'Hello, world!'
    """
    out: list[str] = []
    pending = bytearray()
    for piece in pieces:
        match = _BYTE_PIECE.fullmatch(piece)
        if match:
            pending.append(int(match.group(1), 16))
            continue
        if pending:
            out.append(pending.decode("utf-8", errors="replace"))
            pending.clear()
        out.append(piece.replace(SPM_SPACE, " "))
    if pending:
        out.append(pending.decode("utf-8", errors="replace"))
    return " ".join("".join(out).split())


def word_count(text: str) -> int:
    """Words as the scheduler counts them (whitespace-separated)."""
    return len(text.split())


@dataclass
class Segment:
    """A stretch of one speaker's words; assistant segments keep their raw pieces."""

    role: Role
    texts: list[str] = field(default_factory=list)

    def text(self) -> str:
        if self.role == "assistant":
            return detokenize_pieces(self.texts)
        return " ".join(t.strip() for t in self.texts if t.strip())


@dataclass(frozen=True)
class Prompt:
    """What one LLM request is given."""

    messages: list[ChatMessage]
    system: str


class Conversation:
    """One session's running transcript, both sides, plus the user's pending partial."""

    def __init__(self) -> None:
        self._segments: list[Segment] = []
        self.partial = ""
        # Words the user has said in finalised results, over the whole session.
        self.final_user_words = 0

    def set_partial(self, text: str) -> None:
        """Replace the pending (not yet final) user text."""
        self.partial = text.strip()

    def add_final(self, text: str) -> None:
        """Commit a final user result; it replaces the pending partial."""
        text = text.strip()
        self.partial = ""
        if text:
            self._append("user", text)
            self.final_user_words += word_count(text)

    def add_assistant_piece(self, piece: str) -> None:
        """Append one piece of the front-end's text stream."""
        if piece:
            self._append("assistant", piece)

    def user_words(self) -> int:
        """All the user's words so far (finals plus the pending partial)."""
        return self.final_user_words + word_count(self.partial)

    def current_user_turn(self) -> str:
        """What the user has said since the assistant last spoke, partial included."""
        parts = []
        if self._segments and self._segments[-1].role == "user":
            parts.append(self._segments[-1].text())
        if self.partial:
            parts.append(self.partial)
        return " ".join(parts)

    def _append(self, role: Role, text: str) -> None:
        if not self._segments or self._segments[-1].role != role:
            self._segments.append(Segment(role))
        self._segments[-1].texts.append(text)

    def render(
        self,
        system: str,
        *,
        max_chars: int,
        spoken_so_far_note: str = DEFAULT_SPOKEN_SO_FAR_NOTE,
        opening_user_text: str = DEFAULT_OPENING_USER_TEXT,
    ) -> Prompt:
        """Messages for the LLM: the last `max_chars` characters, ending with the user's words.

        When the front-end spoke after the user's latest words, that text is
        moved into the system prompt ("already started replying with ...") so
        the model can continue or correct it while the messages still end with
        the user.
        """
        turns = [(s.role, s.text()) for s in self._segments]
        if self.partial:
            if turns and turns[-1][0] == "user":
                turns[-1] = ("user", f"{turns[-1][1]} {self.partial}")
            else:
                turns.append(("user", self.partial))
        turns = [(r, t) for r, t in turns if t]
        if turns and turns[-1][0] == "assistant":
            note = f'{spoken_so_far_note} "{turns.pop()[1]}"'
            system = f"{system}\n\n{note}" if system else note
        messages = _trim(turns, max_chars)
        if len(messages) > 1 and messages[0].role == "assistant":
            if len(messages) == len(turns):  # the assistant really spoke first
                messages.insert(0, ChatMessage("user", opening_user_text))
            else:  # the cut left an assistant turn first: drop it, chat APIs want the user first
                messages.pop(0)
        return Prompt(messages, system)


def _trim(turns: list[tuple[Role, str]], max_chars: int) -> list[ChatMessage]:
    """Keep the newest `max_chars` characters; the oldest kept turn is cut at a word boundary."""
    kept: list[ChatMessage] = []
    budget = max_chars
    for role, text in reversed(turns):
        if budget <= 0:
            break
        if len(text) > budget:
            cut = text[len(text) - budget :]
            # Drop the partial first word left by the cut, unless it is all there is.
            _head, sep, rest = cut.partition(" ")
            text = rest if sep and rest else cut
        kept.append(ChatMessage(role, text))
        budget -= len(text)
    kept.reverse()
    return kept
