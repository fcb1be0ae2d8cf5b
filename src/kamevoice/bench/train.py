"""`kamevoice bench train`: training throughput (frames/s) and memory of the real training step.

Runs `kamevoice.train.loop.Trainer.train_step` (forward, KAME loss, backward,
clip, AdamW) on random shards of the preset's shape (speed does not depend on
token values), random weights, no checkpoint written. Frames/s counts real
frames of the global batch (all ranks) per wall-clock second of a step.

The 7B shape needs a GPU: `kamevoice bench train --preset moshi-7b --device cuda --lora`
(one GPU), or under `torchrun --nproc_per_node N -m kamevoice.cli bench train --preset moshi-7b
--device cuda --full --strategy fsdp` (bf16 mixed precision, activation checkpointing with
`--checkpointing`).
"""

from __future__ import annotations

import argparse
import statistics
import tempfile
import time
from pathlib import Path
from typing import Any

# Steps run before timing: the first ones allocate memory and pick kernels.
WARMUP_STEPS = 2


def register_train(group: argparse._SubParsersAction) -> None:
    """Add `train` to the `kamevoice bench` group."""
    p = group.add_parser(
        "train",
        help="training frames/s and memory for a model preset (random weights and data)",
        description="Time the full training step (forward, KAME loss, backward, AdamW) of a preset on "
        "random shards: frames/s and memory (RSS on CPU, max allocated on GPU). Under torchrun, all "
        "processes run it and rank 0 prints.",
    )
    p.add_argument("--preset", default="small", help="model shape: small (default) or moshi-7b")
    p.add_argument("--device", default="cpu", help="cpu, cuda, auto")
    mode = p.add_mutually_exclusive_group()
    mode.add_argument("--lora", action="store_true", help="LoRA adapters (rank --lora-rank) + oracle_emb")
    mode.add_argument("--full", action="store_true", help="full fine-tuning (the default)")
    p.add_argument("--lora-rank", type=int, default=128)
    p.add_argument("--seq-len", type=int, default=128, help="frames per sample (published: 512)")
    p.add_argument("--batch", type=int, default=1, help="global batch (samples per step)")
    p.add_argument("--micro-batch", type=int, default=1, help="samples per forward pass")
    p.add_argument("--steps", type=int, default=5, help="timed steps")
    p.add_argument("--strategy", default="auto", choices=("auto", "single", "ddp", "fsdp"))
    p.add_argument("--precision", default="auto", choices=("auto", "fp32", "bf16"))
    p.add_argument("--checkpointing", action="store_true", help="activation (gradient) checkpointing")
    p.add_argument("--json", metavar="FILE", nargs="?", const="-", help="write JSON (to FILE or stdout)")
    p.set_defaults(handler=run_train_bench)


