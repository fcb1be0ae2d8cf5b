"""Put a dialogue's words and oracle events on the 80 ms frame grid (docs/kame.md section 5).

Each choice is an `AlignSettings` field whose default is the published recipe's
(kame_finetune `tools/tokenize_text.py`, `tools/tokenize_oracle.py`, `utils/data.py`):

- Text, `text_timing="per_character"` (published): the modelled speaker's words,
  sorted by start and joined with single spaces, are tokenised as one string; each
  word's time span is split evenly over its characters (its leading space included),
  and a piece starts at the time of its first character. It goes on frame
  `t // 0.08` (in floating point, as the published code computes it: 1.2 s gives
  frame 14), or the first free frame after it: searched from the piece's own frame,
  so a piece of a word that overlaps the previous one may land before it, and an
  end-of-padding frame counts as taken, as published. `"word_start"`: each word is
  tokenised on its own, its first piece on the frame of the word's start (or the next
  free one), every further piece on the next free frame, in order. Either way the frame
  just before a placed piece gets the end-of-padding id (0) when it is still PAD; every
  other frame is PAD (3).
- Oracles: each event addressed to the modelled speaker becomes
  `(frame = int(timestamp_s * 12.5), tokens, turn)`. `oracle_text="hint_when_heard"`
  (published): the tokens are the `hint` (the true reply) when the turn has been heard
  in full (`current_spoken_ratio >= 1`) and a hint is given, else the `prediction`;
  `"prediction"`: always the prediction. Lines are tokenised apart and joined with the
  newline piece, as published; an event without tokens is dropped. `turn` numbers the
  reply the event precedes, so training augmentation can keep the last event of each
  turn. The per-frame layout itself is always `kamevoice.oracle.timeline.layout_oracle`,
  the rule streaming uses.
- Speaker: the published recipe models speaker A (`--moshi_speakers` default).
"""

from __future__ import annotations

import bisect
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Literal, Protocol

import numpy as np
from pydantic import Field

from kamevoice.data.formats import OracleEvent as RawOracleEvent
from kamevoice.data.formats import Word
from kamevoice.oracle.ids import TextIds
from kamevoice.oracle.pieces import TextTokenizer
from kamevoice.runtime.clock import FRAME_RATE_HZ, FRAME_SECONDS, seconds_to_frame
from kamevoice.section import Section

TextTiming = Literal["per_character", "word_start"]
OracleText = Literal["hint_when_heard", "prediction"]
# SentencePiece's word-boundary mark, which stands for the space before a word.
WORD_MARK = "\u2581"
# The share of a turn heard from which the true reply (the hint) is the oracle (published: 1.0).
HEARD_IN_FULL = 1.0


class AlignSettings(Section):
    """How dialogues are put on the frame grid; every default is the published recipe's."""

    speaker: Literal["A", "B"] = Field("A", description="the speaker the model plays (published default: A)")
    text_timing: TextTiming = Field(
        "per_character",
        description="'per_character': pieces of the whole transcript, each at the time of its first "
        "character, word spans split evenly over their characters (published); 'word_start': each "
        "word's pieces from the word's start frame on",
    )
    oracle_text: OracleText = Field(
        "hint_when_heard",
        description="'hint_when_heard': an event's hint (the true reply) once the turn is heard in "
        "full (ratio >= 1), else its prediction (published); 'prediction': always the prediction",
    )


class PieceTokenizer(Protocol):
    """SentencePiece's pieces, for per-character timing (`sentencepiece.SentencePieceProcessor`)."""

    def encode(self, text: str, out_type: type = int) -> list: ...

    def piece_to_id(self, piece: str) -> int: ...


@dataclass(frozen=True)
class TokenizedOracle:
    """An oracle event on the frame grid."""

    frame: int
    tokens: tuple[int, ...]
    turn: int  # index of the reply (of the modelled speaker) that this event precedes; -1: none follows


