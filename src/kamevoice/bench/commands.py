"""`kamevoice bench ...`: benchmarks that print figures (speed and memory targets live here, not in tests)."""

from __future__ import annotations

import argparse

from kamevoice.cli import add_group
from kamevoice.frontend.flags import add_frontend_flags

# 7B weights need ~15 GB in bf16: on a CPU machine (24 GB, no GPU) the run would swap, not measure.
SEVEN_B_NEEDS_GPU = "skipped: the 7B shape needs a GPU (about 15 GB of bf16 weights)"


def register(sub: argparse._SubParsersAction) -> None:
    group = add_group(sub, "bench", "benchmarks that print figures")
    p = group.add_parser(
        "frontend",
        help="per-step time of the batched generator and streaming Mimi frame time",
        description="Per-step time (median, p99) of the batched streaming generator for model presets "
        "at several batch sizes, and the streaming Mimi frame time. Random weights.",
    )
    p.add_argument(
        "--presets", default="small,moshi-7b", help="comma-separated presets (small, moshi-7b, fixture)"
    )
    p.add_argument("--batch", default="1,4,16", help="comma-separated batch sizes")
    p.add_argument("--steps", type=int, default=30, help="timed steps per configuration")
    p.add_argument("--device", default="auto", help="auto, cpu, cuda")
    p.add_argument("--dtype", default="auto", help="auto (bf16 on GPU, fp32 on CPU), float32, bfloat16")
    p.add_argument("--no-codec", action="store_true", help="skip the Mimi frame benchmark")
    p.add_argument("--json", metavar="FILE", nargs="?", const="-", help="write JSON (to FILE or stdout)")
    p.set_defaults(handler=run_frontend)

    s = group.add_parser(
        "serve",
        help="N simulated Opus clients against a real server: step time, overruns, latency, memory",
        description="Start a server in-process on loopback and drive N real-time Opus clients (the "
        "question speech in a loop) for SECONDS per N; print step-time percentiles, overruns, the "
        "latency the system adds to model audio, and memory.",
    )
    add_frontend_flags(s)
    s.add_argument("--clients", default="1,2,4,8", help="comma-separated client counts")
    s.add_argument("--seconds", type=float, default=10.0, help="seconds of talking per client count")
    s.add_argument("--no-oracle", action="store_true", help="front-end alone: no STT, no LLM")
    s.add_argument("--kb", metavar="FILE", help="knowledge base of the back-end (default: settings)")
    s.add_argument("--question", help="what the clients say (default: a shop-opening question)")
    s.add_argument("--json", metavar="FILE", nargs="?", const="-", help="write JSON (to FILE or stdout)")
    s.add_argument("--plot", metavar="PNG", help="draw step time and real-time factors against sessions")
    s.add_argument("--max-sessions", type=int, default=None,
                   help="the server's capacity in each round (default: its client count)")  # fmt: skip
    s.set_defaults(handler=run_serve)

    t = group.add_parser(
        "tiny",
        help="KAME-tiny sessions (codec, model, STT, knowledge base) on this CPU: RTF, sessions in real time",
        description="The serve benchmark for the tiny preset: the embedded KAME-tiny (or --checkpoint) with "
        "its back-end on (STT child process per session, knowledge base over the tiny KB). Reports the "
        "real-time factor of one session (engine step / 80 ms; CPU of every part, STT children included, "
        "per second of audio) and how many concurrent sessions keep real time. Writes OUT/bench.json "
        "and OUT/bench.png.",
    )
    add_frontend_flags(t, device="cpu")
    t.add_argument("--kb", metavar="FILE", help="knowledge base JSONL (default: the embedded tiny KB)")
    t.add_argument("--question", help="what the clients say (default: the KB's first question)")
    t.add_argument("--clients", default="1,2,3,4", help="comma-separated client counts (default 1,2,3,4)")
    t.add_argument("--seconds", type=float, default=20.0, help="seconds of talking per client count")
    t.add_argument("--no-oracle", action="store_true", help="front-end alone: no STT, no LLM")
    t.add_argument("--out", default="bench-tiny", help="folder for bench.json and bench.png")
    t.add_argument("--json", action="store_true", help="also print the JSON on stdout")
    t.set_defaults(handler=run_tiny)

    ld = group.add_parser(
        "load",
        help="peak memory and time of loading a front-end checkpoint of >= 1 GiB (built here)",
        description="Write a random-weight checkpoint of at least --size-gb GiB (published layout), load "
        "it through the real path in a fresh process, and print its resident memory before and at peak "
        "while loading, against the weights' size (target: at most 1.2 x), and the load time.",
    )
    ld.add_argument("--size-gb", type=float, default=1.1, help="GiB of weights at least (default 1.1)")
    ld.add_argument("--dtype", default="float32", choices=("float32", "bfloat16", "float16"))
    ld.add_argument("--device", default="cpu", help="where the weights are loaded (cpu, cuda)")
    ld.add_argument("--dir", default=None, help="folder for the checkpoint (default: a temporary one)")
    ld.add_argument("--keep", action="store_true", help="leave the checkpoint on disk")
    ld.add_argument("--json", metavar="FILE", nargs="?", const="-", help="write JSON (to FILE or stdout)")
    ld.set_defaults(handler=run_load)
    from kamevoice.bench.train import register_train

    register_train(group)
    from kamevoice.bench.codec import register_codec

    register_codec(group)
    from kamevoice.bench.adversary.commands import register_adversarial

    register_adversarial(group)
    from kamevoice.bench.doors import register_doors

    register_doors(group)


