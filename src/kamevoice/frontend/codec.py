"""Audio codecs behind one small interface: PCM frames of 80 ms in, `[B, K]` tokens out, and back.

Mimi (from `moshi`) is the codec of the published models. The interface is
what the engine, the data pipeline and the benchmarks use, so a small CPU
codec for the tiny preset can stand in for it.
"""

from __future__ import annotations

import copy
from contextlib import ExitStack, contextmanager
from pathlib import Path
from typing import Protocol

import torch
from moshi.models import loaders
from moshi.models.compression import MimiModel

from kamevoice.errors import CheckpointError, InputError
from kamevoice.frontend.rows import carry_rows


class AudioCodec(Protocol):
    """Streaming audio tokenizer: `frame_size` samples <-> `num_codebooks` tokens per frame."""

    sample_rate: int
    frame_size: int
    num_codebooks: int
    cardinality: int

    def streaming(self, batch_size: int):
        """Context manager: stateful frame-by-frame encode/decode for `batch_size` streams."""
        ...

    def reset(self, mask: torch.Tensor) -> None:
        """Reset the streaming state of the rows where `mask` is True."""
        ...

    def resize(self, batch_size: int, moves: list[tuple[int, int]]) -> None:
        """While streaming: rebuild the state for `batch_size` rows, carrying row `old` to row `new`
        for each `(old, new)` in `moves`; the other rows start fresh."""
        ...

    def encode_frame(self, pcm: torch.Tensor) -> torch.Tensor:
        """`[B, 1, frame_size]` float32 -> `[B, K]` int64 (streaming)."""
        ...

    def decode_frame(self, codes: torch.Tensor) -> torch.Tensor:
        """`[B, K]` int64 -> `[B, 1, frame_size]` float32 (streaming)."""
        ...

    def encode(self, pcm: torch.Tensor) -> torch.Tensor:
        """Whole signals `[B, 1, T]` -> `[B, K, frames]` (not streaming)."""
        ...

    def decode(self, codes: torch.Tensor) -> torch.Tensor:
        """`[B, K, frames]` -> `[B, 1, frames * frame_size]` (not streaming)."""
        ...


# A reduced Mimi (10.6M parameters, random weights; docs/components.md): same interface and frame
# rate as the real one at ~1/5 of its CPU cost, for tests and loop benchmarks only.
REDUCED_MIMI_OVERRIDES = {"n_filters": 16, "num_layers": 2, "dim_feedforward": 512}


def mimi_config(reduced: bool = False) -> dict:
    """Moshi's Mimi configuration, optionally the reduced variant."""
    config = copy.deepcopy(loaders._mimi_config)
    if reduced:
        config["seanet"]["n_filters"] = REDUCED_MIMI_OVERRIDES["n_filters"]
        config["transformer"]["num_layers"] = REDUCED_MIMI_OVERRIDES["num_layers"]
        config["transformer"]["dim_feedforward"] = REDUCED_MIMI_OVERRIDES["dim_feedforward"]
    return config


class MimiCodec:
    """Kyutai's Mimi: 24 kHz mono, 12.5 frames/s, residual VQ with 2048-entry codebooks."""

    def __init__(self, model: MimiModel):
        self.model = model.eval()
        self.sample_rate = int(model.sample_rate)
        self.frame_size = int(model.frame_size)
        self.num_codebooks = int(model.num_codebooks)
        self.cardinality = int(model.cardinality)

    @classmethod
    def load(
        cls,
        weights: str | Path | None,
        num_codebooks: int = 8,
        device: str | torch.device = "cpu",
        reduced: bool = False,
        config: dict | None = None,
    ) -> MimiCodec:
        """Mimi with weights from a safetensors file (None: random), with moshi's or the given config."""
        config = config if config is not None else mimi_config(reduced)
        try:
            model = loaders.get_mimi(weights, config, device=device, num_codebooks=num_codebooks)
        except FileNotFoundError as exc:
            raise CheckpointError(f"codec weights {weights}: file is missing") from exc
        except KeyError as exc:
            raise CheckpointError(f"codec config: missing key {exc}") from exc
        except Exception as exc:
            if weights is None:
                raise
            raise CheckpointError(f"codec weights {weights}: cannot load as Mimi ({exc})") from exc
        return cls(model)

    @contextmanager
    def streaming(self, batch_size: int):
        self._stack = ExitStack()
        self._stack.enter_context(self.model.streaming(batch_size))
        try:
            yield self
        finally:
            self._stack.close()

    def reset(self, mask: torch.Tensor) -> None:
        self.model.reset_streaming(mask)

    def resize(self, batch_size: int, moves: list[tuple[int, int]]) -> None:
        before = self.model.get_streaming_state()
        self._stack.close()
        self._stack = ExitStack()
        self._stack.enter_context(self.model.streaming(batch_size))
        carry_rows(before, self.model.get_streaming_state(), moves)

    @torch.no_grad()
    def encode_frame(self, pcm: torch.Tensor) -> torch.Tensor:
        if pcm.dim() != 3 or pcm.shape[1] != 1 or pcm.shape[2] != self.frame_size:
            raise InputError(f"pcm frame: expected [B, 1, {self.frame_size}], got {tuple(pcm.shape)}")
        codes = self.model.encode(pcm.to(self._device, torch.float32))
        return codes[:, :, 0]

    @torch.no_grad()
    def decode_frame(self, codes: torch.Tensor) -> torch.Tensor:
        if codes.dim() != 2 or codes.shape[1] != self.num_codebooks:
            raise InputError(f"codes frame: expected [B, {self.num_codebooks}], got {tuple(codes.shape)}")
        return self.model.decode(codes[:, :, None].to(self._device))

    @torch.no_grad()
    def encode(self, pcm: torch.Tensor) -> torch.Tensor:
        if pcm.dim() != 3 or pcm.shape[1] != 1:
            raise InputError(f"pcm: expected [B, 1, T], got {tuple(pcm.shape)}")
        return self.model.encode(pcm.to(self._device, torch.float32))

    @torch.no_grad()
    def decode(self, codes: torch.Tensor) -> torch.Tensor:
        return self.model.decode(codes.to(self._device))

    @property
    def _device(self) -> torch.device:
        return next(self.model.parameters()).device
