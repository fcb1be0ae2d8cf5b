"""Admission and observability: busy beyond max_sessions, token and origin checks, /health, /metrics, logs."""

from __future__ import annotations

import asyncio
import json

import aiohttp
import numpy as np
import pytest

from kamevoice.runtime.messages import EventKind
from kamevoice.server.client import ChatClient, Rejected
from tests.server.conftest import running_server

# What a browser sends to open a WebSocket (the server answers refusals before upgrading).
UPGRADE = {
    "Connection": "Upgrade",
    "Upgrade": "websocket",
    "Sec-WebSocket-Version": "13",
    "Sec-WebSocket-Key": "dGhlIHNhbXBsZSBub25jZQ==",
}


async def _get(url: str, headers: dict | None = None) -> tuple[int, dict | str]:
    async with aiohttp.ClientSession() as http, http.get(url, headers=headers) as resp:
        body = await resp.text()
        try:
            return resp.status, json.loads(body)
        except json.JSONDecodeError:
            return resp.status, body


async def _speak(client: ChatClient, seconds: float) -> None:
    for _ in range(int(seconds / 0.08)):
        await client.send_frame(np.zeros(1920, np.float32))
        await asyncio.sleep(0.08)


async def test_busy_beyond_max_sessions_then_free_again(frontend, tmp_path):
    async with running_server(frontend, max_sessions=1, oracle=False, log_dir=str(tmp_path)) as (srv, url):
        async with ChatClient.connect(url) as first:
            status, body = await _get(url + "/api/chat", UPGRADE)
            assert status == 503 and body["error"] == "busy" and "1" in body["message"]
            with pytest.raises(Rejected) as info:
                async with ChatClient.connect(url):
                    pass
            assert info.value.status == 503
            health = (await _get(url + "/health"))[1]
            assert health["ok"] and health["sessions"] == 1 and health["free_slots"] == 0
            await _speak(first, 0.8)
            assert await first.wait_for(lambda c: len(c.audio()) > 0, 10), "the admitted session stalled"
        assert await _wait(lambda: not srv.connections)
        async with ChatClient.connect(url) as again:  # the slot is free again
            await _speak(again, 0.4)
        assert await _wait(lambda: not srv.connections)
        health = (await _get(url + "/health"))[1]
        assert health["engine"]["steps"] > 0 and "overruns" in health["engine"]
        status, metrics = await _get(url + "/metrics")
        assert status == 200
        for line in (
            'kamevoice_sessions_rejected_total{why="busy"} 2.0',
            "kamevoice_sessions_started_total 2.0",
            'kamevoice_sessions_ended_total{reason="client_closed"} 2.0',
        ):
            assert line in metrics, line
        for name in (
            "kamevoice_engine_steps_total",
            "kamevoice_engine_step_seconds_bucket",
            "kamevoice_engine_overruns_total",
            "kamevoice_engine_underruns_total",
            "kamevoice_sessions_active",
            "kamevoice_text_pieces_total",
            "kamevoice_audio_frames_in_total",
            "kamevoice_audio_frames_out_total",
        ):
            assert name in metrics, name
    logs = sorted(tmp_path.glob("*.jsonl"))
    assert len(logs) == 2
    events = [json.loads(line) for line in logs[0].read_text().splitlines()]
    assert events[0]["kind"] == EventKind.SESSION_START
    assert events[-1]["kind"] == EventKind.SESSION_END and events[-1]["reason"] == "client closed"


async def _wait(predicate, timeout: float = 10.0) -> bool:
    for _ in range(int(timeout / 0.02)):
        if predicate():
            return True
        await asyncio.sleep(0.02)
    return False


async def test_token_required_when_configured(frontend):
    async with running_server(frontend, max_sessions=1, oracle=False, token="s3cret") as (srv, url):
        for headers, query in [({}, ""), ({"Authorization": "Bearer wrong"}, ""), ({}, "?token=nope")]:
            status, body = await _get(url + "/api/chat" + query, {**UPGRADE, **headers})
            assert status == 401 and body["error"] == "auth", (headers, query)
        async with ChatClient.connect(url, token="s3cret") as client:
            assert client.got.handshake_at is not None
        assert await _wait(lambda: not srv.connections)
        async with aiohttp.ClientSession() as http:  # the browser way: ?token=
            ws = await http.ws_connect(url + "/api/chat?token=s3cret")
            msg = await ws.receive(timeout=10)
            assert msg.data[:1] == b"\x00"  # the handshake (its payload: versions)
            await ws.close()
        status, metrics = await _get(url + "/metrics")
        assert 'kamevoice_sessions_rejected_total{why="auth"} 3.0' in metrics