def run_load(args: argparse.Namespace) -> int:
    from kamevoice.bench.checkpoint_load import LoadBenchOptions, as_json, report, run_load_bench
    from kamevoice.bench.report import write_json

    options = LoadBenchOptions(
        size_gb=args.size_gb, dtype=args.dtype, device=args.device, work_dir=args.dir, keep=args.keep
    )
    figures = run_load_bench(options)
    print(report(figures))
    if args.json:
        write_json(as_json(figures), args.json)
    return 0


def run_tiny(args: argparse.Namespace) -> int:
    from kamevoice.bench.load.commands import tiny_command

    return tiny_command(args)


def run_serve(args: argparse.Namespace) -> int:
    from kamevoice.bench.load.commands import serve_command

    return serve_command(args)


def run_frontend(args: argparse.Namespace) -> int:
    import torch
    from rich.console import Console
    from rich.progress import Progress
    from rich.table import Table

    from kamevoice.bench.frontend import as_rows, bench_codec, bench_generator
    from kamevoice.frontend.device import resolve_device, resolve_dtype
    from kamevoice.frontend.presets import preset

    device = resolve_device(args.device)
    dtype = resolve_dtype(args.dtype, device)
    presets = [p.strip() for p in args.presets.split(",") if p.strip()]
    for name in presets:
        preset(name)  # unknown names fail before any work
    batches = [int(b) for b in args.batch.split(",")]
    console = Console(stderr=True)
    results, skipped = [], {}
    total = sum(len(batches) for p in presets) * (args.steps + 3) + (
        0 if args.no_codec else 2 * (args.steps + 3)
    )
    with Progress(console=console, transient=True) as progress:
        task = progress.add_task("benchmarking", total=total)
        advance = lambda: progress.advance(task)  # noqa: E731
        for name in presets:
            if name == "moshi-7b" and device.type != "cuda":
                skipped[name] = SEVEN_B_NEEDS_GPU
                progress.advance(task, len(batches) * (args.steps + 3))
                continue
            progress.update(task, description=f"{name} on {device}")
            results += bench_generator(name, batches, args.steps, device, dtype, progress=advance)
        if not args.no_codec:
            for reduced in (False, True):
                progress.update(task, description=f"mimi{'-reduced' if reduced else ''} on {device}")
                results.append(bench_codec(reduced, args.steps, device, progress=advance))

    table = Table(title=f"kamevoice bench frontend ({device}, {torch.__version__})")
    for col in ("model", "batch", "params (M)", "dtype", "median ms", "p99 ms", "x real time"):
        table.add_column(col, justify="right" if col != "model" else "left")
    for r in results:
        table.add_row(
            r.name,
            str(r.batch),
            f"{r.params_m}",
            r.dtype.removeprefix("torch."),
            f"{r.median_ms:.1f}",
            f"{r.p99_ms:.1f}",
            f"{r.realtime_factor:.2f}",
        )
    Console().print(table)
    for name, why in skipped.items():
        Console().print(f"{name}: {why}")
    if args.json:
        payload = {
            "device": str(device),
            "torch": torch.__version__,
            "threads": torch.get_num_threads(),
            "frame_budget_ms": 80.0,
            "results": as_rows(results),
            "skipped": skipped,
        }
        from kamevoice.bench.report import write_json

        write_json(payload, args.json)
    return 0
