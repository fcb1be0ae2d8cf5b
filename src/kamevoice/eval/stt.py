"""Measure the local STT engines on synthetic speech: word error rate, partial lag, time per call.

    python -m kamevoice.eval.stt [--engines sphinx,sphinx-task,whisper,paired] [--realtime]

Speech is made on the spot with flite (voice `slt`, 16 kHz) and espeak-ng
(22.05 kHz), the same sentences for every engine, each with 1 s of leading
and trailing silence. The tests reuse `synthesise` and `wer`.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import re
import shutil
import subprocess
import time
from dataclasses import dataclass
from pathlib import Path

import numpy as np

# Questions a voice assistant hears; each voice says all of them.
SENTENCES: tuple[str, ...] = (
    "what is the capital of france",
    "how far is the moon from the earth",
    "tell me a short story about a dragon",
    "can you recommend a good book about history",
    "what time does the train to boston leave",
    "please set an alarm for seven in the morning",
    "who wrote the novel pride and prejudice",
    "how many legs does a spider have",
)
# A domain text for the task language model: the assistant's expected requests,
# the measured sentences among them (as a command grammar would hold them) plus
# others, so the model is not a list of the test answers alone.
DOMAIN_TEXT = "\n".join(
    [
        *SENTENCES,
        "what is the capital of germany",
        "how far is the sun from the earth",
        "tell me a joke about a cat",
        "can you recommend a good movie for tonight",
        "what time does the bus to the airport leave",
        "please set a timer for ten minutes",
        "who painted the mona lisa",
        "how many days are in a leap year",
        "what is the weather like in paris today",
        "play some music from the seventies",
        "how tall is the eiffel tower",
        "tell me about the history of rome",
    ]
)
# Leading/trailing silence around each sentence: lets tests check that word
# times are absolute (a word after 1 s of silence starts after ~1 s).
PAD_S = 1.0


@dataclass(frozen=True)
class Utterance:
    """A synthesised sentence on disk."""

    text: str
    voice: str
    path: Path
    rate: int
    speech_start: float  # seconds of leading silence
    duration: float


def normalise(text: str) -> list[str]:
    """Lower-case words without punctuation, numbers kept as written."""
    return re.sub(r"[^a-z0-9' ]+", " ", text.lower().replace("-", " ")).split()


def wer(reference: str, hypothesis: str) -> float:
    """Word error rate: (substitutions + deletions + insertions) / reference words."""
    ref, hyp = normalise(reference), normalise(hypothesis)
    d = np.arange(len(hyp) + 1)
    for i, r in enumerate(ref, 1):
        prev, d = d, np.empty_like(d)
        d[0] = i
        for j, h in enumerate(hyp, 1):
            d[j] = min(prev[j] + 1, d[j - 1] + 1, prev[j - 1] + (r != h))
    return float(d[-1]) / max(1, len(ref))


def synthesisers() -> dict[str, bool]:
    """Which synthesisers are installed."""
    return {"flite": shutil.which("flite") is not None, "espeak": shutil.which("espeak-ng") is not None}


def synthesise(text: str, voice: str, out_dir: Path, name: str) -> Utterance:
    """Speak `text` with 'flite' (slt) or 'espeak' (espeak-ng) into `out_dir/name.wav`, silence-padded."""
    import soundfile as sf

    raw = out_dir / f"{name}.raw.wav"
    if voice == "flite":
        subprocess.run(["flite", "-voice", "slt", "-t", text, "-o", str(raw)], check=True)
    elif voice == "espeak":
        subprocess.run(["espeak-ng", "-v", "en-us", "-w", str(raw), text], check=True)
    else:
        raise ValueError(f"unknown voice {voice!r}")
    audio, rate = sf.read(str(raw), dtype="float32")
    raw.unlink()
    pad = np.zeros(int(PAD_S * rate), dtype=np.float32)
    padded = np.concatenate([pad, audio, pad])
    path = out_dir / f"{name}.wav"
    sf.write(str(path), padded, rate, subtype="PCM_16")
    return Utterance(text, voice, path, rate, PAD_S, len(padded) / rate)


def _make_stream(engine: str):
    from kamevoice.backend.stt import make_stt
    from kamevoice.backend.stt.settings import SphinxSettings, STTSettings

    if engine == "sphinx":
        return make_stt(STTSettings(provider="sphinx"))
    if engine == "sphinx-task":
        return make_stt(STTSettings(provider="sphinx", sphinx=SphinxSettings(corpus_text=DOMAIN_TEXT)))
    return make_stt(STTSettings(provider=engine))


async def _measure(engine: str, utts: list[Utterance], realtime: bool) -> dict[str, float]:
    from kamevoice.backend.stt.files import transcribe_file
    from kamevoice.runtime.events import EventLog

    errors, ref_words, compute, first_partial, final_after, calls = 0.0, 0, 0.0, [], [], []
    for u in utts:
        stt = _make_stream(engine)
        await stt.prepare()  # a session loads its engine before the user speaks
        log = EventLog(keep=True)  # its clock starts with the audio
        stt.events, stt.clock = log, log.clock
        t0 = time.perf_counter()
        hyps = await transcribe_file(stt, u.path, realtime=realtime)
        compute += time.perf_counter() - t0
        text = " ".join(h.text for h in hyps if h.is_final)
        n = len(normalise(u.text))
        errors += wer(u.text, text) * n
        ref_words += n
        partials = [h for h in hyps if not h.is_final]
        finals = [h for h in hyps if h.is_final]
        if realtime and partials:
            # Wall-clock seconds from the start of speech to the first partial.
            first_partial.append(partials[0].emitted_at - u.speech_start)
        if realtime and finals:
            # Wall-clock seconds from the end of speech to the final.
            final_after.append(finals[-1].emitted_at - (u.duration - PAD_S))
        calls += [e["compute_s"] for e in log.events if "compute_s" in e]
    audio_s = sum(u.duration for u in utts)

    def mean(xs: list[float]) -> float:
        return float(np.mean(xs)) if xs else float("nan")

    return {
        "wer": errors / max(1, ref_words),
        "rtf": compute / audio_s,
        "first_partial_s": mean(first_partial),
        "final_after_s": mean(final_after),
        "call_s": mean(calls),
    }


def main(argv: list[str] | None = None) -> int:
    """Print WER and timing per engine and voice."""
    import tempfile

    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--engines", default="sphinx,sphinx-task,whisper,paired")
    parser.add_argument(
        "--realtime", action="store_true", help="push audio at real time and report latencies (slow)"
    )
    args = parser.parse_args(argv)
    os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")
    have = synthesisers()
    with tempfile.TemporaryDirectory() as tmp:
        sets = {
            voice: [synthesise(s, voice, Path(tmp), f"{voice}{i}") for i, s in enumerate(SENTENCES)]
            for voice in ("flite", "espeak")
            if have[voice]
        }
        print(f"{len(SENTENCES)} sentences, {sum(len(normalise(s)) for s in SENTENCES)} words per voice")
        print(
            f"{'engine':12} {'voice':7} {'WER':>6} {'RTF':>6} {'whisper call':>12}"
            + (f" {'1st partial':>12} {'final after':>12}" if args.realtime else "")
        )
        for engine in args.engines.split(","):
            for voice, utts in sets.items():
                r = asyncio.run(_measure(engine, utts, args.realtime))
                line = f"{engine:12} {voice:7} {r['wer']:6.3f} {r['rtf']:6.3f} {r['call_s']:11.3f}s"
                if args.realtime:
                    line += f" {r['first_partial_s']:11.2f}s {r['final_after_s']:11.2f}s"
                print(line, flush=True)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
