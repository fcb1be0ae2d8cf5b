"""The oracle timeline rule (docs/kame.md section 3), in batch layout and streaming form."""

from __future__ import annotations

import random

import numpy as np
import pytest

from kamevoice.oracle.ids import TextIds
from kamevoice.oracle.timeline import OracleEvent, OracleTimeline, TimelineStats, layout_oracle

IDS = TextIds(pad=3, end_of_padding=0, start=100)
S, P = IDS.start, IDS.pad


def test_single_event_start_tokens_then_pad():
    ids = layout_oracle([OracleEvent(2, [10, 11, 12])], 8, IDS)
    assert ids.tolist() == [P, P, S, 10, 11, 12, P, P]


def test_newest_event_resets_and_discards_the_old_tail():
    # A long oracle at frame 0 is overwritten at frame 3 by a shorter one: its tail must not come back
    # (the published training code kept it: defect 4).
    stats = TimelineStats()
    ids = layout_oracle([OracleEvent(0, [10, 11, 12, 13, 14, 15]), OracleEvent(3, [20])], 8, IDS, stats)
    assert ids.tolist() == [S, 10, 11, S, 20, P, P, P]
    assert stats.superseded == 4  # 12, 13, 14, 15 were queued but never placed
    assert stats.begun == 2


def test_same_frame_later_event_wins():
    ids = layout_oracle([OracleEvent(1, [10, 11]), OracleEvent(1, [20, 21])], 5, IDS)
    assert ids.tolist() == [P, S, 20, 21, P]


def test_events_past_the_end_and_unsorted_input():
    ids = layout_oracle([OracleEvent(9, [1]), OracleEvent(1, [10])], 4, IDS)
    assert ids.tolist() == [P, S, 10, P]


def test_late_tokens_are_placed_at_the_next_free_frame_and_counted():
    # Token 0 arrives at frame 5 although its slot was frame 2: placed at 5, 3 frames late.
    stats = TimelineStats()
    event = OracleEvent(1, [10, 11, 12], arrivals=[5, 5, 9])
    ids = layout_oracle([event], 12, IDS, stats)
    assert ids.tolist() == [P, S, P, P, P, 10, 11, P, P, 12, P, P]
    assert stats.placed == 3 and stats.late == 3
    assert stats.late_frames == (5 - 2) + (6 - 3) + (9 - 4)
    assert stats.max_late_frames == 5


def test_streaming_timeline_equals_batch_layout_for_random_event_streams():
    """Driving OracleTimeline live (begin/feed between frames) gives layout_oracle's ids."""
    rng = random.Random(7)
    for _ in range(200):
        n = 40
        events = []
        for _ in range(rng.randint(0, 5)):
            f0 = rng.randrange(n)
            k = rng.randint(0, 8)
            tokens = [rng.randrange(4, 99) for _ in range(k)]
            arrivals = sorted(f0 + rng.randint(0, 6) for _ in range(k)) if rng.random() < 0.5 else None
            events.append(OracleEvent(f0, tokens, arrivals))
        want = layout_oracle(events, n, IDS)

        live = OracleTimeline(IDS)
        got = []
        ordered = sorted(events, key=lambda e: e.frame)
        current, fed = None, 0
        for t in range(n):
            for e in [e for e in ordered if e.frame == t]:
                live.begin()
                current, fed = e, 0
            if current is not None:
                while fed < len(current.tokens) and (current.arrivals is None or current.arrivals[fed] <= t):
                    live.feed([current.tokens[fed]])
                    fed += 1
            got.append(live.next_id())
        assert got == want.tolist()


def test_feed_without_begin_is_ignored_and_counted():
    tl = OracleTimeline(IDS)
    tl.feed([5, 6])
    assert [tl.next_id() for _ in range(3)] == [P, P, P]
    assert tl.stats.superseded == 2


def test_event_validation():
    with pytest.raises(ValueError, match="frame"):
        OracleEvent(-1, [1])
    with pytest.raises(ValueError, match="arrival"):
        OracleEvent(0, [1, 2], arrivals=[0])


def test_layout_dtype_and_empty():
    ids = layout_oracle([], 3, IDS)
    assert ids.dtype == np.int64 and ids.tolist() == [P, P, P]
