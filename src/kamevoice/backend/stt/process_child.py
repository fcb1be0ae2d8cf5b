"""The STT child process: one recognition stream on a private event loop, fed over a socket.

`child_main` is the target `ProcessSTT` starts (a fresh interpreter, `spawn`). It loads the
engine, says "ready", then reads frames (`process_wire`): each pushed chunk goes to the
engine and is acknowledged with the total audio processed, so the parent knows how much is
still pending; hypotheses go back as they come. The child may block on its own socket: it
is the parent that must never block.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import socket
from typing import Any

import numpy as np

from kamevoice.backend.stt.base import ENGINE_RATE, STTStream, cause_of
from kamevoice.backend.stt.process_wire import END, PUSH, recv_frame, send_message
from kamevoice.backend.stt.settings import STTSettings

# The child runs at a lower CPU priority than the frame loop: on a small machine a Whisper
# decode (hundreds of ms on every core) would otherwise push frame steps past their 80 ms.
CHILD_NICENESS = 10


def child_main(sock: socket.socket, settings_json: str) -> None:
    """The child process's body: serve one stream until the parent ends, closes or goes away."""
    import kamevoice  # noqa: F401 - sets OMP_WAIT_POLICY and friends before torch loads

    with contextlib.suppress(OSError, AttributeError):  # not every platform has nice()
        os.nice(CHILD_NICENESS)
    try:
        asyncio.run(_serve(sock, STTSettings.model_validate_json(settings_json)))
    finally:
        sock.close()


async def _serve(sock: socket.socket, settings: STTSettings) -> None:
    from kamevoice.backend.stt import make_stt

    loop = asyncio.get_running_loop()

    def send(message: list[Any]) -> None:
        with contextlib.suppress(OSError):  # the parent went away: nobody to tell
            send_message(sock, message)

    def report(exc: BaseException) -> None:
        send(["error", cause_of(exc).value, type(exc).__name__, str(exc)])

    try:
        stt = make_stt(settings)
        await stt.prepare()
    except Exception as exc:
        report(exc)
        send(["ended"])
        return
    send(["ready"])
    relay = asyncio.create_task(_relay(stt, send, report))
    processed = 0
    try:
        while True:
            data = await loop.run_in_executor(None, recv_frame, sock)
            if data is None:  # the parent went away
                await stt.aclose()
                break
            tag = data[:1]
            if tag == PUSH:
                audio = np.frombuffer(data, dtype=np.float32, offset=1).copy()  # aligned
                await stt.push(audio, ENGINE_RATE)
                processed += len(audio)
                send(["ack", processed])
            elif tag == END:
                await stt.finish()
                break
            else:  # CLOSE
                await stt.aclose()
                break
    except Exception as exc:
        report(exc)
        await stt.aclose()
    await relay
    send(["ended"])


async def _relay(stt: STTStream, send, report) -> None:
    """Hypotheses to the parent as the engine publishes them."""
    try:
        async for hyp in stt:
            words = [[w.word, w.start, w.end] for w in hyp.words]
            send(["hyp", hyp.text, hyp.is_final, words, hyp.audio_end])
    except Exception as exc:
        report(exc)
