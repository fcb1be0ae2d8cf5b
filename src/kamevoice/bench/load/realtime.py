"""When a round held real time, and how many sessions did.

- real time held: overruns under 5 % of steps, p90 added latency under
  `REALTIME_LATENCY_S`, and (back-end on) mean STT partial lag (final lag
  for an STT without partials) under `REALTIME_STT_LAG_S`.
  `max_realtime_sessions` is the largest N whose round, and every smaller
  measured N's, held real time.
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import Protocol

# A round "held real time" when p90 added latency stays under this (seconds) ...
REALTIME_LATENCY_S = 0.3
# ... and at most this share of steps overran the 80 ms budget.
REALTIME_OVERRUN_SHARE = 0.05
# With the back-end on, a round holds real time only while STT partials lag the audio by less than this
# on average (seconds): sphinx partials normally lag 0.1-0.3 s.
REALTIME_STT_LAG_S = 1.0


def frames_realtime(failed_clients: int, steps: int, overruns: int, latency_ms_p90: float | None) -> bool:
    """The frame loop alone kept up: every client served, few overruns, p90 added latency in bounds."""
    return (
        failed_clients == 0
        and steps > 0
        and overruns <= REALTIME_OVERRUN_SHARE * steps
        and latency_ms_p90 is not None
        and latency_ms_p90 < REALTIME_LATENCY_S * 1e3
    )


def backend_realtime(backend_on: bool, partial_lag_s: float | None, final_lag_s: float | None) -> bool:
    """The back-end kept up (always, when it is off): its mean STT lag is in bounds."""
    # An STT without partials (Whisper with `partials` off) is judged by its finals.
    stt_lag = partial_lag_s if partial_lag_s is not None else final_lag_s
    return not backend_on or (stt_lag is not None and stt_lag < REALTIME_STT_LAG_S)


class _Round(Protocol):
    clients: int
    realtime: bool


def max_realtime_sessions(results: Iterable[_Round]) -> int:
    """The largest client count that held real time, with every smaller measured count (0: none)."""
    best = 0
    for r in sorted(results, key=lambda r: r.clients):
        if not r.realtime:
            break
        best = r.clients
    return best
