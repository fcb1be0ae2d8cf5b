"""Bounded exponential back-off with jitter: the one retry rule of every network call.

The oracle scheduler's LLM requests, the data stages' LLM calls and the hosted TTS
all wait `Backoff.delay(attempt, rng, retry_after)` before trying again.
"""

from __future__ import annotations

import random
from collections.abc import Mapping
from dataclasses import dataclass


@dataclass(frozen=True)
class Backoff:
    """Delay before retry number `attempt` (0-based): base x 2^attempt, capped, partly randomised.

    "Equal jitter": a fixed share `1 - jitter` of the delay plus a random share,
    so sessions that failed together do not retry in lockstep, yet never retry
    at once. A server's `Retry-After` raises the delay, within the same cap: a
    live conversation cannot wait longer than `max_delay_s` for an oracle anyway.
    """

    max_retries: int = 2
    base_s: float = 0.25
    max_delay_s: float = 2.0
    jitter: float = 0.5

    def delay(self, attempt: int, rng: random.Random, retry_after: float | None = None) -> float:
        """Seconds to wait before retry `attempt`."""
        d = min(self.max_delay_s, self.base_s * (2.0**attempt))
        d = d * (1.0 - self.jitter) + rng.uniform(0.0, d * self.jitter)
        if retry_after is not None:
            d = max(d, retry_after)
        return min(d, self.max_delay_s)


def retry_after_seconds(headers: Mapping[str, str], cap_s: float | None = None) -> float | None:
    """Seconds from an HTTP `Retry-After` header (its seconds form), capped at `cap_s`; None if absent."""
    value = headers.get("retry-after")
    if value is None:
        return None
    try:
        seconds = max(0.0, float(value))
    except ValueError:
        return None
    return seconds if cap_s is None else min(seconds, cap_s)
