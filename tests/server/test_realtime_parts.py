"""The Realtime door's parts without a server: configuration, wire audio, responses, the user's
turns, the options read from a request, and the outbox's take-back."""

from __future__ import annotations

import base64
from dataclasses import replace

import numpy as np
import pytest

from kamevoice.audio import pcm16_bytes
from kamevoice.server.doors.realtime.audio import AudioIn, AudioOut, WireFormat
from kamevoice.server.doors.realtime.config import RealtimeConfig, TurnDetection, apply_update, session_object
from kamevoice.server.doors.realtime.dialect import BETA, GA
from kamevoice.server.doors.realtime.responses import END_SILENCE_FRAMES, REQUESTED_WAIT_FRAMES, Responses
from kamevoice.server.doors.realtime.turns import UserTurns
from kamevoice.server.doors.realtime.wire import ErrorCode, Ids, ItemLog, RealtimeError, parse_client_event
from kamevoice.server.outbox import Outbox


class Sent(list):
    """A door's `send`: the events in order."""

    def __call__(self, event, tag=None):
        self.append({**event, "_tag": tag})

    def types(self):
        return [e["type"] for e in self]


# -- configuration --------------------------------------------------------------------------------------


def test_ga_update_is_partial_and_reported_in_the_ga_shape():
    from openai.types.realtime.realtime_session_create_request import RealtimeSessionCreateRequest

    config = apply_update(
        RealtimeConfig(),
        {
            "type": "realtime",
            "instructions": "Be kind.",
            "audio": {
                "input": {
                    "format": {"type": "audio/pcma"},
                    "turn_detection": {"type": "server_vad", "silence_duration_ms": 800},
                },
                "output": {"format": {"type": "audio/pcmu"}, "voice": {"id": "custom"}},
            },
        },
        beta=False,
    )
    assert (config.input_format, config.output_format) == (WireFormat.PCMA, WireFormat.PCMU)
    assert config.voice == "custom" and config.instructions == "Be kind."
    assert config.turn_detection == replace(TurnDetection(), silence_duration_ms=800)
    assert config.turn_detection.endpoint_settings().end_silence_s == 0.8
    later = apply_update(
        config, {"type": "realtime", "audio": {"input": {"transcription": None}}}, beta=False
    )
    assert later.transcription is None and later.input_format is WireFormat.PCMA  # the rest stands
    shown = session_object(later, "sess_1", beta=False)
    RealtimeSessionCreateRequest.model_validate(shown)
    assert shown["audio"]["input"]["format"] == {"type": "audio/pcma"}
    assert shown["audio"]["input"]["transcription"] is None
    assert "kamevoice" not in shown  # only for a session that asked for kamevoice's events


def test_beta_update_maps_the_flat_fields():
    from openai.types.beta.realtime.session import Session

    config = apply_update(
        RealtimeConfig(),
        {
            "input_audio_format": "g711_ulaw",
            "turn_detection": None,
            "voice": "ash",
            "temperature": 0.6,
            "kamevoice": {"events": True},
        },
        beta=True,
    )
    assert (
        config.input_format is WireFormat.PCMU and config.turn_detection is None and config.kamevoice_events
    )
    shown = session_object(config, "sess_1", beta=True)
    Session.model_validate({**shown, "model": "gpt-realtime"})  # the beta schema's model is an enum
    assert shown["input_audio_format"] == "g711_ulaw" and shown["voice"] == "ash"
    assert shown["kamevoice"] == {"events": True}


@pytest.mark.parametrize(
    "session, beta, code, param",
    [
        (
            {"audio": {"input": {"format": {"type": "audio/pcm", "rate": 16000}}}},
            False,
            "invalid_audio_format",
            "session.audio.input.format.rate",
        ),
        ({"input_audio_format": "mp3"}, True, "invalid_audio_format", "session.input_audio_format"),
        (
            {"audio": {"input": {"turn_detection": {"threshold": 2}}}},
            False,
            "invalid_value",
            "session.audio.input.turn_detection.threshold",
        ),
        ({"instructions": 7}, False, "invalid_value", "session.instructions"),
        ({"type": "transcription"}, False, "unsupported_feature", "session.type"),
        ({"output_modalities": ["text"]}, False, "unsupported_feature", "session.output_modalities"),
        ({"audio": {"output": {"pitch": 2}}}, False, "unknown_parameter", "session.audio.output.pitch"),
        ("not an object", True, "invalid_value", "session"),
    ],
)
def test_an_invalid_update_names_its_field_and_changes_nothing(session, beta, code, param):
    config = RealtimeConfig(instructions="kept")
    with pytest.raises(RealtimeError) as caught:
        apply_update(config, session, beta=beta)
    assert (caught.value.code.value, caught.value.param) == (code, param)
    assert config == RealtimeConfig(instructions="kept")  # frozen: the session keeps it


