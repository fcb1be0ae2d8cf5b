"""Training-time oracle augmentation (docs/kame.md section 3), applied at load time, seeded.

The published recipe, with every number a setting:
- each event is skipped with a per-example probability p drawn from
  U(0.1, 0.7), except the last event before each reply (it carries the most
  complete oracle and is never skipped);
- the whole oracle stream is shifted 1-10 frames later or 1-15 frames earlier.

The result is a list of `kamevoice.oracle.timeline.OracleEvent`, laid out by
`layout_oracle`, the same rule streaming uses.
"""

from __future__ import annotations

import random
from collections.abc import Sequence
from dataclasses import dataclass

from kamevoice.data.align import TokenizedOracle
from kamevoice.oracle.timeline import OracleEvent


@dataclass(frozen=True)
class AugmentOptions:
    """Oracle augmentation settings; the defaults are the published recipe's."""

    skip_min: float = 0.1  # per-example skip probability ~ U(skip_min, skip_max)
    skip_max: float = 0.7
    shift_probability: float = 1.0  # chance that the stream is shifted at all
    later_probability: float = 0.5  # given a shift: later (else earlier)
    max_later: int = 10  # frames
    max_earlier: int = 15  # frames
    enabled: bool = True


NO_AUGMENT = AugmentOptions(enabled=False)


def augment_oracles(
    events: Sequence[TokenizedOracle], rng: random.Random, options: AugmentOptions = AugmentOptions()
) -> list[OracleEvent]:
    """Skip and shift oracle events for one training example."""
    if not options.enabled:
        return [OracleEvent(e.frame, e.tokens) for e in events]
    last_of_turn = {}
    for i, e in enumerate(events):
        last_of_turn[e.turn] = i  # events are in time order: the final index per turn survives
    keep_always = set(last_of_turn.values())
    p_skip = rng.uniform(options.skip_min, options.skip_max)
    shift = 0
    if rng.random() < options.shift_probability:
        if rng.random() < options.later_probability:
            shift = rng.randint(1, options.max_later)
        else:
            shift = -rng.randint(1, options.max_earlier)
    out = []
    for i, e in enumerate(events):
        skip = rng.random() < p_skip  # drawn for every event, so the stream of draws is stable
        if skip and i not in keep_always:
            continue
        out.append(OracleEvent(max(0, e.frame + shift), e.tokens))
    return out
