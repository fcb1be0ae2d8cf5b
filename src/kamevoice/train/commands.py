"""`kamevoice train CONFIG` (train or resume a run) and `kamevoice train plot RUN` (loss curves as PNG).

Many processes: `torchrun --nproc_per_node N -m kamevoice.cli train CONFIG`.
"""

from __future__ import annotations

import argparse
import os

PLOT = "plot"


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser(
        "train",
        help="fine-tune a KAME front-end on shards (or: train plot RUN)",
        description="Train or resume a run described by CONFIG (TOML or YAML; see configs/). "
        "`kamevoice train plot RUN` writes RUN/loss.png from RUN/log.jsonl. "
        "Under torchrun every process runs this same command.",
    )
    p.add_argument("target", metavar="CONFIG", help="training config file, or the word 'plot'")
    p.add_argument("run", nargs="?", metavar="RUN", help="with 'plot': the run directory")
    p.add_argument("--out", help="run directory (overrides run.out_dir); with 'plot': the PNG path")
    p.add_argument("--steps", type=int, help="total optimiser steps (overrides run.steps)")
    p.add_argument("--device", help="device (overrides run.device)")
    p.add_argument("--no-resume", action="store_true", help="ignore checkpoints already in the run directory")
    p.add_argument("--no-progress", action="store_true", help="no progress bar (log lines only)")
    p.set_defaults(handler=run_train)


def run_train(args: argparse.Namespace) -> int:
    if args.target == PLOT:
        from kamevoice.errors import ConfigError
        from kamevoice.train.plot import plot_run

        if not args.run:
            raise ConfigError("usage: kamevoice train plot RUN [--out FILE.png]")
        print(plot_run(args.run, args.out))
        return 0
    from kamevoice.train.config import load_train_config
    from kamevoice.train.loop import train

    overrides = {}
    if args.out:
        overrides["run__out_dir"] = args.out
    if args.steps is not None:
        overrides["run__steps"] = args.steps
    if args.device:
        overrides["run__device"] = args.device
    if args.no_resume:
        overrides["run__resume"] = False
    if args.no_progress:
        overrides["run__progress"] = False
    config = load_train_config(args.target, **overrides)
    result = train(config)
    if result.last_checkpoint is not None and os.environ.get("RANK", "0") == "0":
        print(f"step {result.step}: checkpoint {result.last_checkpoint}")
    return 0
