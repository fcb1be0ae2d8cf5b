"""MT-Bench questions and references (FastChat format), and their spoken two-turn sessions.

Questions: JSONL, one `{"question_id", "category", "turns": [str, ...]}` per line
(FastChat's `question.jsonl`; the vendored copy is the default). References:
JSONL `{"question_id", "choices": [{"turns": [str, ...]}]}` (FastChat's
`reference_answer/*.jsonl`).

A spoken session lays the user turns out on one timeline, so both turns run
in one file-mode session (the front-end hears turn 2 with its own reply to
turn 1 in context):

    | lead | turn 1 speech | reply window | turn 2 speech | reply window (tail) |

The reply window is a fixed, documented gap (`LayoutOptions.reply_window_s`)
rather than "until the reply ends": a random or badly trained front-end may
never stop talking, and a fixed gap keeps sessions comparable between systems.
Turn boundaries come from the synthesiser's word timings (ground truth), so
latency is measured from the true end of speech, not from a detector.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from importlib import resources
from pathlib import Path

import numpy as np

from kamevoice.errors import ConfigError

# The categories KAME's Table 2 reports (docs/kame.md section 7), in its column order.
KAME_CATEGORIES: tuple[str, ...] = ("reasoning", "stem", "humanities")
# FastChat grades these categories against a reference answer (its NEED_REF_CATS).
REFERENCE_CATEGORIES = frozenset({"math", "reasoning", "coding"})


def packaged(name: str) -> Path:
    """Path of a vendored FastChat file in `kamevoice/eval/data` (see its SOURCE.md)."""
    return Path(str(resources.files("kamevoice.eval") / "data" / name))


@dataclass(frozen=True)
class Question:
    """One MT-Bench question: its user turns and, when known, reference answers per turn."""

    question_id: int
    category: str
    turns: tuple[str, ...]
    reference: tuple[str, ...] | None = None

    @property
    def needs_reference(self) -> bool:
        """FastChat grades this category against the reference (when one is available)."""
        return self.category in REFERENCE_CATEGORIES and self.reference is not None


def parse_categories(text: str | None) -> tuple[str, ...] | None:
    """'reasoning,stem' -> ('reasoning', 'stem'); 'all' -> None (every category); None -> KAME's three."""
    if text is None:
        return KAME_CATEGORIES
    names = tuple(c.strip().lower() for c in text.split(",") if c.strip())
    if not names:
        raise ConfigError("--categories: give at least one category, or 'all'")
    return None if names == ("all",) else names


def load_questions(
    path: str | Path | None = None,
    categories: tuple[str, ...] | None = KAME_CATEGORIES,
    references: str | Path | None = None,
    ids: tuple[int, ...] | None = None,
    limit: int | None = None,
) -> list[Question]:
    """Questions of `categories` (None: all) from a FastChat question file, with references attached.

    `references` defaults to the vendored GPT-4 answers when `path` is the vendored
    file too; for another question file, pass its references explicitly (or none).
    `limit` keeps the first N questions of each category.
    """
    qpath = Path(path) if path else packaged("question.jsonl")
    if references is None and path is None:
        references = packaged("reference_gpt-4.jsonl")
    refs = load_references(references) if references else {}
    out: list[Question] = []
    per_category: dict[str, int] = {}
    for number, item in read_jsonl(qpath):
        try:
            qid, category, turns = int(item["question_id"]), str(item["category"]), item["turns"]
        except (KeyError, TypeError, ValueError) as exc:
            raise ConfigError(f"{qpath}:{number}: not a FastChat question ({exc})") from None
        if not isinstance(turns, list) or not turns or not all(isinstance(t, str) for t in turns):
            raise ConfigError(f"{qpath}:{number}: 'turns' must be a non-empty list of strings")
        if categories is not None and category not in categories:
            continue
        if ids is not None and qid not in ids:
            continue
        if limit is not None and per_category.get(category, 0) >= limit:
            continue
        per_category[category] = per_category.get(category, 0) + 1
        out.append(Question(qid, category, tuple(turns), refs.get(qid)))
    if not out:
        raise ConfigError(f"{qpath}: no question matches categories={categories} ids={ids}")
    return out


