"""Decode audio that arrives as bytes (a hosted TTS's answer): WAV or raw 16-bit PCM, to mono float32.

Streaming servers write WAV headers before they know the length, so the RIFF
and data sizes may be placeholders (0 or 0xFFFFFFFF): a data chunk is read to
the end of the body when its declared size does not fit. Anything else that is
not sound PCM raises `ValueError` saying what is wrong, for the caller to wrap.
"""

from __future__ import annotations

import struct

import numpy as np

# WAVE format tags: integer PCM, IEEE float, and the extensible header (whose sub-format says which).
_FORMAT_PCM = 1
_FORMAT_FLOAT = 3
_FORMAT_EXTENSIBLE = 0xFFFE
# Bytes of RIFF header ("RIFF", size, "WAVE") and of a chunk header (id, size).
_RIFF_HEADER = 12
_CHUNK_HEADER = 8
# Declared sizes that mean "unknown" in streamed WAV.
_UNKNOWN_SIZES = (0, 0xFFFFFFFF)


def decode_pcm16(data: bytes, sample_rate: int) -> tuple[np.ndarray, int]:
    """Raw little-endian 16-bit mono PCM -> (float32 audio in [-1, 1], rate)."""
    if len(data) % 2:
        raise ValueError(f"raw 16-bit PCM has an odd number of bytes ({len(data)})")
    if not data:
        raise ValueError("no audio: the body is empty")
    return np.frombuffer(data, dtype="<i2").astype(np.float32) / 32768.0, sample_rate


def decode_wav(data: bytes) -> tuple[np.ndarray, int]:
    """A RIFF/WAVE body (16-bit PCM or 32-bit float, any channel count) -> (mono float32, rate)."""
    if len(data) < _RIFF_HEADER or data[:4] != b"RIFF" or data[8:12] != b"WAVE":
        raise ValueError(f"not a WAV file: starts with {data[:16]!r}")
    fmt: tuple[int, int, int, int] | None = None  # (format tag, channels, rate, bits per sample)
    pos = _RIFF_HEADER
    while pos + _CHUNK_HEADER <= len(data):
        chunk_id, size = data[pos : pos + 4], struct.unpack_from("<I", data, pos + 4)[0]
        body = pos + _CHUNK_HEADER
        if chunk_id == b"fmt ":
            if size < 16 or body + 16 > len(data):
                raise ValueError("WAV 'fmt ' chunk is truncated")
            tag, channels, rate, _, _, bits = struct.unpack_from("<HHIIHH", data, body)
            if tag == _FORMAT_EXTENSIBLE and size >= 40:
                tag = struct.unpack_from("<H", data, body + 24)[0]  # first 2 bytes of the sub-format GUID
            fmt = (tag, channels, rate, bits)
        elif chunk_id == b"data":
            if fmt is None:
                raise ValueError("WAV 'data' chunk comes before its 'fmt ' chunk")
            end = body + size if size not in _UNKNOWN_SIZES and body + size <= len(data) else len(data)
            return _samples(data[body:end], *fmt)
        pos = body + size + (size & 1)  # chunks are padded to an even length
    raise ValueError("WAV file has no 'data' chunk" if fmt else "WAV file has no 'fmt ' chunk")


def _samples(raw: bytes, tag: int, channels: int, rate: int, bits: int) -> tuple[np.ndarray, int]:
    if channels < 1 or rate <= 0:
        raise ValueError(f"WAV header is invalid: {channels} channels at {rate} Hz")
    if tag == _FORMAT_PCM and bits == 16:
        dtype, scale = np.dtype("<i2"), 1 / 32768.0
    elif tag == _FORMAT_FLOAT and bits == 32:
        dtype, scale = np.dtype("<f4"), 1.0
    else:
        raise ValueError(f"unsupported WAV encoding: format {tag}, {bits} bits (want 16-bit PCM or float)")
    frame = dtype.itemsize * channels
    usable = len(raw) - len(raw) % frame  # a stream cut mid-frame loses only that frame
    if usable == 0:
        raise ValueError("WAV file holds no audio samples")
    samples = np.frombuffer(raw[:usable], dtype=dtype).reshape(-1, channels).astype(np.float32)
    return (samples.mean(axis=1) * scale).astype(np.float32), rate
