"""The Deepgram provider against a local aiohttp WebSocket server speaking Deepgram's live protocol.

The server really recognises what it is sent (PocketSphinx on the received
LINEAR16 bytes), so a wrong sample rate, byte order or scaling on the client
side shows up as wrong words, not as a passing test.
"""

from __future__ import annotations

import asyncio
import json
from pathlib import Path

import numpy as np
import pytest
from aiohttp import WSMsgType, web
from pydantic import SecretStr

from kamevoice.backend.stt import Hypothesis, STTAuthError, STTError
from kamevoice.backend.stt.deepgram import DeepgramSTT
from kamevoice.backend.stt.files import transcribe_file
from kamevoice.backend.stt.settings import DeepgramSettings
from kamevoice.backend.stt.sphinx import SphinxSTT
from kamevoice.eval.stt import PAD_S, Utterance, normalise
from kamevoice.runtime.events import EventLog
from kamevoice.runtime.messages import EventKind

KEY = "test-key"
# Audio after which the misbehaving modes act: 1.5 s of 16-bit samples at 16 kHz.
MISBEHAVE_AFTER_BYTES = 48_000


def results(hyp: Hypothesis, is_final: bool, speech_final: bool, words=None) -> dict:
    words = hyp.words if words is None else words
    start = words[0].start if words else 0.0
    return {
        "type": "Results",
        "start": start,
        "duration": max(0.0, hyp.audio_end - start),
        "is_final": is_final,
        "speech_final": speech_final,
        "channel": {
            "alternatives": [
                {
                    "transcript": " ".join(w.word for w in words) if words else hyp.text,
                    "confidence": 0.9,
                    "words": [
                        {"word": w.word, "start": w.start, "end": w.end, "confidence": 0.9} for w in words
                    ],
                }
            ]
        },
    }


class FakeDeepgram:
    """`/v1/listen`: checks the key and query, recognises the audio, answers in Deepgram's JSON."""

    def __init__(self, mode: str = "ok"):
        self.mode = mode
        self.queries: list[dict[str, str]] = []
        self.bytes_received = 0
        self.control: list[str] = []  # types of the JSON control messages received

    async def listen(self, request: web.Request) -> web.StreamResponse:
        if request.headers.get("Authorization") != f"Token {KEY}":
            return web.json_response(
                {"err_code": "INVALID_AUTH", "err_msg": "Invalid credentials."}, status=401
            )
        self.queries.append(dict(request.query))
        if request.query.get("encoding") != "linear16" or request.query.get("sample_rate") != "16000":
            return web.json_response({"err_msg": "unsupported encoding"}, status=400)
        ws = web.WebSocketResponse()
        await ws.prepare(request)
        stt = SphinxSTT()

        async def relay() -> None:
            async for hyp in stt:
                if not hyp.is_final:
                    await ws.send_json(results(hyp, False, False))
                elif self.mode == "split" and len(hyp.words) > 1:
                    # Deepgram finalises segments as it goes; the utterance ends with speech_final.
                    half = len(hyp.words) // 2
                    await ws.send_json(results(hyp, True, False, hyp.words[:half]))
                    await ws.send_json(results(hyp, True, True, hyp.words[half:]))
                else:
                    await ws.send_json(results(hyp, True, True))

        relay_task = asyncio.create_task(relay())
        async for msg in ws:
            if msg.type == WSMsgType.BINARY:
                self.bytes_received += len(msg.data)
                await stt.push(np.frombuffer(msg.data, dtype="<i2"), 16_000)
                if self.bytes_received > MISBEHAVE_AFTER_BYTES:
                    if self.mode == "close_mid":
                        await ws.close(code=1011, message=b"internal server error")
                        break
                    if self.mode == "malformed":
                        await ws.send_str("{this is not json")
                        self.mode = "ok"
            elif msg.type == WSMsgType.TEXT:
                self.control.append(json.loads(msg.data).get("type"))
                if self.control[-1] == "CloseStream":
                    break
        await stt.finish()
        await relay_task
        if not ws.closed:
            await ws.send_json({"type": "Metadata", "duration": self.bytes_received / 32_000})
            await ws.close()
        return ws


