"""A Python client of the `/api/chat` protocol (Ogg/Opus through `sphn`, like Moshi's own client).

    async with ChatClient.connect("http://127.0.0.1:8998") as client:
        await client.send_audio(pcm_24k)          # any length; sent as 80 ms Opus frames
        ...
    client.audio(), client.text, client.events

Used by the tests and by `kamevoice bench serve`; handy for scripting a server.
Everything the server sends is collected by a background reader task, with
the arrival time of each audio frame (for latency measurements).
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import time
from dataclasses import dataclass, field
from urllib.parse import urlencode

import aiohttp
import numpy as np

from kamevoice.audio import pcm16_bytes, pcm16_from_bytes
from kamevoice.runtime.clock import FRAME_SAMPLES, SAMPLE_RATE
from kamevoice.server import protocol
from kamevoice.server.protocol import Kind

# How often a client checks what it waits for (seconds).
WAIT_POLL_S = 0.02


async def wait_until(condition, closed, timeout: float) -> bool:
    """Poll `condition()` until it holds (True) or `timeout` passes or `closed()` (False, unless
    the condition holds then): what every test client waits with."""
    loop = asyncio.get_running_loop()
    deadline = loop.time() + timeout
    while loop.time() < deadline:
        if condition():
            return True
        if closed():
            return bool(condition())
        await asyncio.sleep(WAIT_POLL_S)
    return False


class Rejected(Exception):
    """The server refused the connection before the upgrade (busy, auth, origin)."""

    def __init__(self, status: int, body: dict):
        super().__init__(f"HTTP {status}: {body}")
        self.status = status
        self.body = body


@dataclass
class Received:
    """What the server sent, in order of arrival."""

    handshake_at: float | None = None
    audio_chunks: list[np.ndarray] = field(default_factory=list)
    audio_times: list[float] = field(default_factory=list)  # arrival time of each decoded chunk
    text: list[str] = field(default_factory=list)
    events: list[dict] = field(default_factory=list)
    server_info: dict | None = None  # the 0x04 message without a `kind`, right after the handshake
    pongs: list[bytes] = field(default_factory=list)
    error: str | None = None
    closed: bool = False
    close_code: int | None = None
    last_message_at: float = 0.0


class ChatClient:
    """One conversation with a kamevoice (or Moshi) server."""

    def __init__(self, http: aiohttp.ClientSession, ws: aiohttp.ClientWebSocketResponse, pcm16: bool):
        import sphn

        self._http = http
        self.ws = ws
        self.pcm16 = pcm16
        self._writer = None if pcm16 else sphn.OpusStreamWriter(SAMPLE_RATE)
        self._reader = None if pcm16 else sphn.OpusStreamReader(SAMPLE_RATE)
        self.got = Received()
        self.handshake = asyncio.Event()
        self.sent_frames = 0
        self.send_times: list[float] = []  # send time of each 80 ms frame
        self._pending = np.zeros(0, dtype=np.float32)
        self._task = asyncio.create_task(self._read(), name="chat-client-read")

    @classmethod
    @contextlib.asynccontextmanager
    async def connect(
        cls,
        base_url: str,
        *,
        token: str | None = None,
        origin: str | None = None,
        pcm16: bool = False,
        events: bool = True,
        info: bool = False,
        params: dict[str, str] | None = None,
        handshake_timeout: float = 30.0,
    ):
        """Open `/api/chat`, wait for the handshake; raises `Rejected` on an HTTP refusal.

        `pcm16`: raw 16-bit audio instead of Ogg/Opus; `events`: ask for JSON events (0x04
        metadata; the server sends none unless asked); `info`: ask for the server's information
        (`got.server_info`); `params`: more query parameters (Kyutai's session parameters).
        """
        headers = {}
        if token:
            headers["Authorization"] = f"Bearer {token}"
        if origin:
            headers["Origin"] = origin
        query = {"events": "1" if events else "0", **({"audio": "pcm16"} if pcm16 else {})}
        query.update({"info": "1"} if info else {})
        query.update(params or {})
        url = base_url.rstrip("/") + "/api/chat?" + urlencode(query)
        async with aiohttp.ClientSession() as http:
            try:
                ws = await http.ws_connect(url, headers=headers, max_msg_size=0, autoping=True)
            except aiohttp.WSServerHandshakeError as exc:
                raise Rejected(exc.status, {"message": exc.message}) from None
            client = cls(http, ws, pcm16)
            try:
                await asyncio.wait_for(client.wait_handshake(), handshake_timeout)
                yield client
            finally:
                await client.close()

    async def wait_handshake(self) -> None:
        handshake = asyncio.create_task(self.handshake.wait())
        await asyncio.wait({handshake, self._task}, return_when=asyncio.FIRST_COMPLETED)
        if not self.handshake.is_set():
            handshake.cancel()
            raise ConnectionError(f"no handshake: {self.got.error or 'connection closed'}")

    # -- sending --------------------------------------------------------------------------------------

    async def send_audio(self, pcm: np.ndarray) -> None:
        """Queue float32 24 kHz mono audio; whole 80 ms frames are encoded and sent at once."""
        data = np.concatenate([self._pending, np.asarray(pcm, dtype=np.float32)])
        whole = len(data) // FRAME_SAMPLES * FRAME_SAMPLES
        for start in range(0, whole, FRAME_SAMPLES):
            await self.send_frame(data[start : start + FRAME_SAMPLES])
        self._pending = data[whole:]

    async def send_frame(self, frame: np.ndarray) -> None:
        """Send one 80 ms frame (1920 samples)."""
        if self.pcm16:
            message = protocol.pack(Kind.PCM16, pcm16_bytes(frame))
        else:
            assert self._writer is not None
            message = protocol.pack(Kind.AUDIO, self._writer.append_pcm(frame))
        self.send_times.append(time.perf_counter())
        self.sent_frames += 1
        await self.ws.send_bytes(message)

    async def send_raw(self, message: bytes) -> None:
        """Send any bytes as one binary message (for tests of the server's defences)."""
        await self.ws.send_bytes(message)

    async def ping(self, payload: bytes = b"") -> None:
        await self.ws.send_bytes(protocol.pack(Kind.PING, payload))

    async def close(self) -> None:
        with contextlib.suppress(Exception):
            await self.ws.close()
        with contextlib.suppress(asyncio.CancelledError, Exception):
            await asyncio.wait_for(self._task, 5.0)

    # -- receiving ------------------------------------------------------------------------------------

    def audio(self) -> np.ndarray:
        """All model audio received so far, decoded (float32, 24 kHz)."""
        return np.concatenate(self.got.audio_chunks) if self.got.audio_chunks else np.zeros(0, np.float32)

    def events_of(self, kind: str) -> list[dict]:
        return [e for e in self.got.events if e.get("kind") == kind]

    async def wait_quiet(self, quiet_s: float = 1.0, timeout: float = 60.0) -> None:
        """Wait until nothing has arrived for `quiet_s` (or the connection is closed)."""
        loop = asyncio.get_running_loop()
        deadline = loop.time() + timeout
        while loop.time() < deadline and not self.got.closed:
            if time.perf_counter() - self.got.last_message_at > quiet_s:
                return
            await asyncio.sleep(0.05)

    async def wait_for(self, predicate, timeout: float = 30.0) -> bool:
        """Wait until `predicate(self)` holds; False on timeout or when the connection closed first."""
        return await wait_until(lambda: predicate(self), lambda: self.got.closed, timeout)

    async def _read(self) -> None:
        try:
            async for msg in self.ws:
                if msg.type != aiohttp.WSMsgType.BINARY or not msg.data:
                    continue
                now = time.perf_counter()
                self.got.last_message_at = now
                kind, payload = msg.data[0], msg.data[1:]
                if kind == Kind.HANDSHAKE:
                    self.got.handshake_at = now
                    self.handshake.set()
                elif kind == Kind.AUDIO and self._reader is not None:
                    pcm = self._reader.append_bytes(payload)
                    if pcm is not None and len(pcm):
                        self.got.audio_chunks.append(np.asarray(pcm, dtype=np.float32))
                        self.got.audio_times.append(now)
                elif kind == Kind.PCM16:
                    self.got.audio_chunks.append(pcm16_from_bytes(payload))
                    self.got.audio_times.append(now)
                elif kind == Kind.TEXT:
                    self.got.text.append(payload.decode("utf-8"))
                elif kind == Kind.METADATA:
                    data = json.loads(payload)
                    if isinstance(data, dict) and "kind" not in data:
                        self.got.server_info = data
                    else:
                        self.got.events.append(data)
                elif kind == Kind.ERROR:
                    self.got.error = payload.decode("utf-8", errors="replace")
                elif kind == Kind.PING:
                    self.got.pongs.append(payload)
        finally:
            self.got.closed = True
            self.got.close_code = self.ws.close_code
