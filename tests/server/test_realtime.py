"""The Realtime door (`/v1/realtime`) driven by the official `openai` SDK, GA and beta clients.

A spoken question goes in, KAME-tiny's spoken answer comes out as a response (audio and
transcript deltas), the user's transcription arrives; a cancel silences the front-end at once;
bad events are answered with `error` events to that client only. Every event a client receives
is checked against the SDK's own model of its type, and no event outside the API's set arrives
unless the session asked for kamevoice's own.
"""

from __future__ import annotations

import asyncio
import base64
import json

import numpy as np
import pytest

from kamevoice.audio import mulaw_encode
from kamevoice.server.doors.realtime import RealtimeDoor
from kamevoice.server.doors.realtime.responses import END_SILENCE_S
from tests.server.conftest import running_server
from tests.server.realtime_client import FRAME, FRAME_S, Recorder, client, delta_audio, spoken, stream

pytest.importorskip("openai")
pytest.importorskip("websockets")

# A question about the embedded catalogue (held out of KAME-tiny's training dialogues).
QUESTION = "How many units of the cosy thunder basket are left in stock?"


@pytest.fixture(scope="module")
def tiny():
    """The embedded KAME-tiny with its own back-end: a front-end that really answers."""
    from kamevoice.startup import settings_from_args, start

    return start(settings_from_args({}))


@pytest.fixture(scope="module")
def question():
    return spoken(QUESTION)


def _door(server) -> RealtimeDoor:
    (door,) = [c for c in server.connections if isinstance(c, RealtimeDoor)]
    return door


def _strict(rec: Recorder) -> None:
    assert not rec.unknown, f"events outside the API: {[e['type'] for e in rec.unknown]}"
    assert not rec.invalid, rec.invalid


async def _answer(conn, rec: Recorder, audio: np.ndarray) -> dict:
    """Stream the question and its trailing silence; returns the first completed response."""
    await stream(conn, audio)
    done = await rec.wait_for(
        lambda r: [e for e in r.of("response.done") if e["response"]["status"] == "completed"], 20
    )
    assert done, f"no completed response; got {sorted(rec.types())}"
    return done[0]


async def test_ga_client_hears_a_spoken_answer_and_its_own_transcript(tiny, question):
    stack = running_server(tiny.frontend, sampling=tiny.sampling, backend=tiny.backend)
    async with stack as (server, url), client(url).realtime.connect(model="kamevoice-tiny") as conn:
        rec = Recorder(conn)
        created = await rec.wait_type("session.created", 10)
        assert created["session"]["model"] == "kamevoice-tiny"
        assert created["session"]["audio"]["output"]["format"] == {"type": "audio/pcm", "rate": 24000}
        await conn.session.update(
            session={
                "type": "realtime",
                "instructions": "Answer in one sentence.",
                "audio": {"output": {"voice": "marin"}},
            }
        )
        updated = await rec.wait_type("session.updated", 5)
        assert updated["session"]["instructions"] == "Answer in one sentence."
        assert updated["session"]["audio"]["output"]["voice"] == "marin"
        assert _door(server).session.instructions == "Answer in one sentence."  # the LLM's system prompt
        done = await _answer(conn, rec, question)
        await rec.wait_type("conversation.item.input_audio_transcription.completed", 10)
        await rec.stop()
    _strict(rec)
    types = rec.types()
    for kind in (
        "input_audio_buffer.speech_started",
        "input_audio_buffer.speech_stopped",
        "input_audio_buffer.committed",
        "conversation.item.added",
        "conversation.item.done",
        "response.created",
        "response.output_item.added",
        "response.content_part.added",
        "response.output_audio.delta",
        "response.output_audio_transcript.delta",
        "response.output_audio.done",
        "response.output_audio_transcript.done",
        "response.content_part.done",
        "response.output_item.done",
    ):
        assert kind in types, (kind, sorted(types))
    heard = rec.of("conversation.item.input_audio_transcription.completed")[0]
    assert "stock" in heard["transcript"].lower(), heard
    assert heard["item_id"] == rec.of("input_audio_buffer.committed")[0]["item_id"]
    rid = done["response"]["id"]
    audio = delta_audio([e for e in rec.of("response.output_audio.delta") if e["response_id"] == rid])
    assert len(audio) >= 10 * FRAME and np.sqrt(np.mean(audio**2)) > 1e-3  # a second of real sound
    deltas = "".join(
        e["delta"] for e in rec.of("response.output_audio_transcript.delta") if e["response_id"] == rid
    )
    transcript = done["response"]["output"][0]["content"][0]["transcript"]
    assert deltas == transcript and len(transcript.split()) >= 3, transcript
    usage = done["response"]["usage"]
    assert usage["output_token_details"]["audio_tokens"] == len(audio) // FRAME
    assert usage["total_tokens"] == usage["input_tokens"] + usage["output_tokens"] > 0
    # The lifecycle's order within the response.
    order = [
        e["type"] for e in rec.events if e.get("response_id") == rid or e.get("response", {}).get("id") == rid
    ]
    assert order[0] == "response.created" and order[-1] == "response.done"


