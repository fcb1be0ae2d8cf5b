"""`kamevoice bench doors`: every door's layers timed, the loopback round trip, a door added by one line."""

from __future__ import annotations

import argparse
import json

import numpy as np

from kamevoice.bench import doors
from kamevoice.bench.doors import DoorBenchOptions, DoorFigures, measure_wire

OPTIONS = DoorBenchOptions(frames=20, warmup=2)


class RawFloatWire:
    """A door of our own for the test: float32 samples as they are (what a plugin supplies)."""

    name = "raw-float"
    server_decode = (("float32", lambda message: np.frombuffer(message, dtype=np.float32)),)
    server_encode = (("float32", lambda pcm: [np.asarray(pcm, np.float32).tobytes()]),)

    def client_frames(self, speech):
        return [speech[i : i + 1920] for i in range(0, len(speech), 1920)]

    def client_encode(self, held):
        return [held.astype(np.float32).tobytes()]

    def client_decode(self, message):
        np.frombuffer(message, dtype=np.float32)


async def measure_raw(options, speech) -> list[DoorFigures]:
    return [await measure_wire(RawFloatWire, speech, options)]


async def test_each_door_is_measured_layer_by_layer_against_moshi(monkeypatch, question_24k):
    monkeypatch.setitem(doors.DOOR_BENCHES, "raw", f"{__name__}:measure_raw")  # the one line a door adds
    results = await doors.run(["twilio", "raw"], OPTIONS, question_24k)
    by_door = {r.door: r for r in results}
    assert set(by_door) == {"twilio", "raw-float"}  # the reference is measured, not listed
    twilio = by_door["twilio"]
    assert list(twilio.decode_ms) == ["json", "base64", "mu-law", "resample", "total"]
    assert list(twilio.encode_ms) == ["resample", "mu-law", "base64", "json", "total"]
    assert twilio.messages_in == 4 and 1000 < twilio.bytes_in < 2000  # four 20 ms media messages
    assert 0 < twilio.held_in_ms < 5  # the resampler's look-ahead
    for r in results:
        assert 0 <= r.decode_ms["total"]["p50"] <= r.decode_ms["total"]["p99"]
        assert 0 < r.loopback_ms["p50"] <= r.loopback_ms["p99"] < 1000
        assert set(r.vs_reference) == {"server_p50", "loopback_p50"}


def test_the_command_prints_tables_and_json(tmp_path, capsys):
    out = tmp_path / "doors.json"
    assert doors.run_doors(argparse.Namespace(doors="moshi", frames=10, json=str(out))) == 0
    printed = capsys.readouterr().out
    assert "moshi-opus" in printed and "moshi-pcm16" in printed and "layers" in printed
    data = json.loads(out.read_text())
    assert data["reference"] == "moshi-opus" and [d["door"] for d in data["doors"]] == [
        "moshi-opus",
        "moshi-pcm16",
    ]
    opus = data["doors"][0]
    assert opus["vs_reference"] == {"server_p50": 0.0, "loopback_p50": 0.0}
    assert {"frame", "ogg", "opus", "total"} <= set(opus["decode_ms"])
