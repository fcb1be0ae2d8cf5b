"""`kamevoice bench load`: how much memory loading a front-end checkpoint takes, and how long.

The benchmark writes a random-weight checkpoint of at least `size_gb` (Moshi's streams and
vocabularies on a 1024-wide trunk, as many layers as the size needs; published layout, in the
dtype it is loaded in), then loads it in a fresh child process through the real path
(`kamevoice.frontend.loading.load_frontend`: resolve, meta-device model, weights read straight
to the device, assigned). The child reports its resident memory before loading and its peak
while loading (`VmHWM` of its own address space, which starts at `exec`: `ru_maxrss` would
count the parent's memory at `fork`), so the figure is the load's alone. Target: peak increase
<= `PEAK_RATIO_TARGET` x the weights' size. On the CPU the loaded weights stay memory-mapped
from the file until first read; the child then reads every weight once and reports the
resident memory and peak again: the model's full footprint.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import tempfile
import time
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

# Loading may hold the weights once, plus a little: the bound on peak resident memory.
PEAK_RATIO_TARGET = 1.2
# The trunk the checkpoint is built on: Moshi's streams and vocabularies, 1024 wide (layers vary).
TRUNK: dict[str, Any] = {"dim": 1024, "num_heads": 16}
# Layers are added until the weights reach the asked size; a bound keeps a typo from filling a disk.
MAX_LAYERS = 64


@dataclass(frozen=True)
class LoadBenchOptions:
    """What `kamevoice bench load` builds and where it loads it."""

    size_gb: float = 1.1  # at least this many GiB of weights
    dtype: str = "float32"  # of the file and the loaded model (no conversion on the way)
    device: str = "cpu"
    work_dir: str | None = None  # where the checkpoint is written (None: a temporary folder)
    keep: bool = False  # leave the checkpoint on disk


@dataclass(frozen=True)
class LoadFigures:
    """What one load measured."""

    weights_bytes: int
    params: int
    layers: int
    dtype: str
    device: str
    load_s: float
    rss_before_mb: float
    rss_peak_mb: float
    rss_after_mb: float
    peak_increase_mb: float
    peak_ratio: float  # peak increase while loading / weights size
    target_ratio: float
    met: bool
    touched_peak_ratio: float  # peak increase until every weight has been read once / weights size
    gpu_peak_mb: float | None = None


def _lm_kwargs(layers: int) -> dict[str, Any]:
    from kamevoice.frontend.presets import preset

    return {**preset("small"), **TRUNK, "num_layers": layers}


def _dtype(name: str):
    import torch

    return {"float32": torch.float32, "bfloat16": torch.bfloat16, "float16": torch.float16}[name]


def build_checkpoint(out: Path, options: LoadBenchOptions) -> tuple[int, int, int]:
    """Write a random-weight checkpoint of at least `size_gb` GiB to `out`; (bytes, params, layers)."""
    import torch
    from safetensors.torch import save_file

    from kamevoice.frontend.checkpoint import CONFIG_NAME, build_lm, parse_config
    from kamevoice.tiny.defaults import tiny_checkpoint

    dtype = _dtype(options.dtype)
    itemsize = torch.empty((), dtype=dtype).element_size()
    for layers in range(1, MAX_LAYERS + 1):
        shapes = build_lm(_lm_kwargs(layers), device="meta", dtype=dtype).state_dict()
        params = sum(t.numel() for t in shapes.values())
        if params * itemsize >= options.size_gb * 2**30:
            break
    else:
        raise ValueError(f"{options.size_gb} GiB needs more than {MAX_LAYERS} layers")
    generator = torch.Generator().manual_seed(0)
    state = {k: (torch.randn(t.shape, generator=generator) * 0.02).to(dtype) for k, t in shapes.items()}
    out.mkdir(parents=True, exist_ok=True)
    save_file(state, str(out / "model.safetensors"))
    del state
    tokenizer = next(tiny_checkpoint().glob("*.model"))  # any SentencePiece model within text_card
    shutil.copyfile(tokenizer, out / tokenizer.name)
    config = {"moshi_name": "model.safetensors", "tokenizer_name": tokenizer.name, "mimi_name": ""}
    config.update(_lm_kwargs(layers))
    parse_config(config, "bench checkpoint")
    (out / CONFIG_NAME).write_text(json.dumps(config, indent=2) + "\n", encoding="utf-8")
    return (out / "model.safetensors").stat().st_size, params, layers


def _rss_mb() -> float:
    with open("/proc/self/statm") as f:
        return int(f.read().split()[1]) * os.sysconf("SC_PAGE_SIZE") / 2**20


def _peak_mb() -> float:
    """The peak resident memory of this process's address space (`VmHWM`), in MiB."""
    with open("/proc/self/status") as f:
        for line in f:
            if line.startswith("VmHWM:"):
                return int(line.split()[1]) / 1024
    raise RuntimeError("no VmHWM in /proc/self/status")


