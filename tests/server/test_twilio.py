"""Phone calls through the Twilio door, from a client written from Twilio's documented messages
(`kamevoice.server.twilio_client`): the question in mu-law, the reply, marks, barge-in, bad input."""

from __future__ import annotations

import asyncio
import logging
import re
import time

import numpy as np
import pytest

from kamevoice.audio import resample
from kamevoice.runtime.events import read_events
from kamevoice.runtime.messages import EndCause, EventKind
from kamevoice.server.client import ChatClient
from kamevoice.server.doors import twilio as twilio_door
from kamevoice.server.doors.barge_in import CALLER_SPEECH_DBFS, level_dbfs
from kamevoice.server.twilio_client import CALL_SID, CHUNK_BYTES, STREAM_SID, TwilioCall
from tests.server.conftest import running_server
from tests.server.test_access import _get

# Largest WebSocket message of the bad-input server: a Twilio media message is ~300 bytes.
MAX_MESSAGE_BYTES = 64 * 1024
# The question `question_24k` speaks, and how many of its eight words must reach the transcript.
QUESTION_WORDS = ["what", "time", "does", "the", "store", "open", "on", "saturday"]
MIN_QUESTION_WORDS_HEARD = 5


def _question_8k(question_24k: np.ndarray, tail_s: float = 2.0) -> np.ndarray:
    speech = resample(question_24k, 24_000, 8_000)
    return np.concatenate([speech, np.zeros(int(tail_s * 8_000), np.float32)])


def _events(tmp_path, call_sid: str = CALL_SID) -> list[dict]:
    (path,) = tmp_path.glob(f"*{call_sid}*.jsonl")
    return read_events(path)


async def test_a_call_is_heard_answered_and_logged_by_its_ids(frontend, question_24k, tmp_path, caplog):
    caplog.set_level(logging.INFO, logger="kamevoice.server")
    async with (
        running_server(frontend, max_sessions=1, log_dir=str(tmp_path)) as (_srv, url),
        TwilioCall.connect(url, params={"caller": "+15550100"}) as call,
    ):
        await call.say(_question_8k(question_24k))
        await call.dtmf("5")
        assert await call.wait_for(lambda c: len(c.got.marks_echoed) >= 50, 5)
        for _ in range(200):  # the final transcript comes once the STT has heard the silence after
            if any(e["kind"] == EventKind.STT_FINAL for e in _events(tmp_path)):
                break
            await call.say(np.zeros(800, np.float32))  # the line stays open: 100 ms of quiet
        await call.stop()
        metrics = (await _get(url + "/metrics"))[1]
    got = call.got
    assert got.other == [] and got.media == len(got.marks) >= 50, (got.media, len(got.marks), got.other)
    heard = call.heard()
    assert call.heard_seconds() > 4.0 and np.isfinite(heard).all() and np.abs(heard).max() > 0
    assert got.marks == sorted(got.marks, key=int)  # one per 80 ms frame, named by its frame, in order
    assert got.marks_echoed == got.marks[: len(got.marks_echoed)]  # each echoed once played
    (path,) = tmp_path.glob("*.jsonl")
    assert CALL_SID in path.name and STREAM_SID in path.name  # the call's log, named by its ids
    events = read_events(path)
    (start,) = [e for e in events if e["kind"] == EventKind.CALL_START]
    assert (start["call"], start["stream"], start["params"]) == (
        CALL_SID,
        STREAM_SID,
        {"caller": "+15550100"},
    )
    assert [e["digit"] for e in events if e["kind"] == EventKind.CALL_DTMF] == ["5"]
    transcript = " ".join(e["text"] for e in events if e["kind"] == EventKind.STT_FINAL).lower()
    # mu-law at 8 kHz, resampled, reached the STT intact: most of the question's words are heard (the
    # small Whisper sometimes mishears one word of telephone-band speech, "Saturday" as "tag or date")
    heard_words = set(re.findall(r"[a-z]+", transcript)) & set(QUESTION_WORDS)
    assert len(heard_words) >= MIN_QUESTION_WORDS_HEARD, transcript
    assert any(e["kind"] == EventKind.LLM_FIRST_TOKEN for e in events)
    end = events[-1]
    assert end["kind"] == EventKind.SESSION_END and end["reason"] == "call ended (stop)"
    assert any(f"call={CALL_SID} stream={STREAM_SID}" in r.getMessage() for r in caplog.records)
    assert "kamevoice_audio_frames_out_total" in metrics


