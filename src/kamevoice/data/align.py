"""Put a dialogue's words and oracle events on the 80 ms frame grid (docs/kame.md section 5).

- Text: each word of the modelled speaker is tokenised on its own (SentencePiece
  splits on whitespace, so this equals tokenising the whole transcript); its
  first piece goes on the frame of the word's start time, floor(t / 0.08), or the
  next free frame if taken, and every further piece on the next free frame.
  The frame just before a placed piece gets the end-of-padding id (0) when it
  is still PAD; every other frame is PAD (3).
- Oracles: each event addressed to the modelled speaker becomes
  `(frame = floor(timestamp / 80 ms), tokens = encode(prediction), turn)`;
  `turn` numbers the reply the event precedes, so training augmentation can
  keep the last event of each turn. The per-frame layout itself is always
  `kamevoice.oracle.timeline.layout_oracle`, the rule streaming uses.
"""

from __future__ import annotations

import bisect
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np

from kamevoice.data.formats import OracleEvent as RawOracleEvent
from kamevoice.data.formats import Word
from kamevoice.oracle.ids import TextIds
from kamevoice.oracle.pieces import TextTokenizer
from kamevoice.runtime.clock import seconds_to_frame


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
) -> tuple[np.ndarray, int]:
    """Per-frame text ids `[num_frames]` for `speaker`'s words; returns (ids, pieces dropped past the end).

    Frames without a piece hold `ids.pad`; with `end_of_padding`, a free frame right before a
    piece holds `ids.end_of_padding`, as in Moshi's aligned text stream.
    """
    text = np.full(num_frames, ids.pad, dtype=np.int64)
    taken = np.zeros(num_frames, dtype=bool)
    dropped = 0
    next_free = 0
    for word in sorted((w for w in words if w.speaker == speaker), key=lambda w: w.start):
        frame = max(seconds_to_frame(word.start), next_free)
        for piece in tokenizer.encode(word.word):
            if frame >= num_frames:
                dropped += 1
                continue
            text[frame] = piece
            taken[frame] = True
            frame += 1
        next_free = frame
    if end_of_padding:
        before = np.flatnonzero(taken[1:] & ~taken[:-1])  # frames followed by a piece, themselves free
        text[before] = ids.end_of_padding
    return text, dropped


def reply_starts(words: Sequence[Word], speaker: str) -> list[float]:
    """Start times of `speaker`'s turns (a turn begins when the other speaker spoke last)."""
    starts, previous = [], None
    for word in sorted(words, key=lambda w: w.start):
        if word.speaker == speaker and previous != speaker:
            starts.append(word.start)
        previous = word.speaker
    return starts


def tokenize_oracles(
    events: Sequence[RawOracleEvent],
    tokenizer: TextTokenizer,
    words: Sequence[Word],
    channel: int,
    speaker: str,
) -> list[TokenizedOracle]:
    """The events addressed to `channel`, on the frame grid, each with the turn it precedes."""
    starts = reply_starts(words, speaker)
    out = []
    for event in sorted((e for e in events if e.channel == channel), key=lambda e: e.timestamp_ms):
        t = event.timestamp_ms / 1000.0
        turn = bisect.bisect_left(starts, t)
        out.append(
            TokenizedOracle(
                frame=seconds_to_frame(t),
                tokens=tuple(tokenizer.encode(event.prediction)),
                turn=turn if turn < len(starts) else -1,
            )
        )
    return out
