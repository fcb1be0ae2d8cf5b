"""Knowledge-base retrieval measured on what the STT hears, not on what was typed.

Invented names ("the tasko kettle") are exactly what speech recognisers spell
wrong ("tasco", "task o"), so accuracy on clean question text says little
about accuracy in a conversation. This module speaks held-out questions with
espeak-ng, runs them through the default STT (`paired`: PocketSphinx partials
and a faster-whisper final, in process), and scores every retriever's top-1
match on each transcript:

- `text`: the question as written (the upper bound),
- `final`: Whisper's final transcript of the utterance,
- `partial@F`: the newest PocketSphinx partial the scheduler had when F of the
  speech (from its first word's start to its last word's end) had been heard.

Off-topic chatter is spoken and transcribed too; for it, a retriever should
give the fallback reply (`answered` counts how often it did not).

Transcribing is the slow part (about a second a question on 2 cores), so
`transcribe` writes its results to JSONL and `score` reads them: the same
transcripts score any retriever or threshold in seconds.

    kamevoice kb eval-spoken --kb kb.jsonl --questions qa_held_out.jsonl -n 50 --json out.json
"""

from __future__ import annotations

import asyncio
import json
import random
from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from kamevoice.errors import InputError

# Silence before the speech and after it: the endpointer needs 0.5 s of silence to end the utterance.
LEAD_S, TAIL_S = 0.3, 1.0
# Shares of the speech heard when the partial transcripts are taken.
DEFAULT_FRACTIONS = (0.5, 0.75, 1.0)
# What callers say that no knowledge base about shops should answer (spoken like the questions).
OFF_TOPIC: tuple[str, ...] = (
    "What's the weather going to be like tomorrow?",
    "Can you tell me a joke?",
    "Who won the football match last night?",
    "What is the capital of Australia?",
    "I think I need to see a doctor about my knee.",
    "Play some music for me.",
    "How do I bake sourdough bread?",
    "My sister is visiting us next week.",
    "Thanks, that's all for now.",
    "Hello, how are you doing today?",
    "I'm not sure what I want yet.",
    "Do you like dogs or cats better?",
)


@dataclass
class Transcript:
    """One spoken question (or off-topic line) and what the STT made of it."""

    id: str
    text: str  # what was said
    expected: str | None  # the knowledge-base question it should match; None for off-topic lines
    speech_start: float  # seconds into the audio
    speech_end: float
    final: str = ""  # the final transcript(s) of the utterance, joined
    partials: list[tuple[float, str]] = field(default_factory=list)  # (audio_end, text), in order

    def partial_at(self, fraction: float) -> str:
        """The newest partial published once `fraction` of the speech had been heard ('' if none yet)."""
        heard = self.speech_start + fraction * (self.speech_end - self.speech_start)
        # Partials are stamped at the end of the 80 ms chunk that produced them.
        text = ""
        for audio_end, partial in self.partials:
            if audio_end <= heard + 0.08:
                text = partial
        return text

    def source(self, name: str) -> str:
        """The transcript named `name`: 'text', 'final' or 'partial@F'."""
        if name == "text":
            return self.text
        if name == "final":
            return self.final
        if name.startswith("partial@"):
            return self.partial_at(float(name.removeprefix("partial@")))
        raise ValueError(f"unknown transcript source {name!r}")


def load_questions(kb_path: Path, questions_path: Path, n: int, seed: int = 0) -> list[tuple[str, str, str]]:
    """`n` (id, spoken question, expected KB question) triples, drawn with a seeded shuffle.

    A question line names its knowledge-base entry by `fact` (the KB line's `id`, as
    `kamevoice.tiny.knowledge` writes them) or by `expected` (the KB question itself).
    """
    kb_questions: dict[str, str] = {}
    for line in kb_path.read_text(encoding="utf-8").splitlines():
        if line.strip():
            record = json.loads(line)
            if "id" in record:
                kb_questions[str(record["id"])] = str(record.get("question", ""))
    items = []
    for number, line in enumerate(questions_path.read_text(encoding="utf-8").splitlines(), start=1):
        if not line.strip():
            continue
        record = json.loads(line)
        expected = record.get("expected") or kb_questions.get(str(record.get("fact")))
        if not expected:
            raise InputError(f"{questions_path}:{number}: no 'expected' question and no KB entry for 'fact'")
        items.append((str(record.get("id", number)), str(record["question"]), str(expected)))
    if not items:
        raise InputError(f"{questions_path} holds no questions")
    random.Random(seed).shuffle(items)
    return items[:n]


