"""The oracle timeline: the one rule that turns oracle events into one id per 80 ms frame.

docs/kame.md section 3. A new oracle *begins* at frame f0: f0 gets the start id,
then every following frame gets the oracle's next token, PAD when none is
ready. The newest oracle wins: a new begin discards whatever the old one had
not yet placed. A token that is not available when its ideal frame comes is
placed at the next free frame (never dropped) and its lateness is counted;
`late="drop"` drops it instead, as the published streaming code does (docs/kame.md
section 9, defect 3); the two agree whenever every token arrives in time.

The rule lives in `OracleTimeline`, a frame-by-frame state machine. Streaming
drives it live (tokens arrive from the LLM between frames). Data building and
training call `layout_oracle`, which replays recorded events through the
very same state machine, so the three can never disagree (the published
code's defect 4, docs/kame.md section 9).

Frames here are *frame coordinates* of the text stream: the id of frame t is
what the model reads together with the text token of frame t, at step t + 1.
A streaming timeline may start at frame -1, the one step 0 reads, when the
checkpoint's layout reads step 0 from the timeline (`kamevoice.oracle.layouts`).
"""

from __future__ import annotations

from collections import deque
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from typing import Literal

import numpy as np

from kamevoice.oracle.ids import TextIds

# What becomes of a token that arrives after its frame has passed: placed at the next free frame
# (kamevoice), or dropped (the published streaming code).
LateTokens = Literal["next_free", "drop"]


@dataclass(frozen=True)
class OracleEvent:
    """One oracle: it begins at `frame`; `tokens` follow, one per frame.

    `arrivals[i]`, when given, is the first frame at which token i is available
    (a streamed LLM answer arrives over time); None means all are available at
    once (offline oracles in training data).
    """

    frame: int
    tokens: Sequence[int]
    arrivals: Sequence[int] | None = None

    def __post_init__(self) -> None:
        if self.frame < 0:
            raise ValueError(f"oracle event frame must be >= 0, got {self.frame}")
        if self.arrivals is not None and len(self.arrivals) != len(self.tokens):
            raise ValueError(f"{len(self.arrivals)} arrival frames for {len(self.tokens)} tokens")


@dataclass
class TimelineStats:
    """What happened to the tokens fed into a timeline."""

    begun: int = 0  # oracles begun
    placed: int = 0  # tokens placed on a frame
    late: int = 0  # tokens placed after their ideal frame
    late_frames: int = 0  # sum of their delays, in frames
    max_late_frames: int = 0
    superseded: int = 0  # tokens discarded because a newer oracle began first
    dropped: int = 0  # tokens dropped because they came after their frame (late="drop" only)


@dataclass
class OracleTimeline:
    """Frame-by-frame oracle state for one conversation (one generator slot).

    Use: `begin()` when a new oracle starts, `feed(tokens)` as its tokens
    arrive, and `next_id()` once per frame, in frame order.
    """

    ids: TextIds
    frame: int = 0  # the next frame whose id `next_id` will return (-1: the one step 0 reads)
    stats: TimelineStats = field(default_factory=TimelineStats)
    late: LateTokens = "next_free"  # what becomes of a token that arrives after its frame
    _queue: deque[int] = field(default_factory=deque)
    _begin_pending: bool = False
    _oracle_start: int | None = None  # frame f0 of the current oracle (None: none has begun)
    _next_index: int = 0  # index within the current oracle of the next token to place

    def begin(self) -> int:
        """Start a new oracle at the current frame; returns that frame (f0)."""
        self.stats.superseded += len(self._queue)
        self._queue.clear()
        self._begin_pending = True
        self._oracle_start = self.frame
        self._next_index = 0
        self.stats.begun += 1
        return self.frame

    def feed(self, tokens: Iterable[int]) -> None:
        """Append tokens of the current oracle (ignored, and counted, if none has begun)."""
        if self._oracle_start is None:
            self.stats.superseded += sum(1 for _ in tokens)
            return
        self._queue.extend(int(t) for t in tokens)

    def next_id(self) -> int:
        """The id of frame `self.frame`; advances to the next frame."""
        frame = self.frame
        self.frame += 1
        if self._begin_pending:
            self._begin_pending = False
            return self.ids.start
        if self.late == "drop" and self._oracle_start is not None:
            # The published rule: token i of an oracle begun at f0 is read at frame f0 + 1 + i
            # if it has arrived by then, else never.
            due = frame - self._oracle_start - 1
            while self._queue and self._next_index < due:
                self._queue.popleft()
                self._next_index += 1
                self.stats.dropped += 1
        if not self._queue:
            return self.ids.pad
        token = self._queue.popleft()
        assert self._oracle_start is not None  # tokens are only queued once an oracle has begun
        ideal = self._oracle_start + 1 + self._next_index
        self._next_index += 1
        self.stats.placed += 1
        if frame > ideal:
            delay = frame - ideal
            self.stats.late += 1
            self.stats.late_frames += delay
            self.stats.max_late_frames = max(self.stats.max_late_frames, delay)
        return token

    @property
    def pending(self) -> int:
        """Tokens fed but not yet placed."""
        return len(self._queue)


def layout_oracle(
    events: Iterable[OracleEvent], num_frames: int, ids: TextIds, stats: TimelineStats | None = None
) -> np.ndarray:
    """Per-frame oracle ids `[num_frames]` (int64) for recorded events, via `OracleTimeline`.

    Events are applied in order of their frame (stable: of two events on the
    same frame the later one in `events` wins). Events at or past
    `num_frames` have no effect.
    """
    ordered = sorted(events, key=lambda e: e.frame)
    timeline = OracleTimeline(ids)
    out = np.empty(num_frames, dtype=np.int64)
    current: OracleEvent | None = None
    fed = 0  # tokens of `current` already fed
    k = 0
    for t in range(num_frames):
        while k < len(ordered) and ordered[k].frame <= t:
            current, fed = ordered[k], 0
            timeline.frame = max(timeline.frame, current.frame)
            timeline.begin()
            k += 1
        if current is not None and fed < len(current.tokens):
            if current.arrivals is None:
                ready = len(current.tokens)
            else:
                ready = fed
                while ready < len(current.tokens) and current.arrivals[ready] <= t:
                    ready += 1
            timeline.feed(current.tokens[fed:ready])
            fed = ready
        out[t] = timeline.next_id()
    if stats is not None:
        for name in TimelineStats.__dataclass_fields__:
            setattr(stats, name, getattr(timeline.stats, name))
    return out
