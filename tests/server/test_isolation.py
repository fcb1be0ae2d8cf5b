"""Isolation and faults: a misbehaving client ends its own session only.

Three conversations share the engine; one of them sends garbage (non-Opus
bytes, a truncated Ogg page, an unknown message kind, an oversized message) or
vanishes in the middle of a WebSocket frame. That session must end with a
logged reason; the other two must produce exactly what one conversation
produces alone; and a session that later takes the faulty session's slot must
too (no state survives a session). Deterministic: greedy sampling, the engine
in lockstep (it steps when every session has a frame), the same audio for
everyone, and a back-end with the STT but no LLM (an oracle's arrival frame
would depend on wall-clock timing).
"""

from __future__ import annotations

import asyncio
import base64
import json
import os

import numpy as np
import pytest
import torch

from kamevoice.backend.factory import Backend
from kamevoice.backend.stt import make_stt
from kamevoice.config import load_settings
from kamevoice.runtime.messages import EventKind
from kamevoice.server.client import ChatClient
from tests.server.conftest import running_server

GOOD_FRAMES_BEFORE_FAULT = 8  # the faulty client takes part in this many steps first
TAIL_S = 1.0  # silence after the question, so the STT ends the utterance with a final
MAX_MESSAGE = 64 * 1024  # the test server's message limit (the default is 1 MiB)


def stt_only() -> Backend:
    settings = load_settings()
    return Backend(stt=lambda events: make_stt(settings.stt, events=events), llm=None)


def _frames(question: np.ndarray) -> list[np.ndarray]:
    pcm = np.concatenate([question, np.zeros(int(TAIL_S * 24_000), np.float32)])
    return [pcm[i : i + 1920] for i in range(0, len(pcm) - 1919, 1920)]


async def _converse(client: ChatClient, frames: list[np.ndarray], max_delay: int) -> dict:
    """Send every frame (as fast as the server takes them) and collect the complete reply."""
    for frame in frames:
        await client.send_frame(frame)
    expected = (len(frames) - max_delay) * 1920
    assert await client.wait_for(lambda c: len(c.audio()) >= expected, 60), (len(client.audio()), expected)
    await client.wait_for(lambda c: c.events_of(EventKind.STT_FINAL), 5)
    return {
        "text": [(e["frame"], e["id"]) for e in client.events_of(EventKind.FRONTEND_TEXT)],
        "audio": client.audio()[:expected],
        "finals": [e["text"] for e in client.events_of(EventKind.STT_FINAL)],
        "error": client.got.error,
    }


async def _alone(url: str, frames, max_delay: int) -> dict:
    async with ChatClient.connect(url) as client:
        return await _converse(client, frames, max_delay)


@pytest.fixture(autouse=True)
def batch_invariant_convolutions():
    """The batch follows the live conversations, so a conversation beside others runs in a batch
    of two where alone it ran in a batch of one. oneDNN's convolutions round differently at
    different batch sizes (~1e-7), enough to flip a Mimi code now and then; with torch's own
    kernels every row is computed alike, so "nothing leaks" can be checked bit for bit."""
    before = torch.backends.mkldnn.enabled
    torch.backends.mkldnn.enabled = False
    yield
    torch.backends.mkldnn.enabled = before


def _same(got: dict, ref: dict, who: str) -> None:
    assert got["text"] == ref["text"], f"{who}: text ids differ from the lone run"
    np.testing.assert_array_equal(got["audio"], ref["audio"], err_msg=f"{who}: audio differs")
    assert got["finals"] == ref["finals"], who
    assert got["error"] is None, who


# -- the faulty clients -------------------------------------------------------------------------------


