"""`kamevoice bench codec`: is a CPU codec fast and intelligible enough for the tiny preset?

For each Codec 2 mode it prints the streaming frame time (encode + decode of
one 80 ms frame, batch 1, one thread: median and p99 over every frame of the
speech), the bit rate and token shape, and intelligibility as PocketSphinx
word accuracy (1 - WER, over all words) of codec round-trips, next to the
same figure for the original audio and for the codec's 8 kHz band limit
alone (its resamplers without codec 2: what narrow band costs by itself).

Speech is made on the spot by flite (`slt`) and espeak-ng (`en-us`): the 20
assistant requests of `kamevoice.eval.stt.DOMAIN_TEXT`. PocketSphinx
decodes each whole utterance (no endpointing) at 16 kHz with the task
language model built from that same text (closed domain: it shows how much
acoustic detail survives, not open-vocabulary accuracy), and with `--general`
also with the general en-US model. `--keep 1,4,8` adds round-trips that keep
only the first k codebooks (the rest decoded at mid-interval), which shows
how much the leading codebooks carry (all-scalar modes only: 1300, 1600, 3200).
"""

from __future__ import annotations

import argparse
import os
import statistics
import sys
import tempfile
import time
from collections.abc import Callable, Iterable
from dataclasses import asdict, dataclass, field
from pathlib import Path

import numpy as np

# PocketSphinx's acoustic model is trained on 16 kHz speech.
SPHINX_RATE = 16_000
# Language weight of the decoder: the sphinx provider's default.
SPHINX_LW = 6.5
# Columns of the table when stdout is not a terminal (rich would squeeze it into 80).
WIDE_TABLE = 150


@dataclass(frozen=True)
class Sample:
    """One synthesised sentence at the codec's rate."""

    voice: str
    text: str
    audio: np.ndarray  # float32 mono


@dataclass
class CodecFigures:
    """What one condition measured."""

    name: str
    bitrate: float | None  # bits/s the tokens carry (None: not a codec)
    num_codebooks: int | None
    cardinality: int | None
    frame_median_ms: float | None = None  # encode + decode of one 80 ms frame, batch 1
    frame_p99_ms: float | None = None
    frames_timed: int = 0
    word_accuracy: dict[str, float] = field(default_factory=dict)  # "<lm>/<voice>" -> 1 - WER


def make_speech(sentences: Iterable[str], voices: Iterable[str], rate: int, workdir: Path) -> list[Sample]:
    """Speak every sentence with every voice ('flite', 'espeak'), resampled to `rate`, 1 s silence padded."""
    import soundfile as sf

    from kamevoice.audio import resample
    from kamevoice.eval.stt import synthesise

    samples = []
    for voice in voices:
        for i, text in enumerate(sentences):
            utt = synthesise(text, voice, workdir, f"{voice}{i}")
            audio, sr = sf.read(str(utt.path), dtype="float32")
            samples.append(Sample(voice, text, resample(audio, sr, rate).astype(np.float32)))
    return samples


class SphinxScorer:
    """Word accuracy of PocketSphinx on whole utterances, with the task or the general language model."""

    def __init__(self, lm: str, domain_text: str, rate: int):
        from pocketsphinx import Decoder

        from kamevoice.backend.stt.sphinx import build_task_lm, default_dictionary, subset_dictionary

        self.rate = rate
        config = {"samprate": SPHINX_RATE, "lw": SPHINX_LW, "loglevel": "FATAL"}
        with tempfile.TemporaryDirectory(prefix="kamevoice-codec-") as tmp:
            if lm == "task":
                arpa, small = Path(tmp) / "task.lm", Path(tmp) / "task.dict"
                sentences = build_task_lm(domain_text, arpa)
                subset_dictionary(default_dictionary(), {w for s in sentences for w in s.split()}, small)
                config.update(lm=str(arpa), dict=str(small))
            elif lm != "general":
                raise ValueError(f"unknown language model {lm!r} (task, general)")
            self.decoder = Decoder(**config)

    def transcribe(self, audio: np.ndarray) -> str:
        from kamevoice.audio import resample

        pcm = resample(np.asarray(audio, dtype=np.float32), self.rate, SPHINX_RATE)
        from kamevoice.audio import float_to_int16

        ints = float_to_int16(pcm)
        self.decoder.start_utt()
        self.decoder.process_raw(ints.tobytes(), False, True)
        self.decoder.end_utt()
        hyp = self.decoder.hyp()
        return hyp.hypstr if hyp is not None else ""

    def accuracy(self, samples: list[Sample], transform: Callable[[np.ndarray], np.ndarray]) -> float:
        """1 - (word errors / reference words) over `samples`, each passed through `transform` first."""
        from kamevoice.eval.stt import normalise, wer

        errors = words = 0.0
        for s in samples:
            n = len(normalise(s.text))
            errors += wer(s.text, self.transcribe(transform(s.audio))) * n
            words += n
        return 1.0 - errors / max(1.0, words)


