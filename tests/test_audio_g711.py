"""G.711 mu-law and A-law (`kamevoice.audio`): bit-exact with the reference algorithm, round trips."""

from __future__ import annotations

import numpy as np
import pytest

from kamevoice.audio import (
    alaw_bytes,
    alaw_from_bytes,
    float_to_int16,
    int16_to_float,
    ulaw_bytes,
    ulaw_from_bytes,
)

# Every int16 value, as float samples (the encoders take floats in [-1, 1]).
ALL_INT16 = int16_to_float(np.arange(-32768, 32768, dtype=np.int16))


def test_g711_matches_the_reference_codec_on_every_sample():
    """Python 3.11's `audioop` is Sun's reference g711.c: every 16-bit sample and every code agree."""
    with pytest.warns(DeprecationWarning):
        import audioop
    pcm = float_to_int16(ALL_INT16).tobytes()
    assert ulaw_bytes(ALL_INT16) == audioop.lin2ulaw(pcm, 2)
    assert alaw_bytes(ALL_INT16) == audioop.lin2alaw(pcm, 2)
    codes = bytes(range(256))
    assert float_to_int16(ulaw_from_bytes(codes)).tobytes() == audioop.ulaw2lin(codes, 2)
    assert float_to_int16(alaw_from_bytes(codes)).tobytes() == audioop.alaw2lin(codes, 2)


@pytest.mark.parametrize("encode, decode", [(ulaw_bytes, ulaw_from_bytes), (alaw_bytes, alaw_from_bytes)])
def test_g711_round_trip_keeps_speech_within_its_quantisation(encode, decode):
    t = np.arange(8000) / 8000
    tone = (0.5 * np.sin(2 * np.pi * 440 * t)).astype(np.float32)
    data = encode(tone)
    assert len(data) == len(tone)  # one byte a sample
    back = decode(data)
    assert back.dtype == np.float32 and back.shape == tone.shape
    # Companding keeps about 12 bits near full scale: the error is a few percent of the sample.
    assert np.max(np.abs(back - tone)) < 0.02
    snr = 10 * np.log10(np.sum(tone**2) / np.sum((back - tone) ** 2))
    assert snr > 30
