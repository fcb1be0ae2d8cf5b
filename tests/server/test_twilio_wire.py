"""Twilio's messages checked and built, the call's audio path, barge-in detection, the outbox's take-back."""

from __future__ import annotations

import asyncio
import base64
import json

import numpy as np
import pytest

from kamevoice.audio import mulaw_encode
from kamevoice.runtime.messages import EndCause
from kamevoice.server.doors import twilio_wire as wire
from kamevoice.server.doors.barge_in import SpeechOnset, is_speech, level_dbfs
from kamevoice.server.outbox import Outbox

START = {
    "event": "start",
    "sequenceNumber": "1",
    "streamSid": "MZ" + "a" * 32,
    "start": {
        "accountSid": "AC" + "b" * 32,
        "streamSid": "MZ" + "a" * 32,
        "callSid": "CA" + "c" * 32,
        "tracks": ["inbound"],
        "customParameters": {"caller": "+15550100", "token": "t"},
        "mediaFormat": {"encoding": "audio/x-mulaw", "sampleRate": 8000, "channels": 1},
    },
}


def _with(start: dict, **changes) -> dict:
    return {**START, "start": {**START["start"], **start}, **changes}


def test_start_is_read():
    start = wire.parse_start(wire.parse(json.dumps(START)))
    assert (start.stream_sid, start.call_sid, start.account_sid) == (
        "MZ" + "a" * 32,
        "CA" + "c" * 32,
        "AC" + "b" * 32,
    )
    assert start.tracks == ("inbound",) and start.custom_parameters == {"caller": "+15550100", "token": "t"}


@pytest.mark.parametrize(
    "text, cause, match",
    [
        ("{not json", EndCause.PROTOCOL, "malformed JSON"),
        ("[1, 2]", EndCause.PROTOCOL, "JSON object"),
        ('{"event": "hello"}', EndCause.PROTOCOL, "unknown event 'hello'"),
        ('{"no": "event"}', EndCause.PROTOCOL, "needs an 'event'"),
        ("[" * 100_000 + "]" * 100_000, EndCause.PROTOCOL, "malformed JSON"),
    ],
)
def test_bad_messages_are_named(text, cause, match):
    with pytest.raises(wire.WireError, match=match) as info:
        wire.parse(text)
    assert info.value.cause is cause


@pytest.mark.parametrize(
    "message, cause, match",
    [
        (_with({"mediaFormat": {"encoding": "audio/l16", "sampleRate": 16000}}),
         EndCause.BAD_AUDIO, "media format"),
        (_with({"mediaFormat": {"encoding": "audio/x-mulaw", "sampleRate": 8000, "channels": 2}}),
         EndCause.BAD_AUDIO, "mono"),
        (_with({"mediaFormat": None}), EndCause.BAD_AUDIO, "mediaFormat"),
        (_with({"callSid": "../../etc/passwd"}), EndCause.PROTOCOL, "callSid"),
        (_with({"streamSid": None}, streamSid=None), EndCause.PROTOCOL, "streamSid"),
        (_with({"tracks": "inbound"}), EndCause.PROTOCOL, "tracks"),
        (_with({"customParameters": ["x"]}), EndCause.PROTOCOL, "customParameters"),
        ({"event": "start"}, EndCause.PROTOCOL, "'start' must be an object"),
    ],
)  # fmt: skip
def test_bad_starts_are_named(message, cause, match):
    with pytest.raises(wire.WireError, match=match) as info:
        wire.parse_start(message)
    assert info.value.cause is cause


def test_media_mark_dtmf_fields():
    assert wire.media_payload({"event": "media", "media": {"payload": "AAA=", "track": "inbound"}}) == (
        "inbound",
        "AAA=",
    )
    assert wire.media_payload({"event": "media", "media": {"payload": ""}}) == ("inbound", "")
    for bad, cause in [
        ({"payload": 5}, EndCause.BAD_AUDIO),
        ({"payload": "", "track": "x"}, EndCause.PROTOCOL),
    ]:
        with pytest.raises(wire.WireError) as info:
            wire.media_payload({"event": "media", "media": bad})
        assert info.value.cause is cause
    assert wire.mark_name({"event": "mark", "mark": {"name": "12"}}) == "12"
    with pytest.raises(wire.WireError, match="name"):
        wire.mark_name({"event": "mark", "mark": {"name": "x" * 1000}})
    assert wire.dtmf_digit({"event": "dtmf", "dtmf": {"digit": "#"}}) == "#"
    with pytest.raises(wire.WireError, match="digit"):
        wire.dtmf_digit({"event": "dtmf", "dtmf": {"digit": "12"}})


