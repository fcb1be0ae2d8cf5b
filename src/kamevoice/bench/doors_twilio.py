"""The Twilio door's wire for `kamevoice bench doors`: JSON, base64, mu-law, resampling.

The server's stages are the door's own: the message parsed and checked (`twilio_wire.parse`,
`media_payload`), then `CallAudio`'s base64, mu-law and 8 -> 24 kHz resampling; out, the
24 -> 8 kHz resampling, mu-law, base64, and the `media` and `mark` messages the door sends
for each frame. The client is Twilio: it holds the caller's mu-law at 8 kHz and sends it as
four 20 ms `media` messages a frame; it decodes our `media` (JSON, base64) to play it.
"""

from __future__ import annotations

import base64
import json
from typing import Any

import numpy as np

from kamevoice.audio import mulaw_encode, resample
from kamevoice.bench.doors import DoorBenchOptions, DoorFigures, measure_wire
from kamevoice.runtime.clock import SAMPLE_RATE
from kamevoice.server.doors import twilio_wire as wire
from kamevoice.server.twilio_client import CHUNK_BYTES, STREAM_SID

# Twilio's chunks in one 80 ms frame.
CHUNKS_PER_FRAME = 4


class TwilioWire:
    """Both ends of one Media Stream (see `kamevoice.bench.doors.Wire`)."""

    name = "twilio"

    def __init__(self) -> None:
        audio = wire.CallAudio(SAMPLE_RATE)
        self._frame = 0
        self._chunk = 0
        self.server_decode = (("json", self._payload), *audio.inbound)
        self.server_encode = (*audio.outbound, ("json", self._messages))

    @staticmethod
    def _payload(text: str) -> str:
        return wire.media_payload(wire.parse(text))[1]

    def _messages(self, payload: str) -> list[str]:
        self._frame += 1
        if not payload:
            return []
        return [wire.media_message(STREAM_SID, payload), wire.mark_message(STREAM_SID, str(self._frame))]

    def client_frames(self, speech: np.ndarray) -> list[Any]:
        data = mulaw_encode(resample(speech, SAMPLE_RATE, wire.TWILIO_RATE))
        size = CHUNK_BYTES * CHUNKS_PER_FRAME
        return [data[i : i + size] for i in range(0, len(data), size)]

    def client_encode(self, held: bytes) -> list[str]:
        messages = []
        for i in range(0, len(held), CHUNK_BYTES):
            self._chunk += 1
            messages.append(json.dumps({
                "event": "media", "sequenceNumber": str(self._chunk + 1), "streamSid": STREAM_SID,
                "media": {"track": "inbound", "chunk": str(self._chunk), "timestamp": str(self._chunk * 20),
                          "payload": base64.b64encode(held[i : i + CHUNK_BYTES]).decode("ascii")},
            }))  # fmt: skip
        return messages

    def client_decode(self, message: str) -> None:
        data = json.loads(message)
        if data.get("event") == "media":
            base64.b64decode(data["media"]["payload"])


async def measure(options: DoorBenchOptions, speech: np.ndarray) -> list[DoorFigures]:
    """Twilio Media Streams: mu-law 8 kHz in base64 JSON, resampled to and from 24 kHz."""
    notes = "4 media messages a frame in, media + mark out; held in: the 8 -> 24 kHz resampler's look-ahead"
    return [await measure_wire(TwilioWire, speech, options, notes)]
