"""A local STT engine hosted in a child process gives the same hypotheses as in process,
and a child that stops or dies fails its stream (with its cause) without ever blocking the parent."""

from __future__ import annotations

import asyncio
import os
import signal
import time

import numpy as np
import pytest

from kamevoice.audio import read_audio
from kamevoice.backend.stt import STTError, STTSettings, make_stt
from kamevoice.backend.stt.process_wire import FrameBuffer, frame, message_frame
from kamevoice.backend.stt.subprocess_host import ProcessSTT
from kamevoice.runtime.events import EventLog
from kamevoice.runtime.messages import EventKind, STTCause

SPHINX = STTSettings(provider="sphinx")
# Tight bounds, so a stopped child is found in about a second.
QUICK = STTSettings(provider="sphinx", process={"max_pending_s": 1.0, "silent_timeout_s": 1.0})
CHUNK = np.zeros(1280, dtype=np.float32)  # 80 ms at 16 kHz, what the server pushes
# A push only hands bytes to the transport; even a loaded machine does that well inside this.
MAX_PUSH_S = 0.05
READY_TIMEOUT_S = 60.0  # a fresh interpreter, pocketsphinx and its model, on a loaded machine


async def _ready(stt: ProcessSTT) -> None:
    await stt.prepare()
    deadline = time.monotonic() + READY_TIMEOUT_S
    while not stt.ready:
        assert time.monotonic() < deadline, "the STT child did not load its engine"
        await asyncio.sleep(0.05)


def _gone(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return True
    return False


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
    os.kill(stt.pid, signal.SIGKILL)
    with pytest.raises(STTError) as failed:
        for _ in range(50):  # the death is noticed on the next push or by the reader
            await stt.push(np.zeros(1600, dtype=np.float32), 16000)
            await asyncio.sleep(0.05)
        async for _ in stt:
            pass
    assert failed.value.cause is STTCause.EXITED and "exited" in str(failed.value)
    await stt.aclose()


async def test_a_stopped_child_is_given_up_on_and_killed_while_pushes_never_block():
    events = EventLog()
    stt = ProcessSTT(QUICK, events=events)
    await _ready(stt)
    pid = stt.pid
    os.kill(pid, signal.SIGSTOP)
    slowest, error = 0.0, None
    try:
        for _ in range(50):  # 4 s of audio, pushed in real time as the server does
            start = time.perf_counter()
            try:
                await stt.push(CHUNK, 16000)
            except STTError as exc:
                error = exc
                break
            finally:
                slowest = max(slowest, time.perf_counter() - start)
            await asyncio.sleep(0.08)
        assert error is not None, "a stopped child was not noticed"
        assert error.cause is STTCause.STALLED and "stopped reading" in str(error), error
        assert slowest < MAX_PUSH_S, f"a push took {slowest * 1e3:.0f} ms"
        # The reader hears the same failure; the log has it with its cause.
        with pytest.raises(STTError):
            async for _ in stt:
                pass
        assert [e["cause"] for e in events.of_kind(EventKind.STT_ERROR)] == [STTCause.STALLED]
        await stt.aclose()
        assert _gone(pid)  # SIGKILL ends a stopped process too, and it was reaped
    finally:
        if not _gone(pid):
            os.kill(pid, signal.SIGKILL)


async def test_a_stopped_child_with_audio_pending_is_found_by_its_silence():
    stt = ProcessSTT(QUICK)
    await _ready(stt)
    pid = stt.pid
    os.kill(pid, signal.SIGSTOP)
    try:
        await stt.push(CHUNK, 16000)  # 80 ms pending, then no more audio: the bound is never reached
        with pytest.raises(STTError) as failed:
            async with asyncio.timeout(10):
                async for _ in stt:
                    pass
        assert failed.value.cause is STTCause.STALLED and "sent nothing" in str(failed.value)
        await stt.aclose()
        assert _gone(pid)
    finally:
        if not _gone(pid):
            os.kill(pid, signal.SIGKILL)


async def test_audio_for_a_stopped_child_waits_in_a_buffer_bounded_in_bytes():
    # Stopped before it loaded its engine: only the start timeout (here 20 s) and the byte bound
    # (the audio of start_timeout_s + max_pending_s, 20.5 s) apply; 40 s are pushed at once.
    stt = ProcessSTT(STTSettings(provider="sphinx", process={"max_pending_s": 0.5, "start_timeout_s": 20}))
    await stt.prepare()
    pid = stt.pid
    os.kill(pid, signal.SIGSTOP)
    chunk = np.zeros(8000, dtype=np.float32)  # 0.5 s
    slowest, error, most = 0.0, None, 0
    try:
        for _ in range(80):
            start = time.perf_counter()
            try:
                await stt.push(chunk, 16000)
            except STTError as exc:
                error = exc
                break
            finally:
                slowest = max(slowest, time.perf_counter() - start)
            most = max(most, stt.unsent_bytes)
        assert error is not None and error.cause is STTCause.STALLED and "bytes unsent" in str(error), error
        assert slowest < MAX_PUSH_S, f"a push took {slowest * 1e3:.0f} ms"
        assert 0 < most <= stt.buffer_limit  # the socket took some, our buffer held the rest, bounded
        await stt.aclose()
        assert _gone(pid)
    finally:
        if not _gone(pid):
            os.kill(pid, signal.SIGKILL)


def test_frames_are_reassembled_from_any_pieces():
    wire = message_frame(["ack", 1280]) + frame(b"") + message_frame(["ready"])
    buffer = FrameBuffer()
    got = []
    for i in range(len(wire)):  # one byte at a time: a half-written frame waits for its rest
        got += buffer.feed(wire[i : i + 1])
    assert got == [b'["ack", 1280]', b"", b'["ready"]']
    with pytest.raises(STTError):
        FrameBuffer(limit=10).feed(frame(b"x" * 11))
