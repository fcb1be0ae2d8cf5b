"""Readers and writers for the published kame_finetune layout.

- `text/<id>.json`: list of `{"speaker": "A"|"B", "word", "start", "end"}` (seconds);
- `audio/<id>.wav`: stereo, speaker A on channel 0, speaker B on channel 1;
- `oracle_raw/<id>.json`: list of oracle events (see `OracleEvent`).

Every reader validates what it reads; a problem raises `FormatError` naming the
file, the index of the bad entry and the field. Writers are atomic (temporary
file + rename), so a reader never sees half a file and a rerun can trust that
an existing file is complete.
"""

from __future__ import annotations

import json
import math
import os
import re
import tempfile
import wave
from collections.abc import Iterable, Sequence
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import numpy as np

from kamevoice.audio import int16_to_float, write_stereo
from kamevoice.errors import InputError

SPEAKERS = ("A", "B")
TEXT_DIR = "text"
AUDIO_DIR = "audio"
ORACLE_DIR = "oracle_raw"

# Hint levels follow the share r of the current turn heard so far (docs/kame.md section 5):
# level i applies while r <= HINT_LEVEL_UPPER_BOUNDS[i]; above the last bound it is level 5.
HINT_LEVEL_UPPER_BOUNDS = (0.5, 0.65, 0.8, 0.95, 0.99)
MAX_HINT_LEVEL = len(HINT_LEVEL_UPPER_BOUNDS)
# Float noise when a ratio is computed as a quotient of counts (e.g. 0.5 stored as 0.50000001).
_RATIO_EPS = 1e-9


class FormatError(InputError):
    """A data file does not follow the published layout; the message names file, index and field."""

    def __init__(self, path: str | Path, message: str, index: int | None = None, field: str | None = None):
        where = str(path)
        if index is not None:
            where += f"[{index}]"
        if field is not None:
            where += f".{field}"
        super().__init__(f"{where}: {message}")
        self.path = str(path)
        self.index = index
        self.field = field


# Item ids name files (text/<id>.json ...): letters, digits, '.', '_', '-', not starting with a dot.
_ITEM_ID = re.compile(r"^[A-Za-z0-9_-][A-Za-z0-9._-]{0,199}$")


def check_item_id(item_id: str) -> str:
    """`item_id` if it is safe as a file name in the layout; else ValueError saying why."""
    if not _ITEM_ID.match(item_id):
        raise ValueError(f"id {item_id!r} cannot name a file (use letters, digits, '.', '_' and '-')")
    return item_id


def hint_level(ratio: float) -> int:
    """Hint level 0-5 for the share `ratio` of the current turn heard so far."""
    for level, bound in enumerate(HINT_LEVEL_UPPER_BOUNDS):
        if ratio <= bound + _RATIO_EPS:
            return level
    return MAX_HINT_LEVEL


def speaker_channel(speaker: str) -> int:
    """Audio channel of a speaker: A -> 0, B -> 1."""
    return SPEAKERS.index(speaker)


@dataclass(frozen=True)
class Word:
    """One spoken word with its time span in seconds from the dialogue start."""

    speaker: str
    word: str
    start: float
    end: float


@dataclass(frozen=True)
class OracleEvent:
    """One simulated oracle: what the replying speaker's back-end would propose at `timestamp_ms`.

    Fields and their meaning are those of the published `oracle_raw` files:
    `conversation_context` is the dialogue heard so far (`"A: ...\\nB: ..."`),
    `total_word_count` the words heard so far, `trigger_word` the last of them,
    `recent_words` the last few, `current_spoken_ratio` the share r of the
    current turn heard so far, `channel` the channel of the speaker who will
    reply, and `hint` the true reply shown to the simulator ("" at level 0).
    """

    timestamp_ms: int
    conversation_context: str
    prediction: str
    total_word_count: int
    trigger_word: str
    recent_words: str
    current_spoken_ratio: float
    channel: int
    hint: str

    @property
    def hint_level(self) -> int:
        """Hint level 0-5 derived from `current_spoken_ratio`."""
        return hint_level(self.current_spoken_ratio)