async def test_the_caller_barging_in_clears_the_models_queued_speech(frontend, question_24k, tmp_path):
    speech = resample(question_24k, 24_000, 8_000)
    levels = [level_dbfs(speech[i : i + CHUNK_BYTES]) for i in range(0, len(speech), CHUNK_BYTES)]
    onset_s = next(i for i, db in enumerate(levels) if db > CALLER_SPEECH_DBFS) * CHUNK_BYTES / 8_000
    async with (
        running_server(frontend, max_sessions=1, oracle=False, log_dir=str(tmp_path)) as (_srv, url),
        TwilioCall.connect(url, playback_delay_s=0.4) as call,  # a jitter buffer: some speech unplayed
    ):
        await call.say(np.zeros(12_000, np.float32))  # 1.5 s of a silent caller: the model talks
        assert call.got.clears == [] and len(call.got.marks_echoed) >= 5
        t0 = time.perf_counter()
        await call.say(speech)
        assert await call.wait_for(lambda c: c.got.clears, 2)
        metrics = (await _get(url + "/metrics"))[1]
    got = call.got
    assert len(got.clears) == 1, got.clears  # one interruption, one clear
    assert got.clears[0] - (t0 + onset_s) < 0.3, got.clears[0] - t0  # 100 ms of voice, and the wire
    assert got.dropped_bytes > 0  # what the phone held unplayed was dropped ...
    assert got.marks_echoed == got.marks[: len(got.marks_echoed)]  # ... and its marks echoed, in order
    (barge,) = [e for e in _events(tmp_path) if e["kind"] == EventKind.CALL_BARGE_IN]
    assert barge["unplayed_frames"] >= 1, barge
    assert "kamevoice_barge_ins_total 1.0" in metrics


async def _honest(url: str, stop: asyncio.Event) -> ChatClient:
    """A Moshi-protocol conversation that talks in real time until `stop`; returns its client."""
    async with ChatClient.connect(url, pcm16=True, events=False) as client:
        loop = asyncio.get_running_loop()
        t0 = loop.time()
        while not stop.is_set():
            await client.send_frame(np.zeros(1920, np.float32))
            await asyncio.sleep(max(0.0, t0 + client.sent_frames * 0.08 - loop.time()))
        await client.wait_for(lambda c: len(c.audio()) >= 1920 * (c.sent_frames - 3), 3)
    return client


async def _media(call: TwilioCall, payload: str, stream_sid: str | None = None) -> None:
    media = {"track": "inbound", "chunk": "1", "timestamp": "0", "payload": payload}
    await call.send({"event": "media", "streamSid": stream_sid or call.stream_sid, "media": media})


SILENCE = "//////////8="  # base64 of 8 mu-law silence bytes
L16 = {"encoding": "audio/l16", "sampleRate": 16_000}  # not a format Twilio's streams carry
# Each bad input: (name, what the call does after connecting, whether it sends start, close code, reason).
BAD_INPUT = [
    ("malformed JSON", lambda c: c.send_raw("{not json"), True, 1008, "protocol error: malformed JSON"),
    ("unknown event", lambda c: c.send({"event": "hi"}), True, 1008, "protocol error: unknown event 'hi'"),
    ("wrong base64", lambda c: _media(c, "@@@@"), True, 1007, "bad audio: media: payload is not base64"),
    ("wrong audio format", lambda c: c.send_start(media_format=L16), False, 1007,
     "bad audio: start: media format 'audio/l16' at 16000"),
    ("beyond the size limit", lambda c: c.send_raw("x" * (MAX_MESSAGE_BYTES + 1)), True, 1009, ""),
    ("media before start", lambda c: _media(c, SILENCE), False, 1008, "protocol error: media before start"),
    ("a binary frame", lambda c: c.send_raw(b"\x01\x02"), True, 1008, "protocol error: binary frames"),
    ("a second start", lambda c: c.send_start(), True, 1008, "protocol error: start: the stream has already"),
    ("another stream's media", lambda c: _media(c, SILENCE, "MZother"), True, 1008, "for another stream"),
    ("no start in time", lambda c: asyncio.sleep(0), False, 1008, "protocol error: no start message within"),
]  # fmt: skip


