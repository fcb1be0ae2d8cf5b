"""A Moshi-protocol client (Ogg/Opus through sphn) talks to a real server: handshake, audio, text, events."""

from __future__ import annotations

import asyncio

import numpy as np

from kamevoice.runtime.messages import EventKind
from kamevoice.server.client import ChatClient
from tests.server.conftest import running_server


async def _talk(client: ChatClient, audio: np.ndarray, tail_s: float = 1.0, pace: float = 0.0) -> None:
    pcm = np.concatenate([audio, np.zeros(int(tail_s * 24_000), np.float32)])
    for start in range(0, len(pcm) - 1919, 1920):
        await client.send_frame(pcm[start : start + 1920])
        await asyncio.sleep(pace)


async def test_moshi_client_gets_handshake_audio_text_and_events(frontend, question_24k):
    async with running_server(frontend, max_sessions=2) as (_server, url):
        async with ChatClient.connect(url) as client:
            assert client.got.handshake_at is not None
            await _talk(client, question_24k, tail_s=2.0, pace=0.08)
            ok = await client.wait_for(
                lambda c: c.events_of(EventKind.STT_FINAL) or c.events_of(EventKind.USER_TURN), 20
            )
            await client.wait_for(lambda c: c.events_of(EventKind.LLM_FIRST_TOKEN), 10)
            await client.ping(b"hi")
            await client.wait_for(lambda c: c.got.pongs, 5)
        got = client.got
        assert got.pongs == [b"hi"]
        audio = client.audio()
        frames = len(audio) // 1920
        assert frames >= client.sent_frames // 2, (frames, client.sent_frames)
        assert np.isfinite(audio).all() and np.abs(audio).max() > 0
        assert got.text, "no inner-monologue text pieces"
        kinds = {e["kind"] for e in got.events}
        assert {EventKind.STT_PARTIAL, EventKind.FRONTEND_TEXT, EventKind.FRAME_STATS} <= kinds, kinds
        assert ok, f"no final transcript; kinds={kinds}"
        transcript = " ".join(e["text"] for e in client.events_of(EventKind.STT_FINAL)).lower()
        assert "saturday" in transcript, transcript
        assert client.events_of(EventKind.ORACLE_TEXT), "the oracle never reached the client"
        assert client.events_of(EventKind.LLM_FIRST_TOKEN)
        assert got.error is None
