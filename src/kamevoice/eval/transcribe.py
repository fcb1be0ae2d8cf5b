"""Transcribe a system's spoken reply with the configured STT provider (the 'stt' view of a reply)."""

from __future__ import annotations

import asyncio

import numpy as np

from kamevoice.clock import FRAME_SECONDS

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
        from kamevoice.backend.stt.resample import resample

        audio, sample_rate = resample(audio, sample_rate, _STT_RATE), _STT_RATE
    if len(audio) == 0 or float(np.abs(audio).max()) == 0.0:
        return ""
    audio = np.clip(audio, -1.0, 1.0)

    async def run() -> str:
        stt = make_stt(stt_settings)
        step = max(1, round(FRAME_SECONDS * sample_rate))

        async def feed() -> None:
            try:
                for i in range(0, len(audio), step):
                    await stt.push(audio[i : i + step], sample_rate)
                    await asyncio.sleep(0)
            finally:
                await stt.finish()

        feeder = asyncio.create_task(feed())
        texts: list[str] = []
        try:
            async for hyp in stt:
                if hyp.is_final and hyp.text.strip():
                    texts.append(hyp.text.strip())
            await feeder
        finally:
            feeder.cancel()
            await stt.aclose()
        return " ".join(texts)

    return asyncio.run(run())
