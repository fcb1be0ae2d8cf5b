"""What the Realtime door adds to each 80 ms frame, against the Moshi door's Opus path.

    from kamevoice.bench.doors_realtime import measure_realtime_overhead
    result = measure_realtime_overhead(frames=1000)          # or audio_format="audio/pcmu"
    print(result.table())                                     # or result.as_dict() for JSON

Per frame of audio, on this machine's CPU, one thread, the door's own code:

- Realtime out: the model's frame to the text message on the socket: format conversion
  (PCM16, or resampling to 8 kHz and G.711), base64, the delta event (`Responses.audio`) and
  its JSON (`wire.dumps`);
- Realtime in: a client's `input_audio_buffer.append` text to float32 samples at 24 kHz:
  JSON (`parse_client_event`), base64 and format conversion (`AudioIn.decode`);
- Moshi out / in: the same frame through the Moshi door's path: `sphn`'s Ogg/Opus writer and
  the `0x01` framing, and back through the page check and `sphn`'s reader.

p50 and p99 in microseconds over `frames` frames after `warmup` frames, plus the bytes a frame
costs on the wire. Nothing here touches the network or the model: it is the door's share of a
frame, the figure to set beside the engine's step time (`kamevoice bench serve`).
"""

from __future__ import annotations

import json
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass

import numpy as np

from kamevoice.runtime.clock import FRAME_SAMPLES
from kamevoice.server.doors.realtime.audio import AudioIn, AudioOut, WireFormat
from kamevoice.server.doors.realtime.dialect import GA
from kamevoice.server.doors.realtime.responses import Responses
from kamevoice.server.doors.realtime.wire import Ids, ItemLog, dumps, parse_client_event

# The codec's rate: every door hands the session float32 audio at 24 kHz.
RATE = 24_000
# Frames timed before the figures count: first calls allocate and warm caches.
WARMUP_FRAMES = 20


@dataclass(frozen=True)
class Timing:
    """One path's cost per frame (microseconds) and its size on the wire (bytes a frame)."""

    p50_us: float
    p99_us: float
    bytes_per_frame: float


@dataclass(frozen=True)
class DoorOverhead:
    """`measure_realtime_overhead`'s result (see module doc)."""

    frames: int
    audio_format: str
    realtime_out: Timing
    realtime_in: Timing
    moshi_out: Timing
    moshi_in: Timing

    def as_dict(self) -> dict:
        return asdict(self)

    def table(self) -> str:
        """A Markdown table of the four paths."""
        rows = [
            "| path | p50 us | p99 us | bytes/frame |",
            "|---|---|---|---|",
        ]
        for name in ("realtime_out", "realtime_in", "moshi_out", "moshi_in"):
            t: Timing = getattr(self, name)
            rows.append(f"| {name} | {t.p50_us:.1f} | {t.p99_us:.1f} | {t.bytes_per_frame:.0f} |")
        return "\n".join(rows)


def speech_like(seconds: float, seed: int = 0) -> np.ndarray:
    """A voiced, noisy signal at 24 kHz (harmonics of a wandering pitch, syllable-rate envelope):
    Opus spends on it about what it spends on speech."""
    rng = np.random.default_rng(seed)
    t = np.arange(int(seconds * RATE)) / RATE
    pitch = 140 + 30 * np.sin(2 * np.pi * 0.7 * t)
    phase = 2 * np.pi * np.cumsum(pitch) / RATE
    voiced = sum(np.sin(k * phase) / k for k in range(1, 12))
    envelope = 0.5 * (1 + np.sin(2 * np.pi * 4 * t))
    return (0.1 * envelope * voiced + 0.005 * rng.standard_normal(len(t))).astype(np.float32)


def _timed(step: Callable[[int], int], frames: int, warmup: int) -> Timing:
    """Run `step(i)` (returns bytes) for `warmup + frames` frames; time the last `frames`."""
    spent, sizes = [], []
    for i in range(warmup + frames):
        start = time.perf_counter_ns()
        size = step(i)
        took = time.perf_counter_ns() - start
        if i >= warmup:
            spent.append(took / 1e3)
            sizes.append(size)
    return Timing(
        p50_us=round(float(np.percentile(spent, 50)), 2),
        p99_us=round(float(np.percentile(spent, 99)), 2),
        bytes_per_frame=round(float(np.mean(sizes)), 1),
    )


