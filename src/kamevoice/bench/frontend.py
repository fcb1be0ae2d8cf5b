"""`kamevoice bench frontend`: per-step time of the batched generator and of streaming Mimi.

Random weights (speed does not depend on their values). Figures are printed
as a table and, with `--json`, as JSON; the 80 ms frame budget is the bar
for real time.
"""

from __future__ import annotations

import gc
import statistics
import time
from dataclasses import asdict, dataclass
from typing import Any

import torch

from kamevoice.runtime.clock import FRAME_SECONDS

# Steps discarded before timing: first calls allocate caches and pick kernels.
WARMUP_STEPS = 3


@dataclass
class StepTiming:
    """Step-time figures of one (model, batch) configuration, in milliseconds."""

    name: str
    batch: int
    steps: int
    median_ms: float
    p99_ms: float
    mean_ms: float
    realtime_factor: float  # frame budget / median step: > 1 keeps up with real time
    params_m: float | None = None
    device: str = "cpu"
    dtype: str = "float32"


def _percentile(values: list[float], q: float) -> float:
    ordered = sorted(values)
    index = min(len(ordered) - 1, max(0, round(q * (len(ordered) - 1))))
    return ordered[index]


def _timing(name: str, batch: int, samples: list[float], **extra: Any) -> StepTiming:
    median = statistics.median(samples)
    return StepTiming(
        name=name,
        batch=batch,
        steps=len(samples),
        median_ms=median * 1e3,
        p99_ms=_percentile(samples, 0.99) * 1e3,
        mean_ms=statistics.fmean(samples) * 1e3,
        realtime_factor=FRAME_SECONDS / median,
        **extra,
    )


def _sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def bench_generator(
    preset_name: str,
    batch_sizes: list[int],
    steps: int,
    device: torch.device,
    dtype: torch.dtype,
    progress=None,
) -> list[StepTiming]:
    """Time `BatchedGenerator.step` with every slot active, for each batch size."""
    from kamevoice.frontend.checkpoint import build_lm
    from kamevoice.frontend.generator import BatchedGenerator
    from kamevoice.frontend.presets import preset
    from kamevoice.frontend.sampling import SamplingOptions

    torch.manual_seed(0)
    model = build_lm(preset(preset_name), device=device, dtype=dtype).eval()
    params = sum(p.numel() for p in model.parameters()) / 1e6
    results = []
    for batch in batch_sizes:
        generator = BatchedGenerator(model, batch, SamplingOptions())
        samples: list[float] = []
        with generator:
            handles = [generator.start() for _ in range(batch)]
            for i, h in enumerate(handles):  # an oracle in flight, as in real use
                generator.begin_oracle(h)
                generator.feed_oracle(h, [(100 + i + k) % model.text_card for k in range(3)])
            user = torch.randint(0, model.card, (batch, generator.n_user), device=device)
            for step in range(WARMUP_STEPS + steps):
                _sync(device)
                t0 = time.perf_counter()
                generator.step(user)
                _sync(device)
                if step >= WARMUP_STEPS:
                    samples.append(time.perf_counter() - t0)
                if progress is not None:
                    progress()
        results.append(
            _timing(
                preset_name, batch, samples, params_m=round(params, 1), device=str(device), dtype=str(dtype)
            )
        )
        del generator
        gc.collect()
    del model
    gc.collect()
    if device.type == "cuda":
        torch.cuda.empty_cache()
    return results


def bench_codec(reduced: bool, steps: int, device: torch.device, progress=None) -> StepTiming:
    """Time one streaming Mimi frame (encode + decode of 80 ms) at batch 1."""
    from kamevoice.frontend.codec import MimiCodec

    torch.manual_seed(0)
    codec = MimiCodec.load(None, device=device, reduced=reduced)
    params = sum(p.numel() for p in codec.model.parameters()) / 1e6
    pcm = 0.1 * torch.randn(1, 1, codec.frame_size, device=device)
    samples: list[float] = []
    with codec.streaming(1):
        for step in range(WARMUP_STEPS + steps):
            _sync(device)
            t0 = time.perf_counter()
            codec.decode_frame(codec.encode_frame(pcm))
            _sync(device)
            if step >= WARMUP_STEPS:
                samples.append(time.perf_counter() - t0)
            if progress is not None:
                progress()
    name = "mimi-reduced" if reduced else "mimi"
    return _timing(name, 1, samples, params_m=round(params, 1), device=str(device), dtype="torch.float32")


def as_rows(results: list[StepTiming]) -> list[dict[str, Any]]:
    return [asdict(r) for r in results]
