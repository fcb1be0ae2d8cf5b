"""An asyncio event loop on a virtual clock: deterministic and faster than real time.

`loop.time()` is virtual. Whenever the loop would block waiting for its next
timer (a `sleep`, a `call_later`, a debounce), time jumps straight to that
timer instead. Everything scheduled on the loop (the oracle scheduler, the
knowledge-base back-end's simulated token stream, file playback) then runs in
a reproducible order, as fast as the CPU allows, with the same code that
serves real conversations on the wall clock (docs/architecture.md rule 1).

Work handed to threads through `run_in_executor` / `asyncio.to_thread` (the
STT engines decode that way) *freezes* virtual time until it returns: the
loop really waits for it, and no timer fires meanwhile, so results never
depend on how fast the machine is. Sockets cannot be accounted for that way:
a deterministic run keeps the network out of its timing (file mode uses the
offline back-end); real back-ends run on the wall clock.
"""

from __future__ import annotations

import asyncio
import selectors
from collections.abc import Awaitable, Callable
from typing import TypeVar

T = TypeVar("T")


class VirtualTimeLoop(asyncio.SelectorEventLoop):
    """A selector event loop whose clock advances only when the loop is otherwise idle."""

    def __init__(self, start: float = 0.0):
        super().__init__(selectors.DefaultSelector())
        self._virtual_now = start
        real_select = self._selector.select

        self._threads_busy = 0

        def select(timeout: float | None = None):
            ready = real_select(0)
            if ready or timeout == 0:
                return ready
            if timeout is None or self._threads_busy:
                # No timer pending, or thread work in flight: wait for real, with the clock frozen.
                return real_select(None)
            self._virtual_now += timeout  # jump to the next timer
            return []

        self._selector.select = select  # type: ignore[method-assign]

    def time(self) -> float:
        return self._virtual_now

    def run_in_executor(self, executor, func, *args):  # type: ignore[override]
        future = super().run_in_executor(executor, func, *args)
        self._threads_busy += 1

        def done(_: asyncio.Future) -> None:
            self._threads_busy -= 1

        future.add_done_callback(done)
        return future


def run_virtual(main: Callable[[], Awaitable[T]], start: float = 0.0) -> T:
    """Run `main()` to completion on a fresh `VirtualTimeLoop`."""
    loop = VirtualTimeLoop(start)
    try:
        return loop.run_until_complete(main())
    finally:
        loop.run_until_complete(loop.shutdown_asyncgens())
        loop.close()
