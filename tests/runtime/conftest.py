"""Fixtures for runtime tests: a random-weight front-end checkpoint with a reduced Mimi, and speech."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from safetensors.torch import save_file

from kamevoice.frontend.checkpoint import save_checkpoint
from kamevoice.frontend.codec import MimiCodec, mimi_config
from tests.frontend.helpers import SMALL_TEST_LM, small_lm


@pytest.fixture(scope="session")
def tiny_checkpoint(tmp_path_factory, spm_path):
    """Published layout; random weights: the wiring is under test here, not the answers."""
    root = tmp_path_factory.mktemp("runtime_ckpt")
    torch.manual_seed(0)
    codec = MimiCodec.load(None, num_codebooks=2, reduced=True)
    weights = root / "mimi.safetensors"
    save_file({k: v.contiguous() for k, v in codec.model.state_dict().items()}, str(weights))
    return save_checkpoint(
        root / "ckpt",
        small_lm(),
        dict(SMALL_TEST_LM),
        tokenizer=spm_path,
        codec_weights=weights,
        codec_config=mimi_config(reduced=True),
    )


@pytest.fixture(scope="session")
def question_wav(tmp_path_factory):
    """'What time does the store open on Saturday?' spoken by espeak-ng, with silence around it."""
    import soundfile as sf

    from kamevoice.data.tts import get_engine

    speech = get_engine("espeak").synthesize("What time does the store open on Saturday?")
    pad = np.zeros(int(0.5 * speech.sample_rate), dtype=np.float32)
    path = tmp_path_factory.mktemp("speech") / "question.wav"
    sf.write(path, np.concatenate([pad, speech.audio, pad]), speech.sample_rate)
    return path
