"""Headless Chromium with a fake microphone (the question speech) talks to a running server.

Needs Debian's `chromium` (apt-get install chromium) and PyPI `playwright`
(no `playwright install`: the system browser is used). Skipped, with the
reason, when either is missing.
"""

from __future__ import annotations

import importlib.util
import shutil
import time
import wave
from pathlib import Path

import numpy as np
import pytest

from tests.server.conftest import running_server

CHROMIUM = shutil.which("chromium") or "/usr/bin/chromium"
# Chromium reads its fake microphone from a 16-bit PCM WAV; 48 kHz is its native capture rate.
FAKE_MIC_RATE = 48_000
# Flags that work on these machines (docs/components.md), plus the fake microphone and autoplay.
FLAGS = [
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--autoplay-policy=no-user-gesture-required",
    "--use-fake-ui-for-media-stream",
    "--use-fake-device-for-media-stream",
]

pytestmark = [
    pytest.mark.skipif(not Path(CHROMIUM).exists(), reason="Debian's chromium is not installed"),
    pytest.mark.skipif(importlib.util.find_spec("playwright") is None, reason="PyPI playwright is missing"),
]


def _fake_mic_wav(question_24k: np.ndarray, path: Path) -> Path:
    from kamevoice.audio import resample

    speech = resample(question_24k, 24_000, FAKE_MIC_RATE)
    silence = np.zeros(FAKE_MIC_RATE, np.float32)  # a second between repetitions (chromium loops it)
    pcm = (np.clip(np.concatenate([speech, silence]), -1, 1) * 32767).round().astype("<i2")
    with wave.open(str(path), "wb") as w:
        w.setnchannels(1)
        w.setsampwidth(2)
        w.setframerate(FAKE_MIC_RATE)
        w.writeframes(pcm.tobytes())
    return path


async def test_browser_page_shows_transcript_and_plays_audio(frontend, question_24k, tmp_path):
    from playwright.async_api import async_playwright

    mic = _fake_mic_wav(question_24k, tmp_path / "mic.wav")
    async with running_server(frontend, max_sessions=1) as (_srv, url), async_playwright() as pw:
        browser = await pw.chromium.launch(
            executable_path=CHROMIUM, args=[*FLAGS, f"--use-file-for-fake-audio-capture={mic}"]
        )
        try:
            page = await browser.new_page()
            console: list[str] = []
            page.on("console", lambda m: console.append(f"{m.type}: {m.text}"))
            await page.goto(url + "/")
            start = time.monotonic()
            await page.click("#start")
            try:
                await page.wait_for_function("window.kame.stats.handshake", timeout=20_000)
                await page.wait_for_function("window.kame.transcript.length > 0", timeout=60_000)
                await page.wait_for_function("window.kame.stats.played > 10", timeout=20_000)
            finally:
                shot = tmp_path / "kamevoice-page.png"
                await page.screenshot(path=str(shot), full_page=True)
                print(f"\nscreenshot: {shot} (after {time.monotonic() - start:.1f} s)")
            stats = await page.evaluate("window.kame.stats")
            transcript = await page.inner_text("#transcript")
            figures = {k: await page.inner_text(f"#{k}") for k in ("frames-received", "frames-played")}
            words = await page.inner_text("#words")
        finally:
            await browser.close()
    assert stats["error"] is None, (stats, console)
    assert stats["sent"] > 10 and stats["received"] > 10 and stats["played"] > 10, stats
    assert transcript.strip(), "the page shows no user transcript"
    assert words.strip(), "the page shows none of the front-end's words"
    assert int(figures["frames-received"]) > 0 and int(figures["frames-played"]) > 0, figures
