"""The Moshi door: Kyutai's binary WebSocket protocol at `/api/chat`, into a `Conversation`.

Client messages: `0x01` Ogg/Opus audio (or `0x11` raw PCM16 with `?audio=pcm16`),
`0x06` ping, `0x03` control (accepted, no meaning here). Server messages: `0x00`
handshake once the session has its slot, `0x01`/`0x11` model audio, `0x02` text
pieces, `0x04` JSON events (only when the client asked for them), `0x06` pong,
`0x05` the reason the conversation ended. Anything else from the client, an
oversized message, audio that does not decode: the conversation ends, told why.
Limits, intake, idle time and the outbox are the `Conversation`'s.
"""

from __future__ import annotations

from collections.abc import Callable

import numpy as np
from aiohttp import WSCloseCode, WSMsgType, web

from kamevoice.audio import pcm16_bytes, pcm16_from_bytes
from kamevoice.errors import InputError
from kamevoice.runtime.messages import EndCause, EventKind
from kamevoice.runtime.session import OutputKind, Session, SessionOutput
from kamevoice.server import protocol
from kamevoice.server.conversation import Conversation, ConversationEnded, Ending
from kamevoice.server.limits import LimitSettings
from kamevoice.server.observe import ServerMetrics
from kamevoice.server.ogg import check_pages
from kamevoice.server.protocol import Kind, ProtocolError

# Events of which only the newest matters to a client that reads slowly: a newer one replaces
# one still queued (the oracle's text as it grows, the partial transcript, the step figures).
NEWEST_WINS = frozenset({EventKind.ORACLE_TEXT, EventKind.STT_PARTIAL, EventKind.FRAME_STATS})


class MoshiDoor(Conversation):
    """One conversation in Moshi's protocol (see module doc); `audio_format` "opus" or "pcm16"."""

    def __init__(
        self,
        ws: web.WebSocketResponse,
        make_session: Callable[[Callable[[SessionOutput], None]], Session],
        sample_rate: int,
        name: str,
        limits: LimitSettings,
        metrics: ServerMetrics | None = None,
        idle_timeout_s: float | None = None,
        *,
        audio_format: str = "opus",
    ):
        import sphn  # imported here: the module stays importable for tools that only need constants

        self.pcm16 = audio_format == "pcm16"
        self._opus_in = None if self.pcm16 else sphn.OpusStreamReader(sample_rate)
        self._opus_out = None if self.pcm16 else sphn.OpusStreamWriter(sample_rate)
        super().__init__(ws, make_session, sample_rate, name, limits, metrics, idle_timeout_s)

    def greeting(self) -> bytes:
        return protocol.handshake()

    def farewell(self, ending: Ending) -> bytes:
        return protocol.error_message(ending.reason)

    # -- client -> session ----------------------------------------------------------------------------

    async def read(self) -> Ending:
        while True:
            msg = await self.ws.receive()
            if msg.type in (WSMsgType.CLOSE, WSMsgType.CLOSING, WSMsgType.CLOSED):
                break
            if msg.type == WSMsgType.BINARY:
                await self.accept(len(msg.data))
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
            # 1009: message too big (aiohttp closes on its own), 1006: the peer vanished or missed the heartbeat.
            if code == WSCloseCode.MESSAGE_TOO_BIG:
                return Ending(f"message too big (close code {code})", EndCause.TOO_BIG, False)
            why = "connection lost" if code == WSCloseCode.ABNORMAL_CLOSURE else "closed abnormally"
            return Ending(f"{why} (close code {code})", EndCause.CONNECTION_LOST, False)
        return Ending("client closed", EndCause.CLIENT_CLOSED, False)

    async def _on_binary(self, data: bytes) -> None:
        try:
            kind, payload = protocol.split(data)
        except ProtocolError as exc:
            raise ConversationEnded(f"protocol error: {exc}", EndCause.PROTOCOL) from None
        if kind == Kind.AUDIO and not self.pcm16:
            await self.push_audio(self._decode_opus(payload))
        elif kind == Kind.PCM16 and self.pcm16:
            try:
                pcm = pcm16_from_bytes(payload)
            except InputError as exc:
                raise ConversationEnded(f"bad audio: {exc}", EndCause.BAD_AUDIO) from None
            await self.push_audio(pcm)
        elif kind == Kind.PING:
            if len(payload) > self.limits.max_ping_bytes:
                raise ConversationEnded(
                    f"protocol error: a ping of {len(payload)} bytes (at most {self.limits.max_ping_bytes})",
                    EndCause.PROTOCOL,
                )
            self.outbox.put(protocol.pack(Kind.PING, payload))
        elif kind == Kind.CONTROL:
            pass  # Moshi's control codes (start, pause, ...) have no meaning here
        else:
            fmt = "pcm16" if self.pcm16 else "opus"
            raise ConversationEnded(
                f"protocol error: unexpected message kind 0x{kind:02x} ({fmt} session)", EndCause.PROTOCOL
            )

    def _decode_opus(self, payload: bytes) -> np.ndarray:
        assert self._opus_in is not None
        try:
            check_pages(payload)
        except ProtocolError as exc:
            raise ConversationEnded(f"bad audio: {exc}", EndCause.BAD_AUDIO) from None
        try:
            pcm = self._opus_in.append_bytes(payload)
        except Exception as exc:  # sphn raises ValueError on a broken Ogg/Opus stream
            raise ConversationEnded(
                f"bad audio: not an Ogg/Opus stream ({exc})", EndCause.BAD_AUDIO
            ) from None
        return np.zeros(0, np.float32) if pcm is None else np.asarray(pcm, dtype=np.float32)

    # -- session -> client -----------------------------------------------------------------------------

    def on_output(self, out: SessionOutput) -> None:
        if out.kind is OutputKind.AUDIO and out.pcm is not None:
            message = self._encode_audio(out.pcm)
            if self.metrics is not None:
                self.metrics.frames_out.inc()
            if message:
                self.outbox.put(message)
        elif out.kind is OutputKind.TEXT:
            self.outbox.put(protocol.text_message(out.text))
        elif out.kind is OutputKind.EVENT and out.event is not None:
            kind = out.event["kind"]
            self.outbox.put_event(
                protocol.metadata_message(out.event), key=kind if kind in NEWEST_WINS else None
            )

    def _encode_audio(self, pcm: np.ndarray) -> bytes:
        if self.pcm16:
            return protocol.pack(Kind.PCM16, pcm16_bytes(pcm))
        assert self._opus_out is not None
        pages = self._opus_out.append_pcm(np.asarray(pcm, dtype=np.float32))
        return protocol.pack(Kind.AUDIO, pages) if pages else b""
