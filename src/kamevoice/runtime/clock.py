"""One clock for the whole system: frames of 80 ms and seconds since the session start.

The same code runs on the wall clock (serving) and on a virtual clock (files,
tests, evaluation), so every stamp is taken through a `Clock`.
"""

from __future__ import annotations

import time
from dataclasses import dataclass, field

# Mimi's frame rate: 12.5 frames/s, 1920 samples at 24 kHz.
FRAME_RATE_HZ = 12.5
FRAME_SECONDS = 1.0 / FRAME_RATE_HZ
SAMPLE_RATE = 24_000
FRAME_SAMPLES = int(SAMPLE_RATE * FRAME_SECONDS)  # 1920


def seconds_to_frame(t: float) -> int:
    """Index of the 80 ms frame that contains time `t` (seconds, >= 0)."""
    # The epsilon keeps exact frame boundaries (e.g. 0.16 s, stored as 0.1599999...) on their own frame.
    return int((t + 1e-9) // FRAME_SECONDS)


def frame_to_seconds(frame: int) -> float:
    """Start time of a frame, in seconds."""
    return frame * FRAME_SECONDS


class Clock:
    """Seconds since the session started."""

    def now(self) -> float:  # pragma: no cover - interface
        raise NotImplementedError


@dataclass
class WallClock(Clock):
    """Real time, from a monotonic origin taken at creation."""

    origin: float = field(default_factory=time.monotonic)

    def now(self) -> float:
        return time.monotonic() - self.origin


@dataclass
class VirtualClock(Clock):
    """Time that moves only when told to: deterministic runs over files."""

    t: float = 0.0

    def now(self) -> float:
        return self.t

    def advance(self, seconds: float) -> None:
        """Move time forward (never backwards)."""
        if seconds < 0:
            raise ValueError(f"a clock cannot go back ({seconds} s)")
        self.t += seconds


@dataclass
class LoopClock(Clock):
    """The running asyncio loop's time, from an origin taken at creation.

    On a `VirtualTimeLoop` this is virtual time; on a normal loop it is
    monotonic wall time. Create it inside the loop it should follow.
    """

    loop: object = None
    origin: float = 0.0

    def __post_init__(self) -> None:
        import asyncio

        if self.loop is None:
            self.loop = asyncio.get_running_loop()
        self.origin = self.loop.time()  # type: ignore[attr-defined]

    def now(self) -> float:
        return self.loop.time() - self.origin  # type: ignore[attr-defined]
