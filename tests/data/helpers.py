"""Shared helpers of the data-pipeline tests."""

from __future__ import annotations

import hashlib
import json
from pathlib import Path

import numpy as np

from kamevoice.cli import main
from kamevoice.data.formats import write_stereo_wav

SAMPLE_DIR = Path(__file__).resolve().parents[3] / "shared" / "data" / "kame_finetune_sample"
if not SAMPLE_DIR.is_dir():  # the shared folder sits beside the checkout
    SAMPLE_DIR = Path("/work/shared/data/kame_finetune_sample")

# Frames for energy checks: 10 ms; a frame counts as speech above this RMS (speech peaks near 0.3).
FRAME_S = 0.01
SPEECH_RMS = 0.01

GSM8K_ITEMS = [
    {
        "question": "Natalia sold clips to 48 of her friends in April, and then she sold half as many "
        "clips in May. "
        "How many clips did Natalia sell altogether in April and May?",
        "answer": "Natalia sold 48/2 = <<48/2=24>>24 clips in May.\n"
        "Natalia sold 48+24 = <<48+24=72>>72 clips altogether in April and May.\n#### 72",
    },
    {
        "question": "Weng earns $12 an hour for babysitting. Yesterday, she just did 50 minutes of "
        "babysitting. "
        "How much did she earn?",
        "answer": "Weng earns 12/60 = $<<12/60=0.2>>0.2 per minute.\n"
        "Working 50 minutes, she earned 0.2 x 50 = $<<0.2*50=10>>10.\n#### 10",
    },
    {
        "question": "Betty is saving money for a new wallet which costs $100. She has half of the money. "
        "How much more money does Betty need?",
        "answer": "Betty has 100/2 = $<<100/2=50>>50.\nShe needs 100-50 = $<<100-50=50>>50 more.\n#### 50",
    },
    {
        "question": "James writes a 3-page letter to 2 different friends twice a week. "
        "How many pages does he "
        "write a year?",
        "answer": "He writes each friend 3*2=<<3*2=6>>6 pages a week.\n"
        "So he writes 6*2=<<6*2=12>>12 pages every "
        "week.\nThat means he writes 12*52=<<12*52=624>>624 pages a year.\n#### 624",
    },
]


def write_jsonl(path: Path, rows: list) -> Path:
    """Write rows (dicts, or raw strings for corrupt lines) as JSONL."""
    with open(path, "w", encoding="utf-8") as f:
        for row in rows:
            f.write((row if isinstance(row, str) else json.dumps(row)) + "\n")
    return path


def cli(*args: str | Path) -> int:
    """Run `kamevoice ...` in this process; returns the exit code."""
    return main([str(a) for a in args])


def frame_rms(audio: np.ndarray, sample_rate: int) -> np.ndarray:
    """RMS of consecutive 10 ms frames."""
    hop = int(sample_rate * FRAME_S)
    n = len(audio) // hop
    return np.sqrt((audio[: n * hop].reshape(n, hop).astype(np.float64) ** 2).mean(axis=1))


def file_digests(folder: Path) -> dict[str, tuple[int, str]]:
    """name -> (mtime_ns, sha256) of every file under `folder`."""
    return {
        str(p.relative_to(folder)): (p.stat().st_mtime_ns, hashlib.sha256(p.read_bytes()).hexdigest())
        for p in sorted(folder.rglob("*"))
        if p.is_file()
    }


def write_finetune_item(data_dir, item, seconds, rate, rng, event_times_ms=(500, 1000)):
    """One dialogue in the published kame_finetune layout: noise audio, 4 words, an oracle event per time."""
    (data_dir / "text").mkdir(parents=True, exist_ok=True)
    (data_dir / "audio").mkdir(exist_ok=True)
    (data_dir / "oracle_raw").mkdir(exist_ok=True)
    n = int(seconds * rate)
    write_stereo_wav(
        data_dir / "audio" / f"{item}.wav", 0.1 * rng.standard_normal(n), 0.1 * rng.standard_normal(n), rate
    )
    words = [
        {"speaker": "A", "word": "what", "start": 0.1, "end": 0.3},
        {"speaker": "A", "word": "time", "start": 0.35, "end": 0.6},
        {"speaker": "B", "word": "the store opens", "start": 1.2, "end": 1.9},
        {"speaker": "B", "word": "at nine", "start": 2.0, "end": 2.4},
    ]
    (data_dir / "text" / f"{item}.json").write_text(json.dumps(words))
    event = {
        "timestamp_ms": 500,
        "conversation_context": "A: what",
        "prediction": "the store opens at nine",
        "total_word_count": 1,
        "trigger_word": "what",
        "recent_words": "what",
        "current_spoken_ratio": 0.5,
        "channel": 1,
        "hint": "",
    }
    events = [dict(event, timestamp_ms=t) for t in event_times_ms]
    (data_dir / "oracle_raw" / f"{item}.json").write_text(json.dumps(events))
