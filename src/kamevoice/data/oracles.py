"""Simulated oracle events for spoken dialogues (docs/kame.md section 5).

Every `interval_s` of dialogue time, for the speaker who will reply to the
turn in progress, we note what has been heard (context, word count, last
words) and the share r of the current turn heard so far. r picks the hint
level (0: r <= 0.5 ... 5: r > 0.99); a simulator writes the prediction that a
back-end would have produced, allowed to follow the true reply (the hint) more
closely as the level rises; at r >= 1.0 the true reply itself is the
prediction. Events are written in the published `oracle_raw` format.

Turns are runs of one speaker's words in file order (the order of the
published `text/<id>.json`; `synth` writes turn by turn, so an overlap does
not split a turn). A word is heard once it has ended. The last turn of a
dialogue has no reply, so it gets no events.

Simulators implement `OracleSimulator.predict(slot) -> str` (async):
`OfflineSimulator` here (no LLM, deterministic for a seed) and
`LLMSimulator` in `oracle_llm.py`.
"""

from __future__ import annotations

import asyncio
import random
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Protocol

from kamevoice.data.formats import (
    MAX_HINT_LEVEL,
    ORACLE_DIR,
    SPEAKERS,
    TEXT_DIR,
    OracleEvent,
    Word,
    hint_level,
    read_words,
    speaker_channel,
    write_oracle_events,
)
from kamevoice.data.jobs import BadInput, Item, Outcome

# A turn counts as fully heard from this ratio on: the true reply is used, no simulator call.
FULL_RATIO = 1.0


@dataclass(frozen=True)
class OracleOptions:
    """When events are made and for whom."""

    # Dialogue time between two events (s); the published default.
    interval_s: float = 0.5
    # How many of the last heard words go into `recent_words`.
    recent_words: int = 5
    # Speakers for whom events are made when they are the one to reply ("A", "B" or both).
    respondents: tuple[str, ...] = SPEAKERS
    seed: int = 0


@dataclass(frozen=True)
class OracleSlot:
    """Everything known when an event is due, before its prediction is written."""

    dialogue_id: str
    timestamp_ms: int
    context: str
    total_word_count: int
    trigger_word: str
    recent_words: str
    ratio: float
    respondent: str
    truth: str

    @property
    def level(self) -> int:
        """Hint level 0-5 for this slot's ratio."""
        return hint_level(self.ratio)

    def event(self, prediction: str) -> OracleEvent:
        """The published event for this slot with `prediction` filled in."""
        return OracleEvent(
            timestamp_ms=self.timestamp_ms,
            conversation_context=self.context,
            prediction=prediction,
            total_word_count=self.total_word_count,
            trigger_word=self.trigger_word,
            recent_words=self.recent_words,
            current_spoken_ratio=self.ratio,
            channel=speaker_channel(self.respondent),
            hint=self.truth if self.level > 0 else "",
        )


def split_turns(words: list[Word]) -> list[list[int]]:
    """Indices of `words` grouped into turns: runs of one speaker in list order."""
    turns: list[list[int]] = []
    for i, w in enumerate(words):
        if turns and words[turns[-1][0]].speaker == w.speaker:
            turns[-1].append(i)
        else:
            turns.append([i])
    return turns


def oracle_slots(dialogue_id: str, words: list[Word], options: OracleOptions) -> Iterator[OracleSlot]:
    """The event slots of one dialogue, in time order."""
    if not words:
        return
    turns = split_turns(words)
    turn_of = {i: t for t, indices in enumerate(turns) for i in indices}
    last_end = max(w.end for w in words)
    step = round(options.interval_s * 1000)
    if step <= 0:
        raise ValueError(f"event interval must be positive, got {options.interval_s}")
    for t_ms in range(step, int(last_end * 1000) + 1, step):
        t = t_ms / 1000.0
        heard = [i for i, w in enumerate(words) if w.end <= t + 1e-9]
        if not heard:
            continue
        current = max(turn_of[i] for i in heard)
        if current + 1 >= len(turns):
            continue  # the last turn: nobody replies
        respondent = words[turns[current + 1][0]].speaker
        if respondent not in options.respondents:
            continue
        heard_set = set(heard)
        in_turn = sum(1 for i in turns[current] if i in heard_set)
        ratio = in_turn / len(turns[current])
        lines = []
        for indices in turns[: current + 1]:
            spoken = [words[i].word for i in indices if i in heard_set]
            if spoken:
                lines.append(f"{words[indices[0]].speaker}: {' '.join(spoken)}")
        by_time = sorted(heard, key=lambda i: (words[i].end, i))
        recent = [words[i].word for i in by_time[-options.recent_words :]]
        truth = " ".join(words[i].word for i in turns[current + 1])
        yield OracleSlot(
            dialogue_id=dialogue_id,
            timestamp_ms=t_ms,
            context="\n".join(lines),
            total_word_count=len(heard),
            trigger_word=recent[-1],
            recent_words=" ".join(recent),
            ratio=ratio,
            respondent=respondent,
            truth=truth,
        )


class OracleSimulator(Protocol):
    """Writes the prediction a back-end would make for a slot."""

    async def predict(self, slot: OracleSlot) -> str:
        """A 10-30 word reply for `slot.respondent`, closer to `slot.truth` as `slot.level` rises."""
        ...


# --------------------------------------------------------------------------- offline simulator

