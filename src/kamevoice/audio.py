"""Audio utilities shared by every part: int16 scaling, mono, resampling, and audio files.

One convention everywhere: float32 samples in [-1, 1]; int16 full scale is 32768
(`float_to_int16` clips, so +1.0 becomes 32767). Mono signals are `[samples]`,
multi-channel ones `[samples, channels]`.

- `float_to_int16` / `int16_to_float`, `pcm16_bytes` / `pcm16_from_bytes`: sample formats;
- `ulaw_bytes` / `ulaw_from_bytes`, `alaw_bytes` / `alaw_from_bytes`: G.711 mu-law and A-law
  (telephony's 8-bit companded samples, ITU-T G.711 as in Sun's reference `g711.c`);
- `to_mono`: the mean of the channels;
- `StreamResampler` (chunk by chunk, no clicks at chunk edges) and `resample` (whole signals);
- `read_audio` (WAV/FLAC/OGG through soundfile), `write_wav` (16-bit, atomic), `write_stereo`;
- `decode_wav_bytes` / `decode_pcm16` (audio that arrives as bytes, e.g. a hosted TTS's answer);
- `mulaw_encode` / `mulaw_decode`, `alaw_encode` / `alaw_decode`: G.711 telephone audio
  (one byte a sample, 8 kHz by convention; the rate is the caller's business).
"""

from __future__ import annotations

import os
import struct
import tempfile
import wave
from functools import cache
from math import gcd
from pathlib import Path

import numpy as np

from kamevoice.errors import InputError

# int16 full scale: -32768 is -1.0; +1.0 clips to 32767.
INT16_FULL_SCALE = 32768.0


# --------------------------------------------------------------------------- sample formats


def float_to_int16(audio: np.ndarray) -> np.ndarray:
    """Float samples in [-1, 1] to int16, clipped (truncated toward zero, as libraries do)."""
    scaled = np.asarray(audio, dtype=np.float32) * np.float32(INT16_FULL_SCALE)
    return np.clip(scaled, -32768, 32767).astype(np.int16)


def int16_to_float(samples: np.ndarray) -> np.ndarray:
    """int16 samples to float32 in [-1, 1)."""
    return np.asarray(samples).astype(np.float32) / INT16_FULL_SCALE


def pcm16_bytes(audio: np.ndarray) -> bytes:
    """Float samples to little-endian 16-bit PCM bytes."""
    return float_to_int16(audio).astype("<i2").tobytes()


def pcm16_from_bytes(data: bytes) -> np.ndarray:
    """Little-endian 16-bit PCM bytes to float32 samples; an odd byte count is an `InputError`."""
    if len(data) % 2:
        raise InputError(f"16-bit PCM: {len(data)} bytes is not a whole number of samples")
    return int16_to_float(np.frombuffer(data, dtype="<i2"))


def to_mono(audio: np.ndarray) -> np.ndarray:
    """`[samples]` as float32, or the mean of the channels of `[samples, channels]`."""
    audio = np.asarray(audio, dtype=np.float32)
    return audio.mean(axis=1, dtype=np.float32) if audio.ndim == 2 else audio


# --------------------------------------------------------------------------- resampling
# A polyphase windowed-sinc filter in numpy (no DSP dependency). Audio may arrive in chunks of any
# length: the converter keeps the input tail it still needs and a running output position, so a
# signal converted in pieces gives the samples of the whole (up to float rounding). The filter is
# centred (zero delay): each output waits for `half_taps` inputs of look-ahead, under 1 ms at every
# supported rate, and `flush()` pads the end with zeros.

# Zero crossings of the sinc on each side of the centre: 16 gives > 80 dB
# stop-band with the Kaiser window below, far past what a recogniser can hear.
ZERO_CROSSINGS = 16
# Kaiser beta for ~80 dB side-lobe attenuation.
KAISER_BETA = 8.0
# Cut-off as a fraction of the lower Nyquist frequency: a 5% transition band
# keeps the pass band flat to 7.6 kHz at 16 kHz output, well above speech.
ROLLOFF = 0.95