def test_client_events_must_be_json_objects_with_a_type():
    assert parse_client_event('{"type": "response.create"}') == {"type": "response.create"}
    for data, code in [
        ("{", ErrorCode.INVALID_JSON),
        ("[]", ErrorCode.INVALID_EVENT),
        ("{}", ErrorCode.MISSING_PARAMETER),
    ]:
        with pytest.raises(RealtimeError) as caught:
            parse_client_event(data)
        assert caught.value.code is code


# -- wire audio -------------------------------------------------------------------------------------------


def test_wire_audio_pcm16_passes_through_and_g711_is_resampled():
    pcm = (0.25 * np.sin(2 * np.pi * 440 * np.arange(24_000) / 24_000)).astype(np.float32)
    text = base64.b64encode(pcm16_bytes(pcm)).decode()
    np.testing.assert_allclose(AudioIn(WireFormat.PCM16, 24_000).decode(text), pcm, atol=1 / 32768)
    out, back = AudioOut(WireFormat.PCMU, 24_000), AudioIn(WireFormat.PCMU, 24_000)
    frames = [base64.b64decode(out.encode(pcm[i : i + 1920])) for i in range(0, len(pcm), 1920)]
    assert sum(map(len, frames)) in range(7950, 8001)  # 1 s at 8 kHz, less the filter's look-ahead
    heard = np.concatenate([back.decode(base64.b64encode(f).decode()) for f in frames])
    assert len(heard) in range(23_800, 24_001)
    middle = heard[2400:21600]  # the tone, away from the edges
    spectrum = np.abs(np.fft.rfft(middle))
    assert abs(np.argmax(spectrum) * 24_000 / len(middle) - 440) < 3
    assert abs(np.sqrt(np.mean(middle**2)) - 0.25 / np.sqrt(2)) < 0.01
    with pytest.raises(RealtimeError) as caught:
        AudioIn(WireFormat.PCM16, 24_000).decode("AA==")  # one byte: half a sample
    assert caught.value.code is ErrorCode.INVALID_AUDIO
    with pytest.raises(RealtimeError) as caught:
        AudioIn(WireFormat.PCM16, 24_000).decode("not base64!")
    assert caught.value.code is ErrorCode.INVALID_BASE64


# -- responses ----------------------------------------------------------------------------------------------


def _responses(dialect=GA):
    sent = Sent()
    return Responses(sent, Ids(), ItemLog(), dialect), sent


def test_a_reply_closes_after_the_models_silence_with_its_transcript_and_usage():
    responses, sent = _responses()
    reply = responses.open(10)
    responses.text(" Hello", 10)
    responses.audio("AAAA")
    responses.text(" there.", 12)
    responses.user_frames, responses.oracle_pieces = 25, 4
    for frame in range(11, 12 + END_SILENCE_FRAMES):
        assert responses.tick(frame) is None
    assert responses.tick(13 + END_SILENCE_FRAMES) is reply and responses.current is None
    assert sent.types() == [
        "response.created",
        "response.output_item.added",
        "conversation.item.added",
        "response.content_part.added",
        "response.output_audio_transcript.delta",
        "response.output_audio.delta",
        "response.output_audio_transcript.delta",
        "response.output_audio.done",
        "response.output_audio_transcript.done",
        "response.content_part.done",
        "response.output_item.done",
        "conversation.item.done",
        "response.done",
    ]
    assert sent[4]["delta"] == "Hello" and sent[8]["transcript"] == "Hello there."
    assert sent[5]["_tag"] == reply.response_id  # audio can be taken back from the outbox
    done = sent[-1]["response"]
    assert done["status"] == "completed" and done["status_details"] is None
    assert done["usage"]["output_token_details"] == {"text_tokens": 2, "audio_tokens": 1}
    assert done["usage"]["input_token_details"]["audio_tokens"] == 25


def test_a_requested_reply_waits_for_the_model_then_ends_empty_and_a_cancel_is_reported():
    responses, sent = _responses(BETA)
    responses.open(0, requested=True)
    assert responses.tick(REQUESTED_WAIT_FRAMES) is None
    assert responses.tick(REQUESTED_WAIT_FRAMES + 1) is not None
    assert sent[-1]["response"]["status"] == "completed" and "conversation.item.done" not in sent.types()
    responses.open(50)
    responses.close("cancelled", "turn_detected")
    assert sent[-1]["response"]["status_details"] == {"type": "cancelled", "reason": "turn_detected"}
    assert sent[-2]["item"]["status"] == "incomplete" and sent[-2]["item"]["content"][0]["type"] == "audio"


