"""`kamevoice tiny ...`: build KAME-tiny from nothing (data, tokenizer, training, checkpoint).

Registration imports nothing heavy; the handler imports the build when it runs.
"""

from __future__ import annotations

import argparse
from pathlib import Path


def register(subparsers: argparse._SubParsersAction) -> None:
    """Add the `tiny` command group."""
    from kamevoice.cli import add_group
    from kamevoice.tiny.build import BuildOptions  # light: the build's heavy imports are lazy

    sub = add_group(subparsers, "tiny", "KAME-tiny: a CPU front-end trained here, end to end")
    p = sub.add_parser(
        "build",
        help="invented-facts KB -> tokenizer -> spoken dialogues -> shards -> training -> checkpoint",
        description="Build KAME-tiny in OUT_DIR, resumably: rerun the same command to continue; "
        "finished stages are skipped (OUT_DIR/stages.json). Prints each stage's wall time and writes "
        "OUT_DIR/summary.json; the checkpoint lands in OUT_DIR/checkpoint.",
    )
    p.add_argument("out", type=Path, metavar="OUT_DIR")
    p.add_argument(
        "--facts",
        type=int,
        default=BuildOptions.facts,
        help=f"invented facts in the knowledge base (default {BuildOptions.facts})",
    )
    p.add_argument(
        "--dialogues",
        type=int,
        default=BuildOptions.dialogues,
        help=f"training dialogues (default {BuildOptions.dialogues})",
    )
    p.add_argument("--train-minutes", type=float, default=60.0, metavar="M",
                   help="wall-time budget of the training stage (default 60)")  # fmt: skip
    p.add_argument("--train-steps", type=int, default=None, metavar="N",
                   help="train exactly N steps (still stopped by --train-minutes) instead of sizing the "
                   "run to the budget")  # fmt: skip
    p.add_argument("--seed", type=int, default=0, help="seed of every random choice (default 0)")
    p.add_argument("--workers", type=int, default=2, help="worker processes for synth/oracles/shards")
    p.add_argument("--progress", action="store_true", help="progress bars")
    p.set_defaults(handler=_build)

    p = sub.add_parser(
        "ship",
        help="copy a finished build's checkpoint, knowledge base and held-out questions into the package",
        description="Replace the embedded KAME-tiny (kamevoice/assets/tiny: the default model of serve, "
        "run, eval and the tests) with BUILD_DIR's results. For maintainers: commit the result.",
    )
    p.add_argument("build", type=Path, metavar="BUILD_DIR")
    p.add_argument("--into", type=Path, default=None, help="destination (default: the package's assets/tiny)")
    p.set_defaults(handler=_ship)

    p = sub.add_parser(
        "value-tokens",
        help="teacher-forced accuracy on answer value tokens (numbers, code letters), oracle on and off",
        description="Score CHECKPOINT's greedy text prediction on the number words and code letters of "
        "recorded dialogues (a build's shards/valid: held-out facts), with their oracle and with every "
        "frame PAD: whether facts travel from the oracle to the text stream (kamevoice.tiny.value_tokens). "
        "Without SHARDS_DIR: on text-only oracle copy episodes over the knowledge base's held-out facts.",
    )
    p.add_argument("checkpoint", metavar="CHECKPOINT")
    p.add_argument("shards", type=Path, metavar="SHARDS_DIR", nargs="?", default=None)
    p.add_argument(
        "--samples", type=int, default=None, help="samples scored (default 48 dialogues, 24 episodes)"
    )
    p.add_argument("--kb", type=Path, default=None,
                   help="without SHARDS_DIR: the knowledge base (default: the embedded one)")  # fmt: skip
    p.set_defaults(handler=_value_tokens)


def _build(args: argparse.Namespace) -> int:
    import json

    from kamevoice.errors import ConfigError
    from kamevoice.tiny.build import BuildOptions, TinyBuild

    if args.facts < 2 or args.dialogues < 1 or args.train_minutes <= 0:
        raise ConfigError(
            "--facts must be at least 2 (one is held out), --dialogues 1, --train-minutes above 0"
        )
    options = BuildOptions(
        facts=args.facts, dialogues=args.dialogues, train_minutes=args.train_minutes, seed=args.seed,
        workers=max(1, args.workers), train_steps=args.train_steps, progress=args.progress,
    )  # fmt: skip
    summary = TinyBuild(args.out, options).run()
    publish = summary["stages"]["publish"]
    print(f"checkpoint: {summary['checkpoint']} ({publish['size_mb']} MB, step {publish['train_step']})")
    print("stage wall times (s): " + json.dumps({k: v["seconds"] for k, v in summary["stages"].items()}))
    print(f"summary written to {args.out / 'summary.json'}")
    return 0


def _ship(args: argparse.Namespace) -> int:
    from kamevoice.tiny.defaults import TINY_DIR
    from kamevoice.tiny.ship import ship_build

    dest = args.into or TINY_DIR
    info = ship_build(args.build, dest)
    print(f"shipped {args.build} -> {dest} (checkpoint {info['checkpoint_mb']} MB)")
    return 0


def _value_tokens(args: argparse.Namespace) -> int:
    import json

    from kamevoice.tiny.value_tokens import DEFAULT_COPY_SAMPLES, DEFAULT_SAMPLES, measure, measure_copy

    if args.shards is not None:
        result = measure(args.checkpoint, args.shards, args.samples or DEFAULT_SAMPLES)
    else:
        from kamevoice.tiny.defaults import tiny_knowledge_base

        kb = args.kb or tiny_knowledge_base()
        result = measure_copy(args.checkpoint, kb, args.samples or DEFAULT_COPY_SAMPLES)
    scored_on = "dialogues" if args.shards else "copy episodes"
    print(json.dumps({"scored_on": scored_on, **result.as_dict()}, indent=2))
    return 0
