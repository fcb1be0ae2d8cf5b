"""espeak-ng through ctypes, from the `espeakng-loader` wheel (library and voice data inside).

Word timings are exact: the synthesiser's callback reports a WORD event at the
sample where each word starts and PHONEME events for every phone, pauses
included. A word ends where the next pause phone, the next word or the end of
the clause begins. No aligner is involved.

espeak-ng keeps one synthesiser per process (C globals), so the loaded library
is shared by every `EspeakEngine` of a process and guarded by a lock; worker
processes each load their own.
"""

from __future__ import annotations

import ctypes
import functools
import threading
import unicodedata
from dataclasses import dataclass, field

import numpy as np

from kamevoice.audio import int16_to_float
from kamevoice.errors import ConfigError, InputError
from kamevoice.tts import Synthesis, WordSpan
from kamevoice.tts.tokens import token_at, tokenize

# espeak-ng C API constants (speak_lib.h).
_AUDIO_OUTPUT_SYNCHRONOUS = 2
_INIT_PHONEME_EVENTS = 0x0001
_INIT_DONT_EXIT = 0x8000  # report errors instead of calling exit() inside the library
_POS_CHARACTER = 1
_CHARS_UTF8 = 1
_PARAM_RATE = 1
_EVENT_LIST_TERMINATED = 0
_EVENT_WORD = 1
_EVENT_END = 5
_EVENT_MSG_TERMINATED = 6
_EVENT_PHONEME = 7
_EE_OK = 0
# Speaking rate limits of espeak-ng, in words per minute.
MIN_WPM, MAX_WPM = 80, 450


class _Event(ctypes.Structure):
    """`espeak_EVENT` (the union `id` is read as its 8-byte phoneme-name form)."""

    _fields_ = [
        ("type", ctypes.c_int),
        ("unique_identifier", ctypes.c_uint),
        ("text_position", ctypes.c_int),
        ("length", ctypes.c_int),
        ("audio_position", ctypes.c_int),
        ("sample", ctypes.c_int),
        ("user_data", ctypes.c_void_p),
        ("id", ctypes.c_char * 8),
    ]


_Callback = ctypes.CFUNCTYPE(
    ctypes.c_int, ctypes.POINTER(ctypes.c_short), ctypes.c_int, ctypes.POINTER(_Event)
)


@dataclass
class _Capture:
    """What one synthesis call collects from the callback."""

    chunks: list[np.ndarray] = field(default_factory=list)
    # (type, text_position (1-based chars), sample, phoneme name)
    events: list[tuple[int, int, int, str]] = field(default_factory=list)


class _Library:
    """The process's espeak-ng instance: initialised once, one call at a time."""

    def __init__(self) -> None:
        try:
            import espeakng_loader
        except ImportError as exc:  # pragma: no cover - core dependency
            raise ConfigError(
                "espeak-ng needs the `espeakng-loader` package (pip install espeakng-loader)"
            ) from exc
        self.lib = ctypes.CDLL(espeakng_loader.get_library_path())
        self.lib.espeak_Initialize.restype = ctypes.c_int
        self.lib.espeak_Initialize.argtypes = [ctypes.c_int, ctypes.c_int, ctypes.c_char_p, ctypes.c_int]
        self.lib.espeak_SetVoiceByName.argtypes = [ctypes.c_char_p]
        self.lib.espeak_SetParameter.argtypes = [ctypes.c_int, ctypes.c_int, ctypes.c_int]
        self.lib.espeak_Synth.argtypes = [
            ctypes.c_void_p, ctypes.c_size_t, ctypes.c_uint, ctypes.c_int,
            ctypes.c_uint, ctypes.c_uint, ctypes.c_void_p, ctypes.c_void_p,
        ]  # fmt: skip
        data = espeakng_loader.get_data_path().encode()
        rate = self.lib.espeak_Initialize(
            _AUDIO_OUTPUT_SYNCHRONOUS, 0, data, _INIT_PHONEME_EVENTS | _INIT_DONT_EXIT
        )
        if rate <= 0:
            raise ConfigError(f"espeak-ng failed to initialise with data at {data.decode()}")
        self.sample_rate = int(rate)
        self.lock = threading.Lock()
        self._capture: _Capture | None = None
        self._callback = _Callback(self._on_synth)  # kept alive as long as the library
        self.lib.espeak_SetSynthCallback(self._callback)

    def _on_synth(self, wav, n, events) -> int:
        capture = self._capture
        if capture is None:  # pragma: no cover - a stray call outside synth()
            return 0
        if wav and n > 0:
            capture.chunks.append(np.ctypeslib.as_array(wav, shape=(n,)).copy())
        i = 0
        while events[i].type != _EVENT_LIST_TERMINATED:
            ev = events[i]
            name = (
                bytes(ev.id).split(b"\0", 1)[0].decode("utf-8", "replace")
                if ev.type == _EVENT_PHONEME
                else ""
            )
            capture.events.append((ev.type, ev.text_position, ev.sample, name))
            i += 1
        return 0

    def synth(self, text: str, voice: str, wpm: int) -> _Capture:
        """Synthesise `text`; returns the raw int16 chunks and events."""
        with self.lock:
            if self.lib.espeak_SetVoiceByName(voice.encode()) != _EE_OK:
                raise ConfigError(f"espeak-ng has no voice {voice!r}")
            self.lib.espeak_SetParameter(_PARAM_RATE, wpm, 0)
            data = text.encode("utf-8")
            self._capture = capture = _Capture()
            try:
                status = self.lib.espeak_Synth(
                    data, len(data) + 1, 0, _POS_CHARACTER, 0, _CHARS_UTF8, None, None
                )
                self.lib.espeak_Synchronize()
            finally:
                self._capture = None
            if status != _EE_OK:
                raise InputError(f"espeak-ng failed (status {status}) on {text[:60]!r}")
            return capture


