"""`kamevoice data ...`: build training data (dialogues, synth, oracles) and look at it (show).

Registration imports nothing heavy; each handler imports its stage when it runs.
Exit codes: 0 all items done (or already done), 3 some items failed (listed in
the summary), 1 a usage or configuration error.
"""

from __future__ import annotations

import argparse
from pathlib import Path

# Exit code when the stage ran but some items failed (reported and skipped).
EXIT_SOME_FAILED = 3


def _common(p: argparse.ArgumentParser) -> None:
    p.add_argument("--out", required=True, type=Path, help="output folder (created; reruns resume in it)")
    p.add_argument("--workers", type=int, default=1, metavar="N", help="worker processes (default 1)")
    p.add_argument("--seed", type=int, default=0, help="seed of every random choice (default 0)")
    p.add_argument("--limit", type=int, default=None, metavar="N", help="do at most N new items")
    p.add_argument("--no-progress", action="store_true", help="no progress bar")


def _llm_options(p: argparse.ArgumentParser) -> None:
    p.add_argument("--llm-base-url", default="https://api.openai.com/v1", help="OpenAI-compatible endpoint")
    p.add_argument("--llm-model", default="gpt-4.1-nano")
    p.add_argument("--llm-key-env", default="OPENAI_API_KEY", help="environment variable holding the API key")
    p.add_argument("--concurrency", type=int, default=8, help="LLM requests in flight (default 8)")
    p.add_argument("--llm-attempts", type=int, default=5, help="tries per LLM request (default 5)")
    p.add_argument("--llm-backoff", type=float, default=0.5, metavar="S",
                   help="first retry delay in seconds, doubled each retry (default 0.5)")  # fmt: skip


def _tts_options(p: argparse.ArgumentParser) -> None:
    g = p.add_argument_group("TTS engine settings (openai; piper takes --tts-model)")
    g.add_argument("--tts-base-url", help="openai: endpoint base (default https://api.openai.com/v1)")
    g.add_argument("--tts-model", help="openai: model (default gpt-4o-mini-tts); piper: a voice's .onnx file")
    g.add_argument("--tts-voice", action="append", metavar="NAME",
                   help="openai: a voice to use (repeat for several; default: 9 built-in ones)")  # fmt: skip
    g.add_argument(
        "--tts-key-env", help="openai: environment variable with the API key (default OPENAI_API_KEY)"
    )
    g.add_argument(
        "--tts-format", choices=("wav", "pcm"), help="openai: audio format asked for (default wav)"
    )


def _tts_settings(args: argparse.Namespace) -> dict:
    """The --tts-* options that were given, as `get_engine` settings of the chosen engine."""
    from kamevoice.errors import ConfigError

    given = {
        "base_url": args.tts_base_url, "model": args.tts_model,
        "voices": tuple(args.tts_voice) if args.tts_voice else None,
        "api_key_env": args.tts_key_env, "response_format": args.tts_format,
    }  # fmt: skip
    settings = {k: v for k, v in given.items() if v is not None}
    if args.engine == "openai":
        return settings
    if args.engine == "piper" and set(settings) <= {"model"}:
        return settings
    if settings:
        flags = ", ".join("--tts-" + k.replace("_", "-") for k in settings)
        raise ConfigError(f"--engine {args.engine} does not take {flags}")
    return {}