# -- the user's side --------------------------------------------------------------------------------------


def test_transcripts_wait_for_their_item_and_complete_in_order():
    sent = Sent()
    turns = UserTurns(sent, Ids(), ItemLog(), GA, 24_000)
    turns.configure(None, transcribe=True)  # the client commits
    with pytest.raises(RealtimeError) as caught:
        turns.commit()
    assert caught.value.code is ErrorCode.COMMIT_EMPTY
    turns.hear(np.zeros(4800, np.float32))
    turns.on_partial("what time")  # before the commit: held
    assert sent.types() == []
    turns.commit()
    committed = sent[0]["item_id"]
    turns.on_partial("what time does")
    turns.on_partial("what tim does it")  # rewrites earlier words: no delta
    turns.on_final("What time does it open?")
    deltas = [e["delta"] for e in sent if e["type"].endswith("transcription.delta")]
    assert deltas == ["what time", " does"]
    completed = sent[-1]
    assert completed["item_id"] == committed and completed["transcript"] == "What time does it open?"
    assert completed["usage"] == {"type": "duration", "seconds": 0.2}


def test_the_vad_marks_speech_and_commits_it():
    sent = Sent()
    turns = UserTurns(sent, Ids(), ItemLog(), BETA, 24_000)
    turns.configure(TurnDetection(silence_duration_ms=300), transcribe=False)
    t = np.arange(24_000) / 24_000
    voiced = (0.3 * np.sign(np.sin(2 * np.pi * 140 * t)) * (1 + np.sin(2 * np.pi * 3 * t))).astype(np.float32)
    seen = []
    for chunk in (np.zeros(12_000, np.float32), voiced, np.zeros(24_000, np.float32)):
        for start in range(0, len(chunk), 1920):
            seen += turns.hear(chunk[start : start + 1920])
    assert seen == ["started", "stopped"]
    assert sent.types() == [
        "input_audio_buffer.speech_started",
        "input_audio_buffer.speech_stopped",
        "input_audio_buffer.committed",
        "conversation.item.created",
    ]
    # Speech from 500 ms; the API's start includes the prefix padding (300 ms).
    assert 150 <= sent[0]["audio_start_ms"] <= 300 and sent[0]["item_id"] == sent[2]["item_id"]
    assert 1500 <= sent[1]["audio_end_ms"] <= 1900
    turns.on_final("hello")  # transcription off: nothing
    assert len(sent) == 4


# -- the request's options; the outbox --------------------------------------------------------------


def test_door_options_come_from_the_query_headers_and_subprotocols():
    from aiohttp.test_utils import make_mocked_request

    from kamevoice.server.doors.realtime import door_for

    def options(path, headers=None):
        return door_for(make_mocked_request("GET", path, headers=headers or {}), 1 << 20).keywords["options"]

    plain = options("/v1/realtime")
    assert (plain.beta, plain.model, plain.kamevoice_events, plain.max_event_bytes) == (
        False,
        "kamevoice",
        False,
        1 << 19,
    )
    assert options("/v1/realtime", {"OpenAI-Beta": "realtime=v1"}).beta
    assert options("/v1/realtime", {"Sec-WebSocket-Protocol": "realtime, openai-beta.realtime-v1"}).beta
    tuned = options("/v1/realtime?model=gpt-realtime&kamevoice_events=1")
    assert tuned.model == "gpt-realtime" and tuned.kamevoice_events


async def test_outbox_takes_back_tagged_messages_only():
    box = Outbox(max_delay_s=5, max_events=8)
    box.put("a1", tag="resp_a")
    box.put_event("event")
    box.put("keep")
    box.put("a2", tag="resp_a")
    assert len(box.discard("resp_a")) == 2 and box.discard("resp_a") == []
    assert [await box.get() for _ in range(len(box))] == ["event", "keep"]


def test_the_realtime_layers_cost_per_frame_is_measured_against_opus():
    from kamevoice.bench.doors_realtime import measure_realtime_overhead

    result = measure_realtime_overhead(frames=40, warmup=5)
    for path in (result.realtime_out, result.realtime_in, result.moshi_out, result.moshi_in):
        assert 0 < path.p50_us <= path.p99_us
    # 1920 PCM16 samples are 5120 base64 characters, plus the delta event's JSON.
    assert 5120 < result.realtime_out.bytes_per_frame < 5600
    assert result.moshi_out.bytes_per_frame < 1000  # Opus
    ulaw = measure_realtime_overhead(frames=10, warmup=2, audio_format="audio/pcmu")
    assert 640 * 4 / 3 <= ulaw.realtime_out.bytes_per_frame < 1300
    assert "| realtime_out |" in result.table() and result.as_dict()["frames"] == 40
