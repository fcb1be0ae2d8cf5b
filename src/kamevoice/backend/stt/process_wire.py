"""What `ProcessSTT` and its child say to each other: length-prefixed frames on a stream socket.

Each frame is a 4-byte big-endian length and that many bytes. The parent sends

    b"P" + float32 PCM at ENGINE_RATE   the next audio
    b"E"                                the audio has ended: flush, then say "ended"
    b"C"                                close now

and the child answers with JSON arrays:

    ["ready"]                                      the engine is loaded
    ["ack", samples]                               audio processed so far (after every push)
    ["hyp", text, is_final, [[word, start, end]], audio_end]
    ["error", cause, type, text]                   the engine failed (`cause`: an `STTCause`)
    ["ended"]                                      nothing more will come

The parent reads with `FrameBuffer` from asyncio's `data_received` (bytes as they come,
a half-written frame waits for its rest); the child, which may block, reads and writes
its socket directly (`recv_frame`, `send_message`).
"""

from __future__ import annotations

import json
import socket
import struct
from typing import Any

import numpy as np

from kamevoice.backend.stt.base import STTError
from kamevoice.runtime.messages import STTCause

HEADER = struct.Struct("!I")
# The largest frame either side accepts: a push of 60 s of audio (float32 at 16 kHz, 3.8 MB)
# fits many times over; a length beyond it is a broken stream, not a message to wait for.
MAX_FRAME_BYTES = 16 << 20

PUSH, END, CLOSE = b"P", b"E", b"C"


def frame(payload: bytes) -> bytes:
    """`payload` with its length in front."""
    return HEADER.pack(len(payload)) + payload


def push_frame(audio: np.ndarray) -> bytes:
    """The frame that carries mono float32 audio."""
    return frame(PUSH + np.ascontiguousarray(audio, dtype=np.float32).tobytes())


def message_frame(message: list[Any]) -> bytes:
    """The frame that carries a JSON message."""
    return frame(json.dumps(message).encode("utf-8"))


class FrameBuffer:
    """Bytes in, whole frames out: what is left of a frame waits for the next bytes."""

    def __init__(self, limit: int = MAX_FRAME_BYTES):
        self.limit = limit
        self._data = bytearray()

    def feed(self, data: bytes) -> list[bytes]:
        """Add bytes; returns the frames they complete. Raises `STTError` on an oversized length."""
        self._data += data
        frames = []
        while len(self._data) >= HEADER.size:
            (size,) = HEADER.unpack_from(self._data)
            if size > self.limit:
                raise STTError(f"the STT process sent a {size}-byte frame (limit {self.limit})")
            end = HEADER.size + size
            if len(self._data) < end:
                break
            frames.append(bytes(self._data[HEADER.size : end]))
            del self._data[:end]
        return frames


def _recv_exactly(sock: socket.socket, n: int) -> bytes | None:
    data = bytearray()
    while len(data) < n:
        chunk = sock.recv(n - len(data))
        if not chunk:
            return None
        data += chunk
    return bytes(data)


def recv_frame(sock: socket.socket) -> bytes | None:
    """Read the next frame, blocking (the child); None when the other side has gone."""
    header = _recv_exactly(sock, HEADER.size)
    if header is None:
        return None
    (size,) = HEADER.unpack(header)
    if size > MAX_FRAME_BYTES:
        raise STTError(
            f"the parent sent a {size}-byte frame (limit {MAX_FRAME_BYTES})", cause=STTCause.INTERNAL
        )
    return _recv_exactly(sock, size) if size else b""


def send_message(sock: socket.socket, message: list[Any]) -> None:
    """Write one JSON message, blocking (the child)."""
    sock.sendall(message_frame(message))