def register(subparsers: argparse._SubParsersAction) -> None:
    """Add the `data` command group."""
    from kamevoice.cli import add_group

    sub = add_group(subparsers, "data", "training data: QA -> dialogues -> speech -> simulated oracles")

    p = sub.add_parser("dialogues", help="question/answer JSONL -> two-party spoken dialogue scripts")
    p.add_argument("inputs", nargs="+", type=Path, metavar="IN.jsonl")
    p.add_argument("--preset", default="plain", choices=("plain", "mmlu_pro", "gsm8k", "hssbench"))
    p.add_argument("--question-field")
    p.add_argument("--answer-field")
    p.add_argument("--options-field")
    p.add_argument("--id-field")
    p.add_argument("--explanation-field")
    p.add_argument("--answer-style", choices=("text", "letter", "gsm8k", "reply"))
    p.add_argument(
        "--thanks-probability", type=float, default=0.3, help="share of dialogues ending in thanks"
    )
    p.add_argument("--paraphrase", action="store_true",
                   help="have an LLM rephrase each question for speech (--llm-* options)")  # fmt: skip
    _llm_options(p)
    _common(p)
    p.set_defaults(handler=_dialogues)

    p = sub.add_parser("synth", help="dialogue scripts -> stereo 24 kHz WAV + word timings (text/, audio/)")
    p.add_argument(
        "scripts", type=Path, metavar="SCRIPTS", help="scripts JSONL, or a folder with dialogues.jsonl"
    )
    p.add_argument("--engine", default="espeak", choices=("espeak", "flite", "piper", "openai"),
                   help="espeak (default), flite, piper, or openai (hosted; --tts-* options)")  # fmt: skip
    _tts_options(p)
    p.add_argument("--gap", type=float, nargs=2, default=(0.2, 0.9), metavar=("MIN", "MAX"),
                   help="silence between turns in seconds (default 0.2 0.9)")  # fmt: skip
    p.add_argument("--overlap-probability", type=float, default=0.15,
                   help="chance that the assistant starts before the user ends (default 0.15)")  # fmt: skip
    _common(p)
    p.set_defaults(handler=_synth)

    p = sub.add_parser("oracles", help="word timings (IN_DIR/text) -> simulated oracle events (oracle_raw/)")
    p.add_argument("in_dir", type=Path, metavar="IN_DIR")
    p.add_argument(
        "--interval", type=float, default=0.5, help="seconds of dialogue between events (default 0.5)"
    )
    p.add_argument("--respondents", default="A,B", help="speakers who get events: A,B (default), A or B")
    p.add_argument("--simulator", default="offline", choices=("offline", "llm"))
    _llm_options(p)
    _common(p)
    p.set_defaults(handler=_oracles)

    p = sub.add_parser(
        "shards",
        help="kame_finetune layout (text/, audio/, oracle_raw/) -> tokenised training shards",
        description="Encode each dialogue's audio with the checkpoint's codec, put the modelled speaker's "
        "words and the oracle events on the 80 ms frame grid, and write safetensors shards with an index. "
        "Resumable; augmentation is applied at training time, not here.",
    )
    p.add_argument(
        "in_dir", help="directory with text/*.json, audio/*.wav and (optionally) oracle_raw/*.json"
    )
    p.add_argument("--out", required=True, help="shard directory")
    p.add_argument(
        "--checkpoint", required=True, help="front-end checkpoint whose codec and tokenizer to use"
    )
    p.add_argument(
        "--speaker",
        choices=["A", "B"],
        default=None,
        help="the speaker the model plays (default A, as the published recipe)",
    )
    p.add_argument(
        "--text-timing",
        choices=["per_character", "word_start"],
        default=None,
        help="piece times: per character of the transcript (default, published) or from each word's start",
    )
    p.add_argument("--oracle-text", choices=["hint_when_heard", "prediction"], default=None,
                   help="an event's text: its hint once the turn is heard in full, else its prediction "
                   "(default, published), or always the prediction")  # fmt: skip
    p.add_argument("--per-shard", type=int, default=256, help="dialogues per shard file")
    p.add_argument("--workers", type=int, default=1)
    p.add_argument("--no-progress", action="store_true")
    p.set_defaults(handler=_shards)

    p = sub.add_parser("show", help="print a dialogue with word times and oracle events; --plot writes a PNG")
    p.add_argument("id", metavar="ID")
    p.add_argument(
        "--data", required=True, type=Path, metavar="DIR", help="folder with text/ (and oracle_raw/)"
    )
    p.add_argument("--plot", type=Path, metavar="FILE.png")
    p.set_defaults(handler=_show)


def _report(summary, out: Path) -> int:
    print(summary.render())
    print(f"summary written to {Path(out) / f'summary-{summary.stage}.json'}")
    return EXIT_SOME_FAILED if summary.failures else 0