async def _fault_via_client(url: str, frames, fault: str) -> dict:
    async with ChatClient.connect(url) as client:
        for frame in frames[:GOOD_FRAMES_BEFORE_FAULT]:
            await client.send_frame(frame)
        if fault == "garbage":
            await client.send_raw(b"\x01" + os.urandom(600))
        elif fault == "truncated":
            page = client._writer.append_pcm(frames[GOOD_FRAMES_BEFORE_FAULT])
            await client.send_raw(b"\x01" + page[: len(page) // 2])
        elif fault == "unknown_kind":
            await client.send_raw(b"\x09hello")
        elif fault == "oversized":
            await client.send_raw(b"\x01" + bytes(MAX_MESSAGE + 10))
        await client.wait_for(lambda c: c.got.closed, 10)
        return {"error": client.got.error, "closed": client.got.closed}


def _masked_frame(payload: bytes, opcode: int = 0x2) -> bytes:
    """A client-to-server WebSocket frame (RFC 6455: clients mask their payload)."""
    mask = os.urandom(4)
    n = len(payload)
    head = bytes([0x80 | opcode]) + (
        bytes([0x80 | n]) if n < 126 else bytes([0x80 | 126]) + n.to_bytes(2, "big")
    )
    body = bytes(b ^ mask[i % 4] for i, b in enumerate(payload))
    return head + mask + body


async def _fault_vanish(url: str, frames) -> dict:
    """Speak a little over a raw socket, then disappear in the middle of a WebSocket frame."""
    import sphn

    host, port = url.removeprefix("http://").split(":")
    reader, writer = await asyncio.open_connection(host, int(port))
    key = base64.b64encode(os.urandom(16)).decode()
    writer.write(
        (
            f"GET /api/chat HTTP/1.1\r\nHost: {host}:{port}\r\nUpgrade: websocket\r\n"
            f"Connection: Upgrade\r\nSec-WebSocket-Key: {key}\r\nSec-WebSocket-Version: 13\r\n\r\n"
        ).encode()
    )
    head = await reader.readuntil(b"\r\n\r\n")
    assert head.startswith(b"HTTP/1.1 101"), head
    handshake = b"\x00" + bytes(8)  # the 0x00 kind and its two u32 versions
    assert await reader.readexactly(2 + len(handshake)) == bytes((0x82, len(handshake))) + handshake
    opus = sphn.OpusStreamWriter(24_000)
    for frame in frames[:GOOD_FRAMES_BEFORE_FAULT]:
        writer.write(_masked_frame(b"\x01" + opus.append_pcm(frame)))
    last = _masked_frame(b"\x01" + opus.append_pcm(frames[GOOD_FRAMES_BEFORE_FAULT]))
    writer.write(last[: len(last) // 2])
    await writer.drain()
    await asyncio.sleep(0.2)
    writer.transport.abort()
    return {"error": None, "closed": True}


EXPECTED_REASON = {
    "garbage": "bad audio: no Ogg page",
    "truncated": "bad audio: truncated Ogg page",
    "unknown_kind": "protocol error: unexpected message kind 0x09",
    "oversized": "message too big",
    "vanish": "connection lost",
}


@pytest.mark.parametrize("fault", list(EXPECTED_REASON))
async def test_a_faulty_session_ends_alone_and_leaves_nothing_behind(frontend, question_24k, tmp_path, fault):
    frames = _frames(question_24k)
    async with running_server(
        frontend,
        backend=stt_only(),
        max_sessions=3,
        lockstep=True,
        log_dir=str(tmp_path),
        max_message_bytes=MAX_MESSAGE,
    ) as (srv, url):
        delay = srv.engine.max_delay
        ref = await _alone(url, frames, delay)  # slot 0
        assert ref["text"] and ref["finals"], "the lone run produced no text or no transcript"

        # The faulty client connects first, so it holds slot 0; the good ones get slots 1 and 2.
        if fault == "vanish":
            faulty = asyncio.create_task(_fault_vanish(url, frames))
        else:
            faulty = asyncio.create_task(_fault_via_client(url, frames, fault))
        assert await _until(lambda: len(srv.connections) == 1)
        async with ChatClient.connect(url) as a, ChatClient.connect(url) as b:
            got_a, got_b, bad = await asyncio.gather(
                _converse(a, frames, delay), _converse(b, frames, delay), faulty
            )
        _same(got_a, ref, "A")
        _same(got_b, ref, "B")
        if fault in ("garbage", "truncated", "unknown_kind"):
            assert bad["error"] and bad["error"].startswith(EXPECTED_REASON[fault]), bad
        assert bad["closed"]

        after = await _alone(url, frames, delay)  # slot 0 again: the faulty session's slot
        _same(after, ref, "the next session")
        assert await _until(lambda: not srv.connections)

    ends = {}
    for path in sorted(tmp_path.glob("*.jsonl")):
        events = [json.loads(line) for line in path.read_text().splitlines()]
        ends[path.name] = next(e["reason"] for e in events if e["kind"] == EventKind.SESSION_END)
    reasons = list(ends.values())
    assert len(reasons) == 5, ends
    faulty_reasons = [r for r in reasons if r != "client closed"]
    assert len(faulty_reasons) == 1 and faulty_reasons[0].startswith(EXPECTED_REASON[fault]), ends


async def _until(predicate, timeout: float = 10.0) -> bool:
    for _ in range(int(timeout / 0.01)):
        if predicate():
            return True
        await asyncio.sleep(0.01)
    return False


async def test_an_oracle_does_not_outlive_its_session(frontend, question_24k, tmp_path):
    """KAME's published server let a new session read the previous session's oracle; here it cannot."""
    settings = load_settings()
    from kamevoice.backend.llm.factory import make_llm

    with_llm = iter([False, True, False])  # only the middle conversation has an LLM
    backend = Backend(
        stt=lambda events: make_stt(settings.stt, events=events),
        llm=lambda: make_llm(settings.llm) if next(with_llm) else None,
    )
    frames = _frames(question_24k)
    async with running_server(
        frontend, backend=backend, max_sessions=1, lockstep=True, log_dir=str(tmp_path)
    ) as (srv, url):
        delay = srv.engine.max_delay
        ref = await _alone(url, frames, delay)
        async with ChatClient.connect(url) as oracle_client:
            for frame in frames:
                await oracle_client.send_frame(frame)
                await asyncio.sleep(0.02)  # room for the STT and the knowledge base to answer
            silence = np.zeros(1920, np.float32)
            for _ in range(200):
                if oracle_client.events_of(EventKind.ORACLE_TEXT):
                    break
                await oracle_client.send_frame(silence)
                await asyncio.sleep(0.05)
            assert oracle_client.events_of(EventKind.ORACLE_TEXT), "the middle session never got an oracle"
            for _ in range(10):  # some oracle pieces enter the model; the answer is still streaming
                await oracle_client.send_frame(silence)
                await asyncio.sleep(0.02)
        assert await _until(lambda: not srv.connections)
        after = await _alone(url, frames, delay)
    _same(after, ref, "the session after an oracle")
    logs = sorted(tmp_path.glob("*.jsonl"))
    pieces = []  # oracle tokens that entered the model (every session starts with the start id at frame 0)
    for path in logs:
        events = [json.loads(line) for line in path.read_text().splitlines()]
        pieces.append(sum(1 for e in events if e["kind"] == EventKind.ORACLE_PIECE and not e.get("start")))
    assert pieces[0] == 0 and pieces[1] > 0 and pieces[2] == 0, pieces