_GENERIC = (
    "Sure, let me think about that for a second before I answer you.",
    "Good question. Give me a moment and I will walk you through it.",
    "Okay, I am following you so far, go on and tell me the rest.",
    "Right, that makes sense. Let me see what the best answer would be here.",
    "Hmm, interesting. I think I know where you are going with this one.",
    "Alright, I can help with that. Let me work it out for you quickly.",
    "Yes, I hear you. Let me put together a clear answer for that.",
    "Okay, so let me think this through step by step with you.",
)
_OPENERS = ("Well,", "I think", "Okay, so", "Let me see,", "Right,")
_FILLER_WORDS = ("something", "probably", "about", "maybe", "roughly", "another", "different", "several")


@dataclass(frozen=True)
class OfflineSimulatorOptions:
    """Shape of the offline simulator's predictions."""

    seed: int = 0
    # Predictions are cut to this many words (levels 1-4), as the paper's simulator was told.
    max_words: int = 30
    # Share of the true reply's words kept at levels 1-4: the prediction grows as more is heard.
    keep_share: tuple[float, float, float, float] = (0.3, 0.5, 0.7, 0.85)
    # Chance that a kept content word is swapped for a wrong one at levels 1-4.
    swap_probability: tuple[float, float, float, float] = (0.35, 0.25, 0.15, 0.05)
    # Words of at least this length count as content words that may be swapped.
    content_word_length: int = 4


class OfflineSimulator:
    """No LLM: a generic reply at level 0, a growing, partly wrong copy of the truth at 1-4, the truth at 5.

    Deterministic for a seed, a dialogue and a timestamp.
    """

    def __init__(self, options: OfflineSimulatorOptions | None = None):
        self.options = options or OfflineSimulatorOptions()

    def predict_sync(self, slot: OracleSlot) -> str:
        """The prediction for `slot` (no I/O)."""
        o = self.options
        level = slot.level
        if slot.ratio >= FULL_RATIO or level == MAX_HINT_LEVEL:
            return slot.truth
        rng = random.Random(f"{o.seed}:{slot.dialogue_id}:{slot.timestamp_ms}:{slot.respondent}")
        if level == 0:
            return rng.choice(_GENERIC)
        truth = slot.truth.split()
        keep = max(1, round(len(truth[: o.max_words]) * o.keep_share[level - 1]))
        distractors = [w for w in slot.context.split() if len(w) >= o.content_word_length and w.isalpha()]
        out = []
        for word in truth[:keep]:
            if len(word) >= o.content_word_length and rng.random() < o.swap_probability[level - 1]:
                word = rng.choice(distractors or _FILLER_WORDS)
            out.append(word)
        if level <= 2:
            out.insert(0, rng.choice(_OPENERS))
        return " ".join(out[: o.max_words])

    async def predict(self, slot: OracleSlot) -> str:
        """Async form of `predict_sync`, for the shared simulator interface."""
        return self.predict_sync(slot)


# --------------------------------------------------------------------------- the stage


def read_dialogue_words(in_dir: Path) -> Iterator[Item | BadInput]:
    """Stream `Item(id, words)` for every `text/<id>.json` under `in_dir`; bad files come as `BadInput`."""
    text_dir = in_dir / TEXT_DIR
    if not text_dir.is_dir():
        yield BadInput(str(text_dir), "no text/ folder of word timings")
        return
    for path in sorted(p for p in text_dir.iterdir() if p.suffix == ".json" and not p.name.startswith(".")):
        try:
            yield Item(path.stem, read_words(path))
        except Exception as exc:
            yield BadInput(str(path), str(exc))


def oracles_done(out_dir: Path, item_id: str) -> bool:
    """A dialogue is finished when its `oracle_raw/<id>.json` exists (written atomically)."""
    return (out_dir / ORACLE_DIR / f"{item_id}.json").exists()


def event_totals(events: list[OracleEvent], words: list[Word]) -> dict[str, float]:
    """Figures a stage summary adds up for one dialogue."""
    totals: dict[str, float] = {"dialogues": 1, "events": len(events)}
    totals["dialogue_hours"] = (max((w.end for w in words), default=0.0)) / 3600.0
    for e in events:
        key = f"events_level_{e.hint_level}"
        totals[key] = totals.get(key, 0) + 1
    return totals


async def simulate_dialogue(
    dialogue_id: str, words: list[Word], options: OracleOptions, simulator: OracleSimulator
) -> list[OracleEvent]:
    """All events of one dialogue; the simulator's calls for it run concurrently."""
    slots = list(oracle_slots(dialogue_id, words, options))

    async def one(slot: OracleSlot) -> OracleEvent:
        if slot.ratio >= FULL_RATIO:
            return slot.event(slot.truth)
        return slot.event(await simulator.predict(slot))

    # A task group cancels the dialogue's other calls as soon as one fails for good.
    try:
        async with asyncio.TaskGroup() as group:
            tasks = [group.create_task(one(s)) for s in slots]
    except ExceptionGroup as failed:
        raise failed.exceptions[0] from None
    return [t.result() for t in tasks]


def oracle_item_offline(
    item: Item, options: OracleOptions, simulator_options: OfflineSimulatorOptions, out_dir: Path
) -> Outcome:
    """Stage work function for the offline simulator (picklable through functools.partial)."""
    simulator = OfflineSimulator(simulator_options)
    events = asyncio.run(simulate_dialogue(item.id, item.payload, options, simulator))
    write_oracle_events(out_dir / ORACLE_DIR / f"{item.id}.json", events)
    return Outcome(item.id, event_totals(events, item.payload))


async def oracle_item_async(
    item: Item, options: OracleOptions, simulator: OracleSimulator, out_dir: Path
) -> Outcome:
    """Stage work coroutine for network simulators: all of a dialogue's events, then one atomic write."""
    events = await simulate_dialogue(item.id, item.payload, options, simulator)
    write_oracle_events(out_dir / ORACLE_DIR / f"{item.id}.json", events)
    return Outcome(item.id, event_totals(events, item.payload))