def measure_in_child(checkpoint: Path, dtype: str, device: str) -> dict[str, float]:
    """Load `checkpoint` in a fresh interpreter; its memory and time figures."""
    code = "from kamevoice.bench.checkpoint_load import child_main; child_main()"
    result = subprocess.run(
        [sys.executable, "-c", code, str(checkpoint), dtype, device],
        capture_output=True,
        text=True,
        check=False,
    )
    if result.returncode != 0:
        raise RuntimeError(f"the loading child failed:\n{result.stderr[-4000:]}")
    return json.loads(result.stdout.strip().splitlines()[-1])


def child_main() -> None:
    """The child's side: import, measure, load, measure, print one JSON line."""
    import gc

    import torch

    from kamevoice.frontend.loading import load_frontend

    checkpoint, dtype, device = sys.argv[1:4]
    gc.collect()
    before = _rss_mb()
    start = time.perf_counter()
    frontend = load_frontend(checkpoint, device=device, dtype=dtype, load_codec=False)
    seconds = time.perf_counter() - start
    peak, after = _peak_mb(), _rss_mb()
    assert next(frontend.model.parameters()).device.type == torch.device(device).type
    gpu = torch.cuda.max_memory_allocated() / 2**20 if torch.cuda.is_available() and device != "cpu" else None
    with torch.no_grad():  # read every weight once: mapped pages become resident
        checksum = sum(float(p.float().sum()) for p in frontend.model.parameters())
    figures = {"before": before, "peak": peak, "after": after, "seconds": seconds, "gpu": gpu,
               "touched_peak": _peak_mb(), "checksum": checksum}  # fmt: skip
    print(json.dumps(figures))


def run_load_bench(options: LoadBenchOptions) -> LoadFigures:
    """Build the checkpoint, load it in a child, return the figures (the checkpoint removed
    unless `keep`)."""
    work = Path(options.work_dir) if options.work_dir else Path(tempfile.mkdtemp(prefix="kamevoice-load-"))
    checkpoint = work / "checkpoint"
    try:
        size, params, layers = build_checkpoint(checkpoint, options)
        child = measure_in_child(checkpoint, options.dtype, options.device)
    finally:
        if not options.keep:
            shutil.rmtree(checkpoint, ignore_errors=True)
            if not options.work_dir:
                shutil.rmtree(work, ignore_errors=True)
    increase = max(0.0, child["peak"] - child["before"])
    ratio = increase * 2**20 / size
    return LoadFigures(
        weights_bytes=size,
        params=params,
        layers=layers,
        dtype=options.dtype,
        device=options.device,
        load_s=round(child["seconds"], 3),
        rss_before_mb=round(child["before"], 1),
        rss_peak_mb=round(child["peak"], 1),
        rss_after_mb=round(child["after"], 1),
        peak_increase_mb=round(increase, 1),
        peak_ratio=round(ratio, 3),
        target_ratio=PEAK_RATIO_TARGET,
        met=ratio <= PEAK_RATIO_TARGET,
        touched_peak_ratio=round(max(0.0, child["touched_peak"] - child["before"]) * 2**20 / size, 3),
        gpu_peak_mb=None if child["gpu"] is None else round(child["gpu"], 1),
    )


def report(figures: LoadFigures) -> str:
    """The figures as lines of text."""
    f = figures
    lines = [
        f"checkpoint: {f.weights_bytes / 2**30:.3f} GiB of {f.dtype} weights ({f.params / 1e6:.1f} M "
        f"parameters, {f.layers} layers), loaded on {f.device} in {f.load_s:.2f} s",
        f"resident memory: {f.rss_before_mb:.0f} MiB before, peak {f.rss_peak_mb:.0f} MiB, "
        f"{f.rss_after_mb:.0f} MiB after",
        f"peak increase: {f.peak_increase_mb:.0f} MiB = {f.peak_ratio:.3f} x the weights "
        f"(target <= {f.target_ratio} x: {'met' if f.met else 'NOT met'})",
        f"after reading every weight once: peak increase {f.touched_peak_ratio:.3f} x the weights",
    ]
    if f.gpu_peak_mb is not None:
        lines.append(f"GPU: peak {f.gpu_peak_mb:.0f} MiB allocated")
    return "\n".join(lines)


def as_json(figures: LoadFigures) -> dict[str, Any]:
    return asdict(figures)
