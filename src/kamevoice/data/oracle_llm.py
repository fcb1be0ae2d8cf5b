"""An LLM as oracle simulator: one prompt per hint level, bounded concurrency, retries with back-off.

The provider is any `kamevoice.backend.llm` provider (async
`stream(messages, system=...)` yielding text pieces), called through
`kamevoice.data.llm_calls.RetryingChat`.

The prompts ask for what the replying speaker would say next, 10-30 spoken
words, and tell the model how much it may use the true reply at each level:
not shown at level 0, only its drift at level 1, its gist at 2, its content
at 3, nearly its words at 4 and 5.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field, replace
from typing import Any

from kamevoice.data.formats import MAX_HINT_LEVEL
from kamevoice.data.llm_calls import LLMStats, RetryingChat, RetryPolicy
from kamevoice.data.oracles import OracleSlot

_SYSTEM_COMMON = (
    "You stand in for the thinking half of a spoken assistant that listens while the other person is "
    "still talking. You read a live transcript whose last line may break off mid-sentence, and you write "
    "the next thing speaker {speaker} will say. Write it exactly as it would be spoken aloud: between "
    "{min_words} and {max_words} words, no lists, no digits or symbols (write numbers as words), "
    "no quotation marks, no stage directions, no speaker label. Sound sure of yourself; do not ask "
    "whether you understood. "
    "Reply with the spoken words only."
)

# What each hint level allows (index = level). Written for this project; levels follow docs/kame.md section 5.
LEVEL_GUIDANCE = (
    "You are not told what {speaker} actually said. Work from the conversation alone: if the unfinished "
    "last line already shows what is wanted, answer it; if not, give a short, natural reply that fits the "
    "conversation so far and keeps it moving.",
    "Below is what {speaker} actually said, but you heard only the start of the other turn, so you may "
    "borrow nothing from it except its broad direction (the topic, whether it agrees or declines). Use your "
    "own words and details, as a guess would.",
    "Below is what {speaker} actually said. Keep its main point, but phrase it your own way and feel free to "
    "get secondary details such as names, figures or order a little different.",
    "Below is what {speaker} actually said. Convey the same content with your own phrasing; only small "
    "details may differ.",
    "Below is what {speaker} actually said. Stay very close to it: the same content in nearly the same "
    "words, "
    "trimmed to the length limit.",
    "Below is what {speaker} actually said. Repeat it almost word for word, trimmed to the length limit.",
)

_USER_TEMPLATE = (
    "Transcript so far (the last line may be unfinished):\n{context}\n\n{hint}"
    "Now write speaker {speaker}'s next turn."
)
_HINT_TEMPLATE = "What {speaker} actually said next: {truth}\n\n"


@dataclass(frozen=True)
class LLMSimulatorOptions:
    """Prompt limits and the call policy."""

    min_words: int = 10
    max_words: int = 30
    retry: RetryPolicy = field(default_factory=RetryPolicy)


class OraclePrompts:
    """The system prompt and user message for a slot."""

    def __init__(self, options: LLMSimulatorOptions):
        self.options = options

    def system(self, slot: OracleSlot) -> str:
        """System prompt for the slot's level."""
        common = _SYSTEM_COMMON.format(
            speaker=slot.respondent, min_words=self.options.min_words, max_words=self.options.max_words
        )
        return (
            common + "\n\n" + LEVEL_GUIDANCE[min(slot.level, MAX_HINT_LEVEL)].format(speaker=slot.respondent)
        )

    def messages(self, slot: OracleSlot) -> list[dict[str, str]]:
        """The chat messages for the slot (the hint is left out at level 0)."""
        hint = _HINT_TEMPLATE.format(speaker=slot.respondent, truth=slot.truth) if slot.level > 0 else ""
        content = _USER_TEMPLATE.format(context=slot.context, hint=hint, speaker=slot.respondent)
        return [{"role": "user", "content": content}]


_LABEL = re.compile(r"^\s*(?:[AB]|speaker\s+[AB])\s*:\s*", re.IGNORECASE)


def clean_prediction(text: str) -> str:
    """One line of spoken words: drop a speaker label, quotes and line breaks the model may add."""
    text = " ".join(text.split())
    text = _LABEL.sub("", text)
    return text.strip().strip('"').strip()


class LLMSimulator:
    """Oracle predictions from a streaming chat LLM, with bounded concurrency and retries."""

    def __init__(self, provider: Any, options: LLMSimulatorOptions | None = None):
        self.options = options or LLMSimulatorOptions()
        self.chat = RetryingChat(provider, self.options.retry)
        self.prompts = OraclePrompts(self.options)

    @classmethod
    def from_chat(cls, chat: RetryingChat, options: LLMSimulatorOptions | None = None) -> LLMSimulator:
        """A simulator sharing an existing client (its provider, policy and counters)."""
        simulator = cls(chat.provider, replace(options or LLMSimulatorOptions(), retry=chat.policy))
        simulator.chat = chat
        return simulator

    @property
    def stats(self) -> LLMStats:
        """Counters of the calls made so far."""
        return self.chat.stats

    async def predict(self, slot: OracleSlot) -> str:
        """The LLM's prediction for `slot`; retried with back-off; raises after the last attempt."""
        return await self.chat.complete(
            self.prompts.messages(slot),
            self.prompts.system(slot),
            key=f"oracle {slot.dialogue_id}@{slot.timestamp_ms}",
            clean=clean_prediction,
        )