async def test_beta_client_gets_the_beta_names_and_shapes(tiny, question):
    # The beta schema's `model` is an enum of OpenAI's names; the door reports the one asked for.
    stack = running_server(tiny.frontend, sampling=tiny.sampling, backend=tiny.backend)
    async with (
        stack as (_server, url),
        client(url).beta.realtime.connect(model="gpt-4o-realtime-preview") as conn,
    ):
        rec = Recorder(conn, beta=True)
        created = await rec.wait_type("session.created", 10)
        assert created["session"]["input_audio_format"] == "pcm16"
        assert created["session"]["model"] == "gpt-4o-realtime-preview"
        await conn.session.update(session={"instructions": "Be brief.", "voice": "verse"})
        updated = await rec.wait_type("session.updated", 5)
        assert updated["session"]["voice"] == "verse" and updated["session"]["instructions"] == "Be brief."
        done = await _answer(conn, rec, question)
        await rec.wait_type("conversation.item.input_audio_transcription.completed", 10)
        await rec.stop()
    _strict(rec)
    types = rec.types()
    assert {
        "response.audio.delta",
        "response.audio_transcript.delta",
        "response.audio.done",
        "conversation.item.created",
    } <= types, sorted(types)
    assert not types & {"response.output_audio.delta", "conversation.item.added"}
    assert done["response"]["output"][0]["content"][0]["type"] == "audio"
    assert rec.of("conversation.item.input_audio_transcription.completed")


async def test_cancel_silences_the_front_end_within_a_frame(tiny, question):
    """`response.cancel` while KAME-tiny answers: the cancelled response's audio stops at once
    (its queued deltas are taken back), and the front-end stays silent while the user is."""
    stack = running_server(tiny.frontend, sampling=tiny.sampling, backend=tiny.backend)
    async with stack as (server, url), client(url).realtime.connect(model="kamevoice") as conn:
        rec = Recorder(conn)
        await rec.wait_type("session.created", 10)
        talk = asyncio.create_task(stream(conn, question))
        # Mid-reply, once the user has finished (KAME may start before: the end of the user's
        # speech would release the silence, and rightly so).
        speaking = await rec.wait_for(
            lambda r: (
                len(r.of("response.output_audio.delta")) >= 5 and r.of("input_audio_buffer.speech_stopped")
            ),
            20,
        )
        assert speaking, sorted(rec.types())
        assert not rec.of("response.done"), "the reply ended before it could be cancelled"
        rid = rec.of("response.created")[0]["response"]["id"]
        await conn.response.cancel()
        done = await rec.wait_type("response.done", 5)
        assert done["response"]["id"] == rid and done["response"]["status"] == "cancelled"
        assert done["response"]["status_details"] == {"type": "cancelled", "reason": "client_cancelled"}
        acked = rec.events.index(done)
        assert _door(server).session.silent  # the model itself is forced silent
        await talk
        await asyncio.sleep(2 * END_SILENCE_S)
        late = [e for e in rec.events[acked:] if e["type"] == "response.output_audio.delta"]
        assert not late, f"{len(late)} audio deltas after the cancel was acknowledged"
        assert not rec.of("response.created")[1:], "a new response while the user was silent"
        # Truncating what was heard of it, then asking for a response again: the front-end speaks.
        item = done["response"]["output"][0]["id"]
        await conn.conversation.item.truncate(item_id=item, content_index=0, audio_end_ms=80)
        assert (await rec.wait_type("conversation.item.truncated", 5))["audio_end_ms"] == 80
        mark = len(rec.events)
        await conn.response.create()
        again = await rec.wait_type("response.created", 5, after=mark)
        assert again is not None and not _door(server).session.silent
        await stream(conn, np.zeros(10 * FRAME, np.float32))
        assert [e for e in rec.events[mark:] if e["type"] == "response.output_audio.delta"]
        await rec.stop()
    _strict(rec)