def round_trip(codec, audio: np.ndarray, keep: int | None = None) -> np.ndarray:
    """Encode and decode a whole signal; `keep`: decode only the first `keep` codebooks."""
    import torch

    pcm = torch.from_numpy(np.ascontiguousarray(audio, dtype=np.float32))[None, None]
    codes = codec.encode(pcm)
    if keep is not None:
        codes = codes[:, :keep]
    return codec.decode(codes)[0, 0, : len(audio)].numpy()


def time_frames(codec, samples: list[Sample]) -> list[float]:
    """Seconds of `encode_frame` + `decode_frame`, batch 1, for every 80 ms frame of `samples`."""
    import torch

    times = []
    size = codec.frame_size
    with codec.streaming(1):
        for s in samples:
            codec.reset(torch.ones(1, dtype=torch.bool))
            for start in range(0, len(s.audio) - size + 1, size):
                frame = torch.from_numpy(s.audio[start : start + size])[None, None]
                t0 = time.perf_counter()
                codec.decode_frame(codec.encode_frame(frame))
                times.append(time.perf_counter() - t0)
    return times


def _percentile(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, round(q * (len(ordered) - 1)))]


def measure(
    modes: list[int],
    voices: list[str],
    lms: list[str],
    keeps: list[int],
    sentences: list[str],
    domain_text: str,
    progress: Callable[[str], None] = lambda _: None,
) -> list[CodecFigures]:
    """Figures for the original audio, the 8 kHz band limit, each mode, and each mode's first-k cuts."""
    from kamevoice.frontend.codec2 import Codec2Codec, Codec2Options, band_limit

    codecs = {m: Codec2Codec(Codec2Options(mode=m)) for m in modes}
    first = codecs[modes[0]]
    with tempfile.TemporaryDirectory(prefix="kamevoice-codec-") as tmp:
        progress("synthesising speech")
        samples = make_speech(sentences, voices, first.sample_rate, Path(tmp))
    scorers = {lm: SphinxScorer(lm, domain_text, first.sample_rate) for lm in lms}

    def score(fig: CodecFigures, transform: Callable[[np.ndarray], np.ndarray]) -> CodecFigures:
        for lm, scorer in scorers.items():
            for voice in voices:
                progress(f"{fig.name}: {lm} LM, {voice}")
                chosen = [s for s in samples if s.voice == voice]
                fig.word_accuracy[f"{lm}/{voice}"] = round(scorer.accuracy(chosen, transform), 3)
        return fig

    results = [
        score(CodecFigures("original (24 kHz)", None, None, None), lambda a: a),
        score(CodecFigures("8 kHz band limit only", None, None, None), band_limit),
    ]
    for mode, codec in codecs.items():
        progress(f"codec2-{mode}: timing")
        times = time_frames(codec, samples)
        fig = CodecFigures(
            f"codec2-{mode}",
            codec.bitrate,
            codec.num_codebooks,
            codec.cardinality,
            frame_median_ms=round(statistics.median(times) * 1e3, 3),
            frame_p99_ms=round(_percentile(times, 0.99) * 1e3, 3),
            frames_timed=len(times),
        )
        results.append(score(fig, lambda a, c=codec: round_trip(c, a)))
        # Cutting codebooks means something only for all-scalar layouts (a cut VQ index is 0, not coarse).
        scalar = all(f.ordered or f.spare for f in codec.layout_fields)
        for k in keeps if scalar else []:
            if k < codec.num_codebooks:
                cut = CodecFigures(
                    f"codec2-{mode}, first {k} codebooks",
                    k * np.log2(codec.cardinality) * codec.sample_rate / codec.frame_size,
                    k,
                    codec.cardinality,
                )
                results.append(score(cut, lambda a, c=codec, k=k: round_trip(c, a, keep=k)))
    return results