@functools.cache
def _library() -> _Library:
    # One per process: espeak-ng's synthesiser state is C-global.
    return _Library()


@dataclass(frozen=True)
class EspeakOptions:
    """How espeak-ng speaks."""

    # espeak-ng's default speaking rate; `rate` in synthesize() multiplies it.
    base_wpm: int = 170
    default_voice: str = "en-us"


# English voices that sound distinct from each other: accent x voice variant.
DEFAULT_VOICES = (
    "en-us", "en-us+f2", "en-us+f3", "en-us+m3", "en-us+m5",
    "en", "en+f4", "en+m2", "en-gb-x-rp+f5", "en-029+m4",
)  # fmt: skip


class EspeakEngine:
    """espeak-ng with exact word timings from its own events."""

    name = "espeak"

    def __init__(self, options: EspeakOptions | None = None):
        self.options = options or EspeakOptions()
        self._lib = _library()

    @property
    def native_sample_rate(self) -> int:
        """The rate espeak-ng synthesises at (22,050 Hz)."""
        return self._lib.sample_rate

    def voices(self) -> list[str]:
        """A selection of distinct English voices (accent + variant)."""
        return list(DEFAULT_VOICES)

    def synthesize(self, text: str, voice: str | None = None, rate: float = 1.0) -> Synthesis:
        """Speak `text`; words are its whitespace tokens, timed from espeak-ng's events."""
        if rate <= 0:
            raise ConfigError(f"speaking rate must be positive, got {rate}")
        text = unicodedata.normalize("NFC", text)
        wpm = round(min(MAX_WPM, max(MIN_WPM, self.options.base_wpm * rate)))
        capture = self._lib.synth(text, voice or self.options.default_voice, wpm)
        audio = int16_to_float(np.concatenate(capture.chunks)) if capture.chunks else np.zeros(0, np.float32)
        return Synthesis(audio, self._lib.sample_rate, self._word_spans(text, capture.events, len(audio)))

    def _word_spans(
        self, text: str, events: list[tuple[int, int, int, str]], n_samples: int
    ) -> list[WordSpan]:
        tokens = tokenize(text)
        sr = self._lib.sample_rate
        # Token index -> [start sample, end sample]; a token spoken as several words is merged.
        spans: dict[int, list[int]] = {}
        current: int | None = None
        for etype, position, sample, name in events:
            sample = min(max(sample, 0), n_samples)
            if etype == _EVENT_WORD:
                if current is not None:
                    spans[current][1] = min(spans[current][1], sample)
                current = token_at(tokens, position - 1)
                if current is None:
                    continue
                if current in spans:
                    spans[current][1] = n_samples  # reopen: the token goes on
                else:
                    spans[current] = [sample, n_samples]
            elif current is not None and (
                etype in (_EVENT_END, _EVENT_MSG_TERMINATED)
                or (etype == _EVENT_PHONEME and name.startswith("_"))
            ):
                # A pause phone or the end of a clause closes the word being spoken.
                spans[current][1] = min(spans[current][1], sample)
                current = None
        return [(text, s / sr, e / sr) for text, s, e in _share_spans(tokens, spans)]


def _share_spans(tokens: list, spans: dict[int, list[int]]) -> list[tuple[str, int, int]]:
    """Every token with a span: a token espeak-ng spoke together with its neighbour (it sometimes
    joins "for a" into one word event) shares that neighbour's span, split by character count."""
    if not spans:
        return []
    mapped = sorted(spans)
    out: list[tuple[str, int, int]] = []
    for k, head in enumerate(mapped):
        # The group: the mapped token and the unmapped ones after it (before the first: joined to it).
        lo = 0 if k == 0 else head
        hi = mapped[k + 1] if k + 1 < len(mapped) else len(tokens)
        group = list(range(lo, hi))
        start, end = spans[head][0], max(spans[head])
        lengths = [len(tokens[i].text) for i in group]
        total = sum(lengths)
        cursor = float(start)
        for i, n in zip(group, lengths, strict=True):
            nxt = cursor + (end - start) * n / total
            out.append((tokens[i].text, round(cursor), round(nxt)))
            cursor = nxt
    return out
