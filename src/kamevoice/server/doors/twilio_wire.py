"""Twilio Media Streams on the wire: the messages, checked and built, and the call's audio.

Every message is a WebSocket text frame holding one JSON object with an `event`
(Twilio's "Media Streams - WebSocket Messages"):

- `connected` (Twilio, first, once): `protocol`, `version`;
- `start` (Twilio, once): `streamSid`; `start`: `callSid`, `accountSid`, `tracks`,
  `mediaFormat` (`encoding` `audio/x-mulaw`, `sampleRate` 8000, `channels` 1),
  `customParameters`;
- `media` (both ways): `media.payload`, base64 mu-law at 8 kHz mono without a header
  (Twilio's: 20 ms a message, `track` `inbound`);
- `mark` (both ways): `mark.name`; ours follows audio we sent, and Twilio echoes it once
  that audio has played (or has been cleared);
- `dtmf` (Twilio): `dtmf.digit`;
- `stop` (Twilio): the stream ended (the call hung up); Twilio closes the socket;
- `clear` (ours): `streamSid`; Twilio drops the audio it has buffered and echoes the
  marks still pending.

Anything else is a `WireError` naming what was wrong and the `EndCause` it counts as:
the door ends the call with it (Twilio has no error message; the WebSocket close frame
carries the reason). `CallAudio` turns payloads into the codec's 24 kHz float samples
and back, as a list of named stages (so that `kamevoice bench doors` times each layer).
"""

from __future__ import annotations

import base64
import binascii
import json
import re
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from functools import reduce
from typing import Any

import numpy as np

from kamevoice.audio import StreamResampler, mulaw_decode, mulaw_encode
from kamevoice.runtime.messages import EndCause

# The one media format of Twilio's streams (both directions).
ENCODING = "audio/x-mulaw"
TWILIO_RATE = 8000
CHANNELS = 1
# Events Twilio sends, in the order a call goes through them.
INBOUND_EVENTS = ("connected", "start", "media", "mark", "dtmf", "stop")
# Tracks of a media message: `inbound` is the caller. A bidirectional stream carries no other,
# but a unidirectional one may include `outbound` (what the call plays): never fed to the model.
CALLER_TRACK = "inbound"
OTHER_TRACKS = frozenset({"outbound"})
# Stream and call ids: Twilio's are two letters and 32 hex digits; compatible platforms use UUIDs.
# They name log files, so nothing else is accepted.
SID = re.compile(r"[A-Za-z0-9_-]{1,64}")
# A mark name we accept back: ours are short numbers; names are echoed, never interpreted further.
MAX_MARK_NAME = 256
# Largest decoded payload (bytes) one media message may carry: 5 s of 8 kHz mu-law (Twilio's are 20 ms).
MAX_PAYLOAD_BYTES = 5 * TWILIO_RATE
# A DTMF digit: 0-9, *, #, and A-D on phones that have them.
DTMF_DIGITS = frozenset("0123456789*#ABCD")

Stage = tuple[str, Callable[[Any], Any]]


class WireError(ValueError):
    """A message that breaks the protocol: the reason, and the `EndCause` it counts as."""

    def __init__(self, reason: str, cause: EndCause = EndCause.PROTOCOL):
        super().__init__(reason)
        self.cause = cause


@dataclass(frozen=True)
class Start:
    """What a `start` message says about the stream."""

    stream_sid: str
    call_sid: str
    account_sid: str
    tracks: tuple[str, ...]
    custom_parameters: dict[str, str] = field(default_factory=dict)


def parse(text: str) -> dict:
    """One message as a dict with a known `event`; a `WireError` otherwise."""
    try:
        message = json.loads(text)
    except (json.JSONDecodeError, RecursionError) as exc:
        raise WireError(f"malformed JSON: {exc}") from None
    if not isinstance(message, dict):
        raise WireError(f"a message must be a JSON object, got {type(message).__name__}")
    event = message.get("event")
    if not isinstance(event, str):
        raise WireError("a message needs an 'event' name")
    if event not in INBOUND_EVENTS:
        raise WireError(f"unknown event {event[:40]!r}; expected one of {', '.join(INBOUND_EVENTS)}")
    return message


def _object(message: dict, name: str) -> dict:
    value = message.get(name)
    if not isinstance(value, dict):
        raise WireError(f"{message['event']}: '{name}' must be an object")
    return value


def _sid(value: Any, what: str) -> str:
    if not isinstance(value, str) or not SID.fullmatch(value):
        raise WireError(f"start: {what} must be 1-64 letters, digits, '-' or '_'")
    return value


