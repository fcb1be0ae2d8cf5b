"""Kyutai's own clients as they are: the `moshi` package's Python client, and its web client's contract.

The Python client is `moshi.client` unmodified (its protocol code, its printer); only the sound
device is replaced, by a file source and a recorder paced like a sound card (80 ms blocks). It
needs `sounddevice` (a moshi dependency) and Debian's `libportaudio2` (scripts/install.sh --dev);
the test is skipped, with the reason, without them.
"""

from __future__ import annotations

import argparse
import asyncio
import io
import re
import threading
import time
from types import SimpleNamespace
from urllib.parse import urlsplit

import aiohttp
import numpy as np
import pytest

from kamevoice.runtime.events import read_events
from kamevoice.runtime.messages import EventKind
from kamevoice.server.client import ChatClient
from kamevoice.server.protocol import BUILD_INFO_FIELDS, SESSION_PARAMS
from tests.server.conftest import running_server

# The sound card's block: moshi.client opens its streams with blocksize 1920 (80 ms at 24 kHz).
BLOCK = 1920
BLOCK_S = BLOCK / 24_000
# The URL Kyutai's web client builds (client/src/pages/Conversation/Conversation.tsx, buildURL).
WEB_CLIENT_QUERY = (
    "text_temperature=0.7&text_topk=25&audio_temperature=0.8&audio_topk=250&pad_mult=0"
    "&text_seed=123&audio_seed=456&repetition_penalty_context=64&repetition_penalty=1"
)
# Message kinds Kyutai's web client decodes (client/src/protocol/encoder.ts, decodeMessage);
# any other makes it throw "Unknown message type".
WEB_CLIENT_KINDS = {0x00, 0x01, 0x02, 0x03, 0x04, 0x05, 0x06, 0x07}


def _moshi_client():
    try:
        import moshi.client as client
    except OSError as exc:  # sounddevice loads PortAudio at import
        pytest.skip(f"moshi.client needs Debian's libportaudio2 (scripts/install.sh --dev): {exc}")
    return client


class _Card:
    """A sound card's stream for moshi.client: a thread calls `callback` once per 80 ms block."""

    def __init__(self, samplerate, channels, blocksize, callback, source=None):
        assert (samplerate, channels, blocksize) == (24_000, 1, BLOCK), (samplerate, channels, blocksize)
        self.callback, self.source = callback, source
        self.blocks: list[np.ndarray] = []
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)

    def __enter__(self):
        self._thread.start()
        return self

    def __exit__(self, *exc):
        self._stop.set()
        self._thread.join(2)

    def _run(self) -> None:
        t0 = time.perf_counter()
        i = 0
        while not self._stop.is_set():
            i += 1
            self._stop.wait(max(0.0, t0 + i * BLOCK_S - time.perf_counter()))
            if self._stop.is_set():
                return
            block = np.zeros((BLOCK, 1), np.float32)
            if self.source is not None:  # an input stream: the file, then silence
                chunk = self.source[(i - 1) * BLOCK : i * BLOCK]
                block[: len(chunk), 0] = chunk
                self.callback(block, BLOCK, None, None)
            else:  # an output stream: moshi.client fills the block, we record it
                self.callback(block, BLOCK, None, None)
                self.blocks.append(block[:, 0].copy())