def align_text(
    words: Sequence[Word],
    tokenizer: TextTokenizer,
    num_frames: int,
    speaker: str,
    ids: TextIds,
    end_of_padding: bool = True,
    timing: TextTiming = "per_character",
) -> tuple[np.ndarray, int]:
    """Per-frame text ids `[num_frames]` for `speaker`'s words; returns (ids, pieces dropped past the end).

    Frames without a piece hold `ids.pad`; with `end_of_padding`, a free frame right before a
    piece holds `ids.end_of_padding`, as in Moshi's aligned text stream. `timing`: see module doc.
    """
    mine = sorted((w for w in words if w.speaker == speaker), key=lambda w: w.start)
    text = np.full(num_frames, ids.pad, dtype=np.int64)
    if timing == "per_character":
        placed = [(int(t // FRAME_SECONDS), piece) for t, piece in piece_times(mine, tokenizer)]
        # The published text stream holds pieces up to 1 s after the speaker's last word.
        limit = min(num_frames, int((mine[-1].end + 1) * FRAME_RATE_HZ)) if mine else num_frames
        return text, _place_published(text, placed, limit, ids, end_of_padding)
    if timing != "word_start":
        raise ValueError(f"text timing must be 'per_character' or 'word_start', got {timing!r}")
    # Every piece of a word may go from the word's start frame on: the first lands there (or on
    # the next free frame), the others on the frames right after it.
    placed = [(seconds_to_frame(w.start), piece) for w in mine for piece in tokenizer.encode(w.word)]
    taken = np.zeros(num_frames, dtype=bool)
    dropped = 0
    next_free = 0
    for frame, piece in placed:
        frame = max(frame, next_free)
        if frame >= num_frames:
            dropped += 1
            continue
        text[frame] = piece
        taken[frame] = True
        next_free = frame + 1
    if end_of_padding:
        before = np.flatnonzero(taken[1:] & ~taken[:-1])  # frames followed by a piece, themselves free
        text[before] = ids.end_of_padding
    return text, dropped


def _place_published(
    text: np.ndarray, placed: list[tuple[int, int]], limit: int, ids: TextIds, end_of_padding: bool
) -> int:
    """Write (frame, id) pieces into `text` in the published order of operations: each from its
    own frame on to the first PAD frame (an end-of-padding frame counts as taken, and a piece whose
    words overlap the previous ones may land before it), end-of-padding at once on a PAD frame
    before it; past `limit` the rest is dropped. Returns how many were dropped."""
    for k, (frame, piece) in enumerate(placed):
        while frame < limit and text[frame] != ids.pad:
            frame += 1
        if frame >= limit:
            return len(placed) - k
        text[frame] = piece
        if end_of_padding and frame > 0 and text[frame - 1] == ids.pad:
            text[frame - 1] = ids.end_of_padding
    return 0


def piece_times(words: Sequence[Word], tokenizer: PieceTokenizer) -> list[tuple[float, int]]:
    """(start time, id) of each piece of one speaker's words (sorted by start), the published way:
    the words joined by single spaces and tokenised at once, each word's span split evenly over
    its characters (the space before it included), a piece timed by its first character."""
    texts = [w.word.strip() if i == 0 else " " + w.word.strip() for i, w in enumerate(words)]
    char_times = []
    for word, text in zip(words, texts, strict=True):
        step = (word.end - word.start) / len(text) if text else 0.0
        char_times += [word.start + i * step for i in range(len(text))]
    text = "".join(texts)
    out: list[tuple[float, int]] = []
    position = 0
    for k, (piece, length) in enumerate(_pieces(text, tokenizer)):
        if k == 0 and piece == WORD_MARK:
            continue  # a lone leading mark: SentencePiece's prefix, no character of the text
        if k == 0 and piece.startswith(WORD_MARK):
            length -= 1  # the first word has no space before it
        if length <= 0 or position >= len(char_times):
            continue  # a piece without characters (the published code warns and skips it)
        out.append((char_times[position], tokenizer.piece_to_id(piece)))
        position += length
    return out


def _pieces(text: str, tokenizer: PieceTokenizer) -> list[tuple[str, int]]:
    """(piece, characters of `text` it covers); byte-fallback pieces (`<0xNN>`) merged into the
    characters they spell, as the published `encode_as_pieces_wo_byte_fallback` does."""
    out: list[tuple[str, int]] = []
    pending = b""
    for piece in tokenizer.encode(text, out_type=str):
        if len(piece) == 6 and piece.startswith("<0x") and piece.endswith(">"):
            pending += bytes([int(piece[3:5], 16)])
            try:
                chars = pending.decode("utf-8")
            except UnicodeDecodeError:
                continue  # an incomplete character: wait for its other bytes
            out.append((chars, len(chars)))
            pending = b""
        else:
            out.append((piece, len(piece)))
    return out


def reply_starts(words: Sequence[Word], speaker: str) -> list[float]:
    """Start times of `speaker`'s turns (a turn begins when the other speaker spoke last)."""
    starts, previous = [], None
    for word in sorted(words, key=lambda w: w.start):
        if word.speaker == speaker and previous != speaker:
            starts.append(word.start)
        previous = word.speaker
    return starts


def oracle_tokens(
    event: RawOracleEvent, tokenizer: TextTokenizer, text: OracleText = "hint_when_heard"
) -> list[int]:
    """The tokens an event puts on the oracle stream (see module doc, `oracle_text`)."""
    if text not in ("hint_when_heard", "prediction"):
        raise ValueError(f"oracle text must be 'hint_when_heard' or 'prediction', got {text!r}")
    if text == "hint_when_heard" and event.current_spoken_ratio >= HEARD_IN_FULL and event.hint.strip():
        return encode_lines(tokenizer, event.hint)
    return encode_lines(tokenizer, event.prediction)


def encode_lines(tokenizer: TextTokenizer, text: str) -> list[int]:
    """`text` tokenised line by line, the lines joined by the tokenizer's newline piece (if it has
    one), as the published oracle tokenisation does; a one-line text is simply encoded."""
    if "\n" not in text.strip():
        return list(tokenizer.encode(text))
    newline = tokenizer.encode("\n")
    out: list[int] = []
    for i, line in enumerate(text.strip().split("\n")):
        if i and newline:
            out.append(newline[-1])
        out += tokenizer.encode(line)
    return out


def tokenize_oracles(
    events: Sequence[RawOracleEvent],
    tokenizer: TextTokenizer,
    words: Sequence[Word],
    channel: int,
    speaker: str,
    text: OracleText = "hint_when_heard",
) -> list[TokenizedOracle]:
    """The events addressed to `channel`, on the frame grid, each with the turn it precedes
    (events that give no tokens are dropped, as published)."""
    starts = reply_starts(words, speaker)
    out = []
    for event in sorted((e for e in events if e.channel == channel), key=lambda e: e.timestamp_ms):
        tokens = oracle_tokens(event, tokenizer, text)
        if not tokens:
            continue
        t = event.timestamp_ms / 1000.0
        turn = bisect.bisect_left(starts, t)
        out.append(
            TokenizedOracle(
                frame=int(t * FRAME_RATE_HZ),  # as published (`tools/tokenize_oracle.py`)
                tokens=tuple(tokens),
                turn=turn if turn < len(starts) else -1,
            )
        )
    return out
