"""The Google provider against a local grpc server implementing `google.cloud.speech.v1.Speech`.

The server uses the message types of the `google-cloud-speech` package and
really recognises the LINEAR16 audio it receives (PocketSphinx), answering
with interim and final `StreamingRecognitionResult`s as Google does.
"""

from __future__ import annotations

import asyncio
from datetime import timedelta
from pathlib import Path

import numpy as np
import pytest
from pydantic import SecretStr

from kamevoice.backend.stt import Hypothesis, STTAuthError, STTError
from kamevoice.backend.stt.files import transcribe_file
from kamevoice.backend.stt.settings import GoogleSettings
from kamevoice.backend.stt.sphinx import SphinxSTT
from kamevoice.eval.stt import PAD_S, Utterance, normalise

grpc = pytest.importorskip("grpc", reason="grpcio is not installed (the google extra)")
cs = pytest.importorskip(
    "google.cloud.speech_v1.types.cloud_speech",
    reason="google-cloud-speech is not installed (the google extra)",
)
from kamevoice.backend.stt.google_cloud import GoogleSTT  # noqa: E402

KEY = "test-key"


def result(hyp: Hypothesis, words, is_final: bool):
    return cs.StreamingRecognitionResult(
        alternatives=[
            cs.SpeechRecognitionAlternative(
                transcript=" ".join(w.word for w in words),
                confidence=0.9,
                words=[
                    cs.WordInfo(
                        word=w.word, start_time=timedelta(seconds=w.start), end_time=timedelta(seconds=w.end)
                    )
                    for w in words
                ],
            )
        ],
        is_final=is_final,
        stability=0.0 if is_final else 0.5,
        result_end_time=timedelta(seconds=hyp.audio_end),
    )


class FakeSpeech:
    """StreamingRecognize: checks the key and the config, recognises the audio, streams results."""

    def __init__(self) -> None:
        self.mode = "ok"
        self.configs: list = []

    async def streaming_recognize(self, requests, context) -> None:
        # grpc.aio's read/write style: this coroutine reads the requests itself, so it only
        # ends the call between two reads (ending it with a read pending is a race in grpc).
        if dict(context.invocation_metadata()).get("x-goog-api-key") != KEY:
            await context.abort(
                grpc.StatusCode.UNAUTHENTICATED, "API key not valid. Please pass a valid API key."
            )
        first = await context.read()
        config = first.streaming_config
        self.configs.append(config)
        if config.config.sample_rate_hertz != 16_000 or not config.interim_results:
            await context.abort(grpc.StatusCode.INVALID_ARGUMENT, "bad config")
        stt = SphinxSTT()
        misbehaved = asyncio.Event()
        writer = asyncio.create_task(self._respond(stt, context, misbehaved))
        while (req := await context.read()) is not grpc.aio.EOF:
            if misbehaved.is_set():
                await stt.aclose()
                if self.mode == "close_mid":
                    await context.abort(grpc.StatusCode.UNAVAILABLE, "The service is currently unavailable.")
                return
            await stt.push(np.frombuffer(req.audio_content, dtype="<i2"), 16_000)
        await stt.finish()
        await writer

    async def _respond(self, stt: SphinxSTT, context, misbehaved: asyncio.Event) -> None:
        async for hyp in stt:
            if self.mode in ("close_mid", "malformed"):
                if self.mode == "malformed":
                    await context.write(b"\x0a\xff\xff\xff\xff not a protobuf")
                misbehaved.set()
                return
            if hyp.is_final:
                await context.write(cs.StreamingRecognizeResponse(results=[result(hyp, hyp.words, True)]))
            else:
                # Google splits interim text into a stable and an unstable result.
                half = max(1, len(hyp.words) // 2)
                parts = [hyp.words[:half], hyp.words[half:]]
                await context.write(
                    cs.StreamingRecognizeResponse(results=[result(hyp, p, False) for p in parts if p])
                )


def serialize(message) -> bytes:
    return message if isinstance(message, bytes) else cs.StreamingRecognizeResponse.serialize(message)


@pytest.fixture
async def server():
    """A grpc.aio server on a free loopback port; yields (service, host:port)."""
    service = FakeSpeech()
    handler = grpc.method_handlers_generic_handler(
        "google.cloud.speech.v1.Speech",
        {
            "StreamingRecognize": grpc.stream_stream_rpc_method_handler(
                service.streaming_recognize,
                request_deserializer=cs.StreamingRecognizeRequest.deserialize,
                response_serializer=serialize,
            )
        },
    )
    srv = grpc.aio.server()
    srv.add_generic_rpc_handlers((handler,))
    port = srv.add_insecure_port("127.0.0.1:0")
    await srv.start()
    yield service, f"127.0.0.1:{port}"
    await srv.stop(grace=None)


def client(endpoint: str, key: str = KEY) -> GoogleSTT:
    return GoogleSTT(
        GoogleSettings(endpoint=endpoint, tls=False, api_key=SecretStr(key), connect_timeout_s=5)
    )


async def test_speech_round_trip(server, flite_speech: list[Utterance]) -> None:
    service, endpoint = server
    u = flite_speech[0]
    hyps = await transcribe_file(client(endpoint), u.path)
    finals = [h for h in hyps if h.is_final]
    assert len(finals) == 1 and hyps[-1] is finals[0]
    assert normalise(finals[0].text) == normalise(u.text)
    assert PAD_S - 0.05 <= finals[0].words[0].start <= PAD_S + 0.4
    partials = [h for h in hyps if not h.is_final]
    # Interim results of one response are joined into one partial.
    assert partials and any(len(p.words) >= 2 for p in partials)
    assert partials[0].audio_end < u.duration - PAD_S
    config = service.configs[0].config
    assert config.encoding == cs.RecognitionConfig.AudioEncoding.LINEAR16
    assert config.enable_word_time_offsets and config.language_code == "en-US"


async def test_two_utterances(server, two_utterances: Path) -> None:
    _, endpoint = server
    finals = [h for h in await transcribe_file(client(endpoint), two_utterances) if h.is_final]
    assert len(finals) == 2 and "capital" in finals[0].text
    assert finals[1].words[0].start > finals[0].words[-1].end + 1.0


async def test_wrong_key_is_an_auth_error(server, flite_speech: list[Utterance]) -> None:
    _, endpoint = server
    with pytest.raises(STTAuthError, match="API key not valid"):
        await transcribe_file(client(endpoint, key="wrong"), flite_speech[0].path)


async def test_server_failing_mid_stream(server, flite_speech: list[Utterance]) -> None:
    service, endpoint = server
    service.mode = "close_mid"
    with pytest.raises(STTError, match="UNAVAILABLE"):
        await transcribe_file(client(endpoint), flite_speech[0].path)


async def test_malformed_response(server, flite_speech: list[Utterance]) -> None:
    service, endpoint = server
    service.mode = "malformed"
    with pytest.raises(STTError, match="malformed response"):
        await transcribe_file(client(endpoint), flite_speech[0].path)


async def test_nothing_listening(unused_tcp_port: int) -> None:
    stt = GoogleSTT(GoogleSettings(endpoint=f"127.0.0.1:{unused_tcp_port}", tls=False, connect_timeout_s=0.5))
    with pytest.raises(STTError, match="cannot reach"):
        await stt.prepare()
    await stt.aclose()
