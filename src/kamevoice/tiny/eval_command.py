"""`kamevoice eval tiny`: the command line of the KAME-tiny knowledge-injection evaluation."""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

from kamevoice.frontend.flags import add_frontend_flags


def register_tiny(group: argparse._SubParsersAction) -> None:
    """Add `tiny` to the `eval` group (nothing heavy is imported here)."""
    from kamevoice.tiny.eval import DEFAULT_CONDITIONS, DEFAULT_LIMIT, REPLY_WINDOW_S

    p = group.add_parser(
        "tiny",
        help="KAME-tiny knowledge injection: held-out spoken questions with/without/delayed oracle",
        description="Synthesise held-out questions (facts never asked in training dialogues), play each "
        "through file mode per condition (live back-end over the KB, no oracle, live without the oracle-"
        "following decoding policy, oracle delayed D s) and "
        "score the replies: every key word of the answer in the inner-monologue text, and in an STT "
        "transcript of the audio. Writes results.json, table.md, accuracy.png, config.json. Resumable.",
    )
    add_frontend_flags(p, seed=True, published=True)
    p.add_argument("--kb", help="knowledge base JSONL (default: the embedded tiny KB)")
    p.add_argument("--questions", help="held-out QA JSONL (default: the embedded held-out questions)")
    p.add_argument("--limit", type=int, default=DEFAULT_LIMIT, help="first N questions (default %(default)s)")
    p.add_argument("--conditions", default=DEFAULT_CONDITIONS,
                   help="comma list of live, no-oracle, live-no-follow, delay-SECONDS "
                        "(default %(default)s)")  # fmt: skip
    p.add_argument("--out", default="tiny-eval", help="output folder (default: %(default)s)")
    p.add_argument("--json", action="store_true", help="print the figures as JSON on stdout")
    p.add_argument("--reply-window", type=float, default=REPLY_WINDOW_S,
                   help="seconds of silence after each question for the reply "
                        "(default %(default)s)")  # fmt: skip
    p.add_argument("--no-stt-view", action="store_true", help="do not transcribe the front-end's audio")
    p.add_argument("--save-audio", action="store_true", help="write a stereo WAV per session")
    p.add_argument("--no-progress", action="store_true", help="no progress bar")
    p.set_defaults(handler=tiny_command)


def tiny_command(args: argparse.Namespace) -> int:
    from kamevoice.errors import ConfigError
    from kamevoice.startup import resolve, settings_from_args
    from kamevoice.tiny.defaults import tiny_held_out_questions, tiny_knowledge_base
    from kamevoice.tiny.eval import TinyEvalOptions, load_held_out, parse_conditions, run_tiny_eval
    from kamevoice.tiny.eval_report import headline

    if args.limit < 1:
        raise ConfigError("--limit must be at least 1")
    conditions = parse_conditions(args.conditions)
    longest = max(c.delay_s for c in conditions)
    if longest >= args.reply_window:
        raise ConfigError(
            f"--reply-window ({args.reply_window} s) must exceed the longest delay ({longest} s)"
        )
    settings = resolve(
        settings_from_args({"checkpoint": args.checkpoint, "device": args.device, "seed": args.seed})
    )
    questions_file = Path(args.questions) if args.questions else tiny_held_out_questions()
    kb = Path(args.kb) if args.kb else tiny_knowledge_base()
    if not kb.is_file():
        raise ConfigError(f"--kb: {kb} does not exist")
    options = TinyEvalOptions(
        out=Path(args.out),
        checkpoint=settings.frontend.checkpoint,
        kb=kb,
        questions_file=questions_file,
        conditions=conditions,
        device=settings.frontend.device,
        seed=settings.frontend.seed,
        reply_window_s=args.reply_window,
        transcribe=not args.no_stt_view,
        save_audio=args.save_audio,
        progress=not args.no_progress,
        extra={"limit": args.limit},
    )
    results, work = run_tiny_eval(load_held_out(questions_file, args.limit), options, settings)
    if args.json:
        json.dump({k: v for k, v in results.items() if k != "per_question"}, sys.stdout, indent=2)
        sys.stdout.write("\n")
    else:
        print((options.out / "table.md").read_text(encoding="utf-8"))
    print(
        f"sessions: {work.sessions.run} run, {work.sessions.reused} reused; results in {options.out}",
        file=sys.stderr if args.json else sys.stdout,
    )
    if args.json:
        print("\n".join(headline(results)), file=sys.stderr)
    return 0
