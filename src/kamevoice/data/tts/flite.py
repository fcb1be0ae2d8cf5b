"""flite (Debian package `flite`) as a second TTS engine, timed by PocketSphinx forced alignment.

flite reports no word times, so the audio is aligned to its own text with
PocketSphinx (`pip install pocketsphinx`; its US English model is inside the
wheel). Words missing from PocketSphinx's dictionary cannot be aligned: such a
text raises `InputError` naming the word (the synth stage reports and skips
the dialogue).
"""

from __future__ import annotations

import re
import shutil
import subprocess
import tempfile
import threading
import wave
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from kamevoice.data.tts import Synthesis, WordSpan
from kamevoice.data.tts.tokens import tokenize
from kamevoice.errors import ConfigError, InputError

# PocketSphinx works on 10 ms frames.
ALIGN_FRAME_S = 0.01
# Characters PocketSphinx's dictionary never contains (it is lower case letters and apostrophes).
_NOT_IN_DICT = re.compile(r"[^a-z']")


@dataclass(frozen=True)
class FliteOptions:
    """Where flite is and which of its voices to use (all 16 kHz)."""

    binary: str = "flite"
    voices: tuple[str, ...] = ("slt", "kal16", "rms", "awb")
    timeout_s: float = 60.0


class PocketSphinxAligner:
    """Forced alignment of known text to 16 kHz speech; one decoder, reused, one call at a time."""

    def __init__(self, sample_rate: int = 16_000):
        try:
            from pocketsphinx import Decoder
        except ImportError as exc:
            raise ConfigError(
                "the flite engine needs `pocketsphinx` for word timings (pip install pocketsphinx)"
            ) from exc
        self.sample_rate = sample_rate
        self._decoder = Decoder(samprate=sample_rate, loglevel="FATAL")
        self._lock = threading.Lock()

    def align(self, audio: np.ndarray, tokens: list[str]) -> list[tuple[float, float]]:
        """(start, end) in seconds for each token, in order."""
        words = [_NOT_IN_DICT.sub("", t.lower()) for t in tokens]
        for token, word in zip(tokens, words, strict=True):
            if not word or self._decoder.lookup_word(word) is None:
                raise InputError(f"cannot align {token!r}: not in PocketSphinx's dictionary")
        pcm = (np.clip(audio, -1, 1) * 32767).astype("<i2").tobytes()
        with self._lock:
            self._decoder.set_align_text(" ".join(words))
            self._decoder.start_utt()
            self._decoder.process_raw(pcm, full_utt=True)
            self._decoder.end_utt()
            if self._decoder.hyp() is None:
                raise InputError("forced alignment failed: no path through the text")
            segments = [s for s in self._decoder.seg() if not s.word.startswith(("<", "["))]
        if len(segments) != len(words):
            raise InputError(f"alignment found {len(segments)} of {len(words)} words")
        return [(s.start_frame * ALIGN_FRAME_S, (s.end_frame + 1) * ALIGN_FRAME_S) for s in segments]


class FliteEngine:
    """flite voices; word timings from PocketSphinx forced alignment."""

    name = "flite"

    def __init__(self, options: FliteOptions | None = None):
        self.options = options or FliteOptions()
        if shutil.which(self.options.binary) is None:
            raise ConfigError(
                f"flite engine: `{self.options.binary}` not found (Debian: apt-get install flite)"
            )
        self._aligner: PocketSphinxAligner | None = None

    def voices(self) -> list[str]:
        """flite's 16 kHz voices."""
        return list(self.options.voices)

    def synthesize(self, text: str, voice: str | None = None, rate: float = 1.0) -> Synthesis:
        """Speak `text` with flite, then align its words."""
        if rate <= 0:
            raise ConfigError(f"speaking rate must be positive, got {rate}")
        voice = voice or self.options.voices[0]
        with tempfile.TemporaryDirectory() as tmp:
            out = Path(tmp) / "speech.wav"
            cmd = [self.options.binary, "-voice", voice, "--setf", f"duration_stretch={1.0 / rate:.4f}",
                   "-t", text, "-o", str(out)]  # fmt: skip
            done = subprocess.run(
                cmd, capture_output=True, text=True, timeout=self.options.timeout_s, check=False
            )
            if done.returncode != 0 or not out.exists():
                raise InputError(f"flite failed ({done.returncode}): {done.stderr.strip()[:200]}")
            with wave.open(str(out), "rb") as w:
                sample_rate = w.getframerate()
                audio = np.frombuffer(w.readframes(w.getnframes()), dtype="<i2").astype(np.float32) / 32768.0
        tokens = [t.text for t in tokenize(text)]
        if self._aligner is None or self._aligner.sample_rate != sample_rate:
            self._aligner = PocketSphinxAligner(sample_rate)
        spans = self._aligner.align(audio, tokens)
        words: list[WordSpan] = [
            (tok, s, min(e, len(audio) / sample_rate)) for tok, (s, e) in zip(tokens, spans, strict=True)
        ]
        return Synthesis(audio, sample_rate, words)