async def test_origin_check_same_host_by_default_and_allow_list(frontend):
    async with running_server(frontend, max_sessions=1, oracle=False) as (_srv, url):
        status, body = await _get(url + "/api/chat", {**UPGRADE, "Origin": "http://evil.example"})
        assert status == 403 and body["error"] == "origin"
        async with ChatClient.connect(url, origin=url) as client:  # our own page's origin
            assert client.got.handshake_at is not None
    async with running_server(
        frontend, max_sessions=1, oracle=False, allowed_origins=["https://app.example"]
    ) as (_srv, url):
        status, _ = await _get(url + "/api/chat", {**UPGRADE, "Origin": url})
        assert status == 403
        async with ChatClient.connect(url, origin="https://app.example") as client:
            assert client.got.handshake_at is not None


async def test_unknown_audio_format_is_refused(frontend):
    async with running_server(frontend, max_sessions=1, oracle=False) as (_srv, url):
        status, body = await _get(url + "/api/chat?audio=mp3", UPGRADE)
        assert status == 400 and body["error"] == "format"


async def test_pcm16_sessions_and_the_page_are_served(frontend):
    async with running_server(frontend, max_sessions=1, oracle=False) as (_srv, url):
        async with ChatClient.connect(url, pcm16=True, events=False) as client:
            await _speak(client, 0.8)
            assert await client.wait_for(lambda c: len(c.audio()) >= 1920, 10)
            assert len(client.audio()) % 1920 == 0
            assert client.got.events == []  # events=0: no metadata at all
        async with ChatClient.connect(url, pcm16=True) as client:
            await _speak(client, 0.8)
            assert await client.wait_for(lambda c: c.events_of(EventKind.FRAME_STATS), 10)
        status, page = await _get(url + "/")
        assert status == 200 and "<html" in page.lower()
        for asset in ("app.js", "style.css", "capture-worklet.js"):
            status, _ = await _get(url + "/static/" + asset)
            assert status == 200, asset


async def test_an_idle_client_is_ended_and_told_why(frontend, tmp_path):
    async with running_server(
        frontend, max_sessions=1, oracle=False, idle_timeout_s=0.5, log_dir=str(tmp_path)
    ) as (srv, url):
        async with ChatClient.connect(url) as client:
            start = asyncio.get_running_loop().time()
            for _ in range(4):  # pings are not audio: they do not keep a conversation alive
                await client.ping(b"still here")
                await asyncio.sleep(0.1)
            assert await client.wait_for(lambda c: c.got.closed, 10)
            # Ended 0.5 s (+ the watchdog's 0.25 s) after the audio stopped, not 0.5 s after the last ping.
            assert asyncio.get_running_loop().time() - start < 0.4 + 0.5
        assert client.got.error and client.got.error.startswith("idle: no audio for 0.5 s")
        assert await _wait(lambda: not srv.connections)
    (log,) = tmp_path.glob("*.jsonl")
    end = json.loads(log.read_text().splitlines()[-1])
    assert (
        end["kind"] == EventKind.SESSION_END and end["reason"].startswith("idle") and end["cause"] == "idle"
    )
    assert (log.stat().st_mode & 0o777, tmp_path.stat().st_mode & 0o777) == (0o600, 0o700)  # private


def test_defaults_bind_loopback_only(monkeypatch):
    from kamevoice.config import load_settings

    for name in ("KAMEVOICE_SERVER__HOST", "KAMEVOICE_CONFIG"):
        monkeypatch.delenv(name, raising=False)
    server = load_settings().server
    assert server.host == "127.0.0.1" and server.token is None and server.allowed_origins == []


async def test_shutdown_tells_connected_clients(frontend):
    async with (
        running_server(frontend, max_sessions=1, oracle=False) as (srv, url),
        ChatClient.connect(url) as client,
    ):
        await _speak(client, 0.3)
        await srv.stop()  # stopping twice (again on leaving the block) is harmless
        assert await client.wait_for(lambda c: c.got.closed, 10)
    assert client.got.error == "server shutting down"
