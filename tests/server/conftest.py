"""Fixtures for server tests: the runtime's tiny checkpoint and speech, a loaded front-end, a live server."""

from __future__ import annotations

import contextlib

import numpy as np
import pytest

from kamevoice.config import load_settings
from kamevoice.frontend.sampling import SamplingOptions
from tests.runtime.conftest import question_wav, tiny_checkpoint  # noqa: F401 - fixtures shared with runtime

GREEDY = SamplingOptions(greedy=True)


@pytest.fixture(scope="session")
def frontend(tiny_checkpoint):  # noqa: F811
    from kamevoice.frontend.loading import load_frontend

    return load_frontend(tiny_checkpoint, device="cpu")


@pytest.fixture(scope="session")
def question_24k(question_wav):  # noqa: F811
    """The question speech as float32 24 kHz mono."""
    from kamevoice.audio import read_audio, resample

    audio, rate = read_audio(question_wav)
    mono = audio.mean(axis=1) if audio.ndim == 2 else audio
    return resample(mono.astype(np.float32), rate, 24_000)


@contextlib.asynccontextmanager
async def running_server(frontend, sampling=GREEDY, backend=None, **server):
    """A `KameServer` on a random loopback port; yields (server, base_url)."""
    from kamevoice.server.app import KameServer

    settings = load_settings(server={"port": 0, **server})
    srv = KameServer(frontend, settings, sampling=sampling, backend=backend)
    host, port = await srv.start()
    try:
        yield srv, f"http://{host}:{port}"
    finally:
        await srv.stop()
