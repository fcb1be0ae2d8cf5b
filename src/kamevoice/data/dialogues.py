"""Question/answer items -> two-party spoken dialogue scripts.

Input: JSONL of QA items; the field names come from a preset (`mmlu_pro`,
`gsm8k`, `hssbench`, `plain`) or are given one by one. Output: JSONL of
scripts `{"id", "source", "turns": [{"speaker": "user"|"assistant", "text"}]}`
where every text is written as it is spoken (`spoken.py`): the TTS, the word
timings and the tokenizer all see the same words.

The user asks the question (options read out naturally); the assistant gives
the answer; where the source has a worked solution or an explanation the user
asks a follow-up and the assistant explains. Offline rewriting is templated
and deterministic for a seed; an LLM paraphraser can be plugged in later
through `Rewriter`.
"""

from __future__ import annotations

import json
import random
import re
from collections.abc import Callable, Iterator
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any, Literal

from kamevoice.data.formats import check_item_id
from kamevoice.data.jobs import BadInput, Item, Outcome
from kamevoice.data.spoken import spoken
from kamevoice.errors import ConfigError

USER, ASSISTANT = "user", "assistant"
LETTERS = "ABCDEFGHIJKLMNOPQRSTUVWXYZ"
AnswerStyle = Literal["text", "letter", "gsm8k", "reply"]


@dataclass(frozen=True)
class QAFields:
    """Where a QA item keeps its parts (field names in the input JSON)."""

    question: str = "question"
    answer: str = "answer"
    options: str | None = None
    id: str | None = None
    # A worked solution or explanation, used for a follow-up turn when present.
    explanation: str | None = None
    # How `answer` is written: plain text, a choice letter/index, GSM8K's "steps #### final", or
    # "reply": the assistant's whole reply, spoken as it is (no answer template around it).
    answer_style: AnswerStyle = "text"


PRESETS: dict[str, QAFields] = {
    # MMLU-Pro: question_id, question, options (up to 10), answer "C", answer_index, cot_content, category.
    "mmlu_pro": QAFields(
        options="options", id="question_id", explanation="cot_content", answer_style="letter"
    ),
    # GSM8K: question, answer = worked solution with <<calc>> annotations, then "#### 72".
    "gsm8k": QAFields(answer_style="gsm8k"),
    # HSSBench (text part): question, options, answer letter, optional explanation.
    "hssbench": QAFields(options="options", id="id", explanation="explanation", answer_style="letter"),
    "plain": QAFields(),
}


@dataclass(frozen=True)
class QAItem:
    """One question with its answer, as read from the input."""

    id: str
    question: str
    answer: str
    options: tuple[str, ...] = ()
    answer_index: int | None = None
    explanation: str = ""
    verbatim: bool = False  # `answer` is the whole reply (answer style "reply")


@dataclass(frozen=True)
class Turn:
    """One turn of a script."""

    speaker: str
    text: str


@dataclass(frozen=True)
class Script:
    """A two-party dialogue to be spoken."""

    id: str
    turns: tuple[Turn, ...]
    source: str = ""

    def to_json(self) -> dict[str, Any]:
        """The JSONL form."""
        return {
            "id": self.id,
            "source": self.source,
            "turns": [{"speaker": t.speaker, "text": t.text} for t in self.turns],
        }

    @classmethod
    def from_json(cls, obj: Any) -> Script:
        """Parse and check the JSONL form (raises ValueError naming the problem)."""
        if not isinstance(obj, dict) or not isinstance(obj.get("id"), str | int) or not obj.get("turns"):
            raise ValueError("a script needs an 'id' and a non-empty 'turns' list")
        turns = []
        for i, t in enumerate(obj["turns"]):
            if not isinstance(t, dict) or t.get("speaker") not in (USER, ASSISTANT):
                raise ValueError(f"turns[{i}].speaker must be 'user' or 'assistant'")
            if not isinstance(t.get("text"), str) or not t["text"].strip():
                raise ValueError(f"turns[{i}].text must be a non-empty string")
            turns.append(Turn(t["speaker"], t["text"]))
        return cls(check_item_id(str(obj["id"])), tuple(turns), str(obj.get("source", "")))


# --------------------------------------------------------------------------- reading QA items

