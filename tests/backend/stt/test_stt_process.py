"""A local STT engine hosted in a child process gives the same hypotheses as in process."""

from __future__ import annotations

import asyncio

import numpy as np
import pytest

from kamevoice.audio import read_audio
from kamevoice.backend.stt import STTError, STTSettings, make_stt
from kamevoice.backend.stt.subprocess_host import ProcessSTT
from kamevoice.runtime.events import EventLog
from kamevoice.runtime.messages import EventKind

SPHINX = STTSettings(provider="sphinx")


async def _transcribe(stt, audio, rate):
    async def read():
        return [hyp async for hyp in stt]

    reader = asyncio.create_task(read())
    chunk = rate // 10
    for start in range(0, len(audio), chunk):
        await stt.push(audio[start : start + chunk], rate)
    await stt.finish()
    return await reader


async def test_process_hosted_sphinx_equals_in_process(flite_speech):
    audio, rate = read_audio(flite_speech[0].path)
    inline = await _transcribe(make_stt(SPHINX), audio, rate)
    events = EventLog()
    hosted = await _transcribe(ProcessSTT(SPHINX, events=events), audio, rate)
    finals = lambda hyps: [(h.text, [(w.word, w.start, w.end) for w in h.words]) for h in hyps if h.is_final]  # noqa: E731
    assert finals(hosted) == finals(inline) and finals(hosted)
    assert flite_speech[0].text.split()[-1] in finals(hosted)[-1][0]
    # The parent logs the hosted engine's hypotheses with their lag, as for any provider.
    assert events.of_kind(EventKind.STT_FINAL) and all(
        "lag_s" in e for e in events.of_kind(EventKind.STT_PARTIAL)
    )


async def test_a_dead_child_is_an_stt_error_not_a_hang():
    stt = ProcessSTT(SPHINX)
    await stt.prepare()
    stt._process.kill()
    with pytest.raises(STTError):
        for _ in range(50):  # the death is noticed on the next push or by the reader
            await stt.push(np.zeros(1600, dtype=np.float32), 16000)
            await asyncio.sleep(0.05)
        async for _ in stt:
            pass
    await stt.aclose()
