"""Google Cloud Speech-to-Text v1 `StreamingRecognize` over gRPC (what the published KAME uses).

One bidirectional call per stream, `/google.cloud.speech.v1.Speech/StreamingRecognize`:
the first request carries the `StreamingRecognitionConfig` (LINEAR16, 16 kHz,
word time offsets, interim results on), the following ones `audio_content`
(at most 25 KB each).
Responses carry `results`: interim ones become partials (their transcripts
joined), an `is_final` one becomes this stream's final for that utterance.
Messages are the `google-cloud-speech` package's types; the call itself is
made with plain `grpc` (any endpoint works, a local server in the tests), on
grpc's own threads: its synchronous API reports the server's status when the
server ends a stream while audio is still being written, where grpc.aio
reports INTERNAL instead (grpc issue 36066). Credentials: an API key
(`x-goog-api-key`), an OAuth access token, or Application Default
Credentials through `google.auth` when neither is set.
"""

from __future__ import annotations

import asyncio
import queue
from collections.abc import Iterator
from typing import Any

import numpy as np

from kamevoice.audio import float_to_int16
from kamevoice.backend.stt.base import (
    ENGINE_RATE,
    Hypothesis,
    STTAuthError,
    STTError,
    STTStream,
    Word,
)
from kamevoice.backend.stt.settings import GoogleSettings
from kamevoice.errors import ConfigError
from kamevoice.runtime.clock import Clock
from kamevoice.runtime.events import EventLog

METHOD = "/google.cloud.speech.v1.Speech/StreamingRecognize"
# Scope Application Default Credentials need for Speech-to-Text.
CLOUD_SCOPE = "https://www.googleapis.com/auth/cloud-platform"
# Google caps one request's audio at 25 KB (~0.8 s of 16 kHz LINEAR16); split larger pushes.
MAX_REQUEST_BYTES = 25_000


def _types() -> Any:
    try:
        from google.cloud.speech_v1.types import cloud_speech
    except ImportError as exc:
        raise ConfigError("the google STT needs `pip install google-cloud-speech==2.41.0 grpcio`") from exc
    return cloud_speech


def _seconds(value: Any) -> float:
    """proto-plus maps Duration to timedelta; tolerate a raw Duration too."""
    if hasattr(value, "total_seconds"):
        return float(value.total_seconds())
    return float(getattr(value, "seconds", 0)) + float(getattr(value, "nanos", 0)) / 1e9


