"""The knowledge-base LLM provider: answers from a `KnowledgeBase`, streamed with LLM-like timing.

The scheduler and the front-end cannot tell it from a hosted model: the reply
comes word by word after a first-token delay (both in `KnowledgeSettings`).
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from typing import ClassVar

from kamevoice.backend.llm.base import ChatMessage, LLMProvider
from kamevoice.knowledge.base import KnowledgeBase, Match
from kamevoice.knowledge.settings import KnowledgeSettings


def latest_user_text(messages: list[ChatMessage]) -> str:
    """What the user said last (the scheduler puts the pending partial there)."""
    for message in reversed(messages):
        if message.role == "user":
            return message.content
    return ""


class KnowledgeProvider(LLMProvider):
    """An `LLMProvider` that answers from a `KnowledgeBase`, with LLM-like streaming timing."""

    name: ClassVar[str] = "knowledge"

    def __init__(self, settings: KnowledgeSettings, kb: KnowledgeBase | None = None):
        self.settings = settings
        self.kb = kb or KnowledgeBase.load(settings)

    def lookup(self, query: str) -> Match:
        """The reply the provider would stream for `query`."""
        return self.kb.answer(query)

    async def stream(self, messages: list[ChatMessage], *, system: str) -> AsyncIterator[str]:
        loop = asyncio.get_running_loop()
        start = loop.time()
        # Retrieval may run a neural encoder: keep it off the event loop that serves the frames.
        match = await asyncio.to_thread(self.lookup, latest_user_text(messages))
        words = match.reply.split()
        await asyncio.sleep(max(0.0, start + self.settings.first_token_delay_s - loop.time()))
        for i, word in enumerate(words):
            if i:
                await asyncio.sleep(self.settings.word_delay_s)
            yield word if i == 0 else " " + word
