"""Runtime commands: `kamevoice run` (file mode) and `kamevoice oracle` (the back-end alone)."""

from __future__ import annotations

import argparse
import json
import sys


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
    run.add_argument("--checkpoint", help="front-end checkpoint: local directory or hub repo id")
    run.add_argument("--device", default=None, help="cpu, cuda, auto (default: settings)")
    run.add_argument("--seed", type=int, default=None)
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
    oracle.set_defaults(handler=run_oracle_command)

    serve = sub.add_parser(
        "serve",
        help="serve conversations over WebSocket (Moshi's protocol at /api/chat) with a browser page at /",
        description="Serve KAME conversations: Moshi's binary WebSocket protocol at /api/chat plus JSON "
        "events, a browser page at /, /health and /metrics. Binds 127.0.0.1 unless told otherwise.",
    )
    serve.add_argument("--checkpoint", help="front-end checkpoint: local directory or hub repo id")
    serve.add_argument("--device", default=None, help="cpu, cuda, auto (default: settings)")
    serve.add_argument("--host", default=None, help="address to bind (default 127.0.0.1)")
    serve.add_argument("--port", type=int, default=None, help="TCP port (default 8998)")
    serve.add_argument("--max-sessions", type=int, default=None, help="concurrent conversations")
    serve.add_argument("--token", default=None, help="require this bearer token on /api/chat")
    serve.add_argument(
        "--allowed-origin", action="append", help="browser Origin allowed (repeat; '*' for any)"
    )
    serve.add_argument("--log-dir", default=None, help="write per-session event logs (JSONL) here")
    serve.add_argument("--no-oracle", action="store_true", help="front-end alone: no STT, no LLM")
    serve.add_argument(
        "--lockstep", action="store_true", help="testing: step when every session has audio (deterministic)"
    )
    serve.set_defaults(handler=_serve)


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
    demo.add_argument("--checkpoint", help="front-end checkpoint (default: the embedded KAME-tiny)")
    demo.add_argument("--out", default="kamevoice-demo.wav", help="stereo reply WAV (user left, model right)")
    demo.set_defaults(handler=run_demo_command)


def demo_question() -> tuple[str, list[str]]:
    """The default demo question (the first held-out tiny question) and its key answer words."""
    import json

    from kamevoice.tiny.defaults import tiny_held_out_questions

    with open(tiny_held_out_questions(), encoding="utf-8") as f:
        first = json.loads(f.readline())
    return first["question"], list(first["key_words"])


def run_demo_command(args: argparse.Namespace) -> int:
    import tempfile
    from pathlib import Path

    import numpy as np
    import soundfile as sf

    from kamevoice.backend.oracle_run import run_oracle_file
    from kamevoice.tiny.defaults import embedded_defaults
    from kamevoice.tts import get_engine

    settings = _settings(args)
    _, settings = embedded_defaults(args.checkpoint or settings.frontend.checkpoint, settings)
    text, key_words = (args.text, []) if args.text else demo_question()
    speech = get_engine("espeak").synthesize(text)
    pad = np.zeros(int(0.5 * speech.sample_rate), dtype=np.float32)
    with tempfile.TemporaryDirectory() as tmp:
        wav = Path(tmp) / "question.wav"
        sf.write(wav, np.concatenate([pad, speech.audio, pad]), speech.sample_rate)
        print(f'user says: "{text}" ({len(speech.audio) / speech.sample_rate:.1f} s, espeak-ng)')
        if key_words:
            print(f"(the answer's key words, from the knowledge base: {' '.join(key_words)})")
        run_oracle_file(wav, settings)
        ns = argparse.Namespace(audio=str(wav), out=args.out, events=None, transcript=None,
                                checkpoint=args.checkpoint, device=None, seed=None, tail=4.0,
                                realtime=False, no_oracle=False)  # fmt: skip
        run_file_command(ns)
        print(f"stereo reply (user left, model right): {args.out}")
    return 0


def _settings(args: argparse.Namespace):
    from kamevoice.config import load_settings

    return load_settings()


def run_file_command(args: argparse.Namespace) -> int:
    from kamevoice.audio import read_audio
    from kamevoice.backend.llm.factory import make_llm
    from kamevoice.backend.stt import make_stt
    from kamevoice.frontend.device import apply_cpu_threads
    from kamevoice.frontend.generator import SamplingOptions
    from kamevoice.frontend.loading import load_frontend
    from kamevoice.runtime.filemode import run_file, write_outputs
    from kamevoice.tiny.defaults import embedded_defaults

    settings = _settings(args)
    checkpoint, settings = embedded_defaults(args.checkpoint or settings.frontend.checkpoint, settings)
    audio, rate = read_audio(args.audio)
    fs = settings.frontend
    apply_cpu_threads(fs.cpu_threads)
    frontend = load_frontend(checkpoint, device=args.device or fs.device, dtype=fs.dtype)
    sampling = SamplingOptions.from_settings(fs, frontend.files.lm_gen_config, frontend.files.extra)
    stt = llm = None
    if not args.no_oracle:
        stt = make_stt(settings.stt)
        llm = make_llm(settings.llm)
    result = run_file(
        frontend,
        audio,
        rate,
        stt=stt,
        llm=llm,
        events_path=args.events,
        tail_s=args.tail,
        sampling=sampling,
        seed=fs.seed if args.seed is None else args.seed,
        realtime=args.realtime,
        scheduler_settings=settings.scheduler,
    )
    write_outputs(result, args.out, None if args.transcript in (None, "-") else args.transcript)
    if args.transcript == "-":
        json.dump(result.transcript, sys.stdout, indent=2)
        sys.stdout.write("\n")
    else:
        lat = result.transcript["latency"]
        print(f"user: {' | '.join(t['text'] for t in result.transcript['user']) or '-'}")
        print(f"assistant: {result.transcript['assistant'] or '-'}")
        print(f"oracles: {len(result.transcript['oracles'])}, median latency: {lat['median_s']}")
    return 0


def run_oracle_command(args: argparse.Namespace) -> int:
    from kamevoice.backend.oracle_run import run_oracle_file

    settings = _settings(args)
    return run_oracle_file(args.audio, settings, realtime=args.realtime, json_path=args.json)


def _serve(args: argparse.Namespace) -> int:
    from kamevoice.server.serve import serve_command

    return serve_command(args)