def write_bench_shards(out: Path, lm_kwargs: dict[str, Any], items: int, frames: int, seed: int = 0) -> Path:
    """Random dialogues of the LM's shape: sparse text, random audio, one oracle event each."""
    import numpy as np

    from kamevoice.data.align import TokenizedOracle
    from kamevoice.data.shards import Example, ShardWriter
    from kamevoice.frontend.model import text_ids_for

    rng = np.random.default_rng(seed)
    k, card, vocab = lm_kwargs["dep_q"], lm_kwargs["card"], lm_kwargs["text_card"]
    writer = ShardWriter(out, per_shard=64)
    for i in range(items):
        text = np.full(frames, text_ids_for(lm_kwargs).pad, dtype=np.int32)  # most frames carry PAD
        words = rng.choice(frames, size=frames // 4, replace=False)
        text[words] = rng.integers(4, vocab, size=len(words))
        oracle = TokenizedOracle(frames // 4, tuple(int(t) for t in rng.integers(4, vocab, size=30)), 0)
        audio = rng.integers(0, card, size=(2, k, frames)).astype(np.int16)
        writer.add(Example(f"bench{i:04d}", text, audio[0], audio[1], [oracle]))
    writer.flush()
    return out


def bench_train(args: argparse.Namespace, workdir: Path) -> dict[str, Any]:
    """Build a Trainer on random shards and time `steps` optimiser steps after a warm-up."""
    import torch

    from kamevoice.frontend.presets import preset
    from kamevoice.train.config import parse_train_config
    from kamevoice.train.distributed import init_distributed, shutdown
    from kamevoice.train.logging import memory_mb
    from kamevoice.train.loop import Trainer

    lm_kwargs = preset(args.preset)
    ctx = init_distributed(args.device)
    try:
        # Every process writes the same (seeded) shards into its own temporary directory.
        shards = write_bench_shards(
            workdir / "shards", lm_kwargs, items=max(8, args.batch * 2), frames=args.seq_len
        )
        config = parse_train_config(
            {
                # The tokenizer is only copied into saved checkpoints; the bench saves none.
                "model": {
                    "lm_kwargs": lm_kwargs,
                    "tokenizer": "unused-by-bench.model",
                    "gradient_checkpointing": args.checkpointing,
                },
                "finetune": {"mode": "lora" if args.lora else "full", "lora_rank": args.lora_rank},
                "data": {"train": [str(shards)], "seq_len": args.seq_len},
                "optim": {"batch_size": args.batch, "micro_batch": args.micro_batch, "warmup_steps": 0},
                "run": {
                    "out_dir": str(workdir / "run"),
                    "device": str(ctx.device),
                    "strategy": args.strategy,
                    "precision": args.precision,
                    "resume": False,
                    "progress": False,
                },
            },
            "bench",
        )
        trainer = Trainer(config, ctx)
        times, frames = [], []
        for i in range(WARMUP_STEPS + args.steps):
            if ctx.device.type == "cuda":
                torch.cuda.synchronize(ctx.device)
            start = time.perf_counter()
            _, _, step_frames = trainer.train_step()
            if ctx.device.type == "cuda":
                torch.cuda.synchronize(ctx.device)
            if i >= WARMUP_STEPS:
                times.append(time.perf_counter() - start)
                frames.append(step_frames)
        median = statistics.median(times)
        return {
            "preset": args.preset,
            "mode": config.finetune.mode,
            "device": str(ctx.device),
            "world": ctx.world,
            "strategy": trainer.strategy,
            "bf16": trainer.bf16,
            "checkpointing": args.checkpointing,
            "params_m": round(trainer.params / 1e6, 1),
            "trainable_m": round(trainer.trainable / 1e6, 2),
            "batch": args.batch,
            "seq_len": args.seq_len,
            "steps": args.steps,
            "step_s_median": median,
            "frames_per_s": statistics.median(f / t for f, t in zip(frames, times, strict=True)),
            "mem_mb": memory_mb(ctx.device),
            "threads": torch.get_num_threads(),
            "torch": torch.__version__,
        }
    finally:
        shutdown(ctx)


def run_train_bench(args: argparse.Namespace) -> int:
    import os

    from rich.console import Console
    from rich.table import Table

    from kamevoice.frontend.device import resolve_device

    if args.preset == "moshi-7b" and resolve_device(args.device).type != "cuda":
        Console().print("moshi-7b: skipped: the 7B shape needs a GPU (--device cuda)")
        return 0
    with tempfile.TemporaryDirectory(prefix="kamevoice-bench-train-") as tmp:
        result = bench_train(args, Path(tmp))
    if os.environ.get("RANK", "0") != "0":
        return 0
    table = Table(title=f"kamevoice bench train ({result['device']}, torch {result['torch']})")
    columns = ("preset", "mode", "params M", "trained M", "B x T", "step s", "frames/s", "mem MB")
    for col in columns:
        table.add_column(col, justify="left" if col in ("preset", "mode") else "right", no_wrap=True)
    table.add_row(
        result["preset"],
        f"{result['mode']}/{result['strategy']}{'/bf16' if result['bf16'] else ''}",
        f"{result['params_m']}",
        f"{result['trainable_m']}",
        f"{result['batch']} x {result['seq_len']}",
        f"{result['step_s_median']:.3f}",
        f"{result['frames_per_s']:.0f}",
        f"{result['mem_mb']:.0f}",
    )
    console = Console()
    (console if console.is_terminal else Console(width=120)).print(table)  # no wrapping in logs
    if args.json:
        from kamevoice.bench.report import write_json

        write_json(result, args.json)
    return 0
