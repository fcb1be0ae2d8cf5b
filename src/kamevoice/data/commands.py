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
    p.add_argument("--speaker", choices=["A", "B"], default="B", help="the speaker the model plays")
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


def _finish(summary, out: Path) -> int:
    path = out / f"summary-{summary.stage}.json"
    summary.write(path)
    print(summary.render())
    print(f"summary written to {path}")
    return EXIT_SOME_FAILED if summary.failures else 0


def _shards(args: argparse.Namespace) -> int:
    from kamevoice.data.shard_build import build_shards

    summary = build_shards(
        args.in_dir, args.out, args.checkpoint, model_speaker=args.speaker, per_shard=args.per_shard,
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


def _llm_chat(args: argparse.Namespace):
    from kamevoice.backend.llm.openai_compat import OpenAICompatProvider
    from kamevoice.backend.llm.settings import OpenAICompatSettings
    from kamevoice.data.llm_calls import RetryingChat, RetryPolicy

    provider = OpenAICompatProvider(
        OpenAICompatSettings(base_url=args.llm_base_url, model=args.llm_model, api_key_env=args.llm_key_env)
    )
    policy = RetryPolicy(
        max_concurrency=max(1, args.concurrency), max_attempts=max(1, args.llm_attempts),
        backoff_base_s=args.llm_backoff, seed=args.seed,
    )  # fmt: skip
    return provider, RetryingChat(provider, policy)


def _dialogues(args: argparse.Namespace) -> int:
    import asyncio
    import functools
    import itertools

    from kamevoice.data.dialogues import DialogueOptions, fields_for, make_script, read_qa_items
    from kamevoice.data.jobs import repair_jsonl, run_stage, run_stage_async, write_jsonl_line

    fields = fields_for(
        args.preset, question=args.question_field, answer=args.answer_field, options=args.options_field,
        id=args.id_field, explanation=args.explanation_field, answer_style=args.answer_style,
    )  # fmt: skip
    args.out.mkdir(parents=True, exist_ok=True)
    out_path = args.out / "dialogues.jsonl"
    finished = repair_jsonl(out_path)
    options = DialogueOptions(seed=args.seed, thanks_probability=args.thanks_probability)
    inputs = itertools.chain.from_iterable(read_qa_items(p, fields) for p in args.inputs)
    source = args.preset
    with open(out_path, "a", encoding="utf-8") as out:

        def append(outcome) -> None:
            write_jsonl_line(out, outcome.result)

        if not args.paraphrase:
            summary = run_stage(
                "dialogues", inputs, functools.partial(make_script, options=options, source=source),
                finished.__contains__, _run_options(args), on_outcome=append,
            )  # fmt: skip
            return _finish(summary, args.out)

        from kamevoice.data.dialogue_llm import LLMScriptWriter, make_script_llm

        async def run():
            provider, chat = _llm_chat(args)
            writer = LLMScriptWriter(chat, options)
            try:
                summary = await run_stage_async(
                    "dialogues", inputs, functools.partial(make_script_llm, writer=writer, source=source),
                    finished.__contains__, _run_options(args), concurrency=args.concurrency,
                    on_outcome=append,
                )  # fmt: skip
            finally:
                await provider.aclose()
            summary.totals.update(chat.stats.totals())
            return summary

        return _finish(asyncio.run(run()), args.out)


def _synth(args: argparse.Namespace) -> int:
    import functools

    from kamevoice.data.dialogues import read_scripts
    from kamevoice.data.jobs import run_stage
    from kamevoice.data.synth import SynthOptions, synth_done, synth_item
    from kamevoice.tts import get_engine

    scripts = args.scripts / "dialogues.jsonl" if args.scripts.is_dir() else args.scripts
    options = SynthOptions(
        engine=args.engine, engine_settings=_tts_settings(args), seed=args.seed, gap_min=args.gap[0],
        gap_max=args.gap[1], overlap_probability=args.overlap_probability,
    )  # fmt: skip
    # Fail fast on a missing engine or bad settings, before any worker starts.
    probe = get_engine(options.engine, **options.engine_settings)
    if callable(getattr(probe, "close", None)):
        probe.close()
    args.out.mkdir(parents=True, exist_ok=True)
    summary = run_stage(
        "synth", read_scripts(scripts), functools.partial(synth_item, options=options, out_dir=args.out),
        functools.partial(synth_done, args.out), _run_options(args),
    )  # fmt: skip
    return _finish(summary, args.out)


def _respondents(text: str) -> tuple[str, ...]:
    from kamevoice.errors import ConfigError

    names = tuple(s.strip().upper() for s in text.split(",") if s.strip())
    if not names or any(n not in ("A", "B") for n in names):
        raise ConfigError(f"--respondents takes A, B or A,B; got {text!r}")
    return names


def _oracles(args: argparse.Namespace) -> int:
    import asyncio
    import functools

    from kamevoice.data.jobs import run_stage, run_stage_async
    from kamevoice.data.oracles import (
        OfflineSimulatorOptions,
        OracleOptions,
        oracle_item_async,
        oracle_item_offline,
        oracles_done,
        read_dialogue_words,
    )

    options = OracleOptions(
        interval_s=args.interval, respondents=_respondents(args.respondents), seed=args.seed
    )
    args.out.mkdir(parents=True, exist_ok=True)
    done = functools.partial(oracles_done, args.out)
    inputs = read_dialogue_words(args.in_dir)
    if args.simulator == "offline":
        work = functools.partial(
            oracle_item_offline, options=options, simulator_options=OfflineSimulatorOptions(seed=args.seed),
            out_dir=args.out,
        )  # fmt: skip
        return _finish(run_stage("oracles", inputs, work, done, _run_options(args)), args.out)

    from kamevoice.data.oracle_llm import LLMSimulator

    if args.workers > 1:
        print("note: the LLM simulator runs in one process; --concurrency sets its parallel requests")

    async def run():
        provider, chat = _llm_chat(args)
        simulator = LLMSimulator.from_chat(chat)
        try:
            summary = await run_stage_async(
                "oracles", inputs,
                functools.partial(oracle_item_async, options=options, simulator=simulator, out_dir=args.out),
                done, _run_options(args), concurrency=args.concurrency,
            )  # fmt: skip
        finally:
            await provider.aclose()
        summary.totals.update(chat.stats.totals())
        return summary

    return _finish(asyncio.run(run()), args.out)


def _show(args: argparse.Namespace) -> int:
    from kamevoice.data.show import load_dialogue, plot_timeline, render_text

    words, events = load_dialogue(args.data, args.id)
    print(render_text(words, events))
    if args.plot:
        plot_timeline(words, events, args.plot, title=f"{args.id}: words and oracle events")
        print(f"timeline written to {args.plot}")
    return 0
