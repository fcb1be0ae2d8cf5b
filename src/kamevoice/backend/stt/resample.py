"""Streaming sample-rate conversion with a polyphase windowed-sinc filter (numpy only).

Audio arrives in chunks of any length, so the converter keeps the input tail
it still needs and a running output position: converting a signal in pieces
gives the same samples as converting it whole (up to float rounding), with no
clicks at chunk edges. The filter is centred (zero delay): each output sample
waits for `half_taps` input samples of look-ahead, under 1 ms at every
supported rate, and `flush()` pads the end with zeros.
"""

from __future__ import annotations

from math import gcd

import numpy as np

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
    """Convert a whole mono signal at once (the streaming converter, run over one chunk)."""
    conv = StreamResampler(in_rate, out_rate)
    return np.concatenate([conv.process(x), conv.flush()])
