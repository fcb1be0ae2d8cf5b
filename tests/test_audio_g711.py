"""G.711 mu-law and A-law: the reference implementation's values, bit for bit, and round trips."""

from __future__ import annotations

import importlib
import warnings

import numpy as np
import pytest

from kamevoice.audio import alaw_decode, alaw_encode, int16_to_float, mulaw_decode, mulaw_encode

ALL_BYTES = bytes(range(256))
ALL_INT16 = np.arange(-32768, 32768, dtype=np.int16)


def _audioop():
    """Python's audioop (G.711 as in Sun's g711.c), until 3.13 removed it; None where it is gone."""
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", DeprecationWarning)
        try:
            return importlib.import_module("audioop")
        except ImportError:
            return None


def test_known_values():
    # mu-law: 0xFF is zero, 0x00 and 0x80 the extremes; A-law: 0xD5 / 0x55 the smallest steps.
    assert mulaw_encode(np.zeros(3, np.float32)) == b"\xff\xff\xff"
    assert (mulaw_decode(b"\xff\x00\x80") * 32768).tolist() == [0, -32124, 32124]
    assert alaw_encode(np.zeros(2, np.float32)) == b"\xd5\xd5"
    assert (alaw_decode(b"\xd5\x55\xaa\x2a") * 32768).tolist() == [8, -8, 32256, -32256]


@pytest.mark.skipif(_audioop() is None, reason="audioop is gone (Python 3.13+)")
def test_bit_exact_with_the_reference_implementation():
    audioop = _audioop()
    pcm = ALL_INT16.tobytes()
    samples = int16_to_float(ALL_INT16)
    assert mulaw_encode(samples) == audioop.lin2ulaw(pcm, 2)
    assert alaw_encode(samples) == audioop.lin2alaw(pcm, 2)
    assert (mulaw_decode(ALL_BYTES) * 32768).astype("<i2").tobytes() == audioop.ulaw2lin(ALL_BYTES, 2)
    assert (alaw_decode(ALL_BYTES) * 32768).astype("<i2").tobytes() == audioop.alaw2lin(ALL_BYTES, 2)


@pytest.mark.parametrize("encode, decode", [(mulaw_encode, mulaw_decode), (alaw_encode, alaw_decode)])
def test_round_trip_keeps_speech_level_and_every_code(encode, decode):
    t = np.arange(8000) / 8000
    tone = (0.3 * np.sin(2 * np.pi * 440 * t)).astype(np.float32)
    back = decode(encode(tone))
    assert back.dtype == np.float32 and back.shape == tone.shape
    snr = 10 * np.log10(np.sum(tone**2) / np.sum((back - tone) ** 2))
    assert snr > 30, snr  # G.711 gives ~38 dB on speech-level signals
    codes = decode(ALL_BYTES)
    assert decode(encode(codes)).tolist() == codes.tolist()  # every code's value encodes back to it
    loud = decode(encode(np.array([2.0, -2.0], np.float32)))  # clipped, not wrapped
    assert loud[0] > 0.97 and loud[1] < -0.97
