"""The Moshi door's wire for `kamevoice bench doors`: Ogg/Opus (Kyutai's clients) and PCM16 (our page).

The server's stages are `MoshiAudio`'s, the door's own, after the kind byte is split off;
the client is what Kyutai's and our clients do: one message per 80 ms frame, Opus through
`sphn` (as `moshi.client` does) or little-endian int16.
"""

from __future__ import annotations

from typing import Any

import numpy as np

from kamevoice.audio import pcm16_bytes, pcm16_from_bytes
from kamevoice.bench.doors import DoorBenchOptions, DoorFigures, measure_wire
from kamevoice.runtime.clock import FRAME_SAMPLES, SAMPLE_RATE
from kamevoice.server import protocol
from kamevoice.server.doors.moshi import MoshiAudio


class MoshiWire:
    """Both ends of one Moshi-protocol stream (see `kamevoice.bench.doors.Wire`)."""

    def __init__(self, pcm16: bool):
        import sphn

        self.pcm16 = pcm16
        self.name = "moshi-pcm16" if pcm16 else "moshi-opus"
        audio = MoshiAudio(SAMPLE_RATE, pcm16)
        self.server_decode = (("frame", lambda message: protocol.split(message)[1]), *audio.inbound)
        self.server_encode = (*audio.outbound, ("send", lambda message: [message] if message else []))
        self._writer = None if pcm16 else sphn.OpusStreamWriter(SAMPLE_RATE)
        self._reader = None if pcm16 else sphn.OpusStreamReader(SAMPLE_RATE)

    def client_frames(self, speech: np.ndarray) -> list[Any]:
        return [speech[i : i + FRAME_SAMPLES] for i in range(0, len(speech), FRAME_SAMPLES)]

    def client_encode(self, held: np.ndarray) -> list[bytes]:
        if self._writer is None:
            return [protocol.pack(protocol.Kind.PCM16, pcm16_bytes(held))]
        pages = self._writer.append_pcm(held)
        return [protocol.pack(protocol.Kind.AUDIO, pages)] if pages else []

    def client_decode(self, message: bytes) -> None:
        if self._reader is None:
            pcm16_from_bytes(message[1:])
        else:
            self._reader.append_bytes(message[1:])


async def measure(options: DoorBenchOptions, speech: np.ndarray) -> list[DoorFigures]:
    """Moshi's protocol with Ogg/Opus (the reference) and with raw PCM16."""
    return [
        await measure_wire(lambda: MoshiWire(pcm16=False), speech, options,
                           "Ogg/Opus through sphn, as moshi.client sends it"),
        await measure_wire(lambda: MoshiWire(pcm16=True), speech, options, "little-endian int16, 24 kHz"),
    ]  # fmt: skip
