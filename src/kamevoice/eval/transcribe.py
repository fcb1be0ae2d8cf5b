"""Transcribe a system's spoken reply with the configured STT provider (the 'stt' view of a reply)."""

from __future__ import annotations

import asyncio

import numpy as np

# Rates the STT interface accepts directly; others are resampled to the first.
_STT_RATE = 24_000


def transcribe(stt_settings, audio: np.ndarray, sample_rate: int) -> str:
    """Final transcripts of `audio` (mono float32), joined; '' for silence.

    A fresh recognition stream per call, fed in 80 ms chunks as fast as it
    takes them (no clock involved: only the words matter here).
    """
    from kamevoice.backend.stt import SUPPORTED_RATES, make_stt

    audio = np.asarray(audio, dtype=np.float32)
    if sample_rate not in SUPPORTED_RATES:
        from kamevoice.audio import resample

        audio, sample_rate = resample(audio, sample_rate, _STT_RATE), _STT_RATE
    if len(audio) == 0 or float(np.abs(audio).max()) == 0.0:
        return ""
    audio = np.clip(audio, -1.0, 1.0)

    async def run() -> str:
        from kamevoice.backend.stt.files import transcribe_audio

        stt = make_stt(stt_settings)
        try:
            hyps = await transcribe_audio(stt, audio, sample_rate)
        finally:
            await stt.aclose()
        return " ".join(h.text.strip() for h in hyps if h.is_final and h.text.strip())

    return asyncio.run(run())
