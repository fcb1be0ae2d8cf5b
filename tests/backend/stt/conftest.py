"""Speech made for the STT tests: flite (slt) and espeak-ng say known sentences into WAV files."""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np
import pytest
import soundfile as sf

from kamevoice.eval.stt import SENTENCES, Utterance, synthesise, synthesisers

os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")

# How many of the measured sentences the quick tests use (the measure tool runs all).
N_TEST_SENTENCES = 4


def _voice(voice: str, tmp_path_factory: pytest.TempPathFactory) -> list[Utterance]:
    if not synthesisers()[voice]:
        pytest.skip(f"{'flite' if voice == 'flite' else 'espeak-ng'} is not installed (apt-get install it)")
    out = tmp_path_factory.mktemp(voice)
    return [synthesise(s, voice, out, f"s{i}") for i, s in enumerate(SENTENCES[:N_TEST_SENTENCES])]


@pytest.fixture(scope="session")
def flite_speech(tmp_path_factory: pytest.TempPathFactory) -> list[Utterance]:
    """Sentences spoken by flite's slt voice (16 kHz), 1 s of silence before and after."""
    return _voice("flite", tmp_path_factory)


@pytest.fixture(scope="session")
def espeak_speech(tmp_path_factory: pytest.TempPathFactory) -> list[Utterance]:
    """The same sentences spoken by espeak-ng (22.05 kHz)."""
    return _voice("espeak", tmp_path_factory)


@pytest.fixture(scope="session")
def two_utterances(flite_speech: list[Utterance], tmp_path_factory: pytest.TempPathFactory) -> Path:
    """Two flite sentences in one file, separated by their 1 s pads (2 s of silence)."""
    a, _ = sf.read(str(flite_speech[0].path), dtype="float32")
    b, rate = sf.read(str(flite_speech[1].path), dtype="float32")
    path = tmp_path_factory.mktemp("two") / "two.wav"
    sf.write(str(path), np.concatenate([a, b]), rate, subtype="PCM_16")
    return path