# -- bad input, beside an honest session -------------------------------------------------------------


async def _honest(conn, seconds: float) -> None:
    await stream(conn, np.zeros(int(seconds / FRAME_S) * FRAME, np.float32))


async def test_bad_events_get_errors_for_that_client_only(frontend):
    """Malformed JSON, an unknown type, bad base64, a wrong audio format, an oversized message,
    events out of order: each gets an `error` with its code and the client's event id, the
    session goes on (its audio still flows), and a session beside it keeps every frame."""
    async with running_server(frontend, max_sessions=2) as (_server, url):
        sdk = client(url)
        async with sdk.realtime.connect(model="a") as good, sdk.realtime.connect(model="b") as bad:
            honest, rec = Recorder(good), Recorder(bad)
            await honest.wait_type("session.created", 10)
            await rec.wait_type("session.created", 10)
            beside = asyncio.create_task(_honest(good, 6.0))
            start = len(honest.of("response.output_audio.delta"))
            big = json.dumps({"type": "input_audio_buffer.append", "audio": "A" * (600 * 1024)})
            attacks = [
                ("{not json", "invalid_json"),
                (json.dumps([1, 2]), "invalid_event"),
                (json.dumps({"event_id": "e1", "type": "bogus.event"}), "unknown_event_type"),
                (
                    json.dumps({"event_id": "e2", "type": "conversation.item.create", "item": {}}),
                    "unsupported_event",
                ),
                (
                    json.dumps(
                        {"event_id": "e3", "type": "input_audio_buffer.append", "audio": "%%%not-base64"}
                    ),
                    "invalid_base64",
                ),
                (
                    json.dumps({"event_id": "e4", "type": "input_audio_buffer.append", "audio": "AA=="}),
                    "invalid_audio",
                ),
                (
                    json.dumps({"event_id": "e5", "type": "input_audio_buffer.append"}),
                    "missing_required_parameter",
                ),
                (
                    json.dumps(
                        {
                            "event_id": "e6",
                            "type": "session.update",
                            "session": {
                                "type": "realtime",
                                "audio": {"input": {"format": {"type": "audio/opus"}}},
                            },
                        }
                    ),
                    "invalid_audio_format",
                ),
                (
                    json.dumps({"event_id": "e7", "type": "session.update", "session": {"shoe_size": 44}}),
                    "unknown_parameter",
                ),
                (
                    json.dumps(
                        {
                            "event_id": "e8",
                            "type": "session.update",
                            "session": {"tools": [{"type": "function"}]},
                        }
                    ),
                    "unsupported_feature",
                ),
                (
                    json.dumps({"event_id": "e9", "type": "input_audio_buffer.commit"}),
                    "input_audio_buffer_commit_empty",
                ),
                (
                    json.dumps({"event_id": "e10", "type": "response.cancel", "response_id": "resp_nope"}),
                    "response_cancel_not_active",
                ),
                (
                    json.dumps(
                        {
                            "event_id": "e11",
                            "type": "conversation.item.truncate",
                            "item_id": "item_nope",
                            "content_index": 0,
                            "audio_end_ms": 0,
                        }
                    ),
                    "item_not_found",
                ),
                (big, "message_too_large"),
                (b"\x01\x02binary", "invalid_event"),
            ]
            for message, _code in attacks:
                await bad.send_raw(message)
            got = await rec.wait_for(lambda r: len(r.of("error")) >= len(attacks), 10)
            assert got, [e["error"]["code"] for e in rec.of("error")]
            errors = rec.of("error")
            assert [e["error"]["code"] for e in errors] == [code for _, code in attacks]
            assert all(
                e["error"]["type"] == "invalid_request_error" and e["error"]["message"] for e in errors
            )
            assert [e["error"]["event_id"] for e in errors[2:13]] == [f"e{i}" for i in range(1, 12)]
            assert errors[5]["error"]["param"] == "audio" and errors[7]["error"]["param"].endswith(
                "format.type"
            )
            # Nothing lost: the misbehaving session still updates, hears and answers.
            mark = len(rec.events)
            await bad.session.update(session={"type": "realtime", "instructions": "still here"})
            assert (await rec.wait_type("session.updated", 5, after=mark))["session"][
                "instructions"
            ] == "still here"
            await stream(bad, np.zeros(10 * FRAME, np.float32))
            assert await rec.wait_for(lambda r: r.of("response.output_audio.delta"), 5)
            await beside
            frames = len(honest.of("response.output_audio.delta")) - start
            await honest.stop()
            await rec.stop()
    assert not honest.of("error") and not honest.closed
    # The honest session streamed 6 s (75 frames): its replies' audio kept up with it.
    assert frames >= 60, frames
    _strict(honest)
    _strict(rec)