@pytest.fixture
async def server():
    """Start a fake Deepgram on a free loopback port; yields (service, ws:// url)."""
    service = FakeDeepgram()
    app = web.Application()
    app.router.add_get("/v1/listen", service.listen)
    runner = web.AppRunner(app)
    await runner.setup()
    site = web.TCPSite(runner, "127.0.0.1", 0)
    await site.start()
    port = runner.addresses[0][1]
    yield service, f"ws://127.0.0.1:{port}/v1/listen"
    await runner.cleanup()


def client(url: str, key: str = KEY, log: EventLog | None = None) -> DeepgramSTT:
    return DeepgramSTT(DeepgramSettings(url=url, api_key=SecretStr(key), close_timeout_s=20), events=log)


async def test_speech_round_trip(server, flite_speech: list[Utterance]) -> None:
    service, url = server
    u = flite_speech[0]
    log = EventLog()
    hyps = await transcribe_file(client(url, log=log), u.path)
    finals = [h for h in hyps if h.is_final]
    assert len(finals) == 1 and hyps[-1] is finals[0]
    assert normalise(finals[0].text) == normalise(u.text)
    assert PAD_S - 0.05 <= finals[0].words[0].start <= PAD_S + 0.4
    partials = [h for h in hyps if not h.is_final]
    assert partials and partials[0].audio_end < u.duration - PAD_S
    assert service.queries[0]["interim_results"] == "true" and service.queries[0]["model"] == "nova-2"
    assert service.bytes_received == pytest.approx(u.duration * 32_000, abs=64)
    assert log.of_kind(EventKind.STT_FINAL)[0]["provider"] == "deepgram"


async def test_finalised_segments_join_into_one_utterance(server, two_utterances: Path) -> None:
    service, url = server
    service.mode = "split"
    finals = [h for h in await transcribe_file(client(url), two_utterances) if h.is_final]
    assert len(finals) == 2
    assert normalise(finals[0].text) == ["what", "is", "the", "capital", "of", "france"]
    assert [w.word for w in finals[0].words] == normalise(finals[0].text)
    assert finals[1].words[0].start > finals[0].words[-1].end + 1.0


async def test_wrong_key_is_an_auth_error(server, flite_speech: list[Utterance]) -> None:
    _, url = server
    stt = client(url, key="wrong")
    with pytest.raises(STTAuthError, match="refused the API key"):
        await transcribe_file(stt, flite_speech[0].path)
    # Pushing by hand: the push that connects fails, so do later ones, and so does the reader.
    stt = client(url, key="wrong")
    for _ in range(2):
        with pytest.raises(STTAuthError, match=r"HTTP 401"):
            await stt.push(np.zeros(1600, np.int16), 16_000)
    await stt.finish()
    with pytest.raises(STTAuthError):
        _ = [h async for h in stt]


async def test_server_closing_mid_stream(server, flite_speech: list[Utterance]) -> None:
    service, url = server
    service.mode = "close_mid"
    with pytest.raises(STTError, match=r"closed the stream early \(code 1011\)"):
        await transcribe_file(client(url), flite_speech[0].path)


async def test_malformed_message(server, flite_speech: list[Utterance]) -> None:
    service, url = server
    service.mode = "malformed"
    with pytest.raises(STTError, match="malformed message"):
        await transcribe_file(client(url), flite_speech[0].path)


async def test_nothing_listening(unused_tcp_port: int) -> None:
    stt = client(f"ws://127.0.0.1:{unused_tcp_port}/v1/listen")
    with pytest.raises(STTError, match="cannot connect"):
        await stt.prepare()
    await stt.aclose()


async def test_keepalive_while_no_audio_flows(server, monkeypatch: pytest.MonkeyPatch) -> None:
    import kamevoice.backend.stt.deepgram as deepgram

    monkeypatch.setattr(deepgram, "KEEPALIVE_S", 0.1)
    service, url = server
    stt = client(url)
    await stt.prepare()
    await asyncio.sleep(0.35)
    await stt.finish()
    assert [h async for h in stt] == []
    assert service.control.count("KeepAlive") >= 2 and service.control[-1] == "CloseStream"
