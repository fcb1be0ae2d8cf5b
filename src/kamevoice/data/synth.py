"""Dialogue scripts -> stereo speech with word timings, in the published layout.

For each script: every turn is synthesised with the speaker's voice (the user
on channel 0 / speaker A, the assistant on channel 1 / speaker B), trimmed to
its speech, resampled to 24 kHz and placed on the timeline after a natural gap
(random, seeded) or, now and then, slightly overlapping the end of the user's
turn, as people do. Writes `audio/<id>.wav` and then `text/<id>.json`; an item
is finished when both exist, so an interrupted run resumes cleanly.
"""

from __future__ import annotations

import random
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from kamevoice.audio import resample
from kamevoice.data.dialogues import ASSISTANT, USER, Script
from kamevoice.data.formats import AUDIO_DIR, TEXT_DIR, Word, write_stereo_wav, write_words
from kamevoice.data.jobs import Item, Outcome
from kamevoice.runtime.clock import SAMPLE_RATE
from kamevoice.tts import TTSEngine, get_engine

SPEAKER_OF = {USER: "A", ASSISTANT: "B"}


@dataclass(frozen=True)
class SynthOptions:
    """How scripts are voiced and laid out in time."""

    engine: str = "espeak"
    # Engine-specific settings passed to `get_engine` (e.g. openai: base_url, model, voices).
    engine_settings: dict[str, Any] = field(default_factory=dict)
    sample_rate: int = SAMPLE_RATE  # Mimi's rate
    seed: int = 0
    # Silence between one speaker's last word and the other's first word (s): human gaps are ~0.2 s,
    # and a thinking pause before an answer can approach a second.
    gap_min: float = 0.2
    gap_max: float = 0.9
    # Now and then the assistant starts before the user has quite finished (s of overlap).
    overlap_probability: float = 0.15
    overlap_min: float = 0.05
    overlap_max: float = 0.3
    # Silence before the first word and after the last (s).
    lead_in: float = 0.5
    tail: float = 0.5
    # Speech kept around each turn's first and last word when trimming (s): breath and plosive tails.
    edge_pad: float = 0.05
    # Each speaker's speaking rate is drawn once per dialogue from this range (x normal speed).
    rate_min: float = 0.9
    rate_max: float = 1.15


@dataclass(frozen=True)
class _Placed:
    channel: int
    offset: int  # first sample on the dialogue timeline
    audio: np.ndarray


class DialogueSynthesizer:
    """Voices scripts with one engine.

    Voices, rates, gaps and overlaps are drawn from the seed and the script id,
    so a rerun makes the same choices; the audio itself may differ by a few
    milliseconds, since espeak-ng is not bit-exact from call to call (the word
    timings are always those of the audio written).
    """

    def __init__(self, options: SynthOptions | None = None, engine: TTSEngine | None = None):
        self.options = options or SynthOptions()
        self._own_engine = engine is None
        self.engine = engine or get_engine(self.options.engine, **self.options.engine_settings)

    def close(self) -> None:
        """Release the engine's resources (a hosted engine's connections) if this object made it."""
        close = getattr(self.engine, "close", None)
        if self._own_engine and callable(close):
            close()

    def render(self, script: Script) -> tuple[np.ndarray, np.ndarray, list[Word]]:
        """Channel A audio, channel B audio (float32, `options.sample_rate`) and the timed words."""
        o = self.options
        rng = random.Random(f"{o.seed}:{script.id}")
        voices = self.engine.voices()
        user_voice = rng.choice(voices)
        assistant_voice = rng.choice([v for v in voices if v != user_voice] or voices)
        voice = {USER: user_voice, ASSISTANT: assistant_voice}
        rate = {USER: rng.uniform(o.rate_min, o.rate_max), ASSISTANT: rng.uniform(o.rate_min, o.rate_max)}
        placed: list[_Placed] = []
        words: list[Word] = []
        cursor: float | None = None  # end of the last word spoken so far (s)
        previous_speaker: str | None = None
        for index, turn in enumerate(script.turns):
            audio, sr, spans = self.engine.synthesize(turn.text, voice[turn.speaker], rate[turn.speaker])
            if not spans:
                raise ValueError(f"turn {index} produced no words: {turn.text[:60]!r}")
            first, last = spans[0][1], spans[-1][2]
            lo = max(0.0, first - o.edge_pad)
            hi = min(len(audio) / sr, last + o.edge_pad)
            clip = resample(audio[int(lo * sr) : int(np.ceil(hi * sr))], sr, o.sample_rate)
            if cursor is None:
                start = o.lead_in
            elif (
                turn.speaker == ASSISTANT
                and previous_speaker == USER
                and rng.random() < o.overlap_probability
            ):
                start = cursor - rng.uniform(o.overlap_min, o.overlap_max)
            else:
                start = cursor + rng.uniform(o.gap_min, o.gap_max)
            # `start` is where the first word begins; the clip begins `first - lo` earlier.
            clip_start = max(0.0, start - (first - lo))
            shift = clip_start - lo  # clip time -> dialogue time
            speaker = SPEAKER_OF[turn.speaker]
            placed.append(_Placed(0 if speaker == "A" else 1, round(clip_start * o.sample_rate), clip))
            words += [Word(speaker, w, s + shift, e + shift) for w, s, e in spans]
            cursor = max(cursor or 0.0, last + shift)
            previous_speaker = turn.speaker
        total = max(p.offset + len(p.audio) for p in placed) + int(o.tail * o.sample_rate)
        channels = [np.zeros(total, np.float32), np.zeros(total, np.float32)]
        for p in placed:
            channels[p.channel][p.offset : p.offset + len(p.audio)] += p.audio
        return channels[0], channels[1], words


def synth_done(out_dir: Path, item_id: str) -> bool:
    """A dialogue is finished when both its transcript and its audio exist (each written atomically)."""
    return (out_dir / TEXT_DIR / f"{item_id}.json").exists() and (
        out_dir / AUDIO_DIR / f"{item_id}.wav"
    ).exists()


def synth_item(item: Item, options: SynthOptions, out_dir: Path) -> Outcome:
    """Stage work function: voice one script, write its WAV then its word timings."""
    started = time.perf_counter()
    synthesizer = DialogueSynthesizer(options)
    try:
        channel_a, channel_b, words = synthesizer.render(item.payload)
    finally:
        synthesizer.close()
    write_stereo_wav(out_dir / AUDIO_DIR / f"{item.id}.wav", channel_a, channel_b, options.sample_rate)
    write_words(out_dir / TEXT_DIR / f"{item.id}.json", words)
    seconds = len(channel_a) / options.sample_rate
    return Outcome(
        item.id,
        {
            "dialogues": 1,
            "audio_seconds": seconds,
            "audio_hours": seconds / 3600.0,
            "words": len(words),
            "turns": len(item.payload.turns),
            "synth_cpu_seconds": time.perf_counter() - started,
        },
    )
