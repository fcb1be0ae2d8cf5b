"""LLM paraphrasing of the user's question for speech, on top of the offline script.

The offline writer (`dialogues.OfflineScriptWriter`) fixes the structure and
every assistant turn (so answers stay exactly those of the source); the LLM
only rewrites the user's opening question the way a person would say it
aloud, answer choices and their letters included. Its output goes through
`spoken()` so digits or symbols it lets slip become words.
"""

from __future__ import annotations

import re
from dataclasses import replace

from kamevoice.data.dialogues import LETTERS, USER, DialogueOptions, OfflineScriptWriter, QAItem, Script, Turn
from kamevoice.data.jobs import Item, Outcome
from kamevoice.data.llm_calls import RetryingChat
from kamevoice.data.spoken import spoken

PARAPHRASE_SYSTEM = (
    "You turn written quiz and homework questions into what a person would actually say out loud when "
    "asking a voice assistant. Keep every fact, name and number the question needs, drop layout and "
    "references to the page, and sound like natural speech, not like reading. If answer choices are given, "
    "end by reading all of them with their letters, the way one would list them in conversation. Write "
    "numbers and symbols as words. Reply with the spoken question only: no quotes, no preamble."
)
_PARAPHRASE_USER = "Written question:\n{question}\n{options}\nHow would someone ask this out loud?"
_PREAMBLE = re.compile(r"^\s*(?:sure|okay|here(?:'s| is)[^:]*):\s*", re.IGNORECASE)


def clean_utterance(text: str) -> str:
    """One line of speech: no line breaks, wrapping quotes or 'Here is ...:' preamble."""
    text = _PREAMBLE.sub("", " ".join(text.split()))
    return text.strip().strip('"“”').strip()


class LLMScriptWriter:
    """Offline scripts whose opening question an LLM has rephrased for speech."""

    def __init__(self, chat: RetryingChat, options: DialogueOptions | None = None):
        self.chat = chat
        self.offline = OfflineScriptWriter(options)

    def messages(self, item: QAItem) -> list[dict[str, str]]:
        """The chat request for one item."""
        options = "".join(f"{LETTERS[i]}. {o}\n" for i, o in enumerate(item.options))
        return [{"role": "user", "content": _PARAPHRASE_USER.format(question=item.question, options=options)}]

    async def write(self, item: QAItem, source: str = "") -> Script:
        """The script for one item, with the user's question paraphrased."""
        script = self.offline.write(item, source)
        asked = await self.chat.complete(
            self.messages(item), PARAPHRASE_SYSTEM, key=f"paraphrase {item.id}", clean=clean_utterance
        )
        question = spoken(asked)
        if not question:
            raise ValueError("the paraphrase has no speakable words")
        return replace(script, turns=(Turn(USER, question), *script.turns[1:]))


async def make_script_llm(item: Item, writer: LLMScriptWriter, source: str) -> Outcome:
    """Stage work coroutine: one QA item -> one script with a paraphrased question."""
    script = await writer.write(item.payload, source)
    words = sum(len(t.text.split()) for t in script.turns)
    return Outcome(item.id, {"dialogues": 1, "turns": len(script.turns), "words": words}, script.to_json())