def transcribe(
    items: Sequence[tuple[str, str, str | None]],
    *,
    voice: str | None = None,
    whisper_threads: int = 1,
    progress: Callable[[int, int], None] | None = None,
) -> list[Transcript]:
    """Speak each (id, text, expected) with espeak-ng and transcribe it with the `paired` STT."""
    from kamevoice.backend.stt.files import transcribe_audio
    from kamevoice.backend.stt.paired import PairedSTT
    from kamevoice.backend.stt.settings import WhisperSettings
    from kamevoice.backend.stt.whisper import load_model
    from kamevoice.tts import get_engine

    tts = get_engine("espeak")
    whisper = WhisperSettings(cpu_threads=whisper_threads)
    model = load_model(whisper)  # shared: loading it per question would double the run time
    out: list[Transcript] = []
    for k, (ident, text, expected) in enumerate(items):
        speech = tts.synthesize(text, voice=voice)
        rate = speech.sample_rate
        audio = np.concatenate(
            [np.zeros(round(LEAD_S * rate), np.float32), np.asarray(speech.audio, np.float32),
             np.zeros(round(TAIL_S * rate), np.float32)]
        )  # fmt: skip
        if speech.words:
            start, end = LEAD_S + speech.words[0][1], LEAD_S + speech.words[-1][2]
        else:
            start, end = LEAD_S, LEAD_S + len(speech.audio) / rate
        hyps = asyncio.run(transcribe_audio(PairedSTT(whisper=whisper, model=model), audio, rate))
        out.append(
            Transcript(
                ident, text, expected, round(start, 3), round(end, 3),
                final=" ".join(h.text for h in hyps if h.is_final and h.text).strip(),
                partials=[(h.audio_end, h.text) for h in hyps if not h.is_final],
            )
        )  # fmt: skip
        if progress is not None:
            progress(k + 1, len(items))
    return out


def write_transcripts(path: Path, transcripts: Sequence[Transcript]) -> None:
    """One JSON object per transcript."""
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text("".join(json.dumps(asdict(t)) + "\n" for t in transcripts), encoding="utf-8")


def read_transcripts(path: Path) -> list[Transcript]:
    """What `write_transcripts` wrote."""
    out = []
    for line in path.read_text(encoding="utf-8").splitlines():
        if line.strip():
            record = json.loads(line)
            record["partials"] = [(float(a), str(t)) for a, t in record.get("partials", [])]
            out.append(Transcript(**record))
    return out


def sources(fractions: Sequence[float] = DEFAULT_FRACTIONS) -> list[str]:
    """The transcript sources scored, cleanest first."""
    return ["text", "final", *(f"partial@{f:g}" for f in fractions)]


def score(kb: Any, transcripts: Sequence[Transcript], source_names: Sequence[str]) -> dict[str, Any]:
    """Retrieval figures of one `KnowledgeBase` on each transcript source.

    Per source: `top1` (share of questions whose best entry is the expected one),
    `answered_right` (top-1 right and above the threshold: what the caller hears),
    `answered_wrong` (above the threshold but wrong: a wrong fact, worse than the
    fallback), and for the off-topic lines `off_topic_answered` (share not given
    the fallback reply).
    """
    questions = [t for t in transcripts if t.expected is not None]
    chatter = [t for t in transcripts if t.expected is None]
    figures: dict[str, Any] = {}
    for name in source_names:
        top1 = right = wrong = 0
        for t in questions:
            query = t.source(name)
            match = kb.answer(query)
            best = kb.search(query, top_k=1)[0][0] if query.strip() else None
            hit = best is not None and best.question == t.expected
            top1 += hit
            if match.entry is not None:
                right += match.entry.question == t.expected
                wrong += match.entry.question != t.expected
        answered = sum(kb.answer(t.source(name)).entry is not None for t in chatter)
        n = max(1, len(questions))
        figures[name] = {
            "top1": round(top1 / n, 3),
            "answered_right": round(right / n, 3),
            "answered_wrong": round(wrong / n, 3),
            "off_topic_answered": round(answered / len(chatter), 3) if chatter else None,
        }
    return figures


def evaluate(
    settings: Any,
    questions_path: Path,
    n: int,
    retrievers: Sequence[str],
    *,
    fractions: Sequence[float] = DEFAULT_FRACTIONS,
    transcripts_path: Path | None = None,
    off_topic: bool = True,
    seed: int = 0,
    progress: Callable[[int, int], None] | None = None,
) -> dict[str, Any]:
    """Transcribe (or reuse `transcripts_path` when it exists) and score each retriever.

    `settings` is a `KnowledgeSettings` naming the knowledge base and the thresholds; its
    `retriever` is replaced by each of `retrievers` in turn.
    """
    import time

    from kamevoice.knowledge.base import KnowledgeBase

    if transcripts_path is not None and transcripts_path.is_file():
        transcripts = read_transcripts(transcripts_path)
    else:
        drawn = load_questions(Path(settings.path), questions_path, n, seed)
        items: list[tuple[str, str, str | None]] = list(drawn)
        if off_topic:
            items += [(f"off-topic-{i:02d}", text, None) for i, text in enumerate(OFF_TOPIC)]
        transcripts = transcribe(items, progress=progress)
        if transcripts_path is not None:
            write_transcripts(transcripts_path, transcripts)
    names = sources(fractions)
    results = {}
    for retriever in retrievers:
        start = time.perf_counter()
        kb = KnowledgeBase.load(settings.model_copy(update={"retriever": retriever}))
        built = time.perf_counter() - start
        start = time.perf_counter()
        figures = score(kb, transcripts, names)
        queries = 2 * len(transcripts) * len(names)  # `score` asks `answer` and `search` per transcript
        results[retriever] = {
            "threshold": kb.threshold,
            "build_s": round(built, 2),
            "query_ms": round(1e3 * (time.perf_counter() - start) / queries, 2),
            "sources": figures,
        }
    return {
        "kb": str(settings.path),
        "entries": len(kb.entries),
        "questions": sum(t.expected is not None for t in transcripts),
        "off_topic": sum(t.expected is None for t in transcripts),
        "stt": "paired (PocketSphinx partials, faster-whisper tiny.en final), in process",
        "tts": "espeak-ng",
        "sources": names,
        "retrievers": results,
    }
