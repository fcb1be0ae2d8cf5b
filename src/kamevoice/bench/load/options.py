"""What a load bench measures (`LoadBenchOptions`) and where its figures go (`ReportOptions`)."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from kamevoice.bench.load.rounds import WARMUP_S
from kamevoice.errors import ConfigError

# Standard output as a JSON destination (`--json -`).
STDOUT = "-"
# Longest round (seconds): the engine keeps the last 2000 step times (160 s), and a round reads its own.
MAX_SECONDS = 150.0


def parse_client_counts(text: str) -> tuple[int, ...]:
    """Client counts from a comma-separated list ("1,2,4"); a `ConfigError` unless all are positive."""
    counts = tuple(int(c) for c in str(text).split(",") if c.strip())
    if not counts or min(counts) < 1:
        raise ConfigError(f"--clients: expected positive counts, got {text!r}")
    return counts


@dataclass(frozen=True)
class LoadBenchOptions:
    """One load bench: which model, which client counts, how long, what the clients say."""

    checkpoint: str  # front-end checkpoint: directory or hub repo id
    client_counts: tuple[int, ...]  # one round per count, in this order
    seconds: float  # of talking per round
    question: str  # what every client says, in a loop
    title: str  # of the printed table ("kamevoice bench serve")
    device: str | None = None  # cpu, cuda, auto; None: the settings' device
    backend: bool = True  # STT and LLM on; off: the front-end alone (`server.oracle` off)
    max_sessions: int | None = None  # the servers' capacity; None: each round's client count

    def __post_init__(self) -> None:
        if not self.client_counts or min(self.client_counts) < 1:
            raise ConfigError(f"--clients: expected positive counts, got {self.client_counts!r}")
        if not 2 * WARMUP_S < self.seconds <= MAX_SECONDS:
            raise ConfigError(f"--seconds must be in ({2 * WARMUP_S:g}, {MAX_SECONDS:g}], got {self.seconds}")


@dataclass(frozen=True)
class ReportOptions:
    """Where a load bench's figures go besides the printed table."""

    json: tuple[str, ...] = ()  # files to write the JSON payload to (`STDOUT`: standard output, written last)
    plot: Path | None = None  # PNG of step time and real-time factors against sessions
    summary: bool = False  # print one line on the first round's real-time factors and CPU split
