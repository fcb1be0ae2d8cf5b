"""Deepgram live transcription over a WebSocket.

Wire protocol: connect to `url?encoding=linear16&sample_rate=16000&...` with
`Authorization: Token KEY`; send binary frames of 16-bit little-endian PCM;
receive JSON messages. `{"type": "Results", "is_final", "speech_final",
"start", "duration", "channel": {"alternatives": [{"transcript", "words":
[{"word", "start", "end", "punctuated_word"?}]}]}}` carries transcripts; a
text frame `{"type": "CloseStream"}` asks the server to flush and close.

Mapping onto `Hypothesis`: an utterance collects Deepgram's `is_final`
segments; every Results message gives a partial (finalised segments plus the
current interim one); `speech_final` (or an `UtteranceEnd` message, or the
end of the stream) closes the utterance with a final. Times are already
seconds since the stream start.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import os
from typing import Any
from urllib.parse import urlencode

import aiohttp
import numpy as np

from kamevoice.audio import float_to_int16
from kamevoice.backend.stt.base import (
    ENGINE_RATE,
    Hypothesis,
    STTAuthError,
    STTError,
    STTStream,
    Word,
)
from kamevoice.backend.stt.settings import DeepgramSettings
from kamevoice.errors import ConfigError
from kamevoice.runtime.clock import Clock
from kamevoice.runtime.events import EventLog

# Where the key comes from when the settings hold none (Deepgram's own SDKs use this name).
API_KEY_ENV = "DEEPGRAM_API_KEY"
# Deepgram closes a stream that gets no data for 10 s; a KeepAlive message after this long
# without audio keeps a paused stream (e.g. the caller stopped pushing during playback) open.
KEEPALIVE_S = 5.0


def parse_words(alternative: dict[str, Any]) -> list[Word]:
    """Words of one alternative, with their punctuated form when the server sends one."""
    words = []
    for w in alternative.get("words") or []:
        text = w.get("punctuated_word") or w["word"]
        words.append(Word(str(text), float(w["start"]), float(w["end"])))
    return words


class DeepgramSTT(STTStream):
    """A Deepgram live-transcription stream."""

    name = "deepgram"

    def __init__(
        self,
        settings: DeepgramSettings | None = None,
        events: EventLog | None = None,
        clock: Clock | None = None,
    ):
        super().__init__(events, clock)
        self.settings = settings or DeepgramSettings()
        key = (
            self.settings.api_key.get_secret_value() if self.settings.api_key else os.environ.get(API_KEY_ENV)
        )
        if not key:
            raise ConfigError(f"Deepgram needs an API key: stt.deepgram.api_key or ${API_KEY_ENV}")
        self._key = key
        self._session: aiohttp.ClientSession | None = None
        self._ws: aiohttp.ClientWebSocketResponse | None = None
        self._reader: asyncio.Task[None] | None = None
        self._keepalive: asyncio.Task[None] | None = None
        self._last_send = 0.0
        self._closing = False
        # The open utterance: finalised segments and their words.
        self._done_text: list[str] = []
        self._done_words: list[Word] = []
        self._open = False

    def listen_url(self) -> str:
        """The endpoint with this stream's query parameters."""
        s = self.settings
        query = {
            "encoding": "linear16",
            "sample_rate": ENGINE_RATE,
            "channels": 1,
            "model": s.model,
            "language": s.language,
            "punctuate": str(s.punctuate).lower(),
            "interim_results": "true",
            "endpointing": s.endpointing_ms,
            "vad_events": "true",
        }
        return f"{s.url}?{urlencode(query)}"

    async def _connect(self) -> None:
        timeout = aiohttp.ClientTimeout(total=None, connect=self.settings.connect_timeout_s)
        self._session = aiohttp.ClientSession(timeout=timeout)
        try:
            self._ws = await self._session.ws_connect(
                self.listen_url(), headers={"Authorization": f"Token {self._key}"}, heartbeat=None
            )
        except aiohttp.WSServerHandshakeError as exc:
            if exc.status in (401, 403):
                raise STTAuthError(f"Deepgram refused the API key (HTTP {exc.status})") from exc
            raise STTError(f"Deepgram handshake failed: HTTP {exc.status} {exc.message}") from exc
        except (TimeoutError, aiohttp.ClientError, OSError) as exc:
            raise STTError(f"cannot connect to Deepgram at {self.settings.url}: {exc}") from exc
        self._reader = asyncio.create_task(self._read(), name="deepgram-read")
        self._keepalive = asyncio.create_task(self._keep_alive(), name="deepgram-keepalive")

    async def _keep_alive(self) -> None:
        loop = asyncio.get_running_loop()
        self._last_send = loop.time()
        while self._ws is not None and not self._ws.closed and not self._closing:
            await asyncio.sleep(max(0.05, self._last_send + KEEPALIVE_S - loop.time()))
            if loop.time() - self._last_send >= KEEPALIVE_S and not self._ws.closed and not self._closing:
                with contextlib.suppress(aiohttp.ClientError, ConnectionError, RuntimeError):
                    await self._ws.send_str(json.dumps({"type": "KeepAlive"}))
                self._last_send = loop.time()

    async def _prepare(self) -> None:
        if self._ws is None:
            await self._connect()

    async def _feed(self, audio: np.ndarray) -> None:
        if self._ws is None:
            await self._connect()
        assert self._ws is not None
        if self._ws.closed:
            raise STTError(f"Deepgram closed the connection (code {self._ws.close_code})")
        try:
            await self._ws.send_bytes(float_to_int16(audio).tobytes())
            self._last_send = asyncio.get_running_loop().time()
        except (aiohttp.ClientError, ConnectionError, RuntimeError) as exc:
            raise STTError(f"Deepgram connection lost while sending audio: {exc}") from exc

    async def _end(self) -> None:
        if self._ws is None:
            return
        self._closing = True
        if not self._ws.closed:
            # If this fails the connection is gone, and the reader reports how it ended.
            with contextlib.suppress(aiohttp.ClientError, ConnectionError, RuntimeError):
                await self._ws.send_str(json.dumps({"type": "CloseStream"}))
        assert self._reader is not None
        try:
            await asyncio.wait_for(asyncio.shield(self._reader), self.settings.close_timeout_s)
        except TimeoutError:
            self._fail(STTError(f"Deepgram sent no close within {self.settings.close_timeout_s} s"))

    async def _release(self) -> None:
        for task in (self._reader, self._keepalive):
            if task is not None and not task.done():
                task.cancel()
        if self._ws is not None:
            await self._ws.close()
        if self._session is not None:
            await self._session.close()

    async def _read(self) -> None:
        assert self._ws is not None
        try:
            async for msg in self._ws:
                if msg.type == aiohttp.WSMsgType.TEXT:
                    self._handle(msg.data)
                elif msg.type == aiohttp.WSMsgType.ERROR:
                    raise STTError(f"Deepgram connection error: {self._ws.exception()}")
            code = self._ws.close_code
            if not self._closing or code not in (1000, None):
                reason = ""
                if isinstance(self._ws.exception(), Exception):
                    reason = f": {self._ws.exception()}"
                raise STTError(f"Deepgram closed the stream early (code {code}){reason}")
            self._close_utterance(self.audio_pushed_s)
        except STTError as exc:
            self._fail(exc)
        except Exception as exc:
            self._fail(STTError(f"Deepgram reader failed: {type(exc).__name__}: {exc}"))

    def _handle(self, data: str) -> None:
        try:
            msg = json.loads(data)
            kind = msg.get("type", "Results")
        except (json.JSONDecodeError, AttributeError) as exc:
            raise STTError(f"malformed message from Deepgram: {data[:200]!r}") from exc
        if kind == "Results":
            self._on_results(msg)
        elif kind == "UtteranceEnd":
            self._close_utterance(float(msg.get("last_word_end", self.audio_pushed_s)))
        elif kind == "Error" or "err_code" in msg:
            raise STTError(f"Deepgram error: {msg.get('description') or msg.get('err_msg') or msg}")

    def _on_results(self, msg: dict[str, Any]) -> None:
        try:
            alt = msg["channel"]["alternatives"][0]
            text = str(alt.get("transcript", "")).strip()
            words = parse_words(alt)
            audio_end = float(msg.get("start", 0.0)) + float(msg.get("duration", 0.0))
        except (KeyError, IndexError, TypeError, ValueError) as exc:
            raise STTError(f"malformed Results message from Deepgram: {exc!r} in {str(msg)[:200]}") from exc
        full = " ".join([*self._done_text, text]).strip()
        all_words = [*self._done_words, *words]
        if msg.get("is_final") and text:
            self._done_text.append(text)
            self._done_words.extend(words)
        if full:
            self._open = True
        if msg.get("speech_final"):
            self._close_utterance(audio_end)
        elif text:
            self._publish(Hypothesis(full, False, all_words, audio_end))

    def _close_utterance(self, audio_end: float) -> None:
        if not self._open:
            return
        text = " ".join(self._done_text).strip()
        self._publish(Hypothesis(text, True, list(self._done_words), audio_end))
        self._done_text, self._done_words, self._open = [], [], False