class StreamResampler:
    """Convert a mono float32 stream from `in_rate` to `out_rate`, chunk by chunk."""

    def __init__(self, in_rate: int, out_rate: int):
        if in_rate <= 0 or out_rate <= 0:
            raise ValueError(f"sample rates must be positive, got {in_rate} -> {out_rate}")
        g = gcd(in_rate, out_rate)
        self.in_rate, self.out_rate = in_rate, out_rate
        self.up, self.down = out_rate // g, in_rate // g
        self.identity = self.up == self.down
        # Cut-off in cycles per input sample (0.5 = input Nyquist).
        cutoff = 0.5 * ROLLOFF * min(1.0, self.up / self.down)
        self.half_taps = int(np.ceil(ZERO_CROSSINGS / (2 * cutoff)))
        self._table = _phase_table(self.up, self.half_taps, cutoff)
        # Input history: `_buf[0]` is absolute input sample `_buf_start`. The stream
        # starts with `half_taps` zeros of history so the first outputs are defined.
        self._buf = np.zeros(self.half_taps, dtype=np.float32)
        self._buf_start = -self.half_taps
        self._n_in = 0  # input samples received
        self._n_out = 0  # output samples produced

    def process(self, x: np.ndarray) -> np.ndarray:
        """Convert the next chunk; returns every output sample that is fully determined so far."""
        x = np.asarray(x, dtype=np.float32)
        if self.identity:
            self._n_in += len(x)
            self._n_out += len(x)
            return x.copy()
        self._buf = np.concatenate([self._buf, x])
        self._n_in += len(x)
        return self._emit(self._n_in)

    def flush(self) -> np.ndarray:
        """Pad the end with silence and return the remaining samples of the stream."""
        if self.identity:
            return np.zeros(0, dtype=np.float32)
        self._buf = np.concatenate([self._buf, np.zeros(self.half_taps + 1, dtype=np.float32)])
        total_out = -(-self._n_in * self.up // self.down)  # ceil: outputs whose time lies inside the input
        return self._emit(self._n_in + self.half_taps + 1, limit=total_out)

    def _emit(self, available: int, limit: int | None = None) -> np.ndarray:
        """Outputs n whose window [i0 - half + 1, i0 + half] lies below input index `available`."""
        # Output n sits at input time n * down / up; i0 = floor of it, phase = remainder.
        # Need i0 + half_taps < available  <=>  n * down < (available - half_taps) * up.
        last = ((available - self.half_taps) * self.up - 1) // self.down  # largest n allowed
        if limit is not None:
            last = min(last, limit - 1)
        n = np.arange(self._n_out, last + 1, dtype=np.int64)
        if len(n) == 0:
            return np.zeros(0, dtype=np.float32)
        i0 = (n * self.down) // self.up
        phase = (n * self.down) % self.up
        offsets = np.arange(-self.half_taps + 1, self.half_taps + 1, dtype=np.int64)
        idx = i0[:, None] + offsets[None, :] - self._buf_start
        y = np.einsum("ij,ij->i", self._buf[idx], self._table[phase]).astype(np.float32)
        self._n_out = int(last) + 1
        # Keep only the history the next output still needs.
        next_i0 = (self._n_out * self.down) // self.up
        drop = next_i0 - self.half_taps + 1 - self._buf_start
        if drop > 0:
            self._buf = self._buf[drop:]
            self._buf_start += drop
        return y


def _phase_table(up: int, half_taps: int, cutoff: float) -> np.ndarray:
    """Filter taps for each of the `up` fractional positions, each row normalised to unit DC gain."""
    frac = np.arange(up, dtype=np.float64)[:, None] / up
    offsets = np.arange(-half_taps + 1, half_taps + 1, dtype=np.float64)[None, :]
    t = offsets - frac  # distance from the output instant to each input sample, in input samples
    window = np.i0(KAISER_BETA * np.sqrt(np.clip(1 - (t / half_taps) ** 2, 0.0, 1.0))) / np.i0(KAISER_BETA)
    kernel = np.sinc(2 * cutoff * t) * window
    kernel /= kernel.sum(axis=1, keepdims=True)
    return kernel.astype(np.float32)


def resample(x: np.ndarray, in_rate: int, out_rate: int) -> np.ndarray:
    """Convert a whole signal at once: `[samples]`, or `[samples, channels]` channel by channel
    (the streaming converter, run over one chunk)."""
    x = np.asarray(x, dtype=np.float32)
    if x.ndim == 2:
        return np.stack([resample(x[:, c], in_rate, out_rate) for c in range(x.shape[1])], axis=1)
    if in_rate == out_rate:
        return x.copy()
    conv = StreamResampler(in_rate, out_rate)
    return np.concatenate([conv.process(x), conv.flush()])


# --------------------------------------------------------------------------- audio files


def read_audio(path: str | Path) -> tuple[np.ndarray, int]:
    """Read WAV, FLAC or OGG into float32 `[samples]` (mono) or `[samples, channels]`; (audio, rate)."""
    import soundfile as sf

    path = Path(path)
    if not path.is_file():
        raise InputError(f"audio file {path} does not exist")
    try:
        audio, rate = sf.read(str(path), dtype="float32", always_2d=False)
    except (sf.LibsndfileError, RuntimeError, TypeError, ValueError) as exc:
        raise InputError(f"cannot read audio file {path}: {exc}") from exc
    if audio.size == 0:
        raise InputError(f"audio file {path} holds no samples")
    return audio, int(rate)


def write_wav(path: str | Path, audio: np.ndarray, sample_rate: int) -> None:
    """Write `[samples]` or `[samples, channels]` as a 16-bit WAV, atomically (a reader never sees
    half a file); the folder is created."""
    audio = np.asarray(audio, dtype=np.float32)
    channels = 1 if audio.ndim == 1 else audio.shape[1]
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    os.close(fd)
    try:
        with wave.open(tmp, "wb") as w:
            w.setnchannels(channels)
            w.setsampwidth(2)
            w.setframerate(sample_rate)
            w.writeframes(pcm16_bytes(audio))
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


def write_stereo(path: str | Path, left: np.ndarray, right: np.ndarray, sample_rate: int) -> None:
    """A 16-bit stereo WAV of two mono signals (the shorter padded with silence), written atomically."""
    n = max(len(left), len(right))
    stereo = np.zeros((n, 2), dtype=np.float32)
    stereo[: len(left), 0], stereo[: len(right), 1] = left, right
    write_wav(path, stereo, sample_rate)


# --------------------------------------------------------------------------- audio as bytes
# Streaming servers write WAV headers before they know the length, so the RIFF and data sizes may
# be placeholders (0 or 0xFFFFFFFF): a data chunk is read to the end of the body when its declared
# size does not fit. Anything that is not sound PCM raises `ValueError`, for the caller to wrap.

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
    return int16_to_float(np.frombuffer(data, dtype="<i2")), sample_rate


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
        dtype, scale = np.dtype("<i2"), 1 / INT16_FULL_SCALE
    elif tag == _FORMAT_FLOAT and bits == 32:
        dtype, scale = np.dtype("<f4"), 1.0
    else:
        raise ValueError(f"unsupported WAV encoding: format {tag}, {bits} bits (want 16-bit PCM or float)")
    frame = dtype.itemsize * channels
    usable = len(raw) - len(raw) % frame  # a stream cut mid-frame loses only that frame
    if usable == 0:
        raise ValueError("WAV file holds no audio samples")
    samples = np.frombuffer(raw[:usable], dtype=dtype).reshape(-1, channels).astype(np.float32)
    return to_mono(samples * scale), rate


# --------------------------------------------------------------------------- G.711 (telephony)
# ITU-T G.711 as in the reference implementation (Sun's g711.c, which audioop and SoX follow):
# mu-law companding of 14-bit magnitudes (North America, Japan; Twilio's `audio/x-mulaw`) and
# A-law of 13-bit magnitudes (the rest of the world's phone networks). One byte a sample, the
# bits inverted on the wire as the standard requires. Both directions are table lookups: every
# int16 value has its byte (65,536 entries) and every byte its int16 value (256).

# mu-law: bias added to the magnitude before the segment search, and the largest 14-bit magnitude.
_ULAW_BIAS = 0x84
_ULAW_CLIP = 8159
# Segment end points: the largest (biased, shifted) magnitude each of the 8 segments encodes.
_ULAW_SEG_END = np.array([0x3F, 0x7F, 0xFF, 0x1FF, 0x3FF, 0x7FF, 0xFFF, 0x1FFF])
_ALAW_SEG_END = np.array([0x1F, 0x3F, 0x7F, 0xFF, 0x1FF, 0x3FF, 0x7FF, 0xFFF])
# Every int16 value, in order: the encode tables are indexed by sample + 32768.
_ALL_INT16 = np.arange(-32768, 32768, dtype=np.int64)


@cache
def _ulaw_tables() -> tuple[np.ndarray, np.ndarray]:
    """(int16 + 32768 -> byte, byte -> int16) for mu-law."""
    pcm = _ALL_INT16 >> 2  # 14-bit
    mask = np.where(pcm < 0, 0x7F, 0xFF)
    mag = np.minimum(np.abs(pcm), _ULAW_CLIP) + (_ULAW_BIAS >> 2)
    seg = np.searchsorted(_ULAW_SEG_END, mag)  # first segment whose end is >= the magnitude
    code = np.where(seg >= 8, 0x7F, (seg << 4) | ((mag >> (seg + 1)) & 0x0F))
    encode = (code ^ mask).astype(np.uint8)
    u = ~np.arange(256, dtype=np.int64) & 0xFF
    t = (((u & 0x0F) << 3) + _ULAW_BIAS) << ((u & 0x70) >> 4)
    decode = np.where(u & 0x80, _ULAW_BIAS - t, t - _ULAW_BIAS).astype(np.int16)
    return encode, decode


@cache
def _alaw_tables() -> tuple[np.ndarray, np.ndarray]:
    """(int16 + 32768 -> byte, byte -> int16) for A-law."""
    pcm = _ALL_INT16 >> 3  # 13-bit
    mask = np.where(pcm >= 0, 0xD5, 0x55)
    mag = np.where(pcm >= 0, pcm, -pcm - 1)
    seg = np.searchsorted(_ALAW_SEG_END, mag)
    shift = np.where(seg < 2, 1, seg)
    code = np.where(seg >= 8, 0x7F, (seg << 4) | ((mag >> shift) & 0x0F))
    encode = (code ^ mask).astype(np.uint8)
    a = np.arange(256, dtype=np.int64) ^ 0x55
    seg_d = (a & 0x70) >> 4
    t = ((a & 0x0F) << 4) + np.where(seg_d == 0, 8, 0x108)
    t = np.where(seg_d > 1, t << np.maximum(seg_d - 1, 0), t)
    decode = np.where(a & 0x80, t, -t).astype(np.int16)
    return encode, decode


def _g711_encode(audio: np.ndarray, table: np.ndarray) -> bytes:
    samples = float_to_int16(np.asarray(audio, dtype=np.float32).reshape(-1))
    return table[samples.astype(np.int64) + 32768].tobytes()


def _g711_decode(data: bytes, table: np.ndarray) -> np.ndarray:
    return int16_to_float(table[np.frombuffer(data, dtype=np.uint8)])


def mulaw_encode(audio: np.ndarray) -> bytes:
    """Float samples in [-1, 1] (mono, any rate) to G.711 mu-law bytes, one a sample."""
    return _g711_encode(audio, _ulaw_tables()[0])


def mulaw_decode(data: bytes) -> np.ndarray:
    """G.711 mu-law bytes to float32 samples (full scale is +-0.980, mu-law's largest step)."""
    return _g711_decode(data, _ulaw_tables()[1])


def alaw_encode(audio: np.ndarray) -> bytes:
    """Float samples in [-1, 1] (mono, any rate) to G.711 A-law bytes, one a sample."""
    return _g711_encode(audio, _alaw_tables()[0])


def alaw_decode(data: bytes) -> np.ndarray:
    """G.711 A-law bytes to float32 samples (full scale is +-0.984, A-law's largest step)."""
    return _g711_decode(data, _alaw_tables()[1])
