"""`kamevoice bench doors`: what each front door's wire protocol adds to an 80 ms frame.

No model runs: the question speech (espeak-ng, 24 kHz) goes through each door's own
wire code, the objects its `Conversation` uses (`MoshiAudio`, Twilio's `CallAudio`
and message builders), measured two ways per frame:

- server side: the decode of one input frame (what a client sends for 80 ms: one
  Ogg/Opus or PCM16 message for Moshi, four 20 ms `media` messages for Twilio) and the
  encode of one output frame, each layer apart (framing, JSON, base64, mu-law,
  resampling, Ogg, Opus), as `time.perf_counter` differences;
- end to end over loopback: a simulated client encodes the frame as its protocol does
  and sends it to an echo server on 127.0.0.1, which decodes every message with the
  door's code and, on the client's flush marker, encodes what it decoded and sends it
  back; the time from the client's first byte to its decoding of the reply.

Figures are p50 and p99 in ms, and each door against the Moshi protocol as Kyutai's
clients speak it (`REFERENCE`, Ogg/Opus): what choosing that door costs per frame.
`held_in_ms` is audio the server's decoder holds back (a resampler's look-ahead, a
partial packet): a delay, not processing.

Pluggable: `DOOR_BENCHES` names each door's measuring function as "module:function";
it takes `DoorBenchOptions` and the speech, and returns a list of `DoorFigures`,
usually by handing `measure_wire` one `Wire` factory per variant. A door's bench is one
line here (the OpenAI Realtime door's: `"realtime": "kamevoice.bench.doors_realtime:measure"`).
"""

from __future__ import annotations

import argparse
import asyncio
import importlib
import time
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import asdict, dataclass, field
from typing import Any, Protocol

import numpy as np

from kamevoice.runtime.clock import FRAME_SAMPLES, SAMPLE_RATE

# Each door's measuring function, "module:function" (imported only when that door is measured).
DOOR_BENCHES: dict[str, str] = {
    "moshi": "kamevoice.bench.doors_moshi:measure",
    "twilio": "kamevoice.bench.doors_twilio:measure",
    "realtime": "kamevoice.bench.doors_realtime:measure",
}
# The protocol every door is compared with: Moshi's, as Kyutai's own clients speak it.
REFERENCE = "moshi-opus"
# The client's flush marker on the echo server: a binary message no door's protocol has (0xFF is
# no Moshi kind, and Twilio and Realtime speak text frames).
SYNC = b"\xffsync"
# Percentiles reported (of per-frame times).
QUANTILES = {"p50": 50, "p99": 99}

Stage = tuple[str, Callable[[Any], Any]]


@dataclass(frozen=True)
class DoorBenchOptions:
    """How much to measure: `frames` timed frames per door after `warmup` untimed ones."""

    frames: int = 500
    warmup: int = 25


class Wire(Protocol):
    """One door's wire code, both ends, for one stream (a fresh one per measurement: codecs and
    resamplers keep state). The server's stages are the door's own."""

    name: str
    #: Stages over one client message; the last returns float32 samples at 24 kHz (maybe none).
    server_decode: Sequence[Stage]
    #: Stages over one output frame (24 kHz samples); the last returns the messages to send (a list).
    server_encode: Sequence[Stage]

    def client_frames(self, speech: np.ndarray) -> list[Any]:
        """What the client holds for each 80 ms frame before encoding it (not timed)."""
        ...

    def client_encode(self, held: Any) -> list[str | bytes]:
        """The messages a client sends for one frame."""
        ...

    def client_decode(self, message: str | bytes) -> None:
        """What a client does with one server message (decode it for playback)."""
        ...


@dataclass
class DoorFigures:
    """One door variant's figures (ms per 80 ms frame unless named otherwise)."""

    door: str
    frames: int
    messages_in: float  # client messages per frame
    bytes_in: float  # wire bytes a client sends per frame
    bytes_out: float  # wire bytes the server sends per frame
    decode_ms: dict[str, dict[str, float]]  # layer (and "total") -> {p50, p99}
    encode_ms: dict[str, dict[str, float]]
    loopback_ms: dict[str, float]  # {p50, p99}: client encode .. server .. client decode
    held_in_ms: float  # audio the server's decoder holds back (look-ahead), a delay
    notes: str = ""
    vs_reference: dict[str, float] = field(default_factory=dict)  # p50 differences, filled by `run`


def percentiles(values_ms: Sequence[float]) -> dict[str, float]:
    """p50 and p99 of per-frame times, rounded to a tenth of a microsecond."""
    arr = np.asarray(values_ms, dtype=np.float64)
    return {name: round(float(np.percentile(arr, q)), 4) for name, q in QUANTILES.items()}


def run_stages(stages: Sequence[Stage], value: Any, times: dict[str, float]) -> Any:
    """`value` through `stages`, adding each stage's milliseconds to `times`."""
    for name, fn in stages:
        t0 = time.perf_counter()
        value = fn(value)
        times[name] = times.get(name, 0.0) + (time.perf_counter() - t0) * 1e3
    return value


