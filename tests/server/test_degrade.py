"""A back-end failure (STT or LLM) degrades its own conversation only; the others keep their oracle."""

from __future__ import annotations

import asyncio

import numpy as np

from kamevoice.backend.factory import Backend
from kamevoice.backend.llm.base import LLMProvider, RequestRejectedError
from kamevoice.backend.llm.factory import make_llm
from kamevoice.backend.stt import STTError, make_stt
from kamevoice.backend.stt.base import STTStream
from kamevoice.config import load_settings
from kamevoice.runtime.messages import EventKind
from kamevoice.server.client import ChatClient
from tests.server.conftest import running_server


class BrokenSTT(STTStream):
    """An STT whose engine fails on the first audio."""

    name = "broken-stt"

    async def _feed(self, audio: np.ndarray) -> None:
        raise STTError("broken-stt: the recogniser crashed")

    async def _end(self) -> None:
        return None


class BrokenLLM(LLMProvider):
    """An LLM that rejects every request."""

    name = "broken-llm"

    async def stream(self, messages, *, system):
        raise RequestRejectedError("broken-llm", "local://nowhere", "the model is gone", status=500)
        yield ""  # an async generator, like real providers


async def test_stt_and_llm_failures_stay_in_their_sessions(frontend, question_24k):
    settings = load_settings()
    order: list[str] = []  # which session (by connection order) gets which broken part

    def stt(events):
        order.append("stt")
        return BrokenSTT(events=events) if len(order) == 2 else make_stt(settings.stt, events=events)

    llms = iter([BrokenLLM(), make_llm(settings.llm), make_llm(settings.llm)])
    backend = Backend(stt=stt, llm=lambda: next(llms))
    audio = np.concatenate([question_24k, np.zeros(48_000, np.float32)])

    async def talk(client: ChatClient, *until: str) -> None:
        for start in range(0, len(audio) - 1919, 1920):
            await client.send_frame(audio[start : start + 1920])
            await asyncio.sleep(0.08)
        await client.wait_for(lambda c: all(c.events_of(kind) for kind in until), 20)

    async with (
        running_server(frontend, backend=backend, max_sessions=3) as (srv, url),
        ChatClient.connect(url) as bad_llm,  # connections open one after the other: this one is first
        ChatClient.connect(url) as bad_stt,
        ChatClient.connect(url) as healthy,
    ):
        await asyncio.gather(
            talk(bad_llm, EventKind.ORACLE_UNAVAILABLE, EventKind.STT_FINAL),
            talk(bad_stt, EventKind.STT_UNAVAILABLE),
            talk(healthy, EventKind.ORACLE_TEXT, EventKind.STT_FINAL),
        )
        assert len(srv.connections) == 3  # nobody was thrown out
    # The broken LLM: the transcript still arrives, the oracle is reported unavailable, audio goes on.
    assert bad_llm.events_of(EventKind.STT_FINAL) and bad_llm.events_of(EventKind.ORACLE_UNAVAILABLE)
    assert not bad_llm.events_of(EventKind.ORACLE_TEXT)
    # The broken STT: reported, no transcript, no oracle, audio goes on.
    assert bad_stt.events_of(EventKind.STT_UNAVAILABLE) and not bad_stt.events_of(EventKind.STT_FINAL)
    assert not bad_stt.events_of(EventKind.ORACLE_TEXT)
    # The healthy one got everything.
    assert healthy.events_of(EventKind.STT_FINAL) and healthy.events_of(EventKind.ORACLE_TEXT)
    for client in (bad_llm, bad_stt, healthy):
        assert client.got.error is None and len(client.audio()) >= 20 * 1920