async def test_bad_input_ends_that_call_only_with_its_reason(frontend, tmp_path, caplog, monkeypatch):
    caplog.set_level(logging.INFO, logger="kamevoice.server")
    monkeypatch.setattr(twilio_door, "START_TIMEOUT_S", 0.5)
    stop = asyncio.Event()
    async with running_server(
        frontend, max_sessions=2, oracle=False, log_dir=str(tmp_path), max_message_bytes=MAX_MESSAGE_BYTES
    ) as (srv, url):
        honest = asyncio.create_task(_honest(url, stop))
        await asyncio.sleep(0.5)
        for i, (name, act, starts, code, reason) in enumerate(BAD_INPUT):
            sid = f"CA{i:032d}"
            async with TwilioCall.connect(url, call_sid=sid, start=starts) as call:
                if not starts:
                    await call.send({"event": "connected", "protocol": "Call", "version": "1.0.0"})
                await call.say(np.zeros(800, np.float32), pace=False) if starts else None
                await act(call)
                assert await call.wait_for(lambda c: c.got.closed, 5), name
            assert call.got.close_code == code and reason in call.got.close_reason, (name, call.got)
            for _ in range(100):  # the call's session is over before the next one starts
                if len(srv.connections) == 1:
                    break
                await asyncio.sleep(0.02)
            if starts:  # its log, named by its ids, says how it ended
                end = _events(tmp_path, sid)[-1]
                assert end["kind"] == EventKind.SESSION_END and end["cause"] != EndCause.CLIENT_CLOSED, name
        stop.set()
        client = await honest
    assert client.got.error is None
    assert len(client.audio()) >= 1920 * (client.sent_frames - 3), (
        len(client.audio()) / 1920,
        client.sent_frames,
    )
    gaps = np.diff(client.got.audio_times)
    assert gaps.max() < 0.5, gaps.max()  # the honest conversation never stalled
    ended = [r.getMessage() for r in caplog.records if " ended: " in r.getMessage()]
    for name, *_, reason in BAD_INPUT:
        assert not reason or any(reason in line for line in ended), (name, ended)


async def test_a_token_server_wants_it_in_the_start_message(frontend, tmp_path):
    async with running_server(
        frontend, max_sessions=1, oracle=False, token="s3cret", log_dir=str(tmp_path)
    ) as (
        srv,
        url,
    ):
        async with TwilioCall.connect(url, call_sid="CA" + "1" * 32, params={"token": "wrong"}) as call:
            assert await call.wait_for(lambda c: c.got.closed, 5)
        assert (call.got.close_code, call.got.close_reason) == (
            1008, "unauthorized: the start message's 'token' parameter is missing or wrong")  # fmt: skip
        for _ in range(100):
            if not srv.connections:
                break
            await asyncio.sleep(0.02)
        async with TwilioCall.connect(url, params={"token": "s3cret", "caller": "x"}) as call:
            await call.say(np.zeros(8_000, np.float32))
            assert await call.wait_for(lambda c: c.got.media >= 5, 5)
        (start,) = [e for e in _events(tmp_path) if e["kind"] == EventKind.CALL_START]
        assert start["params"] == {"caller": "x"}  # the token never reaches a log
        status, _ = await _get(url + "/api/chat", {"Upgrade": "websocket", "Connection": "Upgrade"})
        assert status == 401  # the Moshi door still wants it before the upgrade


@pytest.mark.parametrize("path", ["/twilio"])
async def test_twilio_route_refuses_a_browser_from_elsewhere(frontend, path):
    from tests.server.test_access import UPGRADE

    async with running_server(frontend, max_sessions=1, oracle=False) as (_srv, url):
        status, body = await _get(url + path, {**UPGRADE, "Origin": "http://evil.example"})
    assert status == 403 and body["error"] == "origin"
