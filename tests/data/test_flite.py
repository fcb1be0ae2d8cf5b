"""The optional flite engine, timed by PocketSphinx forced alignment (skipped where either is missing)."""

from __future__ import annotations

import shutil

import numpy as np
import pytest

from kamevoice.tts import get_engine

from .helpers import FRAME_S, SPEECH_RMS, frame_rms

pytest.importorskip("pocketsphinx")
pytestmark = pytest.mark.skipif(shutil.which("flite") is None, reason="Debian package flite not installed")

TEXT = "Hello there, my friend. The answer is forty two! Betty is saving money for a new wallet."


def test_flite_words_are_aligned_to_the_audio():
    engine = get_engine("flite")
    audio, sr, words = engine.synthesize(TEXT, "slt", 1.0)
    assert sr == 16000 and [w for w, _, _ in words] == TEXT.split()
    assert all(s < e for _, s, e in words)
    speech = frame_rms(audio, sr) > SPEECH_RMS
    inside = np.zeros(len(speech), bool)
    voiced = []
    for _, s, e in words:
        inside[int(s / FRAME_S) : int(np.ceil(e / FRAME_S))] = True
        voiced.append(speech[int(s / FRAME_S) : int(e / FRAME_S)].mean())
    # Aligned spans hold speech (a word's soft onset, e.g. the h of "hello", may fall below the threshold).
    assert min(voiced) > 0.3 and np.mean(voiced) > 0.8
    assert (speech & ~inside).sum() / speech.sum() < 0.1


def test_unknown_words_are_refused_with_their_name():
    from kamevoice.errors import InputError
    from kamevoice.tts.flite import PocketSphinxAligner

    with pytest.raises(InputError, match="qwzxv"):
        PocketSphinxAligner(16000).align(np.zeros(16000, np.float32), ["hello", "qwzxv"])