def parse_start(message: dict) -> Start:
    """The stream's ids and parameters; a media format other than mu-law 8 kHz mono is bad audio."""
    start = _object(message, "start")
    fmt = start.get("mediaFormat")
    if not isinstance(fmt, dict):
        raise WireError("start: 'mediaFormat' must be an object", EndCause.BAD_AUDIO)
    got = (fmt.get("encoding"), fmt.get("sampleRate"), fmt.get("channels", CHANNELS))
    if got != (ENCODING, TWILIO_RATE, CHANNELS):
        raise WireError(
            f"start: media format {got[0]!r} at {got[1]!r} Hz, {got[2]!r} channel(s); "
            f"expected {ENCODING} at {TWILIO_RATE} Hz, mono",
            EndCause.BAD_AUDIO,
        )
    tracks = start.get("tracks", [CALLER_TRACK])
    if not isinstance(tracks, list) or not all(isinstance(t, str) for t in tracks):
        raise WireError("start: 'tracks' must be a list of names")
    params = start.get("customParameters") or {}
    if not isinstance(params, dict):
        raise WireError("start: 'customParameters' must be an object")
    return Start(
        stream_sid=_sid(message.get("streamSid", start.get("streamSid")), "streamSid"),
        call_sid=_sid(start.get("callSid"), "callSid"),
        account_sid=_sid(start.get("accountSid", "-"), "accountSid"),
        tracks=tuple(tracks),
        custom_parameters={str(k): str(v) for k, v in params.items()},
    )


def media_payload(message: dict) -> tuple[str, str]:
    """(track, base64 payload) of a `media` message."""
    media = _object(message, "media")
    payload, track = media.get("payload"), media.get("track", CALLER_TRACK)
    if not isinstance(payload, str):
        raise WireError("media: 'payload' must be a base64 string", EndCause.BAD_AUDIO)
    if track != CALLER_TRACK and track not in OTHER_TRACKS:
        raise WireError(f"media: unknown track {str(track)[:40]!r}")
    return track, payload


def mark_name(message: dict) -> str:
    name = _object(message, "mark").get("name")
    if not isinstance(name, str) or len(name) > MAX_MARK_NAME:
        raise WireError(f"mark: 'name' must be a string of at most {MAX_MARK_NAME} characters")
    return name


def dtmf_digit(message: dict) -> str:
    digit = _object(message, "dtmf").get("digit")
    if not isinstance(digit, str) or digit not in DTMF_DIGITS:
        raise WireError("dtmf: 'digit' must be one of 0-9, *, #, A-D")
    return digit


def _dumps(message: dict) -> str:
    return json.dumps(message, separators=(",", ":"))


def media_message(stream_sid: str, payload: str) -> str:
    """Audio for the caller: `payload` is base64 mu-law at 8 kHz."""
    return _dumps({"event": "media", "streamSid": stream_sid, "media": {"payload": payload}})


def mark_message(stream_sid: str, name: str) -> str:
    """A mark after the audio sent so far: Twilio echoes it once that audio has played."""
    return _dumps({"event": "mark", "streamSid": stream_sid, "mark": {"name": name}})


def clear_message(stream_sid: str) -> str:
    """Drop the audio Twilio has buffered (barge-in)."""
    return _dumps({"event": "clear", "streamSid": stream_sid})


def decode_base64(payload: str) -> bytes:
    """A media payload's bytes; anything but strict base64 of at most `MAX_PAYLOAD_BYTES` is bad audio."""
    if len(payload) > (MAX_PAYLOAD_BYTES + 2) // 3 * 4:
        raise WireError(f"media: payload over {MAX_PAYLOAD_BYTES} bytes in one message", EndCause.BAD_AUDIO)
    try:
        return base64.b64decode(payload, validate=True)
    except (binascii.Error, ValueError) as exc:
        raise WireError(f"media: payload is not base64 ({exc})", EndCause.BAD_AUDIO) from None


def encode_base64(data: bytes) -> str:
    return base64.b64encode(data).decode("ascii")


class CallAudio:
    """A call's audio: base64 mu-law at 8 kHz <-> float32 at `sample_rate`, stateful (the
    resamplers carry their history from chunk to chunk, so one instance per call)."""

    def __init__(self, sample_rate: int):
        self.sample_rate = sample_rate
        self._up = StreamResampler(TWILIO_RATE, sample_rate)
        self._down = StreamResampler(sample_rate, TWILIO_RATE)
        self.inbound: Sequence[Stage] = (
            ("base64", decode_base64),
            ("mu-law", mulaw_decode),
            ("resample", self._up.process),
        )
        self.outbound: Sequence[Stage] = (
            ("resample", self._down.process),
            ("mu-law", mulaw_encode),
            ("base64", encode_base64),
        )

    def decode(self, payload: str) -> np.ndarray:
        """A media payload to float32 samples at `sample_rate`."""
        return reduce(lambda data, stage: stage[1](data), self.inbound, payload)

    def encode(self, pcm: np.ndarray) -> str:
        """Model audio at `sample_rate` to a media payload ('' while the resampler holds it all)."""
        return reduce(lambda data, stage: stage[1](data), self.outbound, pcm)
