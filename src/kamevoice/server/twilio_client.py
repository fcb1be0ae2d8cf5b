"""Twilio's side of a Media Streams call, simulated from its documented messages (tests, benches).

    async with TwilioCall.connect("http://127.0.0.1:8998") as call:
        await call.say(pcm_8k)            # paced like a phone: one 20 ms `media` message at a time
        await call.wait_for(lambda c: c.heard_seconds() > 2)
    call.heard(), call.marks_echoed, call.clears

What Twilio does, as its documentation describes it: it sends `connected`, `start`
(the stream's ids, `audio/x-mulaw` at 8000 Hz mono, custom parameters), the caller's
audio as base64 mu-law `media` messages every 20 ms, `dtmf` for a key and `stop` at
the end. It plays the `media` it receives in order, in real time, and echoes each
`mark` once the audio before it has played; on `clear` it drops the audio it holds and
echoes the marks still pending. `playback_delay_s` is the audio it holds before
playing (a jitter buffer): with it, some of what the server sent is still unplayed
when the caller barges in, as on a real network.
"""

from __future__ import annotations

import asyncio
import base64
import contextlib
import json
import time
from collections import deque
from dataclasses import dataclass, field
from typing import Any

import aiohttp
import numpy as np

from kamevoice.audio import mulaw_decode, mulaw_encode
from kamevoice.server.client import Rejected, wait_until

# Twilio's media chunk: 20 ms of 8 kHz mu-law, one byte a sample.
RATE = 8000
CHUNK_BYTES = 160
CHUNK_S = CHUNK_BYTES / RATE
# Ids in Twilio's format (two letters, 32 hex digits); any call may pass its own.
CALL_SID = "CA" + "0" * 31 + "1"
STREAM_SID = "MZ" + "0" * 31 + "1"
ACCOUNT_SID = "AC" + "0" * 31 + "1"


@dataclass
class Heard:
    """What the server sent, and what this simulated phone did with it."""

    media: int = 0  # media messages received
    marks: list[str] = field(default_factory=list)  # names of the marks received, in order
    played: bytearray = field(default_factory=bytearray)  # mu-law bytes played to the caller, in order
    marks_echoed: list[str] = field(default_factory=list)
    clears: list[float] = field(default_factory=list)  # perf_counter time of each `clear`
    dropped_bytes: int = 0  # audio a `clear` dropped before it was played
    other: list[dict] = field(default_factory=list)  # any other message (none are expected)
    closed: bool = False
    close_code: int | None = None
    close_reason: str = ""