_OPTION_LINE = re.compile(r"^\s*\(?([A-J])[).:]\s+(.*\S)\s*$")
_LETTER = re.compile(r"^\s*\(?([A-Z])\)?\.?\s*$")
# Options past this many are not read out: nobody lists more in a spoken question.
MAX_SPOKEN_OPTIONS = 10
# Explanations are cut at a sentence end after this many words: a spoken explanation stays short.
MAX_EXPLANATION_WORDS = 90


def _options(value: Any) -> tuple[str, ...]:
    if value is None:
        return ()
    if isinstance(value, dict):
        return tuple(str(v) for _, v in sorted(value.items()))
    if isinstance(value, list):
        return tuple(str(v) for v in value)
    if isinstance(value, str):
        lines = [m.group(2) for m in map(_OPTION_LINE.match, value.splitlines()) if m]
        return tuple(lines)
    raise ValueError(f"options must be a list, an object or 'A. ...' lines, got {type(value).__name__}")


def parse_item(obj: Any, fields: QAFields, fallback_id: str) -> QAItem:
    """Turn one input JSON object into a `QAItem` (raises ValueError naming the bad field)."""
    if not isinstance(obj, dict):
        raise ValueError(f"expected a JSON object, got {type(obj).__name__}")
    for name in (fields.question, fields.answer):
        if name not in obj or obj[name] in (None, ""):
            raise ValueError(f"missing field {name!r}")
    question = str(obj[fields.question]).strip()
    raw_answer = obj[fields.answer]
    item_id = str(obj[fields.id]) if fields.id and obj.get(fields.id) not in (None, "") else fallback_id
    explanation = str(obj.get(fields.explanation) or "").strip() if fields.explanation else ""
    options = _options(obj.get(fields.options)) if fields.options else ()
    index = None
    answer = str(raw_answer).strip()
    if fields.answer_style == "gsm8k":
        steps, sep, final = answer.rpartition("####")
        if not sep:
            raise ValueError(f"field {fields.answer!r} has no '#### final answer'")
        answer, explanation = final.strip(), steps.strip()
    elif fields.answer_style == "letter":
        if isinstance(raw_answer, int) and not isinstance(raw_answer, bool):
            index = raw_answer
        elif m := _LETTER.match(answer):
            index = LETTERS.index(m.group(1))
        elif answer in options:
            index = options.index(answer)
        if index is None or not 0 <= index < len(options):
            raise ValueError(f"answer {raw_answer!r} names none of the {len(options)} options")
        answer = options[index]
    if explanation.startswith(("A: Let's think step by step.", "Let's think step by step.")):
        explanation = explanation.split("step by step.", 1)[1].strip()
    verbatim = fields.answer_style == "reply"
    return QAItem(check_item_id(item_id), question, answer, options, index, explanation, verbatim)


def read_qa_items(
    path: str | Path, fields: QAFields, id_prefix: str | None = None
) -> Iterator[Item | BadInput]:
    """Stream `Item(id, QAItem)` from a JSONL file; unreadable lines come as `BadInput`."""
    prefix = id_prefix or Path(path).stem

    def parse(row: Any, lineno: int) -> Item:
        item = parse_item(row, fields, f"{prefix}-{lineno:06d}")
        return Item(item.id, item)

    return _stream_jsonl(path, parse)


def _stream_jsonl(path: str | Path, parse: Callable[[Any, int], Item]) -> Iterator[Item | BadInput]:
    """`parse(row, line number)` over each JSONL line; unreadable or invalid lines come as `BadInput`."""
    path = Path(path)
    try:
        f = open(path, encoding="utf-8")  # noqa: SIM115 - closed below, generator
    except OSError as exc:
        yield BadInput(str(path), f"cannot open: {exc}")
        return
    with f:
        for lineno, line in enumerate(f, 1):
            if not line.strip():
                continue
            try:
                yield parse(json.loads(line), lineno)
            except (ValueError, TypeError) as exc:
                yield BadInput(f"{path}:{lineno}", str(exc))


# --------------------------------------------------------------------------- writing scripts

