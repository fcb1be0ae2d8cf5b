"""One WebSocket conversation: client messages into a `Session`, the session's output back out.

A `Connection` owns everything of one conversation: its Opus reader and
writer (or raw PCM), its `Session` (engine slot, STT stream, LLM provider,
scheduler, event log) and its send queue. Anything wrong with this client
(bad audio, an unknown message kind, an oversized message, a vanished peer,
a client that stops reading) ends this conversation only, with a reason that
is logged, written to its event log (`session_end`), counted in the metrics
and, when the socket still works, sent to the client as an `0x05` error.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import numpy as np
from aiohttp import WSCloseCode, WSMsgType, web

from kamevoice.audio import pcm16_bytes, pcm16_from_bytes
from kamevoice.errors import InputError, KameVoiceError
from kamevoice.runtime.clock import FRAME_SAMPLES, FRAME_SECONDS
from kamevoice.runtime.messages import EndCause
from kamevoice.runtime.session import OutputKind, Session, SessionOutput
from kamevoice.server import protocol
from kamevoice.server.backlog import sheds
from kamevoice.server.observe import ServerMetrics
from kamevoice.server.ogg import check_pages
from kamevoice.server.protocol import Kind, ProtocolError

log = logging.getLogger(__name__)

# Messages queued for a client that does not read before we give up on it (~10 s of frames with text).
MAX_SEND_BACKLOG = 400
# User audio queued ahead of the engine before the client counts as flooding (seconds).
MAX_AUDIO_BACKLOG_S = 30.0
# Decoded audio allowed from one message (seconds): a single Ogg page holds far less.
MAX_AUDIO_PER_MESSAGE_S = 5.0
# How long a new conversation may wait for its engine slot.
JOIN_TIMEOUT_S = 15.0
# How often the join is polled (the engine sets a thread event; polling keeps the loop free).
JOIN_POLL_S = 0.005


@dataclass(frozen=True)
class Ending:
    """How a conversation ended: a readable reason, its kind, and whether to tell the client."""

    reason: str
    cause: EndCause
    tell_client: bool = True


class ConversationEnded(Exception):
    """Raised inside the reader to end the conversation."""

    def __init__(self, reason: str, cause: EndCause, tell_client: bool = True):
        super().__init__(reason)
        self.ending = Ending(reason, cause, tell_client)


class Connection:
    """The link between one WebSocket and one `Session`."""

    def __init__(
        self,
        ws: web.WebSocketResponse,
        make_session: Callable[[Callable[[SessionOutput], None]], Session],
        audio_format: str,
        sample_rate: int,
        name: str,
        metrics: ServerMetrics | None = None,
        idle_timeout_s: float | None = None,
    ):
        import sphn  # imported here: the module stays importable for tools that only need constants

        self.ws = ws
        self.name = name
        self.metrics = metrics
        self.idle_timeout_s = idle_timeout_s
        self.pcm16 = audio_format == "pcm16"
        self.sample_rate = sample_rate
        self._reader = None if self.pcm16 else sphn.OpusStreamReader(sample_rate)
        self._writer = None if self.pcm16 else sphn.OpusStreamWriter(sample_rate)
        self._send: asyncio.Queue[bytes | None] = asyncio.Queue()
        self._ended: asyncio.Future[Ending] = asyncio.get_running_loop().create_future()
        self.session = make_session(self._on_output)
        self.audio_in_s = 0.0
        self.reason = ""
        self.dropped_events = 0  # metadata left out while the send queue was backed up

    # -- the whole conversation --------------------------------------------------------------------

    async def run(self, engine_error: Callable[[], BaseException | None]) -> str:
        """Serve the conversation until it ends; returns the reason it ended."""
        sender = asyncio.create_task(self._sender(), name=f"{self.name}-send")
        reader = None
        ending = Ending("client closed", EndCause.CLIENT_CLOSED, False)
        try:
            await self.session.start()
            await self._wait_joined(engine_error)
            self._send.put_nowait(protocol.handshake())
            reader = asyncio.create_task(self._read(), name=f"{self.name}-read")
            done, _ = await asyncio.wait({reader, self._ended, sender}, return_when=asyncio.FIRST_COMPLETED)
            if self._ended in done:
                ending = self._ended.result()
            elif reader in done:
                ending = self._reader_outcome(reader)
            else:
                ending = Ending("send failed: connection lost", EndCause.CONNECTION_LOST, False)
        except ConversationEnded as exc:
            ending = exc.ending
        except asyncio.CancelledError:
            ending = Ending("server shutting down", EndCause.SHUTDOWN)
            raise  # after the `finally` below has said goodbye
        except Exception as exc:  # a bug in this conversation must not reach the others
            log.exception("%s: unexpected failure", self.name)
            ending = Ending(f"internal error: {type(exc).__name__}", EndCause.INTERNAL)
        finally:
            if reader is not None and not reader.done():
                reader.cancel()
                with contextlib.suppress(asyncio.CancelledError, Exception):
                    await reader
            self.reason = ending.reason
            await self._finish(ending, sender)
        return ending.reason

    def end(self, reason: str, cause: EndCause, tell_client: bool = True) -> None:
        """End the conversation from outside the reader (engine failure, shutdown, slow client)."""
        if not self._ended.done():
            self._ended.set_result(Ending(reason, cause, tell_client))

    async def _finish(self, ending: Ending, sender: asyncio.Task) -> None:
        level = logging.INFO if ending.cause is EndCause.CLIENT_CLOSED else logging.WARNING
        log.log(level, "%s ended: %s", self.name, ending.reason)
        with contextlib.suppress(Exception):
            await self.session.close(ending.reason, ending.cause)
        if ending.tell_client and not self.ws.closed:
            self._send.put_nowait(protocol.error_message(ending.reason))
        self._send.put_nowait(None)
        with contextlib.suppress(TimeoutError, asyncio.CancelledError, Exception):
            await asyncio.wait_for(sender, timeout=2.0)
        sender.cancel()
        with contextlib.suppress(Exception):
            await self.ws.close()

    async def _wait_joined(self, engine_error: Callable[[], BaseException | None]) -> None:
        loop = asyncio.get_running_loop()
        deadline = loop.time() + JOIN_TIMEOUT_S
        while not self.session.joined:
            if engine_error() is not None:
                raise ConversationEnded(f"engine failed: {engine_error()}", EndCause.ENGINE)
            if loop.time() > deadline:
                raise ConversationEnded("engine slot not granted in time", EndCause.ENGINE)
            await asyncio.sleep(JOIN_POLL_S)

    @staticmethod
    def _reader_outcome(reader: asyncio.Task) -> Ending:
        exc = reader.exception()
        if exc is None:
            return reader.result()
        if isinstance(exc, ConversationEnded):
            return exc.ending
        log.error("reader failed: %s: %s", type(exc).__name__, exc)
        return Ending(f"internal error: {type(exc).__name__}", EndCause.INTERNAL)

    # -- client -> session ----------------------------------------------------------------------------

    async def _read(self) -> Ending:
        while True:
            try:
                msg = await self.ws.receive(timeout=self.idle_timeout_s)
            except TimeoutError:
                raise ConversationEnded(
                    f"idle: nothing received for {self.idle_timeout_s:g} s", EndCause.IDLE
                ) from None
            if msg.type in (WSMsgType.CLOSE, WSMsgType.CLOSING, WSMsgType.CLOSED):
                break
            if msg.type == WSMsgType.BINARY:
                await self._on_binary(msg.data)
            elif msg.type == WSMsgType.TEXT:
                raise ConversationEnded(
                    "protocol error: text frames are not part of the protocol", EndCause.PROTOCOL
                )
            elif msg.type == WSMsgType.ERROR:
                exc = self.ws.exception()
                if getattr(exc, "code", None) == WSCloseCode.MESSAGE_TOO_BIG:  # aiohttp closed with 1009
                    return Ending(f"message too big: {exc}", EndCause.TOO_BIG, False)
                return Ending(f"connection error: {type(exc).__name__}", EndCause.CONNECTION_LOST, False)
        code = self.ws.close_code
        if code is not None and code not in (1000, 1001):
            # 1009: message too big (aiohttp closes on its own), 1006: the peer vanished.
            if code == WSCloseCode.MESSAGE_TOO_BIG:
                return Ending(f"message too big (close code {code})", EndCause.TOO_BIG, False)
            why = "connection lost" if code == 1006 else "closed abnormally"
            return Ending(f"{why} (close code {code})", EndCause.CONNECTION_LOST, False)
        return Ending("client closed", EndCause.CLIENT_CLOSED, False)

    async def _on_binary(self, data: bytes) -> None:
        try:
            kind, payload = protocol.split(data)
        except ProtocolError as exc:
            raise ConversationEnded(f"protocol error: {exc}", EndCause.PROTOCOL) from None
        if kind == Kind.AUDIO and not self.pcm16:
            await self._push(self._decode_opus(payload))
        elif kind == Kind.PCM16 and self.pcm16:
            try:
                pcm = pcm16_from_bytes(payload)
            except InputError as exc:
                raise ConversationEnded(f"bad audio: {exc}", EndCause.BAD_AUDIO) from None
            await self._push(pcm)
        elif kind == Kind.PING:
            self._send.put_nowait(protocol.pack(Kind.PING, payload))
        elif kind == Kind.CONTROL:
            pass  # Moshi's control codes (start, pause, ...) have no meaning here
        else:
            fmt = "pcm16" if self.pcm16 else "opus"
            raise ConversationEnded(
                f"protocol error: unexpected message kind 0x{kind:02x} ({fmt} session)", EndCause.PROTOCOL
            )

    def _decode_opus(self, payload: bytes) -> np.ndarray:
        assert self._reader is not None
        try:
            check_pages(payload)
        except ProtocolError as exc:
            raise ConversationEnded(f"bad audio: {exc}", EndCause.BAD_AUDIO) from None
        try:
            pcm = self._reader.append_bytes(payload)
        except Exception as exc:  # sphn raises ValueError on a broken Ogg/Opus stream
            raise ConversationEnded(
                f"bad audio: not an Ogg/Opus stream ({exc})", EndCause.BAD_AUDIO
            ) from None
        return np.zeros(0, np.float32) if pcm is None else np.asarray(pcm, dtype=np.float32)

    async def _push(self, pcm: np.ndarray) -> None:
        if pcm.ndim != 1:
            raise ConversationEnded(
                f"bad audio: expected mono samples, got shape {pcm.shape}", EndCause.BAD_AUDIO
            )
        if len(pcm) > MAX_AUDIO_PER_MESSAGE_S * self.sample_rate:
            raise ConversationEnded(
                f"bad audio: {len(pcm) / self.sample_rate:.1f} s in one message", EndCause.BAD_AUDIO
            )
        if not len(pcm):
            return
        if self.metrics is not None:
            self.metrics.frames_in.inc(len(pcm) / FRAME_SAMPLES)
        self.audio_in_s += len(pcm) / self.sample_rate
        backlog = self.audio_in_s - self.session.frames * FRAME_SECONDS
        if backlog > MAX_AUDIO_BACKLOG_S:
            raise ConversationEnded(f"audio flood: {backlog:.1f} s queued ahead of the model", EndCause.FLOOD)
        try:
            await self.session.push_audio(pcm)
        except KameVoiceError as exc:
            raise ConversationEnded(f"bad audio: {exc}", EndCause.BAD_AUDIO) from None

    # -- session -> client -----------------------------------------------------------------------------

    def _on_output(self, out: SessionOutput) -> None:
        """Called on the event loop by the session; encodes and queues (never awaits)."""
        if self._ended.done():
            return
        if out.kind is OutputKind.AUDIO and out.pcm is not None:
            message = self._encode_audio(out.pcm)
            if self.metrics is not None:
                self.metrics.frames_out.inc()
        elif out.kind is OutputKind.TEXT:
            message = protocol.text_message(out.text)
        elif out.kind is OutputKind.EVENT and out.event is not None:
            if sheds(out, self._send.qsize(), MAX_SEND_BACKLOG):
                if not self.dropped_events:
                    log.warning("%s: send queue backed up: metadata events left out", self.name)
                self.dropped_events += 1
                return
            message = protocol.metadata_message(out.event)
        else:
            return
        if message:
            self._send.put_nowait(message)
        if self._send.qsize() > MAX_SEND_BACKLOG:  # audio and text alone: the client stopped reading
            self.end("client too slow: stopped reading", EndCause.SLOW_CLIENT)

    def _encode_audio(self, pcm: np.ndarray) -> bytes:
        if self.pcm16:
            return protocol.pack(Kind.PCM16, pcm16_bytes(pcm))
        assert self._writer is not None
        pages = self._writer.append_pcm(np.asarray(pcm, dtype=np.float32))
        return protocol.pack(Kind.AUDIO, pages) if pages else b""

    async def _sender(self) -> None:
        while True:
            message = await self._send.get()
            if message is None or self.ws.closed:
                return
            try:
                await self.ws.send_bytes(message)
            except (ConnectionError, RuntimeError) as exc:
                self.end(f"send failed: {type(exc).__name__}", EndCause.CONNECTION_LOST, tell_client=False)
                return


def connection_name(counter: int, peer: Any) -> str:
    """A short name for logs: session number and peer address."""
    return f"session-{counter}@{peer}"