class TwilioCall:
    """One simulated call on `/twilio` (see module doc)."""

    def __init__(self, ws: aiohttp.ClientWebSocketResponse, stream_sid: str, playback_delay_s: float):
        self.ws = ws
        self.stream_sid = stream_sid
        self.playback_delay_s = playback_delay_s
        self.got = Heard()
        self.sent_chunks = 0
        self._sequence = 0
        self._buffer: deque[tuple[str, Any]] = deque()  # ("media", bytes) and ("mark", name), in order
        self._buffered_bytes = 0
        self._reader = asyncio.create_task(self._read(), name="twilio-call-read")
        self._player = asyncio.create_task(self._play(), name="twilio-call-play")

    @classmethod
    @contextlib.asynccontextmanager
    async def connect(
        cls,
        base_url: str,
        *,
        params: dict[str, str] | None = None,
        call_sid: str = CALL_SID,
        stream_sid: str = STREAM_SID,
        media_format: dict | None = None,
        playback_delay_s: float = 0.0,
        start: bool = True,
    ):
        """Open `/twilio` and send `connected` and `start` (unless `start=False`, for tests of
        the server's defences); raises `Rejected` on an HTTP refusal."""
        url = base_url.rstrip("/") + "/twilio"
        async with aiohttp.ClientSession() as http:
            try:
                ws = await http.ws_connect(url, max_msg_size=0, autoping=True)
            except aiohttp.WSServerHandshakeError as exc:
                raise Rejected(exc.status, {"message": exc.message}) from None
            call = cls(ws, stream_sid, playback_delay_s)
            try:
                if start:
                    await call.send({"event": "connected", "protocol": "Call", "version": "1.0.0"})
                    await call.send_start(call_sid, params, media_format)
                yield call
            finally:
                await call.close()

    # -- Twilio -> server ------------------------------------------------------------------------------

    async def send(self, message: dict) -> None:
        """One message as Twilio sends it (`sequenceNumber` added to all but `connected`)."""
        if message.get("event") != "connected":
            self._sequence += 1
            message = {**message, "sequenceNumber": str(self._sequence)}
        await self.ws.send_str(json.dumps(message))

    async def send_raw(self, data: str | bytes) -> None:
        """Any text or binary frame (for tests of the server's defences)."""
        await (self.ws.send_str(data) if isinstance(data, str) else self.ws.send_bytes(data))

    async def send_start(self, call_sid: str = CALL_SID, params=None, media_format=None) -> None:
        fmt = media_format or {"encoding": "audio/x-mulaw", "sampleRate": RATE, "channels": 1}
        await self.send({
            "event": "start",
            "streamSid": self.stream_sid,
            "start": {
                "accountSid": ACCOUNT_SID, "streamSid": self.stream_sid, "callSid": call_sid,
                "tracks": ["inbound"], "mediaFormat": fmt, "customParameters": params or {},
            },
        })  # fmt: skip

    async def send_chunk(self, mulaw: bytes) -> None:
        """One `media` message of the caller's audio (mu-law bytes)."""
        self.sent_chunks += 1
        await self.send({
            "event": "media",
            "streamSid": self.stream_sid,
            "media": {
                "track": "inbound", "chunk": str(self.sent_chunks),
                "timestamp": str(int((self.sent_chunks - 1) * CHUNK_S * 1000)),
                "payload": base64.b64encode(mulaw).decode("ascii"),
            },
        })  # fmt: skip

    async def say(self, pcm_8k: np.ndarray, pace: bool = True) -> None:
        """The caller's audio (float32 at 8 kHz), as 20 ms chunks; `pace`: in real time, as a phone."""
        data = mulaw_encode(pcm_8k)
        loop = asyncio.get_running_loop()
        t0 = loop.time()
        for i, start in enumerate(range(0, len(data), CHUNK_BYTES)):
            if pace:
                await asyncio.sleep(max(0.0, t0 + i * CHUNK_S - loop.time()))
            await self.send_chunk(data[start : start + CHUNK_BYTES])

    async def dtmf(self, digit: str) -> None:
        await self.send({"event": "dtmf", "streamSid": self.stream_sid,
                         "dtmf": {"track": "inbound_track", "digit": digit}})  # fmt: skip

    async def stop(self) -> None:
        """The caller hangs up: `stop`, then the socket closes (as Twilio does)."""
        await self.send({"event": "stop", "streamSid": self.stream_sid,
                         "stop": {"accountSid": ACCOUNT_SID, "callSid": CALL_SID}})  # fmt: skip
        await self.close()

    async def close(self) -> None:
        with contextlib.suppress(Exception):
            await self.ws.close()
        for task in (self._reader, self._player):
            task.cancel()
            with contextlib.suppress(asyncio.CancelledError, Exception):
                await task

    # -- server -> Twilio ------------------------------------------------------------------------------

    def heard(self) -> np.ndarray:
        """The audio played to the caller so far (float32, 8 kHz)."""
        return mulaw_decode(bytes(self.got.played))

    def heard_seconds(self) -> float:
        return len(self.got.played) / RATE

    @property
    def buffered_s(self) -> float:
        """Audio received and not yet played."""
        return self._buffered_bytes / RATE

    async def wait_for(self, predicate, timeout: float = 30.0) -> bool:
        """Wait until `predicate(self)` holds; False on timeout or when the call closed first."""
        return await wait_until(lambda: predicate(self), lambda: self.got.closed, timeout)

    async def _read(self) -> None:
        try:
            while True:
                msg = await self.ws.receive()
                if msg.type in (aiohttp.WSMsgType.CLOSE, aiohttp.WSMsgType.CLOSING, aiohttp.WSMsgType.CLOSED):
                    if msg.type == aiohttp.WSMsgType.CLOSE and isinstance(msg.extra, str):
                        self.got.close_reason = msg.extra
                    break
                if msg.type != aiohttp.WSMsgType.TEXT:
                    continue
                message = json.loads(msg.data)
                event = message.get("event")
                if event == "media":
                    data = base64.b64decode(message["media"]["payload"])
                    self._buffer.append(("media", data))
                    self._buffered_bytes += len(data)
                    self.got.media += 1
                elif event == "mark":
                    self._buffer.append(("mark", message["mark"]["name"]))
                    self.got.marks.append(message["mark"]["name"])
                elif event == "clear":
                    await self._clear()
                else:
                    self.got.other.append(message)
        finally:
            self.got.closed = True
            self.got.close_code = self.ws.close_code

    async def _clear(self) -> None:
        self.got.clears.append(time.perf_counter())
        pending = [item for kind, item in self._buffer if kind == "mark"]
        self.got.dropped_bytes += self._buffered_bytes
        self._buffer.clear()
        self._buffered_bytes = 0
        for name in pending:
            await self._echo(name)

    async def _echo(self, name: str) -> None:
        self.got.marks_echoed.append(name)
        with contextlib.suppress(Exception):
            await self.send({"event": "mark", "streamSid": self.stream_sid, "mark": {"name": name}})

    async def _play(self) -> None:
        """Play 20 ms every 20 ms, once `playback_delay_s` of audio is held; echo marks as reached."""
        loop = asyncio.get_running_loop()
        tick = loop.time()
        playing = False
        while True:
            tick += CHUNK_S
            await asyncio.sleep(max(0.0, tick - loop.time()))
            playing = playing or self.buffered_s >= self.playback_delay_s
            if not playing:
                continue
            need = CHUNK_BYTES
            while self._buffer and (need > 0 or self._buffer[0][0] == "mark"):
                kind, item = self._buffer[0]
                if kind == "mark":
                    self._buffer.popleft()
                    await self._echo(item)
                    continue
                take = item[:need]
                self.got.played += take
                self._buffered_bytes -= len(take)
                need -= len(take)
                if len(take) == len(item):
                    self._buffer.popleft()
                else:
                    self._buffer[0] = ("media", item[len(take) :])
            if not self._buffer:
                playing = self.playback_delay_s <= 0  # an underrun: fill the jitter buffer again