def _size(message: str | bytes) -> int:
    return len(message.encode("utf-8")) if isinstance(message, str) else len(message)


def _frames_of(speech: np.ndarray, count: int) -> list[np.ndarray]:
    """`count` frames of the speech, looped."""
    reps = -(-count * FRAME_SAMPLES // len(speech))
    audio = np.tile(speech, reps)[: count * FRAME_SAMPLES]
    return [audio[i * FRAME_SAMPLES : (i + 1) * FRAME_SAMPLES] for i in range(count)]


def server_side(make_wire: Callable[[], Wire], speech: np.ndarray, options: DoorBenchOptions) -> dict:
    """Per-frame decode and encode times, layer by layer, and the wire's sizes."""
    client, server = make_wire(), make_wire()
    frames = _frames_of(speech, options.warmup + options.frames)
    held = client.client_frames(np.concatenate(frames))
    decode: list[dict[str, float]] = []
    encode: list[dict[str, float]] = []
    messages = bytes_in = bytes_out = decoded = 0
    for i, frame in enumerate(frames):
        sent = client.client_encode(held[i])
        d: dict[str, float] = {}
        for message in sent:
            decoded += len(run_stages(server.server_decode, message, d))
        e: dict[str, float] = {}
        out = run_stages(server.server_encode, frame, e)
        if i >= options.warmup:
            decode.append(d)
            encode.append(e)
            messages += len(sent)
            bytes_in += sum(_size(m) for m in sent)
            bytes_out += sum(_size(m) for m in out)
    n = options.frames

    def summary(rows: list[dict[str, float]]) -> dict[str, dict[str, float]]:
        names = list(rows[0])
        table = {name: percentiles([r.get(name, 0.0) for r in rows]) for name in names}
        table["total"] = percentiles([sum(r.values()) for r in rows])
        return table

    held_ms = (len(frames) * FRAME_SAMPLES - decoded) / SAMPLE_RATE * 1e3
    return {
        "decode_ms": summary(decode),
        "encode_ms": summary(encode),
        "messages_in": messages / n,
        "bytes_in": bytes_in / n,
        "bytes_out": bytes_out / n,
        "held_in_ms": round(held_ms, 2),
    }


async def loopback(
    make_wire: Callable[[], Wire], speech: np.ndarray, options: DoorBenchOptions
) -> list[float]:
    """Per-frame round trips (ms) through an echo server on 127.0.0.1 speaking the door's wire."""
    import aiohttp
    from aiohttp import web

    async def echo(request: web.Request) -> web.WebSocketResponse:
        wire = make_wire()
        ws = web.WebSocketResponse(max_msg_size=0)
        await ws.prepare(request)
        pending: list[np.ndarray] = []
        async for msg in ws:
            if msg.type == aiohttp.WSMsgType.BINARY and msg.data == SYNC:
                pcm = np.concatenate(pending) if pending else np.zeros(0, np.float32)
                pending.clear()
                for message in run_stages(wire.server_encode, pcm, {}) if len(pcm) else []:
                    await (ws.send_str(message) if isinstance(message, str) else ws.send_bytes(message))
                await ws.send_bytes(SYNC)
            elif msg.type in (aiohttp.WSMsgType.TEXT, aiohttp.WSMsgType.BINARY):
                pending.append(run_stages(wire.server_decode, msg.data, {}))
        return ws

    app = web.Application()
    app.router.add_get("/", echo)
    runner = web.AppRunner(app, access_log=None, handle_signals=False)
    await runner.setup()
    site = web.TCPSite(runner, "127.0.0.1", 0)
    await site.start()
    host, port = runner.addresses[0][:2]
    client = make_wire()
    frames = _frames_of(speech, options.warmup + options.frames)
    held = client.client_frames(np.concatenate(frames))
    times: list[float] = []
    try:
        async with (
            aiohttp.ClientSession() as http,
            http.ws_connect(f"ws://{host}:{port}/", max_msg_size=0) as ws,
        ):
            for i in range(len(frames)):
                t0 = time.perf_counter()
                for message in client.client_encode(held[i]):
                    await (ws.send_str(message) if isinstance(message, str) else ws.send_bytes(message))
                await ws.send_bytes(SYNC)
                async for msg in ws:
                    if msg.type == aiohttp.WSMsgType.BINARY and msg.data == SYNC:
                        break
                    client.client_decode(msg.data)
                if i >= options.warmup:
                    times.append((time.perf_counter() - t0) * 1e3)
    finally:
        await runner.cleanup()
    return times


async def measure_wire(
    make_wire: Callable[[], Wire], speech: np.ndarray, options: DoorBenchOptions, notes: str = ""
) -> DoorFigures:
    """A door variant's figures from its `Wire` factory (see module doc)."""
    side = server_side(make_wire, speech, options)
    trips = await loopback(make_wire, speech, options)
    return DoorFigures(
        door=make_wire().name, frames=options.frames, loopback_ms=percentiles(trips), notes=notes, **side
    )


def _measurer(spec: str) -> Callable[[DoorBenchOptions, np.ndarray], Awaitable[list[DoorFigures]]]:
    module, _, function = spec.partition(":")
    return getattr(importlib.import_module(module), function)


async def run(doors: Sequence[str], options: DoorBenchOptions, speech: np.ndarray) -> list[DoorFigures]:
    """Measure `doors` (names in `DOOR_BENCHES`) and fill each one's difference to `REFERENCE`."""
    results: list[DoorFigures] = []
    for name in doors:
        results += await _measurer(DOOR_BENCHES[name])(options, speech)
    reference = next((r for r in results if r.door == REFERENCE), None)
    if reference is None:  # measured for the comparison only
        others = await _measurer(DOOR_BENCHES["moshi"])(options, speech)
        reference = next((r for r in others if r.door == REFERENCE), None)
    for r in results:
        if reference is not None:
            r.vs_reference = {
                "server_p50": round(_server_p50(r) - _server_p50(reference), 3),
                "loopback_p50": round(r.loopback_ms["p50"] - reference.loopback_ms["p50"], 3),
            }
    return results


def _server_p50(r: DoorFigures) -> float:
    return r.decode_ms["total"]["p50"] + r.encode_ms["total"]["p50"]


# -- the command ------------------------------------------------------------------------------------


def register_doors(group: argparse._SubParsersAction) -> None:
    """Add `doors` to the `kamevoice bench` group."""
    p = group.add_parser(
        "doors",
        help="latency each front door's wire protocol adds per 80 ms frame (server side and loopback)",
        description=__doc__.split("\n\n")[1] + " " + __doc__.split("\n\n")[2],
    )
    p.add_argument("--doors", default=",".join(DOOR_BENCHES), help="comma-separated doors to measure")
    p.add_argument("--frames", type=int, default=DoorBenchOptions.frames, help="timed frames per door")
    p.add_argument("--json", metavar="FILE", nargs="?", const="-", help="write JSON (to FILE or stdout)")
    p.set_defaults(handler=run_doors)


def run_doors(args: argparse.Namespace) -> int:
    """Measure, print the tables, optionally write JSON."""
    from kamevoice.bench.load.question import question_speech
    from kamevoice.errors import ConfigError

    doors = [d.strip() for d in args.doors.split(",") if d.strip()]
    unknown = [d for d in doors if d not in DOOR_BENCHES]
    if unknown:
        raise ConfigError(f"unknown door(s) {', '.join(unknown)}; known: {', '.join(DOOR_BENCHES)}")
    options = DoorBenchOptions(frames=args.frames)
    results = asyncio.run(run(doors, options, question_speech()))
    print_tables(results)
    if args.json:
        from kamevoice.bench.report import write_json

        write_json(report(results, options), args.json)
    return 0


def report(results: Sequence[DoorFigures], options: DoorBenchOptions) -> dict:
    """The JSON of a run."""
    return {
        "reference": REFERENCE,
        "frame_ms": FRAME_SAMPLES / SAMPLE_RATE * 1e3,
        "frames": options.frames,
        "warmup": options.warmup,
        "doors": [asdict(r) for r in results],
    }


def print_tables(results: Sequence[DoorFigures]) -> None:
    """A summary per door, and its layers."""
    from rich.console import Console
    from rich.table import Table

    console = Console(width=max(Console().width, 140))
    summary = Table(
        title=f"kamevoice bench doors: ms per 80 ms frame (p50 / p99); vs {REFERENCE}: p50 difference"
    )
    for col in ("door", "msgs in", "bytes in", "bytes out", "decode", "encode", "server vs ref",
                "loopback", "loopback vs ref", "held in ms"):  # fmt: skip
        summary.add_column(col, justify="left" if col == "door" else "right")
    for r in results:
        summary.add_row(
            r.door,
            f"{r.messages_in:g}",
            f"{r.bytes_in:.0f}",
            f"{r.bytes_out:.0f}",
            _pp(r.decode_ms["total"]),
            _pp(r.encode_ms["total"]),
            _signed(r.vs_reference.get("server_p50")),
            _pp(r.loopback_ms),
            _signed(r.vs_reference.get("loopback_p50")),
            f"{r.held_in_ms:g}",
        )
    console.print(summary)
    layers = Table(title="layers (ms per frame, p50 / p99)")
    for col in ("door", "direction", "layer", "p50 / p99"):
        layers.add_column(col)
    for r in results:
        for direction, table in (("decode", r.decode_ms), ("encode", r.encode_ms)):
            for layer, q in table.items():
                if layer != "total":
                    layers.add_row(r.door, direction, layer, _pp(q))
    console.print(layers)
    for r in results:
        if r.notes:
            console.print(f"{r.door}: {r.notes}")


def _pp(q: dict[str, float]) -> str:
    return f"{q['p50']:.3f} / {q['p99']:.3f}"


def _signed(value: float | None) -> str:
    return "-" if value is None else f"{value:+.3f}"