async def test_g711_both_ways_kamevoice_events_on_request_and_manual_turns(frontend):
    """mu-law in and out at 8 kHz; `?kamevoice_events=1` adds `kamevoice.*` events; with turn
    detection off the front-end is silent until the client asks for a response."""
    async with running_server(frontend) as (server, url):
        sdk = client(url)
        async with sdk.realtime.connect(model="x", extra_query={"kamevoice_events": "1"}) as conn:
            rec = Recorder(conn)
            created = await rec.wait_type("session.created", 10)
            assert created["session"]["kamevoice"] == {"events": True}
            await conn.session.update(
                session={
                    "type": "realtime",
                    "audio": {
                        "input": {"format": {"type": "audio/pcmu"}, "turn_detection": None},
                        "output": {"format": {"type": "audio/pcmu"}},
                    },
                }
            )
            updated = await rec.wait_type("session.updated", 5)
            assert updated["session"]["audio"]["input"]["turn_detection"] is None
            assert _door(server).session.silent  # no turn detection: speaks only when asked
            await asyncio.sleep(2 * END_SILENCE_S)  # a reply under way at the switch ends
            tone = (0.3 * np.sin(2 * np.pi * 300 * np.arange(8000) / 8000)).astype(np.float32)
            mark = len(rec.events)
            for start in range(0, len(tone), 640):  # 80 ms of mu-law at 8 kHz per append
                await conn.input_audio_buffer.append(
                    audio=base64.b64encode(mulaw_encode(tone[start : start + 640])).decode()
                )
                await asyncio.sleep(FRAME_S)
            assert not [e for e in rec.events[mark:] if e["type"] == "response.created"]
            await conn.input_audio_buffer.commit()
            assert await rec.wait_type("input_audio_buffer.committed", 5, after=mark)
            await conn.response.create()
            assert await rec.wait_type("response.created", 5, after=mark)
            await asyncio.sleep(1.0)
            deltas = [e for e in rec.events[mark:] if e["type"] == "response.output_audio.delta"]
            assert deltas and all(len(base64.b64decode(e["delta"])) in (639, 640, 641) for e in deltas[1:])
            assert await rec.wait_for(lambda r: r.of("kamevoice.event"), 5)
            await rec.stop()
    assert {e["type"] for e in rec.unknown} <= {"kamevoice.event", "kamevoice.latency"}
    assert not rec.invalid
    assert {e["event"]["kind"] for e in rec.of("kamevoice.event")}