# --------------------------------------------------------------------------- validation helpers


def _load_json(path: Path) -> Any:
    try:
        with open(path, encoding="utf-8") as f:
            return json.load(f)
    except FileNotFoundError:
        raise FormatError(path, "file does not exist") from None
    except (json.JSONDecodeError, UnicodeDecodeError) as exc:
        raise FormatError(path, f"not valid JSON: {exc}") from exc


def _field(path: Path, index: int, entry: Any, name: str, kinds: tuple[type, ...]) -> Any:
    if not isinstance(entry, dict):
        raise FormatError(path, f"expected an object, got {type(entry).__name__}", index)
    if name not in entry:
        raise FormatError(path, "missing", index, name)
    value = entry[name]
    # bool is an int in Python; a JSON true is never a valid number or count here.
    if isinstance(value, bool) or not isinstance(value, kinds):
        wanted = " or ".join(k.__name__ for k in kinds)
        raise FormatError(path, f"expected {wanted}, got {type(value).__name__} {value!r}", index, name)
    if isinstance(value, float) and not math.isfinite(value):
        raise FormatError(path, f"not a finite number: {value!r}", index, name)
    return value


def _check_keys(path: Path, index: int, entry: dict, allowed: Sequence[str]) -> None:
    extra = sorted(set(entry) - set(allowed))
    if extra:
        raise FormatError(path, f"unknown field(s) {extra}", index)


def _atomic_write_bytes(path: Path, data: bytes) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    try:
        with os.fdopen(fd, "wb") as f:
            f.write(data)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


def atomic_write_json(path: str | Path, obj: Any) -> None:
    """Write `obj` as JSON to `path` atomically (temporary file in the same folder, then rename)."""
    text = json.dumps(obj, ensure_ascii=False, indent=1)
    _atomic_write_bytes(Path(path), (text + "\n").encode("utf-8"))


# --------------------------------------------------------------------------- word timings

_WORD_FIELDS = ("speaker", "word", "start", "end")


def read_words(path: str | Path) -> list[Word]:
    """Read and validate a `text/<id>.json` file.

    Checks: a list of objects with exactly the four fields, speaker A or B, a
    non-empty word, 0 <= start <= end, and each speaker's words in time order.
    """
    path = Path(path)
    data = _load_json(path)
    if not isinstance(data, list):
        raise FormatError(path, f"expected a list of words, got {type(data).__name__}")
    words: list[Word] = []
    last_start = {s: -math.inf for s in SPEAKERS}
    for i, entry in enumerate(data):
        speaker = _field(path, i, entry, "speaker", (str,))
        word = _field(path, i, entry, "word", (str,))
        start = float(_field(path, i, entry, "start", (int, float)))
        end = float(_field(path, i, entry, "end", (int, float)))
        _check_keys(path, i, entry, _WORD_FIELDS)
        if speaker not in SPEAKERS:
            raise FormatError(path, f"must be 'A' or 'B', got {speaker!r}", i, "speaker")
        if not word.strip():
            raise FormatError(path, "empty word", i, "word")
        if start < 0:
            raise FormatError(path, f"negative time {start}", i, "start")
        if end < start:
            raise FormatError(path, f"ends ({end}) before it starts ({start})", i, "end")
        if start < last_start[speaker]:
            raise FormatError(
                path,
                f"speaker {speaker}'s words go back in time ({start} < {last_start[speaker]})",
                i,
                "start",
            )
        last_start[speaker] = start
        words.append(Word(speaker, word, start, end))
    return words


def write_words(path: str | Path, words: Iterable[Word]) -> None:
    """Write a `text/<id>.json` file atomically (times rounded to the millisecond)."""
    atomic_write_json(
        path,
        [
            {"speaker": w.speaker, "word": w.word, "start": round(w.start, 3), "end": round(w.end, 3)}
            for w in words
        ],
    )