def test_base64_is_strict_and_bounded():
    assert wire.decode_base64(base64.b64encode(b"\x01\x02").decode()) == b"\x01\x02"
    for bad in ("@@@@", "AAA", "AA=A"):
        with pytest.raises(wire.WireError, match="not base64") as info:
            wire.decode_base64(bad)
        assert info.value.cause is EndCause.BAD_AUDIO
    with pytest.raises(wire.WireError, match="over"):
        wire.decode_base64("A" * (wire.MAX_PAYLOAD_BYTES * 2))


def test_outgoing_messages_follow_twilios_schema():
    assert json.loads(wire.media_message("MZ1", "AAA=")) == {
        "event": "media", "streamSid": "MZ1", "media": {"payload": "AAA="}}  # fmt: skip
    assert json.loads(wire.mark_message("MZ1", "7")) == {
        "event": "mark",
        "streamSid": "MZ1",
        "mark": {"name": "7"},
    }
    assert json.loads(wire.clear_message("MZ1")) == {"event": "clear", "streamSid": "MZ1"}


def test_call_audio_round_trip_at_the_codecs_rate():
    audio = wire.CallAudio(24_000)
    t = np.arange(8000) / 8000
    tone = (0.3 * np.sin(2 * np.pi * 300 * t)).astype(np.float32)
    payloads = [base64.b64encode(mulaw_encode(tone[i : i + 160])).decode() for i in range(0, 8000, 160)]
    up = np.concatenate([audio.decode(p) for p in payloads])
    assert abs(len(up) - 24_000) < 60  # the resampler holds back its look-ahead only
    down = np.concatenate([wire.mulaw_decode(base64.b64decode(audio.encode(up[i : i + 1920])))
                           for i in range(0, len(up), 1920)])  # fmt: skip
    n = min(len(down), len(tone)) - 100
    assert np.corrcoef(down[100:n], tone[100:n])[0, 1] > 0.99
    assert [name for name, _ in audio.inbound] == ["base64", "mu-law", "resample"]
    assert [name for name, _ in audio.outbound] == ["resample", "mu-law", "base64"]


def test_speech_onset_fires_once_per_utterance():
    rate, chunk = 8000, 160
    quiet = np.zeros(chunk, np.float32)
    loud = (0.1 * np.sin(np.arange(chunk) * 0.3)).astype(np.float32)
    onset = SpeechOnset(rate)
    fired = [onset.feed(c) for c in [quiet] * 5 + [loud] * 30]
    assert fired.index(True) == 5 + 4  # 100 ms of voiced audio: five 20 ms chunks, the fifth fires
    assert sum(fired) == 1  # talking on is the same utterance
    assert not any(onset.feed(c) for c in [quiet] * 10 + [loud] * 10)  # a 200 ms pause: still the same
    assert not any(onset.feed(c) for c in [quiet] * 20)  # 400 ms of quiet ends it ...
    assert sum(onset.feed(c) for c in [loud] * 10) == 1  # ... and the next utterance fires again
    assert not any(SpeechOnset(rate).feed(c) for c in [loud, quiet] * 20)  # clicks never add up
    assert level_dbfs(np.zeros(0, np.float32)) == level_dbfs(quiet) < -100
    assert is_speech(loud) and not is_speech(loud * 0.001)


async def test_outbox_takes_back_tagged_messages_only():
    box = Outbox(max_delay_s=5.0, max_events=4)
    box.put("a", tag="media")
    box.put("m1", tag="mark")
    box.put("keep")
    box.put_event("e")
    box.put("b", tag="media")
    assert box.discard("media") == ["a", "b"] and box.discard("media") == []
    assert box.discard("mark") == ["m1"]
    box.close()
    assert [await box.get() for _ in range(3)] == ["keep", "e", None]
    await asyncio.sleep(0)
