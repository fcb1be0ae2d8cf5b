"""The WebSocket wire protocol at `/api/chat`: Moshi's binary messages plus our JSON events.

Every message is binary; its first byte is its kind, the rest its payload.

| kind | direction | payload |
|---|---|---|
| `0x00` handshake | server -> client | versions (see `HANDSHAKE_PAYLOAD`); once the session has its slot |
| `0x01` audio | both | Ogg/Opus pages, 24 kHz mono (one `sphn` reader/writer per connection) |
| `0x02` text | server -> client | UTF-8 piece of the front-end's inner monologue |
| `0x03` control | client -> server | accepted and ignored (Moshi's start/pause codes) |
| `0x04` metadata | server -> client | JSON: the server's information (`server_info`), then events |
| `0x05` error | server -> client | UTF-8 reason; the server closes the connection right after |
| `0x06` ping | both | the server answers a ping with `0x06` and the same payload |
| `0x11` raw audio | both | only with `?audio=pcm16`: little-endian int16 samples, 24 kHz mono |

Metadata: right after the handshake, when asked for, the server's information in the
schema Kyutai's web client parses (`server_info`); then, with `?events=1`, JSON events
`{"t", "kind", ...}` (transcripts, the oracle, text, latency).

Query parameters of `/api/chat`: `audio=opus` (default) or `audio=pcm16`;
`events=1` to receive JSON events as `0x04` metadata (off by default: Moshi's own
clients warn about, or fail to parse, every message they do not know); `info=1` (or
any of Kyutai's session parameters, which its web client always sends) for the
server's information after the handshake, `info=0` for none; `token=...` where a
header cannot be set. Kyutai's session parameters (`SESSION_PARAMS`) are checked
(a number each) and ignored: one sampling serves every conversation of the batch,
and the server's information says which.

The raw-audio kind exists so our browser page needs no Ogg muxer in
JavaScript; Moshi clients never see it (they do not ask for `pcm16`).
"""

from __future__ import annotations

import json
import math
from collections.abc import Mapping
from enum import IntEnum
from typing import Any


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


# The handshake's payload, as Kyutai's Rust server sends it: protocol version and model version,
# a little-endian u32 each, both 0 (Kyutai's Python server sends none; every client ignores it).
HANDSHAKE_PAYLOAD = bytes(8)

#: Session parameters Kyutai's web client puts in the chat URL (moshi `client/src/pages/Conversation/
#: Conversation.tsx`, `buildURL`): numbers each. Accepted, checked, and ignored (see module doc).
SESSION_PARAMS = (
    "text_temperature",
    "text_topk",
    "audio_temperature",
    "audio_topk",
    "pad_mult",
    "text_seed",
    "audio_seed",
    "repetition_penalty_context",
    "repetition_penalty",
    "image_resolution",
)
#: Query values that turn a switch (`events`, `info`) on or off.
SWITCH_ON = frozenset({"1", "on", "true", "yes"})
SWITCH_OFF = frozenset({"0", "off", "none", "false", "no"})
# What the server's information names itself (Kyutai's page shows it as the instance name).
INSTANCE_NAME = "kamevoice"
# Build fields Kyutai's web client requires (its `ServersInfoSchema.build_info`): strings each.
BUILD_INFO_FIELDS = (
    "build_timestamp",
    "build_date",
    "git_branch",
    "git_timestamp",
    "git_date",
    "git_hash",
    "git_describe",
    "rustc_host_triple",
    "rustc_version",
    "cargo_target_triple",
)


def handshake() -> bytes:
    return pack(Kind.HANDSHAKE, HANDSHAKE_PAYLOAD)


def switch(query: Mapping[str, str], name: str, default: bool) -> bool:
    """A query switch (`?events=1`); a value that is neither on nor off is a `ProtocolError`."""
    value = query.get(name)
    if value is None:
        return default
    if value.lower() in SWITCH_ON:
        return True
    if value.lower() in SWITCH_OFF:
        return False
    raise ProtocolError(f"{name}={value!r}: expected 1 or 0")


def session_params(query: Mapping[str, str]) -> dict[str, float]:
    """Kyutai's session parameters present in `query`, as numbers; a non-number is a `ProtocolError`."""
    params = {}
    for name in SESSION_PARAMS:
        if name not in query:
            continue
        try:
            value = float(query[name])
        except ValueError:
            value = math.nan
        if not math.isfinite(value):
            raise ProtocolError(f"{name}={query[name]!r}: expected a number")
        params[name] = value
    return params


def server_info(sampling: Any, lm_model_file: str, mimi_model_file: str, version: str) -> dict:
    """What Kyutai's web client parses from the first `0x04` message (its `ServersInfoSchema`):
    the sampling every conversation gets (`sampling`: a `SamplingOptions`; greedy reads as
    temperature 0), no repetition penalty, the model files' names, and this server's version."""
    greedy = sampling.greedy
    return {
        "text_temperature": 0.0 if greedy else sampling.text_temperature,
        "text_topk": sampling.text_top_k,
        "audio_temperature": 0.0 if greedy else sampling.temperature,
        "audio_topk": sampling.top_k,
        "pad_mult": 0.0,
        "repetition_penalty_context": 0,
        "repetition_penalty": 1.0,
        "lm_model_file": lm_model_file,
        "mimi_model_file": mimi_model_file,
        "instance_name": INSTANCE_NAME,
        "build_info": {name: version if name == "git_describe" else "" for name in BUILD_INFO_FIELDS},
        "ignored_params": list(SESSION_PARAMS),
    }


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
