"""`kamevoice eval ...`: evaluation commands (spoken MT-Bench)."""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from kamevoice.frontend.flags import add_frontend_flags

NO_JUDGE = (
    "no judge configured (--judge-base-url / --judge-provider / --judge-model): reporting latency and the "
    "knowledge-word metric only"
)


def register(sub: argparse._SubParsersAction) -> None:
    from kamevoice.cli import add_group

    group = add_group(sub, "eval", "evaluate systems: spoken MT-Bench with an LLM judge, latency, baselines")
    p = group.add_parser(
        "mtbench",
        help="spoken MT-Bench: judge scores and response latency of KAME and baselines",
        description="Synthesise MT-Bench user turns, play each two-turn session through file mode for "
        "every system, score the replies (LLM judge with FastChat's prompts, or the knowledge-word metric "
        "without a judge) and write table.md, results.json and latency_quality.png. Resumable: a rerun "
        "skips finished sessions and judgements.",
    )
    p.add_argument("--questions", help="FastChat question file (default: the vendored MT-Bench questions)")
    p.add_argument("--references", help="FastChat reference-answer file (default: vendored GPT-4 answers)")
    p.add_argument(
        "--categories", default=None, help="comma list or 'all' (default: reasoning,stem,humanities)"
    )
    p.add_argument("--ids", default=None, help="only these question ids (comma list)")
    p.add_argument("--limit", type=int, default=None, help="first N questions of each category")
    p.add_argument("--out", default="mtbench-results", help="output folder (default: %(default)s)")
    p.add_argument(
        "--systems",
        default="kame,frontend,cascade,backend-text",
        help="comma list of kame, frontend, cascade, backend-text (default: all four)",
    )
    p.add_argument(
        "--delays",
        default="",
        help="forced delays for the latency-quality curve, seconds (comma list, or 'paper' = 0,0.5,1,2,3)",
    )
    add_frontend_flags(p, seed=True, published=True)
    p.add_argument("--realtime", action="store_true", help="wall clock instead of the virtual clock")
    p.add_argument(
        "--reply-window", type=float, default=10.0, help="seconds after each user turn (default 10)"
    )
    p.add_argument("--tts", default="espeak", help="TTS engine for the user turns (espeak, flite)")
    p.add_argument("--voice", default=None, help="TTS voice")
    p.add_argument("--tts-rate", type=float, default=1.0, help="speaking rate factor of the user turns")
    p.add_argument("--no-stt-view", action="store_true", help="do not transcribe the systems' audio")
    p.add_argument("--no-audio", action="store_true", help="do not write a stereo WAV per session")
    p.add_argument("--judge-provider", choices=("openai", "anthropic", "google"), default=None)
    p.add_argument("--judge-base-url", default=None, help="judge endpoint (OpenAI-compatible by default)")
    p.add_argument("--judge-model", default=None)
    p.add_argument("--judge-api-key-env", default=None, help="environment variable holding the judge's key")
    p.add_argument("--judge-runs", type=int, default=6, help="judge runs per answer (default 6)")
    p.add_argument("--judge-temperature", type=float, default=0.7)
    p.add_argument("--judge-concurrency", type=int, default=4)
    p.add_argument("--no-progress", action="store_true", help="no progress bars")
    p.set_defaults(handler=mtbench_command)

    from kamevoice.tiny.eval_command import register_tiny

    register_tiny(group)


def mtbench_command(args: argparse.Namespace) -> int:
    from kamevoice.errors import ConfigError
    from kamevoice.eval.mtbench import LayoutOptions, load_questions, parse_categories
    from kamevoice.eval.runner import EvalOptions, JudgeOptions, run_mtbench
    from kamevoice.eval.systems import RunOptions, parse_systems
    from kamevoice.startup import resolve, settings_from_args

    # With no checkpoint: the embedded KAME-tiny and its knowledge base (`kamevoice.startup`).
    settings = resolve(settings_from_args(args))
    try:
        ids = tuple(int(i) for i in args.ids.split(",") if i.strip()) if args.ids else None
    except ValueError:
        raise ConfigError(f"--ids: expected comma-separated integers, got {args.ids!r}") from None
    if args.judge_runs < 1:
        raise ConfigError("--judge-runs must be at least 1")
    questions = load_questions(
        args.questions, parse_categories(args.categories), args.references, ids, args.limit
    )
    judge = None
    if args.judge_base_url or args.judge_provider or args.judge_model:
        judge = JudgeOptions(
            provider=args.judge_provider or "openai",
            base_url=args.judge_base_url,
            model=args.judge_model,
            api_key_env=args.judge_api_key_env,
            runs=args.judge_runs,
            temperature=args.judge_temperature,
            concurrency=args.judge_concurrency,
        )
    else:
        print(f"kamevoice: {NO_JUDGE}", file=sys.stderr)
    systems = tuple(parse_systems(args.systems, args.delays))
    longest = max((s.delay_s for s in systems if s.delay_s is not None), default=0.0)
    if longest >= args.reply_window:
        raise ConfigError(
            f"--reply-window ({args.reply_window} s) must exceed the longest forced delay ({longest} s)"
        )
    options = EvalOptions(
        out=Path(args.out),
        systems=systems,
        checkpoint=settings.frontend.checkpoint,
        device=settings.frontend.device,
        layout=LayoutOptions(
            tts=args.tts, voice=args.voice, rate=args.tts_rate, reply_window_s=args.reply_window
        ),
        run=RunOptions(
            seed=settings.frontend.seed,
            realtime=args.realtime,
            transcribe=not args.no_stt_view,
            save_audio=not args.no_audio,
        ),
        judge=judge,
        progress=not args.no_progress,
        extra={
            "question_file": args.questions or "vendored",
            "reference_file": args.references,
            "categories": args.categories,
        },
    )
    _, work = run_mtbench(questions, options, settings)
    print((options.out / "table.md").read_text(encoding="utf-8"))
    sessions, judgements = work.sessions, work.judgements
    for name, walls in sessions.wall_s.items():
        print(f"{name}: {sum(walls) / len(walls):.1f} s per session (wall clock, {len(walls)} run now)")
    print(
        f"sessions: {sessions.run} run, {sessions.reused} reused; "
        f"judgements: {judgements.run} run, {judgements.reused} reused; results in {options.out}"
    )
    return 0
