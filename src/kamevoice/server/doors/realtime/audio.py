"""The Realtime door's audio on the wire: base64 text of PCM16 at 24 kHz, or G.711 at 8 kHz.

`input_audio_buffer.append` carries base64 audio in the session's input format; the reply's
`response.output_audio.delta` (GA) / `response.audio.delta` (beta) carries base64 audio in its
output format. Inside, audio is float32 mono at the codec's rate (24 kHz), so:

- PCM16 (`audio/pcm`, beta `pcm16`): little-endian int16 at 24 kHz, no resampling;
- G.711 mu-law (`audio/pcmu`, `g711_ulaw`) and A-law (`audio/pcma`, `g711_alaw`): one byte a
  sample at 8 kHz (`kamevoice.audio`'s codecs), resampled to and from 24 kHz.

Resampling uses `kamevoice.audio`'s filter in its streaming form (`StreamResampler`, the
converter behind `resample`): messages are short and arrive one after another, and converting
each on its own would click at every edge.
"""

from __future__ import annotations

import base64
import binascii
from enum import StrEnum

import numpy as np

from kamevoice.audio import (
    StreamResampler,
    alaw_decode,
    alaw_encode,
    mulaw_decode,
    mulaw_encode,
    pcm16_bytes,
    pcm16_from_bytes,
)
from kamevoice.errors import InputError
from kamevoice.server.doors.realtime.wire import ErrorCode, RealtimeError

# PCM16's rate on the Realtime wire (the API's only PCM rate).
PCM16_RATE = 24_000
# G.711's rate: telephony.
G711_RATE = 8_000


class WireFormat(StrEnum):
    """An audio format of the Realtime wire (the value is the GA `type`)."""

    PCM16 = "audio/pcm"
    PCMU = "audio/pcmu"
    PCMA = "audio/pcma"

    @property
    def rate(self) -> int:
        return PCM16_RATE if self is WireFormat.PCM16 else G711_RATE

    @property
    def beta_name(self) -> str:
        """The beta API's name for it (`input_audio_format`, `output_audio_format`)."""
        return BETA_NAMES[self]


BETA_NAMES = {WireFormat.PCM16: "pcm16", WireFormat.PCMU: "g711_ulaw", WireFormat.PCMA: "g711_alaw"}
FROM_BETA = {name: fmt for fmt, name in BETA_NAMES.items()}
_DECODE = {
    WireFormat.PCM16: pcm16_from_bytes,
    WireFormat.PCMU: mulaw_decode,
    WireFormat.PCMA: alaw_decode,
}
_ENCODE = {WireFormat.PCM16: pcm16_bytes, WireFormat.PCMU: mulaw_encode, WireFormat.PCMA: alaw_encode}


def _resampler(in_rate: int, out_rate: int) -> StreamResampler | None:
    return None if in_rate == out_rate else StreamResampler(in_rate, out_rate)


class AudioIn:
    """Client audio: base64 in `fmt` -> float32 mono at `rate`."""

    def __init__(self, fmt: WireFormat, rate: int):
        self.format, self.rate = fmt, rate
        self._resampler = _resampler(fmt.rate, rate)

    def decode(self, text: str, param: str = "audio") -> np.ndarray:
        """One `append`'s audio; a `RealtimeError` names what is wrong with it."""
        try:
            data = base64.b64decode(text, validate=True)
        except (binascii.Error, ValueError) as exc:
            raise RealtimeError(
                ErrorCode.INVALID_BASE64, f"'{param}' is not valid base64: {exc}", param
            ) from None
        try:
            pcm = _DECODE[self.format](data)
        except InputError as exc:
            raise RealtimeError(
                ErrorCode.INVALID_AUDIO, f"'{param}' is not {self.format.value} audio: {exc}", param
            ) from None
        return pcm if self._resampler is None else self._resampler.process(pcm)


class AudioOut:
    """Model audio: float32 mono at `rate` -> base64 in `fmt`."""

    def __init__(self, fmt: WireFormat, rate: int):
        self.format, self.rate = fmt, rate
        self._resampler = _resampler(rate, fmt.rate)

    def reset(self) -> None:
        """A new stretch of audio (a new reply): no tail of the last one leaks into it."""
        self._resampler = _resampler(self.rate, self.format.rate)

    def encode(self, pcm: np.ndarray) -> str:
        """One frame of model audio as the delta's base64 text."""
        if self._resampler is not None:
            pcm = self._resampler.process(pcm)
        return base64.b64encode(_ENCODE[self.format](pcm)).decode("ascii")
