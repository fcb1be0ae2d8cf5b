"""flite (Debian package `flite`) as a second TTS engine, timed by PocketSphinx forced alignment.

flite reports no word times, so the audio is aligned to its own text with
PocketSphinx (`pip install pocketsphinx`; its US English model is inside the
wheel), through `sphinx_align`, which the other engines without timings share.
"""

from __future__ import annotations

import shutil
import subprocess
import tempfile
import wave
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from kamevoice.audio import int16_to_float
from kamevoice.errors import ConfigError, InputError
from kamevoice.tts import Synthesis
from kamevoice.tts.sphinx_align import PocketSphinxAligner, WordTimer

# PocketSphinxAligner moved to `sphinx_align`; still importable from here.
__all__ = ["FliteEngine", "FliteOptions", "PocketSphinxAligner"]


@dataclass(frozen=True)
class FliteOptions:
    """Where flite is and which of its voices to use (all 16 kHz)."""

    binary: str = "flite"
    voices: tuple[str, ...] = ("slt", "kal16", "rms", "awb")
    timeout_s: float = 60.0


class FliteEngine:
    """flite voices; word timings from PocketSphinx forced alignment."""

    name = "flite"

    def __init__(self, options: FliteOptions | None = None):
        self.options = options or FliteOptions()
        if shutil.which(self.options.binary) is None:
            raise ConfigError(
                f"flite engine: `{self.options.binary}` not found (Debian: apt-get install flite)"
            )
        self._timer = WordTimer("flite")

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
                audio = int16_to_float(np.frombuffer(w.readframes(w.getnframes()), dtype="<i2"))
        return Synthesis(audio, sample_rate, self._timer.words(audio, sample_rate, text))