def load_references(path: str | Path) -> dict[int, tuple[str, ...]]:
    """question_id -> reference answer per turn (first choice), from a FastChat answer file."""
    refs: dict[int, tuple[str, ...]] = {}
    rpath = Path(path)
    for number, item in read_jsonl(rpath):
        try:
            refs[int(item["question_id"])] = tuple(item["choices"][0]["turns"])
        except (KeyError, IndexError, TypeError, ValueError) as exc:
            raise ConfigError(f"{rpath}:{number}: not a FastChat answer ({exc})") from None
    return refs


def read_jsonl(path: Path):
    """`(line number, record)` for each non-empty line of a JSONL file; errors name the file and line."""
    if not path.is_file():
        raise ConfigError(f"{path} does not exist")
    for number, line in enumerate(path.read_text(encoding="utf-8").splitlines(), start=1):
        if line.strip():
            try:
                yield number, json.loads(line)
            except json.JSONDecodeError as exc:
                raise ConfigError(f"{path}:{number}: invalid JSON ({exc})") from None


# -- spoken sessions ---------------------------------------------------------------------------


@dataclass(frozen=True)
class LayoutOptions:
    """How a question's user turns are spoken and spaced."""

    tts: str = "espeak"
    voice: str | None = None
    rate: float = 1.0
    # Silence before the first turn: the front-end settles, the STT calibrates.
    lead_s: float = 0.5
    # Time the system has to reply after each turn before the next one starts (and after the
    # last one, as the file-mode tail). KAME's oracles are at most ~30 words: ~10 s of speech.
    reply_window_s: float = 10.0


@dataclass(frozen=True)
class TurnSpan:
    """Where one user turn lies in the session, from the synthesiser's word timings (seconds)."""

    text: str
    start: float
    end: float
    window_end: float  # the next turn's start, or the end of the session


@dataclass
class SpokenSession:
    """The user side of a session: mono audio and the true turn spans."""

    audio: np.ndarray
    sample_rate: int
    turns: list[TurnSpan]

    @property
    def duration_s(self) -> float:
        return len(self.audio) / self.sample_rate


def speak_session(question: Question, options: LayoutOptions = LayoutOptions(), engine=None) -> SpokenSession:
    """Synthesise every user turn and lay them out with the fixed reply window after each."""
    from kamevoice.tts import get_engine

    tts = engine or get_engine(options.tts)
    pieces: list[np.ndarray] = []
    spans: list[tuple[str, float, float]] = []
    rate: int | None = None
    t = options.lead_s
    for text in question.turns:
        syn = tts.synthesize(text, voice=options.voice, rate=options.rate)
        if rate is None:
            rate = syn.sample_rate
            pieces.append(np.zeros(round(options.lead_s * rate), dtype=np.float32))
        elif syn.sample_rate != rate:
            raise ConfigError(f"TTS changed its sample rate mid-session ({rate} -> {syn.sample_rate})")
        audio = np.asarray(syn.audio, dtype=np.float32)
        first = syn.words[0][1] if syn.words else 0.0
        last = syn.words[-1][2] if syn.words else len(audio) / rate
        spans.append((text, t + first, t + last))
        gap = np.zeros(round(options.reply_window_s * rate), dtype=np.float32)
        pieces += [audio, gap]
        t += (len(audio) + len(gap)) / rate
    assert rate is not None
    audio = np.concatenate(pieces)
    total = len(audio) / rate
    turns = [
        TurnSpan(
            text, round(start, 3), round(end, 3), round(spans[i + 1][1] if i + 1 < len(spans) else total, 3)
        )
        for i, (text, start, end) in enumerate(spans)
    ]
    return SpokenSession(audio, rate, turns)
