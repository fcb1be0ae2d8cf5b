"""Test helpers for the Realtime door: the official `openai` SDK as the client, every event it
receives checked against the SDK's own model of that event type (GA or beta)."""

from __future__ import annotations

import asyncio
import base64
import contextlib
import json
import time
import typing
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from kamevoice.audio import pcm16_bytes, pcm16_from_bytes, resample

# One 80 ms frame at 24 kHz: what a client appends at a time here.
FRAME = 1920
FRAME_S = 0.08


def server_event_models(beta: bool) -> dict[str, Any]:
    """The SDK's server event models by their `type` (the API's whole set of server events)."""
    if beta:
        from openai.types.beta.realtime.realtime_server_event import RealtimeServerEvent
    else:
        from openai.types.realtime.realtime_server_event import RealtimeServerEvent
    union = typing.get_args(RealtimeServerEvent)[0]  # Annotated[Union[...], PropertyInfo]
    models = {}
    for model in typing.get_args(union):
        for name in typing.get_args(model.model_fields["type"].annotation):
            models[name] = model
    return models


def client(url: str) -> Any:
    """An `AsyncOpenAI` for the server at `url` (the beta client needs its WebSocket URL set:
    it would use wss:// otherwise)."""
    from openai import AsyncOpenAI

    ws = url.replace("http://", "ws://")
    return AsyncOpenAI(base_url=f"{url}/v1", websocket_base_url=f"{ws}/v1", api_key="x")


@dataclass
class Recorder:
    """Reads a connection's events in the background; checks each against the SDK's models."""

    conn: Any
    beta: bool = False
    events: list[dict] = field(default_factory=list)
    unknown: list[dict] = field(default_factory=list)  # types outside the API's set
    invalid: list[tuple[str, str]] = field(default_factory=list)  # (type, validation error)
    closed: bool = False

    def __post_init__(self) -> None:
        self._models = server_event_models(self.beta)
        self._task = asyncio.create_task(self._read())

    async def _read(self) -> None:
        try:
            while True:
                raw = await self.conn.recv_bytes()
                event = json.loads(raw)
                model = self._models.get(event.get("type"))
                if model is None:
                    self.unknown.append(event)
                else:
                    try:
                        model.model_validate(event)
                    except Exception as exc:
                        self.invalid.append((event["type"], str(exc)[:500]))
                event["_t"] = time.monotonic()
                self.events.append(event)
        except Exception:  # the connection closed
            self.closed = True

    async def stop(self) -> None:
        self._task.cancel()
        with contextlib.suppress(asyncio.CancelledError, Exception):
            await self._task

    def of(self, kind: str) -> list[dict]:
        return [e for e in self.events if e["type"] == kind]

    def types(self) -> set[str]:
        return {e["type"] for e in self.events}

    async def wait_for(self, predicate: Callable[[Recorder], Any], timeout: float) -> Any:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if result := predicate(self):
                return result
            await asyncio.sleep(0.02)
        return predicate(self)

    async def wait_type(self, kind: str, timeout: float, after: int = 0) -> dict | None:
        """The first event of `kind` at index `after` or later."""
        found = await self.wait_for(lambda r: [e for e in r.events[after:] if e["type"] == kind], timeout)
        return found[0] if found else None


def b64(pcm: np.ndarray) -> str:
    return base64.b64encode(pcm16_bytes(pcm)).decode()


async def stream(conn: Any, audio: np.ndarray, pace: float = FRAME_S, encode: Callable = b64) -> None:
    """Append `audio` (24 kHz float) one frame at a time, at the pace of speech."""
    for start in range(0, len(audio) - FRAME + 1, FRAME):
        await conn.input_audio_buffer.append(audio=encode(audio[start : start + FRAME]))
        await asyncio.sleep(pace)


def delta_audio(events: list[dict]) -> np.ndarray:
    """The PCM16 audio deltas of `events`, decoded and joined."""
    chunks = [pcm16_from_bytes(base64.b64decode(e["delta"])) for e in events]
    return np.concatenate(chunks) if chunks else np.zeros(0, np.float32)


def spoken(text: str, lead_s: float = 0.5, tail_s: float = 4.0) -> np.ndarray:
    """`text` spoken by espeak-ng at 24 kHz, with silence before and after."""
    from kamevoice.tts import get_engine

    speech = get_engine("espeak").synthesize(text)
    audio = resample(speech.audio.astype(np.float32), speech.sample_rate, 24_000)
    return np.concatenate(
        [np.zeros(int(lead_s * 24_000), np.float32), audio, np.zeros(int(tail_s * 24_000), np.float32)]
    )
