"""Runtime commands: `kamevoice demo`, `kamevoice run` (file mode), `kamevoice oracle` (back-end alone)."""

from __future__ import annotations

import argparse
import json
import sys

from kamevoice.frontend.flags import add_frontend_flags


def register(sub: argparse._SubParsersAction) -> None:
    register_demo(sub)
    run = sub.add_parser(
        "run",
        help="play an audio file into a KAME session; write the reply, events and transcript",
        description="Play AUDIO into a session (front-end + STT + oracle back-end) and record both sides. "
        "Virtual clock by default: deterministic for a seed, faster than real time, back-end latency "
        "simulated by its settings. --realtime runs on the wall clock (real back-end latency).",
    )
    run.add_argument("audio", help="input audio (WAV/FLAC/OGG, any rate, mono or stereo)")
    run.add_argument("--out", help="stereo WAV: user left, model right, aligned with the input")
    run.add_argument("--events", help="event log (JSONL)")
    run.add_argument("--transcript", help="transcript of both sides + latency (JSON); '-' for stdout")
    add_frontend_flags(run, seed=True, published=True)
    run.add_argument("--tail", type=float, default=4.0, help="seconds of silence after the file")
    run.add_argument("--realtime", action="store_true", help="wall clock instead of the virtual clock")
    run.add_argument("--no-oracle", action="store_true", help="front-end alone: no back-end at all")
    run.set_defaults(handler=run_file_command)

    oracle = sub.add_parser(
        "oracle",
        help="run the back-end alone on an audio file: partial transcripts and oracles as they grow",
        description="Stream AUDIO (any rate, mono or stereo) into the STT and the oracle scheduler and "
        "print, with timestamps, the partial transcripts and each oracle as it grows.",
    )
    oracle.add_argument("audio")
    oracle.add_argument(
        "--realtime", action="store_true", help="push the audio at speaking pace (wall clock)"
    )
    oracle.add_argument("--json", metavar="FILE", nargs="?", const="-", help="write the events as JSONL")
    oracle.add_argument("--kb", metavar="FILE", help="knowledge base (default: the embedded KAME-tiny's)")
    oracle.set_defaults(handler=run_oracle_command)


def register_demo(sub: argparse._SubParsersAction) -> None:
    demo = sub.add_parser(
        "demo",
        help="speak a question (espeak-ng) to the embedded KAME-tiny and its back-end, no download needed",
        description="Synthesise a spoken question with espeak-ng, stream it into the embedded STT and the "
        "knowledge-base back-end on the virtual clock, print the partial transcripts and the oracles as "
        "they grow, then run the whole KAME session (the embedded KAME-tiny front-end, or --checkpoint) "
        "and write the stereo reply. The default question asks a fact the tiny model never heard in "
        "training: only the oracle can bring its answer.",
    )
    demo.add_argument("--text", default=None, help="what the user says (default: a held-out tiny question)")
    add_frontend_flags(demo)
    demo.add_argument("--out", default="kamevoice-demo.wav", help="stereo reply WAV (user left, model right)")
    demo.set_defaults(handler=run_demo_command)


def demo_question() -> tuple[str, list[str]]:
    """The default demo question (the first held-out tiny question) and its key answer words."""
    from kamevoice.tiny.defaults import tiny_held_out_questions

    with open(tiny_held_out_questions(), encoding="utf-8") as f:
        first = json.loads(f.readline())
    return first["question"], list(first["key_words"])


# Silence around the demo question, so the STT hears its start and end (seconds).
DEMO_PAD_S = 0.5
# Silence after the question for the reply (seconds).
DEMO_TAIL_S = 4.0


def run_demo_command(args: argparse.Namespace) -> int:
    import numpy as np

    from kamevoice.audio import write_stereo
    from kamevoice.backend.oracle_run import run_oracle
    from kamevoice.runtime.filemode import run_file
    from kamevoice.startup import settings_from_args, start
    from kamevoice.tts import get_engine

    stack = start(settings_from_args(args))
    text, key_words = (args.text, []) if args.text else demo_question()
    speech = get_engine("espeak").synthesize(text)
    pad = np.zeros(int(DEMO_PAD_S * speech.sample_rate), dtype=np.float32)
    audio = np.concatenate([pad, speech.audio, pad])
    print(f'user says: "{text}" ({len(speech.audio) / speech.sample_rate:.1f} s, espeak-ng)')
    if key_words:
        print(f"(the answer's key words, from the knowledge base: {' '.join(key_words)})")
    if stack.backend is not None:
        run_oracle(audio, speech.sample_rate, stack.backend, out=sys.stdout)
    result = run_file(
        stack.frontend, audio, speech.sample_rate, backend=stack.backend, sampling=stack.sampling,
        seed=stack.settings.frontend.seed, tail_s=DEMO_TAIL_S,
    )  # fmt: skip
    write_stereo(args.out, result.user, result.model, result.sample_rate)
    _print_summary(result)
    print(f"stereo reply (user left, model right): {args.out}")
    return 0


def _print_summary(result) -> None:
    lat = result.transcript["latency"]
    print(f"user: {' | '.join(t['text'] for t in result.transcript['user']) or '-'}")
    print(f"assistant: {result.transcript['assistant'] or '-'}")
    print(f"oracles: {len(result.transcript['oracles'])}, median latency: {lat['median_s']}")


def run_file_command(args: argparse.Namespace) -> int:
    from kamevoice.audio import read_audio
    from kamevoice.runtime.filemode import run_file, write_outputs
    from kamevoice.startup import settings_from_args, start

    stack = start(settings_from_args(args))
    audio, rate = read_audio(args.audio)
    result = run_file(
        stack.frontend, audio, rate, backend=stack.backend, events_path=args.events, tail_s=args.tail,
        sampling=stack.sampling, seed=stack.settings.frontend.seed, realtime=args.realtime,
    )  # fmt: skip
    write_outputs(result, args.out, None if args.transcript in (None, "-") else args.transcript)
    if args.transcript == "-":
        json.dump(result.transcript, sys.stdout, indent=2)
        sys.stdout.write("\n")
    else:
        _print_summary(result)
    return 0


def run_oracle_command(args: argparse.Namespace) -> int:
    from kamevoice.backend.factory import backend_from_settings
    from kamevoice.backend.oracle_run import run_oracle_file
    from kamevoice.startup import resolve, settings_from_args

    backend = backend_from_settings(resolve(settings_from_args(args)))
    return run_oracle_file(args.audio, backend, realtime=args.realtime, json_path=args.json)
