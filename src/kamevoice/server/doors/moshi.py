"""The Moshi door: Kyutai's binary WebSocket protocol at `/api/chat`, into a `Conversation`.

Client messages: `0x01` Ogg/Opus audio (or `0x11` raw PCM16 with `?audio=pcm16`),
`0x06` ping, `0x03` control (accepted, no meaning here). Server messages: `0x00`
handshake once the session has its slot, then the server's information as `0x04`
when asked for (`?info=1`, or Kyutai's session parameters in the URL, as its web
client sends them), `0x01`/`0x11` model audio, `0x02` text pieces, `0x04` JSON events
(only with `?events=1`), `0x06` pong, `0x05` the reason the conversation ended.
Anything else from the client, an oversized message, audio that does not decode:
the conversation ends, told why. Limits, intake, idle time and the outbox are the
`Conversation`'s; `door_for` reads a request's query (see `protocol`).
"""

from __future__ import annotations

import functools
import logging
from collections.abc import Callable, Mapping
from typing import Any

import numpy as np
from aiohttp import WSMsgType

from kamevoice import __version__
from kamevoice.audio import pcm16_bytes, pcm16_from_bytes
from kamevoice.errors import InputError
from kamevoice.runtime.messages import EndCause, EventKind
from kamevoice.runtime.session import OutputKind, SessionOutput
from kamevoice.server import protocol
from kamevoice.server.conversation import (
    BadRequest,
    Conversation,
    ConversationEnded,
    ConversationParts,
    Ending,
)
from kamevoice.server.ogg import check_pages
from kamevoice.server.protocol import AUDIO_FORMATS, Kind, ProtocolError

log = logging.getLogger(__name__)

Stage = tuple[str, Callable[[Any], Any]]
# Events of which only the newest matters to a client that reads slowly: a newer one replaces
# one still queued (the oracle's text as it grows, the partial transcript, the step figures).
NEWEST_WINS = frozenset({EventKind.ORACLE_TEXT, EventKind.STT_PARTIAL, EventKind.FRAME_STATS})


class MoshiAudio:
    """A conversation's audio in Moshi's protocol, as named stages (so that `kamevoice bench doors`
    times each layer): Ogg/Opus through one `sphn` reader and writer, or raw PCM16 (`pcm16`).
    `decode` raises `ProtocolError` or `InputError` on audio that is not what it should be."""

    def __init__(self, sample_rate: int, pcm16: bool):
        import sphn  # imported here: the module stays importable for tools that only need constants

        self.kind = Kind.PCM16 if pcm16 else Kind.AUDIO
        if pcm16:
            self.inbound: tuple[Stage, ...] = (("pcm16", pcm16_from_bytes),)
            self.outbound: tuple[Stage, ...] = (("pcm16", pcm16_bytes), ("frame", self._frame))
            return
        self._reader = sphn.OpusStreamReader(sample_rate)
        self._writer = sphn.OpusStreamWriter(sample_rate)
        self.inbound = (("ogg", _whole_pages), ("opus", self._read_opus))
        self.outbound = (("opus", self._write_opus), ("frame", self._frame))

    def decode(self, payload: bytes) -> np.ndarray:
        """One audio message's payload to float32 samples (none while the decoder waits for more)."""
        return functools.reduce(lambda data, stage: stage[1](data), self.inbound, payload)

    def encode(self, pcm: np.ndarray) -> bytes:
        """Model audio to one wire message (b"" while the encoder holds it all)."""
        return functools.reduce(lambda data, stage: stage[1](data), self.outbound, pcm)

    def _read_opus(self, pages: bytes) -> np.ndarray:
        try:
            pcm = self._reader.append_bytes(pages)
        except Exception as exc:  # sphn raises ValueError on a broken Ogg/Opus stream
            raise ProtocolError(f"not an Ogg/Opus stream ({exc})") from None
        return np.zeros(0, np.float32) if pcm is None else np.asarray(pcm, dtype=np.float32)

    def _write_opus(self, pcm: np.ndarray) -> bytes:
        return self._writer.append_pcm(np.asarray(pcm, dtype=np.float32))

    def _frame(self, payload: bytes) -> bytes:
        return protocol.pack(self.kind, payload) if payload else b""


def _whole_pages(payload: bytes) -> bytes:
    check_pages(payload)  # raises ProtocolError on a cut or foreign page
    return payload


class MoshiDoor(Conversation):
    """One conversation in Moshi's protocol (see module doc); `audio_format` "opus" or "pcm16"."""

    def __init__(
        self,
        parts: ConversationParts,
        *,
        audio_format: str = "opus",
        server_info: dict | None = None,
        ignored: Mapping[str, float] | None = None,
    ):
        self.server_info = server_info
        self.ignored = dict(ignored or {})
        self.pcm16 = audio_format == "pcm16"
        self.audio = MoshiAudio(parts.sample_rate, self.pcm16)
        super().__init__(parts)

    def greeting(self) -> bytes:
        return protocol.handshake()

    def farewell(self, ending: Ending) -> bytes:
        return protocol.error_message(ending.reason)

    # -- client -> session ----------------------------------------------------------------------------

    async def read(self) -> Ending:
        if self.server_info is not None:  # right after the handshake, as Kyutai's Rust server does
            self.outbox.put(protocol.metadata_message(self.server_info))
        if self.ignored:
            log.info("%s: session parameters ignored (one sampling for every conversation): %s",
                     self.name, ", ".join(f"{k}={v:g}" for k, v in self.ignored.items()))  # fmt: skip
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
                return self.socket_error()
        return self.socket_closed()

    async def _on_binary(self, data: bytes) -> None:
        try:
            kind, payload = protocol.split(data)
        except ProtocolError as exc:
            raise ConversationEnded(f"protocol error: {exc}", EndCause.PROTOCOL) from None
        if kind == self.audio.kind:
            try:
                pcm = self.audio.decode(payload)
            except (ProtocolError, InputError) as exc:
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

    # -- session -> client -----------------------------------------------------------------------------

    def on_output(self, out: SessionOutput) -> None:
        if out.kind is OutputKind.AUDIO and out.pcm is not None:
            message = self.audio.encode(out.pcm)
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


def door_for(query: Mapping[str, str], sampling: Any, files: Any) -> tuple[Callable[..., Conversation], bool]:
    """The Moshi door a request's query asks for, and whether it wants JSON events (see
    `protocol`); `sampling` and `files` (the front-end's `CheckpointFiles`) fill the server's
    information. A bad query raises `BadRequest`."""
    audio_format = query.get("audio", "opus")
    if audio_format not in AUDIO_FORMATS:
        raise BadRequest("format", f"audio={audio_format!r}; expected one of {AUDIO_FORMATS}")
    try:
        events = protocol.switch(query, "events", False)
        params = protocol.session_params(query)
        wants_info = protocol.switch(query, "info", bool(params))
    except ProtocolError as exc:
        raise BadRequest("param", str(exc)) from None
    info = None
    if wants_info:
        mimi = files.codec_weights.name if files.codec_weights is not None else ""
        info = protocol.server_info(sampling, files.lm_weights.name, mimi, __version__)
    door = functools.partial(MoshiDoor, audio_format=audio_format, server_info=info, ignored=params)
    return door, events