def _shards(args: argparse.Namespace) -> int:
    from kamevoice.data.align import AlignSettings
    from kamevoice.data.shard_build import build_shards

    chosen = {"speaker": args.speaker, "text_timing": args.text_timing, "oracle_text": args.oracle_text}
    align = AlignSettings(**{k: v for k, v in chosen.items() if v is not None})
    summary = build_shards(
        args.in_dir, args.out, args.checkpoint, align=align, per_shard=args.per_shard,
        workers=args.workers, progress=not args.no_progress,
    )  # fmt: skip
    print(
        f"{summary.items} dialogues ({summary.hours:.2f} h) tokenised, {summary.skipped_done} already done, "
        f"{summary.oracle_events} oracle events, {len(summary.failures)} failed"
    )
    for item, reason in summary.failures.items():
        print(f"  failed {item}: {reason}")
    return EXIT_SOME_FAILED if summary.failures else 0


def _run_options(args: argparse.Namespace):
    from kamevoice.data.jobs import RunOptions

    return RunOptions(workers=max(1, args.workers), progress=not args.no_progress, limit=args.limit)


def _llm_call_options(args: argparse.Namespace):
    from kamevoice.data.stages import LLMCallOptions

    return LLMCallOptions(
        base_url=args.llm_base_url, model=args.llm_model, api_key_env=args.llm_key_env,
        concurrency=args.concurrency, attempts=args.llm_attempts, backoff_s=args.llm_backoff, seed=args.seed,
    )  # fmt: skip


def _dialogues(args: argparse.Namespace) -> int:
    from kamevoice.data.dialogues import DialogueOptions, fields_for
    from kamevoice.data.stages import make_dialogues

    fields = fields_for(
        args.preset, question=args.question_field, answer=args.answer_field, options=args.options_field,
        id=args.id_field, explanation=args.explanation_field, answer_style=args.answer_style,
    )  # fmt: skip
    options = DialogueOptions(seed=args.seed, thanks_probability=args.thanks_probability)
    paraphrase = _llm_call_options(args) if args.paraphrase else None
    summary = make_dialogues(
        args.inputs, args.out, fields, options, _run_options(args), args.preset, paraphrase
    )
    return _report(summary, args.out)


def _synth(args: argparse.Namespace) -> int:
    from kamevoice.data.stages import synthesize
    from kamevoice.data.synth import SynthOptions

    options = SynthOptions(
        engine=args.engine, engine_settings=_tts_settings(args), seed=args.seed, gap_min=args.gap[0],
        gap_max=args.gap[1], overlap_probability=args.overlap_probability,
    )  # fmt: skip
    return _report(synthesize(args.scripts, args.out, options, _run_options(args)), args.out)


def _respondents(text: str) -> tuple[str, ...]:
    from kamevoice.errors import ConfigError

    names = tuple(s.strip().upper() for s in text.split(",") if s.strip())
    if not names or any(n not in ("A", "B") for n in names):
        raise ConfigError(f"--respondents takes A, B or A,B; got {text!r}")
    return names


def _oracles(args: argparse.Namespace) -> int:
    from kamevoice.data.oracles import OracleOptions
    from kamevoice.data.stages import simulate_oracles

    options = OracleOptions(
        interval_s=args.interval, respondents=_respondents(args.respondents), seed=args.seed
    )
    simulator = None
    if args.simulator == "llm":
        if args.workers > 1:
            print("note: the LLM simulator runs in one process; --concurrency sets its parallel requests")
        simulator = _llm_call_options(args)
    summary = simulate_oracles(args.in_dir, args.out, options, _run_options(args), simulator, seed=args.seed)
    return _report(summary, args.out)


def _show(args: argparse.Namespace) -> int:
    from kamevoice.data.show import load_dialogue, plot_timeline, render_text

    words, events = load_dialogue(args.data, args.id)
    print(render_text(words, events))
    if args.plot:
        plot_timeline(words, events, args.plot, title=f"{args.id}: words and oracle events")
        print(f"timeline written to {args.plot}")
    return 0
