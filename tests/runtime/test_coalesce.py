"""Coalescing of whole-state events: the oracle's log entries and what a client receives."""

from __future__ import annotations

import asyncio
import itertools

from kamevoice.runtime.clock import WallClock
from kamevoice.runtime.coalesce import Coalescer
from kamevoice.runtime.events import EventLog
from kamevoice.runtime.messages import EventKind
from kamevoice.runtime.oracle_feed import OracleFeed


async def test_coalescer_sends_the_first_at_once_then_the_newest_per_interval():
    sent: list[tuple[float, int]] = []
    loop = asyncio.get_running_loop()
    t0 = loop.time()
    coalescer = Coalescer(0.1, lambda item: sent.append((loop.time() - t0, item)))
    for i in range(200):  # a burst over ~0.4 s
        coalescer.offer(i)
        await asyncio.sleep(0.002)
    await asyncio.sleep(0.15)
    items = [i for _, i in sent]
    assert items[0] == 0 and items[-1] == 199  # the first at once, the last always
    assert len(items) <= 7 and items == sorted(items)
    gaps = [b - a for (a, _), (b, _) in itertools.pairwise(sent)]
    assert all(g >= 0.09 for g in gaps)
    assert coalescer.offered == 200 and coalescer.sent == len(items)


async def test_coalescer_close_drops_what_it_holds():
    sent: list[int] = []
    coalescer = Coalescer(0.05, sent.append)
    coalescer.offer(1)
    coalescer.offer(2)
    coalescer.close()
    await asyncio.sleep(0.08)
    assert sent == [1]


def test_oracle_text_is_logged_per_word_and_the_final_text_last():
    log = EventLog(WallClock())
    feed = OracleFeed(log)
    feed.begin(1)
    text = ""
    for chunk in ["W", "e", " op", "en", " at", " ni", "ne", "."]:  # 8 chunks, 4 words
        text += chunk
        feed.update(1, text)
    feed.end(1, text, cancelled=False)
    texts = [e["text"] for e in log.of_kind(EventKind.ORACLE_TEXT)]
    assert texts == ["W", "We op", "We open at", "We open at ni", "We open at nine."]
    (end,) = log.of_kind(EventKind.ORACLE_END)
    assert end["text"] == texts[-1]
    feed.begin(2)
    feed.update(2, "Done")
    feed.end(2, "Done", cancelled=True)  # nothing new since the last one: not logged again
    assert [e["text"] for e in log.of_kind(EventKind.ORACLE_TEXT) if e["gen"] == 2] == ["Done"]