class GoogleSTT(STTStream):
    """A Google Cloud Speech-to-Text v1 streaming recognition."""

    name = "google"

    def __init__(
        self,
        settings: GoogleSettings | None = None,
        events: EventLog | None = None,
        clock: Clock | None = None,
    ):
        super().__init__(events, clock)
        self.settings = settings or GoogleSettings()
        self._t = _types()
        self._call: Any = None
        self._channel: Any = None
        # Audio for grpc's sending thread (None ends the request stream).
        self._requests: queue.SimpleQueue[bytes | None] = queue.SimpleQueue()
        self._reader: asyncio.Task[None] | None = None

    # -- connection -------------------------------------------------------------------------

    def _metadata(self) -> list[tuple[str, str]]:
        s = self.settings
        if s.api_key is not None:
            return [("x-goog-api-key", s.api_key.get_secret_value())]
        if s.access_token is not None:
            return [("authorization", f"Bearer {s.access_token.get_secret_value()}")]
        return []

    def _open_channel(self) -> Any:
        import grpc

        s = self.settings
        if not s.tls:
            return grpc.insecure_channel(s.endpoint)
        creds = grpc.ssl_channel_credentials()
        if s.api_key is None and s.access_token is None:
            try:
                import google.auth
                import google.auth.transport.grpc
                import google.auth.transport.requests

                adc, _ = google.auth.default(scopes=[CLOUD_SCOPE])
                plugin = google.auth.transport.grpc.AuthMetadataPlugin(
                    adc, google.auth.transport.requests.Request()
                )
                creds = grpc.composite_channel_credentials(creds, grpc.metadata_call_credentials(plugin))
            except Exception as exc:
                raise STTAuthError(
                    f"no Google credentials: set stt.google.api_key or access_token, or configure ADC ({exc})"
                ) from exc
        return grpc.secure_channel(s.endpoint, creds)

    def config_request(self) -> Any:
        """The first request of the stream."""
        t, s = self._t, self.settings
        config = t.RecognitionConfig(
            encoding=t.RecognitionConfig.AudioEncoding.LINEAR16,
            sample_rate_hertz=ENGINE_RATE,
            audio_channel_count=1,
            language_code=s.language_code,
            enable_word_time_offsets=True,
            enable_automatic_punctuation=s.punctuation,
            model=s.model or "",
        )
        return t.StreamingRecognizeRequest(
            streaming_config=t.StreamingRecognitionConfig(config=config, interim_results=True)
        )

    async def _connect(self) -> None:
        import grpc

        self._channel = self._open_channel()
        try:
            await asyncio.to_thread(
                grpc.channel_ready_future(self._channel).result, timeout=self.settings.connect_timeout_s
            )
        except grpc.FutureTimeoutError as exc:
            raise STTError(f"cannot reach Google Speech at {self.settings.endpoint}") from exc
        t = self._t
        self._call = self._channel.stream_stream(
            METHOD,
            request_serializer=t.StreamingRecognizeRequest.serialize,
            response_deserializer=t.StreamingRecognizeResponse.deserialize,
        )(self._request_stream(), metadata=self._metadata())
        self._reader = asyncio.create_task(asyncio.to_thread(self._read, asyncio.get_running_loop()))

    def _request_stream(self) -> Iterator[Any]:
        """Requests for grpc's sending thread: the config, then audio until the end marker."""
        yield self.config_request()
        while (chunk := self._requests.get()) is not None:
            yield self._t.StreamingRecognizeRequest(audio_content=chunk)

    # -- streaming ----------------------------------------------------------------------------

    async def _prepare(self) -> None:
        if self._channel is None:
            await self._connect()

    async def _feed(self, audio: np.ndarray) -> None:
        if self._channel is None:
            await self._connect()
        if self._reader is not None and self._reader.done():
            raise self._error or STTError("Google Speech ended the stream")
        data = float_to_int16(audio).tobytes()
        for i in range(0, len(data), MAX_REQUEST_BYTES):
            self._requests.put(data[i : i + MAX_REQUEST_BYTES])

    async def _end(self) -> None:
        self._requests.put(None)
        if self._reader is not None:
            await self._reader

    async def _release(self) -> None:
        self._requests.put(None)
        if self._call is not None:
            self._call.cancel()
        if self._reader is not None:
            await asyncio.gather(self._reader, return_exceptions=True)
        if self._channel is not None:
            self._channel.close()

    def _read(self, loop: asyncio.AbstractEventLoop) -> None:
        """Iterate the responses on a worker thread, handing each to the event loop."""
        import grpc

        def report(exc: STTError) -> None:
            loop.call_soon_threadsafe(self._fail, exc)

        try:
            for response in self._call:
                loop.call_soon_threadsafe(self._on_response_safe, response)
        except grpc.RpcError as exc:
            code, details = exc.code(), exc.details() or ""
            if code == grpc.StatusCode.CANCELLED and self._closed:
                return  # we cancelled it
            if code in (grpc.StatusCode.UNAUTHENTICATED, grpc.StatusCode.PERMISSION_DENIED):
                report(STTAuthError(f"Google Speech refused the credentials: {details}"))
            elif code == grpc.StatusCode.INTERNAL and "deserializ" in details.lower():
                report(STTError(f"malformed response from Google Speech: {details}"))
            else:
                report(STTError(f"Google Speech stream failed: {code.name}: {details}"))
        except Exception as exc:
            report(STTError(f"Google Speech reader failed: {type(exc).__name__}: {exc}"))

    def _on_response_safe(self, response: Any) -> None:
        try:
            self._on_response(response)
        except STTError as exc:
            self._fail(exc)
        except Exception as exc:
            self._fail(STTError(f"malformed response from Google Speech: {type(exc).__name__}: {exc}"))

    def _on_response(self, response: Any) -> None:
        if response.error and response.error.code:
            raise STTError(f"Google Speech error {response.error.code}: {response.error.message}")
        interim: list[Any] = []
        for result in response.results:
            if not result.alternatives:
                continue
            if result.is_final:
                self._publish(self._hypothesis([result], True))
            else:
                interim.append(result)
        if interim:
            self._publish(self._hypothesis(interim, False))

    def _hypothesis(self, results: list[Any], is_final: bool) -> Hypothesis:
        texts, words = [], []
        for result in results:
            alt = result.alternatives[0]
            texts.append(alt.transcript.strip())
            words += [Word(w.word, _seconds(w.start_time), _seconds(w.end_time)) for w in alt.words]
        end = max((_seconds(r.result_end_time) for r in results), default=0.0)
        return Hypothesis(" ".join(t for t in texts if t), is_final, words, end or self.audio_pushed_s)
