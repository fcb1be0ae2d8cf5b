"""Codec 2 behind the `AudioCodec` interface: a CPU codec for the tiny preset (no training, no weights).

Codec 2 (David Rowe's low-rate speech codec, through `pycodec2`) codes 8 kHz
speech into a few parameters per 20 or 40 ms: voicing, pitch (Wo), energy and
the spectral envelope as line spectral pairs (LSPs). This module wraps it as
Mimi's stand-in: 24 kHz in and out, one 80 ms frame (1920 samples) = `K`
tokens of `2**bits_per_codebook` values, streaming, with per-row state.

Signal path of one frame (one row):

    24 kHz [1920] -> causal anti-alias FIR, keep every 3rd -> 8 kHz [640]
    -> codec2 encode (2 frames of 40 ms, or 4 of 20 ms) -> bits of each field
    -> bits reordered by importance -> K tokens            (decode: the reverse,
    then zero-stuffing x3 and the same FIR as interpolator -> 24 kHz [1920])

Bit layout: `kamevoice.frontend.codec2_layout` (why codebook 0 is the
"semantic" one, and what each codebook carries in every mode).

Modes 2400 and 1400 (predictive like 1200, more bits) and 700C are not
offered; 3200 and 1600 are, for comparison.
"""

from __future__ import annotations

import copy
from contextlib import contextmanager
from dataclasses import dataclass
from typing import Any

import numpy as np
import torch

from kamevoice.audio import float_to_int16, int16_to_float
from kamevoice.errors import ConfigError, InputError
from kamevoice.frontend.codec2_layout import DEFAULT_BITS_PER_CODEBOOK, MODE_FIELDS, FrameLayout
from kamevoice.runtime.clock import FRAME_SAMPLES, SAMPLE_RATE

__all__ = ["MODE_FIELDS", "Codec2Codec", "Codec2Options", "band_limit"]

# Codec 2 works on 8 kHz narrow-band speech.
CODEC2_RATE = 8_000
# 24 kHz / 8 kHz: integer resampling, no fractional phases.
RATE_RATIO = SAMPLE_RATE // CODEC2_RATE
# 8 kHz samples in one 80 ms frame.
NARROW_FRAME = FRAME_SAMPLES // RATE_RATIO
# Anti-alias / interpolation FIR at 24 kHz: 96 taps (32 per polyphase branch), Kaiser window:
# flat to 3 kHz, -6 dB at the cut-off, -33 dB at 4 kHz, below -73 dB from 4.2 kHz; its group
# delay is (96 - 1) / 2 samples = 2 ms, each way.
FIR_TAPS = 96
FIR_KAISER_BETA = 7.0
# Cut-off (-6 dB): 3.6 kHz, under the 4 kHz Nyquist of codec 2's rate.
FIR_CUTOFF_HZ = 3_600.0
# libcodec2 draws the phases of unvoiced harmonics from one process-wide LCG (`codec2_rand`,
# state in a static `next`, initially 1), so decoded audio depends on every decode before it.
# For the pinned build, the offsets of `codec2_rand` and `next` in the library (from its
# symbol table, `nm`) let each stream keep its own state: decoding becomes deterministic per row.
CODEC2_RAND_SEED = 1
KNOWN_LIBCODEC2_BUILDS = {"libcodec2-30fce438.so.1.2": (0x11FF0, 0x11EBA0)}  # pycodec2 4.1.1
# codec2_rand(): next = next * 1103515245 + 12345; return (next / 65536) % 32768.
_LCG_MUL, _LCG_ADD = 1103515245, 12345
# The default mode: by far the best PocketSphinx word accuracy of the modes offered (bench codec).
DEFAULT_MODE = 1200


@dataclass(frozen=True)
class Codec2Options:
    """Which codec 2 mode, and how its bits are folded into tokens."""

    mode: int = DEFAULT_MODE
    bits_per_codebook: int | None = None  # card = 2 ** bits_per_codebook; None: the mode's default

    @property
    def token_bits(self) -> int:
        return self.bits_per_codebook or DEFAULT_BITS_PER_CODEBOOK.get(self.mode, 8)

    def check(self) -> None:
        if self.mode not in MODE_FIELDS:
            raise ConfigError(
                f"codec2 mode {self.mode}: not supported; choose one of {sorted(MODE_FIELDS)} "
                "(2400 and 1400 quantise like 1200 with more bits; 700C was the least intelligible)"
            )
        if not 1 <= self.token_bits <= 16:
            raise ConfigError(f"codec2 bits_per_codebook {self.token_bits}: expected 1-16")


