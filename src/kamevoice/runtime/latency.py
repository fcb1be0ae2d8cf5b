"""Response latency per user turn, computed from a session's event log (never guessed).

- A *user turn* is a final STT utterance (`user_turn` events: word times in
  seconds of session audio).
- The *reply onset* for a turn is the frame time of the first front-end text
  piece inside the turn's window (from the turn's first word to the next
  turn's first word) that starts a new stretch of speech: no other piece in
  the `GAP_S` before it. When the front-end talks straight through the turn,
  the window's first piece counts.
- Latency = onset - end of the user's last word. It is negative when the reply
  starts before the user has finished; it cannot be below minus the turn's own
  duration (the window starts at the turn's first word): that is the clipping.
  A turn with no piece in its window has no reply (latency None).

Also reported per turn: time from the end of the user's speech to the first
oracle piece entering the model, and to the first piece of the final oracle.
"""

from __future__ import annotations

import statistics
from dataclasses import asdict, dataclass

from kamevoice.runtime.events import Event
from kamevoice.runtime.messages import EventKind

# Silence (no front-end piece) that separates one stretch of speech from the next.
GAP_S = 0.4


@dataclass
class TurnLatency:
    """Timing of one user turn, in seconds of session time."""

    turn: int
    text: str
    start: float  # user's first word
    end: float  # user's last word ends
    onset: float | None  # reply onset (frame time of the first reply piece)
    latency: float | None  # onset - end (negative: the reply started early)
    first_oracle_piece: float | None  # first oracle token entering the model after the turn began, - end
    reply_text: str = ""  # front-end pieces in the window, joined


def turn_latencies(events: list[Event], gap_s: float = GAP_S) -> list[TurnLatency]:
    """Per-turn latencies from a session's events (see module doc for the definitions)."""
    turns = sorted((e for e in events if e["kind"] == EventKind.USER_TURN), key=lambda e: e["start"])
    pieces = sorted(
        ((e["frame_t"], e["piece"]) for e in events if e["kind"] == EventKind.FRONTEND_TEXT),
        key=lambda p: p[0],
    )
    oracle = sorted(
        e["frame_t"] for e in events if e["kind"] == EventKind.ORACLE_PIECE and not e.get("start")
    )
    out = []
    for i, turn in enumerate(turns):
        window_end = turns[i + 1]["start"] if i + 1 < len(turns) else float("inf")
        inside = [(t, p) for t, p in pieces if turn["start"] <= t < window_end]
        onset = None
        for t, _ in inside:
            if not any(t - gap_s < u < t for u, _ in pieces):
                onset = t
                break
        if onset is None and inside:
            onset = inside[0][0]
        first_oracle = next((t for t in oracle if turn["start"] <= t < window_end), None)
        out.append(
            TurnLatency(
                turn=i,
                text=turn.get("text", ""),
                start=turn["start"],
                end=turn["end"],
                onset=onset,
                latency=None if onset is None else round(onset - turn["end"], 4),
                first_oracle_piece=None if first_oracle is None else round(first_oracle - turn["end"], 4),
                reply_text="".join(p for _, p in inside).replace("\u2581", " ").strip(),
            )
        )
    return out


def summarize(latencies: list[TurnLatency]) -> dict:
    """Median and raw distribution, as the paper reports it (negative values kept)."""
    values = [t.latency for t in latencies if t.latency is not None]
    return {
        "turns": len(latencies),
        "replied": len(values),
        "median_s": statistics.median(values) if values else None,
        "values_s": values,
        "clipping": "latency >= -(turn duration): the reply window starts at the user's first word",
        "per_turn": [asdict(t) for t in latencies],
    }