async def test_moshis_python_client_talks_without_unknown_kind_warnings(frontend, question_24k, tmp_path):
    client = _moshi_client()
    recorders: list[_Card] = []

    def output_stream(**kw):
        recorders.append(_Card(**kw))
        return recorders[-1]

    device = SimpleNamespace(
        InputStream=lambda **kw: _Card(**kw, source=question_24k), OutputStream=output_stream
    )
    out, err = io.StringIO(), io.StringIO()
    printer = client.RawPrinter(stream=out, err_stream=err)
    original = client.sd
    client.sd = device  # the sound device, and nothing else, replaced
    try:
        async with running_server(frontend, max_sessions=1, log_dir=str(tmp_path)) as (srv, url):
            host, port = urlsplit(url).hostname, urlsplit(url).port
            args = argparse.Namespace(host=host, port=port, https=False, url=None)
            task = asyncio.create_task(client.run(printer, args))
            seconds = len(question_24k) / 24_000 + 1.0
            await asyncio.sleep(seconds)
            for _ in range(200):  # the final transcript comes once the STT has heard the silence after
                if any(
                    e["kind"] == EventKind.STT_FINAL for p in tmp_path.glob("*.jsonl") for e in read_events(p)
                ):
                    break
                await asyncio.sleep(0.1)
            task.cancel()
            with pytest.raises(asyncio.CancelledError):
                await task
            for _ in range(100):
                if not srv.connections:
                    break
                await asyncio.sleep(0.05)
    finally:
        client.sd = original
    log = err.getvalue()
    unknown = re.findall(r"unknown message kind (\d+)", log)
    # moshi.client knows kinds 1 and 2 only: it reports the handshake (kind 0) once per connection,
    # as it does with Kyutai's own server (moshi/server.py sends b"\x00"); nothing else.
    assert unknown == ["0"], log
    assert "Lost connection" not in log and "Error" not in log, log
    assert out.getvalue().strip(), "no text pieces printed"
    heard = np.concatenate(recorders[0].blocks)
    assert np.isfinite(heard).all() and np.abs(heard).max() > 0, "no model audio played"
    (path,) = tmp_path.glob("*.jsonl")
    events = read_events(path)
    assert sum(e["seconds"] for e in events if e["kind"] == EventKind.AUDIO_IN) > seconds - 1.0
    transcript = " ".join(e["text"] for e in events if e["kind"] == EventKind.STT_FINAL).lower()
    assert "saturday" in transcript, transcript


async def _messages(ws: aiohttp.ClientWebSocketResponse, seconds: float) -> list[bytes]:
    got = []
    loop = asyncio.get_running_loop()
    deadline = loop.time() + seconds
    while (left := deadline - loop.time()) > 0:
        try:
            msg = await ws.receive(timeout=left)
        except TimeoutError:
            break
        if msg.type != aiohttp.WSMsgType.BINARY:
            break
        got.append(msg.data)
    return got


async def _talk(ws: aiohttp.ClientWebSocketResponse, seconds: float) -> None:
    import sphn

    writer = sphn.OpusStreamWriter(24_000)
    for _ in range(int(seconds / BLOCK_S)):
        pages = writer.append_pcm(np.zeros(BLOCK, np.float32))
        if pages:
            await ws.send_bytes(b"\x01" + pages)
        await asyncio.sleep(BLOCK_S)


def _check_server_info(info: dict) -> None:
    """Kyutai's web client's `ServersInfoSchema` (hooks/useServerInfo.ts), checked field by field."""
    numbers = ("text_temperature", "text_topk", "audio_temperature", "audio_topk", "pad_mult",
               "repetition_penalty_context", "repetition_penalty")  # fmt: skip
    for name in numbers:
        assert isinstance(info[name], int | float) and not isinstance(info[name], bool), name
    for name in ("lm_model_file", "instance_name"):
        assert isinstance(info[name], str), name
    assert set(BUILD_INFO_FIELDS) <= set(info["build_info"])
    assert all(isinstance(info["build_info"][name], str) for name in BUILD_INFO_FIELDS)


