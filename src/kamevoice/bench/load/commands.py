"""`kamevoice bench serve` and `kamevoice bench tiny`: the same load bench with different options.

Each handler turns its command line into a `BenchStart` (settings and checkpoint), a
`LoadBenchOptions` and a `ReportOptions`, and hands them to `bench`; nothing else differs.
"""

from __future__ import annotations

import argparse
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal

from kamevoice.bench.load.options import STDOUT, LoadBenchOptions, ReportOptions, parse_client_counts
from kamevoice.bench.load.question import DEFAULT_QUESTION, kb_question


@dataclass(frozen=True)
class BenchStart:
    """What a load bench starts from: its settings, its checkpoint, its knowledge base (if chosen)."""

    settings: Any
    checkpoint: str
    kb: Path | None


def start_bench(preset: Literal["serve", "tiny"], args: argparse.Namespace) -> BenchStart:
    """Settings and checkpoint of a load bench, through the start-up path every command takes.

    "serve": the settled settings (the embedded KAME-tiny with its catalogue when no checkpoint
    is named; `--kb` chooses the knowledge base); "tiny": the same, with KAME-tiny's back-end
    over `--kb` (default: the embedded tiny knowledge base) for any tiny-shaped checkpoint.
    """
    from kamevoice.errors import ConfigError
    from kamevoice.startup import resolve, settings_from_args
    from kamevoice.tiny.defaults import tiny_back_end, tiny_knowledge_base

    kb_path = Path(args.kb) if args.kb else (tiny_knowledge_base() if preset == "tiny" else None)
    if kb_path is not None and not kb_path.is_file():
        raise ConfigError(f"--kb: {kb_path} does not exist")
    settings = resolve(settings_from_args(args))
    if preset == "tiny":
        settings = tiny_back_end(settings, kb_path)
    return BenchStart(settings, str(settings.frontend.checkpoint), kb_path)


def bench(settings, options: LoadBenchOptions, output: ReportOptions) -> int:
    """Load the front-end, run the load bench, report it; the exit code."""
    from kamevoice.bench.load.report import report
    from kamevoice.bench.load.run import load_bench_frontend, run_load_bench

    frontend = load_bench_frontend(settings, options)
    report(run_load_bench(frontend, settings, options), output)
    return 0


def serve_command(args: argparse.Namespace) -> int:
    """Handler of `kamevoice bench serve`: the settings' back-end; JSON and plot where asked."""
    start = start_bench("serve", args)
    options = LoadBenchOptions(
        checkpoint=start.checkpoint,
        client_counts=parse_client_counts(args.clients),
        seconds=args.seconds,
        question=args.question or DEFAULT_QUESTION,
        title="kamevoice bench serve",
        device=args.device,
        backend=not args.no_oracle,
        max_sessions=args.max_sessions,
    )
    output = ReportOptions(
        json=(args.json,) if args.json else (), plot=Path(args.plot) if args.plot else None
    )
    return bench(start.settings, options, output)


def tiny_command(args: argparse.Namespace) -> int:
    """Handler of `kamevoice bench tiny`: the tiny preset's sessions with STT and the knowledge base;
    OUT/bench.json, OUT/bench.png and a one-line summary."""
    start = start_bench("tiny", args)
    assert start.kb is not None  # the tiny preset always has one (the embedded KB by default)
    out = Path(args.out)
    options = LoadBenchOptions(
        checkpoint=start.checkpoint,
        client_counts=parse_client_counts(args.clients),
        seconds=args.seconds,
        question=args.question or kb_question(start.kb),
        title="kamevoice bench tiny",
        device=args.device,
        backend=not args.no_oracle,
    )
    output = ReportOptions(
        json=(str(out / "bench.json"), *((STDOUT,) if args.json else ())),
        plot=out / "bench.png",
        summary=True,
    )
    return bench(start.settings, options, output)