# --------------------------------------------------------------------------- oracle events

_EVENT_TYPES: dict[str, tuple[type, ...]] = {
    "timestamp_ms": (int,),
    "conversation_context": (str,),
    "prediction": (str,),
    "total_word_count": (int,),
    "trigger_word": (str,),
    "recent_words": (str,),
    "current_spoken_ratio": (int, float),
    "channel": (int,),
    "hint": (str,),
}


def read_oracle_events(path: str | Path) -> list[OracleEvent]:
    """Read and validate an `oracle_raw/<id>.json` file.

    Checks: every field present with its type, no unknown field, timestamps
    non-negative and non-decreasing, channel 0 or 1, ratio in [0, 1], counts >= 0.
    """
    path = Path(path)
    data = _load_json(path)
    if not isinstance(data, list):
        raise FormatError(path, f"expected a list of events, got {type(data).__name__}")
    events: list[OracleEvent] = []
    last_t = -1
    for i, entry in enumerate(data):
        values = {name: _field(path, i, entry, name, kinds) for name, kinds in _EVENT_TYPES.items()}
        _check_keys(path, i, entry, tuple(_EVENT_TYPES))
        values["current_spoken_ratio"] = float(values["current_spoken_ratio"])
        if values["timestamp_ms"] < 0:
            raise FormatError(path, "negative", i, "timestamp_ms")
        if values["timestamp_ms"] < last_t:
            raise FormatError(
                path, f"goes back in time ({values['timestamp_ms']} < {last_t})", i, "timestamp_ms"
            )
        last_t = values["timestamp_ms"]
        if values["channel"] not in (0, 1):
            raise FormatError(path, f"must be 0 or 1, got {values['channel']}", i, "channel")
        if not 0.0 <= values["current_spoken_ratio"] <= 1.0 + _RATIO_EPS:
            raise FormatError(
                path, f"outside [0, 1]: {values['current_spoken_ratio']}", i, "current_spoken_ratio"
            )
        if values["total_word_count"] < 0:
            raise FormatError(path, "negative", i, "total_word_count")
        events.append(OracleEvent(**values))
    return events


def write_oracle_events(path: str | Path, events: Iterable[OracleEvent]) -> None:
    """Write an `oracle_raw/<id>.json` file atomically, fields in the published order."""
    atomic_write_json(path, [asdict(e) for e in events])


# --------------------------------------------------------------------------- stereo audio


def write_stereo_wav(
    path: str | Path, channel_a: np.ndarray, channel_b: np.ndarray, sample_rate: int
) -> None:
    """Write a 16-bit stereo WAV atomically: `channel_a` (speaker A) left, `channel_b` (speaker B) right."""
    write_stereo(path, channel_a, channel_b, sample_rate)


def read_stereo_wav(path: str | Path) -> tuple[np.ndarray, int]:
    """Read a 16-bit PCM WAV as float32 `[samples, channels]` in [-1, 1] and its sample rate."""
    path = Path(path)
    try:
        with wave.open(str(path), "rb") as w:
            channels, width, rate, n = w.getnchannels(), w.getsampwidth(), w.getframerate(), w.getnframes()
            raw = w.readframes(n)
    except FileNotFoundError:
        raise FormatError(path, "file does not exist") from None
    except (wave.Error, EOFError) as exc:
        raise FormatError(path, f"not a readable WAV file: {exc}") from exc
    if width != 2:
        raise FormatError(path, f"expected 16-bit PCM, got {8 * width}-bit samples")
    audio = int16_to_float(np.frombuffer(raw, dtype="<i2"))
    if len(audio) != n * channels:
        raise FormatError(path, f"truncated: {len(audio)} samples for {n} frames x {channels} channels")
    return audio.reshape(n, channels), rate