ASK_TEMPLATES = (
    "{q}",
    "Hey, I have a question. {q}",
    "Can you help me with something? {q}",
    "Quick question. {q}",
    "I was wondering about this. {q}",
    "Okay, so here is my question. {q}",
)
_OPTIONS_INTRO = ("Is it", "The options are:", "Would you say it is", "The choices are:")
_ANSWER_CHOICE = (
    "The answer is {letter}, {text}.",
    "It's {letter}. {text}.",
    "I'd go with {letter}, {text}.",
)
ANSWER_TEXT_TEMPLATES = (
    "The answer is {text}.",
    "It's {text}.",
    "That would be {text}.",
    "The answer comes out to {text}.",
)
_FOLLOW_UP = (
    "How did you get that?",
    "Can you explain why?",
    "Why is that?",
    "Could you walk me through it?",
)
THANKS_LINES = ("Thanks!", "Great, thank you.", "Got it, thanks.", "Okay, that makes sense. Thanks.")
WELCOME_LINES = ("You're welcome.", "Happy to help.", "Anytime!", "Glad I could help.")


@dataclass(frozen=True)
class DialogueOptions:
    """How QA items become dialogues."""

    seed: int = 0
    # Share of dialogues that end with a thank-you exchange (more turn-taking to learn from).
    thanks_probability: float = 0.3
    follow_up: bool = True


def _sentences_up_to(text: str, max_words: int) -> str:
    out: list[str] = []
    count = 0
    for sentence in re.split(r"(?<=[.!?])\s+", text.strip()):
        n = len(sentence.split())
        if out and count + n > max_words:
            break
        out.append(sentence)
        count += n
    return " ".join(out)


def _read_options(options: tuple[str, ...], rng: random.Random) -> str:
    shown = options[:MAX_SPOKEN_OPTIONS]
    parts = [f"{LETTERS[i]}, {spoken(o).rstrip('.')}" for i, o in enumerate(shown)]
    listed = "; ".join(parts[:-1]) + f"; or {parts[-1]}" if len(parts) > 1 else parts[0]
    return f"{rng.choice(_OPTIONS_INTRO)} {listed}?"


class OfflineScriptWriter:
    """Deterministic templated rewrites: no LLM, same script for the same seed and item."""

    def __init__(self, options: DialogueOptions | None = None):
        self.options = options or DialogueOptions()

    def write(self, item: QAItem, source: str = "") -> Script:
        """The script for one QA item."""
        rng = random.Random(f"{self.options.seed}:{item.id}")
        question = spoken(item.question)
        if not question:
            raise ValueError("the question has no speakable words")
        asked = rng.choice(ASK_TEMPLATES).format(q=question)
        if item.options:
            asked += " " + _read_options(item.options, rng)
        turns = [Turn(USER, asked)]
        answer = spoken(item.answer).rstrip(".") or item.answer
        if item.verbatim:
            reply = spoken(item.answer) or item.answer
        elif item.answer_index is not None:
            reply = rng.choice(_ANSWER_CHOICE).format(letter=LETTERS[item.answer_index], text=answer)
        else:
            reply = rng.choice(ANSWER_TEXT_TEMPLATES).format(text=answer)
        turns.append(Turn(ASSISTANT, reply))
        explanation = _sentences_up_to(spoken(item.explanation), MAX_EXPLANATION_WORDS)
        if self.options.follow_up and explanation:
            turns += [Turn(USER, rng.choice(_FOLLOW_UP)), Turn(ASSISTANT, explanation)]
        if rng.random() < self.options.thanks_probability:
            turns += [Turn(USER, rng.choice(THANKS_LINES)), Turn(ASSISTANT, rng.choice(WELCOME_LINES))]
        return Script(item.id, tuple(turns), source)


def make_script(item: Item, options: DialogueOptions, source: str) -> Outcome:
    """Stage work function: one QA item -> one script (picklable through functools.partial)."""
    script = OfflineScriptWriter(options).write(item.payload, source)
    words = sum(len(t.text.split()) for t in script.turns)
    return Outcome(item.id, {"dialogues": 1, "turns": len(script.turns), "words": words}, script.to_json())


def fields_for(preset: str, **overrides: str | None) -> QAFields:
    """A preset's field names, with any non-None override applied."""
    if preset not in PRESETS:
        raise ConfigError(f"unknown QA preset {preset!r}; choose from {', '.join(PRESETS)}")
    return replace(PRESETS[preset], **{k: v for k, v in overrides.items() if v is not None})


def read_scripts(path: str | Path) -> Iterator[Item | BadInput]:
    """Stream `Item(id, Script)` from a scripts JSONL; bad lines come as `BadInput`."""

    def parse(row: Any, lineno: int) -> Item:
        script = Script.from_json(row)
        return Item(script.id, script)

    return _stream_jsonl(path, parse)
