"""What the simulated clients say: a question, as text and as speech."""

from __future__ import annotations

from pathlib import Path

import numpy as np

from kamevoice.runtime.clock import SAMPLE_RATE

# The question of `kamevoice bench serve` when none is given: a shop-opening question, which the
# default knowledge bases can answer.
DEFAULT_QUESTION = "What time does the store open on Saturday?"
# Silence before the question (seconds), as a caller's breath before speaking.
LEAD_IN_S = 0.5


def question_speech(text: str = DEFAULT_QUESTION) -> np.ndarray:
    """The benchmark's question, spoken by espeak-ng, as float32 24 kHz mono with a pause before it."""
    from kamevoice.audio import resample
    from kamevoice.tts import get_engine

    speech = get_engine("espeak").synthesize(text)
    audio = resample(np.asarray(speech.audio, dtype=np.float32), speech.sample_rate, SAMPLE_RATE)
    return np.concatenate([np.zeros(int(LEAD_IN_S * SAMPLE_RATE), np.float32), audio])


def kb_question(kb_path: str | Path) -> str:
    """A question for the load: the knowledge base's first question, up to its first comma.

    KAME-tiny's knowledge-base questions gather several paraphrases ("What is the price of the
    vuma pillow, how much does it cost, ..."); the first is what a caller would say.
    """
    from kamevoice.knowledge.base import KnowledgeBase
    from kamevoice.knowledge.settings import KnowledgeSettings

    entries = KnowledgeBase.load(KnowledgeSettings(path=Path(kb_path), retriever="bm25")).entries
    question = next((e.question for e in entries if e.question), entries[0].answer)
    return question.split(",")[0].rstrip("?.! ") + "?"