def _lowpass(taps: int, cutoff_hz: float, rate: int, beta: float) -> np.ndarray:
    """Kaiser-windowed sinc low-pass with unit DC gain."""
    n = np.arange(taps) - (taps - 1) / 2
    kernel = np.sinc(2 * cutoff_hz / rate * n) * np.kaiser(taps, beta)
    return (kernel / kernel.sum()).astype(np.float32)


class _Decimator:
    """24 kHz -> 8 kHz, causal FIR then every 3rd sample; `[B, 1920]` -> `[B, 640]` with per-row history."""

    def __init__(self, batch: int, kernel: np.ndarray):
        self.reversed = kernel[::-1].copy()
        self.history = np.zeros((batch, len(kernel) - 1), dtype=np.float32)

    def __call__(self, x: np.ndarray) -> np.ndarray:
        buf = np.concatenate([self.history, x], axis=1)
        self.history = buf[:, -self.history.shape[1] :].copy()
        windows = np.lib.stride_tricks.sliding_window_view(buf, len(self.reversed), axis=1)
        return windows[:, RATE_RATIO - 1 :: RATE_RATIO] @ self.reversed

    def reset(self, rows: np.ndarray) -> None:
        self.history[rows] = 0.0


class _Interpolator:
    """8 kHz -> 24 kHz, zero-stuffing x3 then the same FIR (gain 3), as 3 polyphase branches."""

    def __init__(self, batch: int, kernel: np.ndarray):
        branch = len(kernel) // RATE_RATIO
        # Output 3n + p = sum_k x[n - k] * 3 h[3k + p]: branch p's taps, newest sample last.
        self.branches = (RATE_RATIO * kernel.reshape(branch, RATE_RATIO).T[:, ::-1]).copy()  # [3, branch]
        self.history = np.zeros((batch, branch - 1), dtype=np.float32)

    def __call__(self, x: np.ndarray) -> np.ndarray:
        buf = np.concatenate([self.history, x], axis=1)
        self.history = buf[:, -self.history.shape[1] :].copy()
        windows = np.lib.stride_tricks.sliding_window_view(buf, self.branches.shape[1], axis=1)
        out = windows @ self.branches.T  # [B, n, 3]
        return out.reshape(len(x), -1)

    def reset(self, rows: np.ndarray) -> None:
        self.history[rows] = 0.0


