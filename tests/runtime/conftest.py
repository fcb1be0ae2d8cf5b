"""Fixtures for runtime tests: a random-weight front-end checkpoint with a reduced Mimi, and speech."""

from __future__ import annotations

import numpy as np
import pytest

from tests.frontend.helpers import save_codec_checkpoint


@pytest.fixture(scope="session")
def tiny_checkpoint(tmp_path_factory, spm_path):
    """Published layout; random weights: the wiring is under test here, not the answers."""
    return save_codec_checkpoint(tmp_path_factory.mktemp("runtime_ckpt"), spm_path)


@pytest.fixture(scope="session")
def question_wav(tmp_path_factory):
    """'What time does the store open on Saturday?' spoken by espeak-ng, with silence around it."""
    import soundfile as sf

    from kamevoice.tts import get_engine

    speech = get_engine("espeak").synthesize("What time does the store open on Saturday?")
    pad = np.zeros(int(0.5 * speech.sample_rate), dtype=np.float32)
    path = tmp_path_factory.mktemp("speech") / "question.wav"
    sf.write(path, np.concatenate([pad, speech.audio, pad]), speech.sample_rate)
    return path