def register_codec(group: argparse._SubParsersAction) -> None:
    """Add `codec` to the `kamevoice bench` group."""
    p = group.add_parser(
        "codec",
        help="CPU codec (codec 2): frame time, bit rate, PocketSphinx word accuracy of round-trips",
        description=__doc__.split("\n\n")[1],
    )
    p.add_argument(
        "--modes",
        default="1200,1300,1600,3200",
        help="comma-separated codec 2 modes (the first is the default)",
    )
    p.add_argument("--voices", default="flite,espeak", help="comma-separated synthesisers (flite, espeak)")
    p.add_argument("--general", action="store_true", help="also score with the general en-US LM (slow)")
    p.add_argument("--keep", default="", help="comma-separated k: also decode only the first k codebooks")
    p.add_argument("--sentences", type=int, default=0, help="use only the first N sentences (0: all 20)")
    p.add_argument("--json", metavar="FILE", nargs="?", const="-", help="write JSON (to FILE or stdout)")
    p.set_defaults(handler=run_codec)


def run_codec(args: argparse.Namespace) -> int:
    """Measure, print a table, and optionally write JSON."""
    import torch
    from rich.console import Console
    from rich.table import Table

    from kamevoice.errors import ConfigError
    from kamevoice.eval.stt import DOMAIN_TEXT, synthesisers

    torch.set_num_threads(1)  # the target is one core; numpy here is single-threaded code
    modes = [int(m) for m in args.modes.split(",") if m.strip()]
    voices = [v.strip() for v in args.voices.split(",") if v.strip()]
    missing = [v for v in voices if not synthesisers().get(v, False)]
    if missing or not modes:
        raise ConfigError(f"bench codec: synthesiser(s) not installed: {missing}" if missing else "no modes")
    keeps = [int(k) for k in args.keep.split(",") if k.strip()]
    sentences = DOMAIN_TEXT.split("\n")
    sentences = sentences[: args.sentences] if args.sentences > 0 else sentences
    lms = ["task", "general"] if args.general else ["task"]
    console = Console(stderr=True)
    with console.status("benchmarking") as status:
        results = measure(modes, voices, lms, keeps, sentences, DOMAIN_TEXT, progress=status.update)

    columns = [f"{lm}/{v}" for lm in lms for v in voices]
    table = Table(title=f"kamevoice bench codec (1 thread; load average {os.getloadavg()[0]:.1f})")
    for col in ("condition", "bit/s", "K x card", "frame ms (median / p99)", *columns):
        table.add_column(col, justify="left" if col == "condition" else "right")
    for r in results:
        table.add_row(
            r.name,
            f"{r.bitrate:.0f}" if r.bitrate else "-",
            f"{r.num_codebooks} x {r.cardinality}" if r.num_codebooks else "-",
            f"{r.frame_median_ms:.2f} / {r.frame_p99_ms:.2f}" if r.frame_median_ms is not None else "-",
            *(f"{r.word_accuracy[c]:.3f}" for c in columns),
        )
    out = Console(width=None if sys.stdout.isatty() else WIDE_TABLE)
    out.print(table)
    out.print(
        f"word accuracy = 1 - WER over {len(sentences)} sentences per voice; "
        "task = LM of the domain text, general = en-US LM; frame budget 80 ms, target <= 20 ms"
    )
    if args.json:
        payload = {
            "threads": torch.get_num_threads(),
            "load_average": os.getloadavg(),
            "sentences": len(sentences),
            "frame_budget_ms": 80.0,
            "target_frame_ms": 20.0,
            "results": [asdict(r) for r in results],
        }
        from kamevoice.bench.report import write_json

        write_json(payload, args.json)
    return 0