class _PhaseRandom:
    """Access to libcodec2's random-phase state, to give every stream its own (see CODEC2_RAND_SEED).

    `available` is False for a libcodec2 build not in KNOWN_LIBCODEC2_BUILDS, or if a check
    of the located state fails: decoding then still works, only not bit-reproducibly. Two
    threads decoding codec 2 at once could interleave their swaps: that too costs only
    reproducibility (the engine decodes on its one thread).
    """

    def __init__(self, pycodec2_module):
        import ctypes
        from pathlib import Path

        self._cell = None
        libs = Path(pycodec2_module.__file__).parent.parent / "pycodec2.libs"
        for name, (rand_offset, state_offset) in KNOWN_LIBCODEC2_BUILDS.items():
            if not (libs / name).is_file():
                continue
            lib = ctypes.CDLL(str(libs / name))  # the library pycodec2 already loaded
            rand = lib.codec2_rand
            rand.restype = ctypes.c_int
            base = ctypes.cast(rand, ctypes.c_void_p).value - rand_offset
            cell = ctypes.c_ulong.from_address(base + state_offset)
            saved = cell.value
            cell.value = CODEC2_RAND_SEED
            drawn = rand()
            ok = (
                cell.value == CODEC2_RAND_SEED * _LCG_MUL + _LCG_ADD
                and drawn == (cell.value // 65536) % 32768
            )
            cell.value = saved
            if ok:
                self._cell = cell

    @property
    def available(self) -> bool:
        return self._cell is not None

    def swap(self, state: int) -> int:
        """Install `state`; returns the one it replaced."""
        if self._cell is None:
            return state
        previous = self._cell.value
        self._cell.value = state
        return previous


def band_limit(audio: np.ndarray) -> np.ndarray:
    """The codec's resampling alone, 24 kHz -> 8 kHz -> 24 kHz (no coding): what narrow band costs."""
    kernel = _lowpass(FIR_TAPS, FIR_CUTOFF_HZ, SAMPLE_RATE, FIR_KAISER_BETA)
    frames = -(-len(audio) // FRAME_SAMPLES)
    x = np.zeros((1, frames * FRAME_SAMPLES), dtype=np.float32)
    x[0, : len(audio)] = audio
    down, up = _Decimator(1, kernel), _Interpolator(1, kernel)
    out = [up(down(x[:, f * FRAME_SAMPLES : (f + 1) * FRAME_SAMPLES])) for f in range(frames)]
    return np.concatenate(out, axis=1)[0, : len(audio)].astype(np.float32)


class _Streams:
    """Streaming state of `batch` rows: a codec 2 encoder and decoder and the resamplers' history."""

    def __init__(self, codec: Codec2Codec, batch: int):
        self.codec = codec
        self.encoders = [codec._new_codec2() for _ in range(batch)]
        self.decoders = [codec._new_codec2() for _ in range(batch)]
        self.down = _Decimator(batch, codec._kernel)
        self.up = _Interpolator(batch, codec._kernel)
        self.phase_state = [CODEC2_RAND_SEED] * batch  # each row's libcodec2 random-phase state
        self.batch = batch

    def resized(self, batch: int, moves: list[tuple[int, int]]) -> _Streams:
        """A state for `batch` rows carrying row `old` to row `new` for each `(old, new)` of `moves`."""
        new = _Streams(self.codec, batch)
        for old, row in moves:
            new.encoders[row], new.decoders[row] = self.encoders[old], self.decoders[old]
            new.phase_state[row] = self.phase_state[old]
            new.down.history[row] = self.down.history[old]
            new.up.history[row] = self.up.history[old]
        return new

    def reset(self, rows: np.ndarray) -> None:
        for r in rows:
            self.encoders[r] = self.codec._new_codec2()
            self.decoders[r] = self.codec._new_codec2()
            self.phase_state[r] = CODEC2_RAND_SEED
        self.down.reset(rows)
        self.up.reset(rows)

    def encode(self, pcm: np.ndarray) -> np.ndarray:
        """`[B, 1920]` float32 -> `[B, K]` int64."""
        narrow = self.down(pcm)
        ints = float_to_int16(narrow)
        layout, n = self.codec.layout, self.codec._c2_samples
        packed = bytearray()
        for row, encoder in enumerate(self.encoders):
            for t in range(layout.c2_frames):
                packed += encoder.encode(ints[row, t * n : (t + 1) * n])
        stream = np.unpackbits(np.frombuffer(bytes(packed), dtype=np.uint8).reshape(self.batch, -1), axis=1)
        return layout.to_tokens(stream)

    def decode(self, tokens: np.ndarray) -> np.ndarray:
        """`[B, K]` int64 -> `[B, 1920]` float32."""
        layout = self.codec.layout
        packed = np.packbits(layout.from_tokens(tokens), axis=1)
        size = layout.bytes_per_c2_frame
        narrow = np.empty((self.batch, NARROW_FRAME), dtype=np.float32)
        random = self.codec._phase_random
        for row, decoder in enumerate(self.decoders):
            outside = random.swap(self.phase_state[row])
            parts = [
                decoder.decode(packed[row, t * size : (t + 1) * size].tobytes())
                for t in range(layout.c2_frames)
            ]
            self.phase_state[row] = random.swap(outside)
            narrow[row] = int16_to_float(np.concatenate(parts))
        return self.up(narrow).astype(np.float32)


class Codec2Codec:
    """Codec 2 as an `AudioCodec`: 24 kHz, 12.5 frames/s, `num_codebooks` tokens of `cardinality` values.

    `streaming(batch)` holds one codec 2 encoder, one decoder and the
    resamplers' history per row; `reset(mask)` renews the rows of `mask`.
    `encode` / `decode` of whole signals run the same frame path with a fresh
    state, so they equal a streaming run from a reset state, frame for frame.
    A deep copy (the engine keeps one for encoding, one for decoding) copies
    the options only: streaming state is never shared.
    """

    def __init__(self, options: Codec2Options = Codec2Options()):
        options.check()
        try:
            import pycodec2  # imported here: the Mimi-only paths must not need it
        except ImportError as exc:
            raise ConfigError(
                "the codec2 codec needs the pycodec2 package: pip install pycodec2==4.1.1"
            ) from exc

        self._pycodec2 = pycodec2
        self._phase_random = _PhaseRandom(pycodec2)
        self.options = options
        probe = self._new_codec2()
        self._c2_samples = int(probe.samples_per_frame())
        fields = self.layout_fields = MODE_FIELDS[options.mode]
        if sum(f.bits for f in fields) != int(probe.bits_per_frame()):
            raise ConfigError(
                f"codec2 mode {options.mode}: libcodec2 reports {probe.bits_per_frame()} bits per frame, "
                f"this layout expects {sum(f.bits for f in fields)}"
            )
        self.layout = FrameLayout(
            fields, options.token_bits, NARROW_FRAME // self._c2_samples, int(probe.bytes_per_frame())
        )
        self.sample_rate = SAMPLE_RATE
        self.frame_size = FRAME_SAMPLES
        self.num_codebooks = self.layout.num_codebooks
        self.cardinality = 1 << options.token_bits
        self._kernel = _lowpass(FIR_TAPS, FIR_CUTOFF_HZ, SAMPLE_RATE, FIR_KAISER_BETA)
        self._state: _Streams | None = None

    @classmethod
    def load(cls, config: dict[str, Any] | None = None) -> Codec2Codec:
        """From a checkpoint's `kamevoice` section, e.g. `{"codec": "codec2", "codec_mode": 1200}`.

        Keys: `codec_mode` (default 1200), `codec_bits_per_codebook` (default: the mode's);
        `codec` itself is checked by the caller.
        """
        config = dict(config or {})
        try:
            mode = int(config.get("codec_mode", DEFAULT_MODE))
            bits = config.get("codec_bits_per_codebook")
            bits = None if bits is None else int(bits)
        except (TypeError, ValueError) as exc:
            raise ConfigError(
                f"codec2 config {config}: codec_mode and codec_bits_per_codebook are integers"
            ) from exc
        return cls(Codec2Options(mode=mode, bits_per_codebook=bits))

    @property
    def bitrate(self) -> float:
        """Bits per second that the tokens carry (codec 2's rate; padding bits excluded)."""
        return self.layout.bits * SAMPLE_RATE / FRAME_SAMPLES

    def layout_table(self) -> list[list[str]]:
        """What each codebook carries, bit by bit (most significant first)."""
        return self.layout.describe()

    def __deepcopy__(self, memo: dict) -> Codec2Codec:
        return type(self)(copy.deepcopy(self.options, memo))

    def _new_codec2(self):
        c2 = self._pycodec2.Codec2(self.options.mode)
        c2.set_natural_or_gray(0)  # natural binary: an index's top bits are its coarse value
        return c2

    # -- the AudioCodec interface ------------------------------------------------------------

    @contextmanager
    def streaming(self, batch_size: int):
        if self._state is not None:
            raise InputError("codec2: already streaming (use a copy of the codec for a second stream)")
        if batch_size < 1:
            raise InputError(f"codec2: batch size must be >= 1, got {batch_size}")
        self._state = _Streams(self, batch_size)
        try:
            yield self
        finally:
            self._state = None

    def reset(self, mask: torch.Tensor) -> None:
        state = self._streaming_state()
        mask = torch.as_tensor(mask)
        if mask.dim() != 1 or mask.shape[0] != state.batch:
            raise InputError(
                f"codec2 reset: expected a mask of shape [{state.batch}], got {tuple(mask.shape)}"
            )
        state.reset(np.flatnonzero(mask.cpu().numpy()))

    def resize(self, batch_size: int, moves: list[tuple[int, int]]) -> None:
        self._state = self._streaming_state().resized(batch_size, moves)

    def encode_frame(self, pcm: torch.Tensor) -> torch.Tensor:
        state = self._streaming_state()
        self._check_pcm(pcm, frame=True, batch=state.batch)
        return torch.from_numpy(state.encode(self._as_numpy(pcm)[:, 0]))

    def decode_frame(self, codes: torch.Tensor) -> torch.Tensor:
        state = self._streaming_state()
        if codes.dim() != 2 or codes.shape[0] != state.batch or not 1 <= codes.shape[1] <= self.num_codebooks:
            raise InputError(
                f"codes frame: expected [{state.batch}, k <= {self.num_codebooks}], got {tuple(codes.shape)}"
            )
        return torch.from_numpy(state.decode(self._check_codes(codes)))[:, None]

    def encode(self, pcm: torch.Tensor) -> torch.Tensor:
        """Whole signals `[B, 1, T]`; the last frame is zero-padded to 1920 samples."""
        self._check_pcm(pcm, frame=False)
        audio = self._as_numpy(pcm)[:, 0]
        frames = -(-audio.shape[1] // self.frame_size)
        padded = np.zeros((len(audio), frames * self.frame_size), dtype=np.float32)
        padded[:, : audio.shape[1]] = audio
        state = _Streams(self, len(audio))
        codes = [
            state.encode(padded[:, f * self.frame_size : (f + 1) * self.frame_size]) for f in range(frames)
        ]
        return (
            torch.from_numpy(np.stack(codes, axis=2))
            if codes
            else torch.zeros(len(audio), self.num_codebooks, 0, dtype=torch.int64)
        )

    def decode(self, codes: torch.Tensor) -> torch.Tensor:
        """`[B, k <= K, frames]`: missing trailing codebooks decode as mid-interval values."""
        if codes.dim() != 3 or not 1 <= codes.shape[1] <= self.num_codebooks:
            raise InputError(
                f"codes: expected [B, k <= {self.num_codebooks}, frames], got {tuple(codes.shape)}"
            )
        tokens = self._check_codes(codes)
        state = _Streams(self, tokens.shape[0])
        pcm = [state.decode(tokens[:, :, f]) for f in range(tokens.shape[2])]
        out = np.concatenate(pcm, axis=1) if pcm else np.zeros((tokens.shape[0], 0), dtype=np.float32)
        return torch.from_numpy(out)[:, None]

    # -- checks --------------------------------------------------------------------------------

    def _streaming_state(self) -> _Streams:
        if self._state is None:
            raise InputError("codec2: frame calls need `with codec.streaming(batch):` first")
        return self._state

    def _check_pcm(self, pcm: torch.Tensor, frame: bool, batch: int | None = None) -> None:
        if not isinstance(pcm, torch.Tensor) or pcm.dim() != 3 or pcm.shape[1] != 1:
            shape = tuple(pcm.shape) if isinstance(pcm, torch.Tensor) else type(pcm).__name__
            raise InputError(f"pcm: expected [B, 1, {self.frame_size if frame else 'T'}], got {shape}")
        if frame and (pcm.shape[2] != self.frame_size or pcm.shape[0] != batch):
            raise InputError(f"pcm frame: expected [{batch}, 1, {self.frame_size}], got {tuple(pcm.shape)}")
        if not pcm.dtype.is_floating_point:
            raise InputError(f"pcm: expected float samples in [-1, 1], got {pcm.dtype}")
        if not bool(torch.isfinite(pcm).all()):
            raise InputError("pcm: contains NaN or infinite samples")

    def _check_codes(self, codes: torch.Tensor) -> np.ndarray:
        if codes.dtype.is_floating_point or codes.dtype == torch.bool:
            raise InputError(f"codes: expected integer token ids, got {codes.dtype}")
        tokens = codes.detach().cpu().numpy().astype(np.int64)
        if tokens.size and (tokens.min() < 0 or tokens.max() >= self.cardinality):
            raise InputError(
                f"codes: token ids must lie in [0, {self.cardinality}), got {tokens.min()}..{tokens.max()}"
            )
        return tokens

    @staticmethod
    def _as_numpy(pcm: torch.Tensor) -> np.ndarray:
        return pcm.detach().to("cpu", torch.float32).numpy()