async def test_kyutais_web_client_gets_a_handshake_its_server_info_and_no_events(frontend):
    import json

    async with (
        running_server(frontend, max_sessions=1, oracle=False) as (_srv, url),
        aiohttp.ClientSession() as http,
    ):
        # Served from this server (`serve --static`), its Origin is this host: admitted.
        ws = await http.ws_connect(f"{url}/api/chat?{WEB_CLIENT_QUERY}", headers={"Origin": url})
        talk = asyncio.create_task(_talk(ws, 1.5))
        got = await _messages(ws, 1.5)
        await talk
        await ws.close()
    assert got[0] == b"\x00" + bytes(8), got[0]  # Kyutai's Rust server's handshake: two u32 versions
    assert got[1][0] == 0x04
    info = json.loads(got[1][1:])
    _check_server_info(info)
    assert info["text_temperature"] == 0.0 and set(info["ignored_params"]) == set(SESSION_PARAMS)  # greedy
    kinds = [m[0] for m in got[2:]]
    assert set(kinds) <= WEB_CLIENT_KINDS and 0x04 not in kinds, sorted(set(kinds))
    assert kinds.count(0x01) >= 5, "no model audio"


async def test_events_are_opt_in_and_the_server_info_on_request(frontend):
    async with running_server(frontend, max_sessions=1, oracle=False) as (_srv, url):
        async with aiohttp.ClientSession() as http:
            ws = await http.ws_connect(f"{url}/api/chat")  # what Kyutai's command-line clients open
            talk = asyncio.create_task(_talk(ws, 1.2))
            got = await _messages(ws, 1.2)
            await talk
            await ws.close()
        assert got[0][0] == 0x00 and {m[0] for m in got[1:]} <= {0x01, 0x02}, sorted({m[0] for m in got})
        async with ChatClient.connect(url, pcm16=True, info=True) as client:  # events=1, as our page
            for _ in range(10):
                await client.send_frame(np.zeros(BLOCK, np.float32))
                await asyncio.sleep(BLOCK_S)
            assert await client.wait_for(lambda c: c.events_of(EventKind.FRAME_STATS), 10)
        _check_server_info(client.got.server_info)
        async with ChatClient.connect(url, params={"text_temperature": "0.7", "info": "0"}) as client:
            await asyncio.sleep(0.3)
        assert client.got.server_info is None  # info=0 wins over the session parameters


@pytest.mark.parametrize(
    "query, why",
    [("text_temperature=hot", "param"), ("events=maybe", "param"), ("audio_topk=nan", "param"),
     ("audio=mp3", "format")],
)  # fmt: skip
async def test_a_bad_query_is_refused_before_the_upgrade(frontend, query, why):
    from tests.server.test_access import UPGRADE, _get

    async with running_server(frontend, max_sessions=1, oracle=False) as (_srv, url):
        status, body = await _get(f"{url}/api/chat?{query}", UPGRADE)
    assert status == 400 and body["error"] == why, body


async def test_another_web_client_is_served_from_the_same_origin(frontend, tmp_path):
    from tests.server.test_access import _get

    (tmp_path / "assets").mkdir()
    (tmp_path / "index.html").write_text("<html><body>another client</body></html>")
    (tmp_path / "assets" / "index-abc.js").write_text("console.log('moshi');")
    async with running_server(frontend, max_sessions=1, oracle=False, static_dir=str(tmp_path)) as (_s, url):
        assert (await _get(url + "/")) == (200, "<html><body>another client</body></html>")
        assert (await _get(url + "/assets/index-abc.js"))[0] == 200
        assert (await _get(url + "/static/index.html"))[0] == 200  # our page, still there
        assert (await _get(url + "/health"))[1]["ok"]
        assert (await _get(url + "/../../etc/passwd"))[0] in (403, 404)
        async with ChatClient.connect(url, origin=url) as client:  # the page's own origin
            assert client.got.handshake_at is not None


def test_a_static_dir_without_a_client_is_a_clear_error(frontend, tmp_path):
    from kamevoice.config import load_settings
    from kamevoice.errors import ConfigError
    from kamevoice.server.app import KameServer

    with pytest.raises(ConfigError, match=r"no index\.html"):
        KameServer(frontend, load_settings(server={"port": 0, "oracle": False, "static_dir": str(tmp_path)}))