def measure_realtime_overhead(
    frames: int = 1000,
    *,
    audio_format: str = WireFormat.PCM16.value,
    warmup: int = WARMUP_FRAMES,
    audio: np.ndarray | None = None,
) -> DoorOverhead:
    """Time the Realtime door's per-frame work and the Moshi door's Opus path (see module doc).

    Args:
        frames: frames timed per path (80 ms each).
        audio_format: the Realtime wire format, a GA name: "audio/pcm", "audio/pcmu", "audio/pcma".
        warmup: frames run first and not counted.
        audio: float32 mono at 24 kHz to send (default: `speech_like`), repeated as needed.
    """
    import sphn

    from kamevoice.server import protocol
    from kamevoice.server.ogg import check_pages

    fmt = WireFormat(audio_format)
    total = frames + warmup
    source = speech_like(total * FRAME_SAMPLES / RATE) if audio is None else np.asarray(audio, np.float32)
    reps = -(-total * FRAME_SAMPLES // len(source))
    pcm = np.tile(source, reps)[: total * FRAME_SAMPLES].reshape(total, FRAME_SAMPLES)

    ids, sent = Ids(), []

    def send(event: dict, tag: str | None = None) -> None:  # the door's `_send`, less the outbox
        sent.append(dumps({"event_id": ids.new("event"), **event}))

    responses = Responses(send, ids, ItemLog(), GA)
    responses.open(0)
    out = AudioOut(fmt, RATE)

    def realtime_out(i: int) -> int:
        responses.audio(out.encode(pcm[i]))
        return len(sent.pop().encode())

    # What a client would send: appends in the same format, made beforehand (the client's cost).
    wire_in = AudioOut(fmt, RATE)
    appends = [json.dumps({"type": "input_audio_buffer.append", "audio": wire_in.encode(f)}) for f in pcm]
    decoder = AudioIn(fmt, RATE)

    def realtime_in(i: int) -> int:
        event = parse_client_event(appends[i])
        decoder.decode(event["audio"])
        return len(appends[i])

    writer = sphn.OpusStreamWriter(RATE)

    def moshi_out(i: int) -> int:
        pages = writer.append_pcm(pcm[i])
        return len(protocol.pack(protocol.Kind.AUDIO, pages)) if pages else 0

    encoder = sphn.OpusStreamWriter(RATE)
    pages_in = [bytes(encoder.append_pcm(f)) for f in pcm]
    reader = sphn.OpusStreamReader(RATE)

    def moshi_in(i: int) -> int:
        if pages_in[i]:
            check_pages(pages_in[i])
            reader.append_bytes(pages_in[i])
        return len(pages_in[i]) + 1

    return DoorOverhead(
        frames=frames,
        audio_format=fmt.value,
        realtime_out=_timed(realtime_out, frames, warmup),
        realtime_in=_timed(realtime_in, frames, warmup),
        moshi_out=_timed(moshi_out, frames, warmup),
        moshi_in=_timed(moshi_in, frames, warmup),
    )


class RealtimeWire:
    """Both ends of one Realtime session for `kamevoice bench doors` (see `kamevoice.bench.doors.Wire`):
    the server's stages are the door's own (`parse_client_event`, `AudioIn`; `AudioOut`, the delta
    event by `Responses.audio`, `dumps`); the client sends `input_audio_buffer.append` events."""

    def __init__(self, audio_format: str = WireFormat.PCM16.value):
        fmt = WireFormat(audio_format)
        self.name = f"realtime-{fmt.value.removeprefix('audio/')}"
        self._fmt = fmt
        ids, self._sent = Ids(), []

        def send(event: dict, tag: str | None = None) -> None:  # the door's `_send`, less the outbox
            self._sent.append(dumps({"event_id": ids.new("event"), **event}))

        self._responses = Responses(send, ids, ItemLog(), GA)
        self._responses.open(0)
        decoder, encoder = AudioIn(fmt, RATE), AudioOut(fmt, RATE)
        self.server_decode = (
            ("json", parse_client_event),
            ("audio", lambda event: decoder.decode(event["audio"])),
        )
        self.server_encode = (("audio", encoder.encode), ("json", self._delta))
        self._client = AudioOut(fmt, RATE)

    def _delta(self, payload: str) -> list[str]:
        self._responses.audio(payload)
        return [self._sent.pop()]

    def client_frames(self, speech: np.ndarray) -> list[np.ndarray]:
        whole = len(speech) // FRAME_SAMPLES * FRAME_SAMPLES
        return list(np.asarray(speech[:whole], np.float32).reshape(-1, FRAME_SAMPLES))

    def client_encode(self, held: np.ndarray) -> list[str]:
        return [json.dumps({"type": "input_audio_buffer.append", "audio": self._client.encode(held)})]

    def client_decode(self, message: str) -> None:
        json.loads(message)


async def measure(options, speech: np.ndarray) -> list:
    """The Realtime door, PCM16 and G.711 mu-law, for `kamevoice bench doors`."""
    from kamevoice.bench.doors import measure_wire

    notes = "one input_audio_buffer.append a frame in, one output_audio.delta out"
    return [
        await measure_wire(lambda: RealtimeWire(WireFormat.PCM16.value), speech, options, notes),
        await measure_wire(lambda: RealtimeWire(WireFormat.PCMU.value), speech, options, notes),
    ]
