"""The WebSocket wire protocol at `/api/chat`: Moshi's binary messages plus our JSON events.

Every message is binary; its first byte is its kind, the rest its payload.

| kind | direction | payload |
|---|---|---|
| `0x00` handshake | server -> client | empty; sent once the session has its engine slot |
| `0x01` audio | both | Ogg/Opus pages, 24 kHz mono (one `sphn` reader/writer per connection) |
| `0x02` text | server -> client | UTF-8 piece of the front-end's inner monologue |
| `0x03` control | client -> server | accepted and ignored (Moshi's start/pause codes) |
| `0x04` metadata | server -> client | a JSON event `{"t", "kind", ...}`: transcript, oracle, text, latency |
| `0x05` error | server -> client | UTF-8 reason; the server closes the connection right after |
| `0x06` ping | both | the server answers a ping with `0x06` and the same payload |
| `0x11` raw audio | both | only with `?audio=pcm16`: little-endian int16 samples, 24 kHz mono |

Query parameters of `/api/chat`: `audio=opus` (default) or `audio=pcm16`;
`events=0` to receive no `0x04` metadata (Moshi's own client warns about
each message kind it does not know); `token=...` where a header cannot be set.

The raw-audio kind exists so our browser page needs no Ogg muxer in
JavaScript; Moshi clients never see it (they do not ask for `pcm16`).
"""

from __future__ import annotations

import json
from enum import IntEnum


class Kind(IntEnum):
    """Message kinds (first byte of every binary message)."""

    HANDSHAKE = 0x00
    AUDIO = 0x01
    TEXT = 0x02
    CONTROL = 0x03
    METADATA = 0x04
    ERROR = 0x05
    PING = 0x06
    PCM16 = 0x11


#: Audio formats a client can ask for with `?audio=...`.
AUDIO_FORMATS = ("opus", "pcm16")


class ProtocolError(ValueError):
    """A client message that breaks the protocol; the session ends with this reason."""


def pack(kind: Kind, payload: bytes = b"") -> bytes:
    """One wire message."""
    return bytes((kind,)) + payload


def handshake() -> bytes:
    return pack(Kind.HANDSHAKE)


def text_message(piece: str) -> bytes:
    return pack(Kind.TEXT, piece.encode("utf-8"))


def metadata_message(event: dict) -> bytes:
    return pack(Kind.METADATA, json.dumps(event, ensure_ascii=False, separators=(",", ":")).encode("utf-8"))


def error_message(reason: str) -> bytes:
    return pack(Kind.ERROR, reason.encode("utf-8"))


def split(message: bytes) -> tuple[int, bytes]:
    """(kind byte, payload) of a client message; an empty message is a protocol error."""
    if not message:
        raise ProtocolError("empty message (no kind byte)")
    return message[0], message[1:]
