"""The virtual-time event loop: sleeps cost no wall time, order and timing are exact and repeatable."""

from __future__ import annotations

import asyncio
import time

from kamevoice.runtime.virtual_loop import run_virtual


def test_long_sleeps_take_no_wall_time_and_advance_the_clock():
    async def main():
        loop = asyncio.get_running_loop()
        t0 = loop.time()
        await asyncio.sleep(3600)
        return loop.time() - t0

    wall = time.monotonic()
    assert run_virtual(main) == 3600
    assert time.monotonic() - wall < 1.0


def test_concurrent_tasks_interleave_by_virtual_time_deterministically():
    async def worker(name, period, log):
        loop = asyncio.get_running_loop()
        for _ in range(3):
            await asyncio.sleep(period)
            log.append((round(loop.time(), 3), name))

    async def main():
        log = []
        await asyncio.gather(worker("a", 0.08, log), worker("b", 0.05, log), worker("c", 0.2, log))
        return log

    first, second = run_virtual(main), run_virtual(main)
    assert first == second
    assert first[:4] == [(0.05, "b"), (0.08, "a"), (0.1, "b"), (0.15, "b")]
    assert first[-1] == (0.6, "c")


def test_wait_for_timeout_fires_at_the_virtual_deadline():
    async def main():
        loop = asyncio.get_running_loop()
        start = loop.time()
        try:
            await asyncio.wait_for(asyncio.Event().wait(), timeout=2.5)
        except TimeoutError:
            return loop.time() - start
        return None

    assert run_virtual(main) == 2.5


def test_thread_work_freezes_virtual_time_even_with_timers_pending():
    async def ticker(log):
        loop = asyncio.get_running_loop()
        while True:
            await asyncio.sleep(0.01)
            log.append(loop.time())

    async def main():
        loop = asyncio.get_running_loop()
        log = []
        task = asyncio.create_task(ticker(log))
        await asyncio.sleep(0.015)
        t0, ticks = loop.time(), len(log)
        value = await asyncio.to_thread(lambda: (time.sleep(0.1), 7)[1])
        elapsed, ticks_during = loop.time() - t0, len(log) - ticks
        task.cancel()
        return value, elapsed, ticks_during

    value, elapsed, ticks_during = run_virtual(main)
    assert value == 7 and elapsed == 0 and ticks_during == 0
