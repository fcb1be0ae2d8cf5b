"""espeak-ng through ctypes: word timings checked against the audio itself."""

from __future__ import annotations

import itertools

import numpy as np
import pytest

from kamevoice.audio import resample
from kamevoice.tts import Synthesis, TTSEngine, get_engine

from .helpers import FRAME_S, SPEECH_RMS, frame_rms

TEXT = (
    "Hello there, my friend. The answer is forty two! Could you walk me through it? "
    "Betty is saving money for a new wallet which costs one hundred dollars."
)


@pytest.fixture(scope="module")
def engine():
    return get_engine("espeak")


@pytest.mark.parametrize(("voice", "rate"), [("en-us", 1.0), ("en+f4", 0.8), ("en-029+m4", 1.3)])
def test_word_timings_match_the_audio(engine, voice, rate):
    result = engine.synthesize(TEXT, voice, rate)
    assert isinstance(result, Synthesis)
    audio, sr, words = result
    assert audio.dtype == np.float32 and sr == 22050
    # Every token is there, in order (espeak-ng sometimes speaks "for a" as one word: both are kept).
    assert [w for w, _, _ in words] == TEXT.split()
    starts = [s for _, s, _ in words]
    ends = [e for _, _, e in words]
    assert all(s < e for s, e in zip(starts, ends, strict=True))
    assert all(e <= s2 + 1e-9 for e, s2 in zip(ends, starts[1:], strict=False)), "timings must be monotonic"
    duration = len(audio) / sr
    assert ends[-1] <= duration and duration - ends[-1] < 1.0  # only the closing pause follows

    speech = frame_rms(audio, sr) > SPEECH_RMS
    inside = np.zeros(len(speech), bool)
    for _, s, e in words:
        inside[int(s / FRAME_S) : int(np.ceil(e / FRAME_S))] = True
        # The audio between a word's start and end is speech, not silence.
        assert speech[int(s / FRAME_S) : max(int(s / FRAME_S) + 1, int(e / FRAME_S))].mean() > 0.6
    # Hardly any speech falls outside the words (measured: under 2 % of speech frames).
    assert (speech & ~inside).sum() / speech.sum() < 0.03
    # The pauses between sentences lie outside every word and are (almost) silent.
    gaps = [(e, s2) for (_, _, e), (_, s2, _) in itertools.pairwise(words) if s2 - e > 0.1]
    assert len(gaps) >= 3
    for e, s2 in gaps:
        assert speech[int(e / FRAME_S) + 2 : int(s2 / FRAME_S)].mean() < 0.2


def test_voices_and_rates_change_the_speech(engine):
    assert isinstance(engine, TTSEngine) and len(engine.voices()) >= 8
    slow = engine.synthesize("The weather is lovely today.", "en-us", 0.8)
    fast = engine.synthesize("The weather is lovely today.", "en-us", 1.3)
    assert slow.words[-1][2] > 1.3 * fast.words[-1][2]
    other = engine.synthesize("The weather is lovely today.", "en+f4", 1.0)
    same = engine.synthesize("The weather is lovely today.", "en-us", 1.0)
    assert len(other.audio) != len(same.audio) or not np.allclose(other.audio, same.audio)


def test_resampling_to_24k_keeps_a_tone():
    sr = 22050
    t = np.arange(sr) / sr
    out = resample(np.sin(2 * np.pi * 440 * t).astype(np.float32), sr, 24000)
    assert len(out) == 24000
    ref = np.sin(2 * np.pi * 440 * np.arange(24000) / 24000)
    assert np.abs(out[100:-100] - ref[100:-100]).max() < 1e-3
