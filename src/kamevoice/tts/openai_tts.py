"""OpenAI's speech endpoint (`POST {base_url}/audio/speech`) as a TTS engine, timed by forced alignment.

Works with OpenAI and with servers that copy the endpoint. The request is JSON
`{"model", "input", "voice", "response_format", "speed"}` (plus `instructions`
when set); the answer is the audio itself, WAV or raw 24 kHz 16-bit PCM. The
API sends no word times, so words are timed by `sphinx_align`, like flite's.

Failures raise the back-end's `llm.ProviderError` classes, naming the provider
(`openai-tts`), the URL and the problem. Rate limits (429), server errors (5xx),
timeouts and dropped connections are retried with exponential back-off
(honouring `Retry-After`); a rejected request (401, 400, ...) or malformed
audio is not, since trying again cannot help.
"""

from __future__ import annotations

import json
import os
import random
import time
from typing import Literal
from urllib.parse import urlparse

import httpx
import numpy as np
from pydantic import Field

from kamevoice.audio import decode_pcm16, decode_wav
from kamevoice.backend.llm import base as llm
from kamevoice.backoff import Backoff, retry_after_seconds
from kamevoice.errors import ConfigError
from kamevoice.section import Section
from kamevoice.tts import Synthesis
from kamevoice.tts.sphinx_align import WordTimer

PROVIDER = "openai-tts"
# The hosted API always needs a key; compatible local servers usually take none.
OPENAI_HOST = "api.openai.com"
# The speeds the endpoint accepts.
MIN_SPEED, MAX_SPEED = 0.25, 4.0
# Error bodies are quoted only this far: the vendor's message, never a whole HTML page.
ERROR_TEXT_LIMIT = 300
# OpenAI's built-in voices (all take any English text), used in turn by the dialogue synthesiser.
DEFAULT_VOICES = ("alloy", "ash", "coral", "echo", "fable", "nova", "onyx", "sage", "shimmer")


class OpenAITTSSettings(Section):
    """Where the speech endpoint is, which model and voices to use, and how hard to retry."""

    base_url: str = Field(
        "https://api.openai.com/v1", pattern=r"^https?://", description="ends before /audio"
    )
    model: str = "gpt-4o-mini-tts"
    voices: tuple[str, ...] = Field(DEFAULT_VOICES, min_length=1, description="the first is the default")
    api_key_env: str = Field("OPENAI_API_KEY", description="environment variable that holds the API key")
    response_format: Literal["wav", "pcm"] = "wav"
    # OpenAI's raw PCM is 24 kHz, 16-bit little-endian mono; a compatible server may differ.
    pcm_sample_rate: int = Field(24_000, gt=0)
    instructions: str | None = Field(None, description="how to speak (gpt-4o-mini-tts only)")
    connect_timeout_s: float = Field(10.0, gt=0)
    # A long turn takes the hosted API a few seconds before its first byte.
    read_timeout_s: float = Field(60.0, gt=0, description="longest wait for the server's next bytes")
    max_attempts: int = Field(4, ge=1, description="tries per request, for retryable failures")
    backoff_s: float = Field(0.5, ge=0, description="first retry delay, doubled each retry")
    max_backoff_s: float = Field(30.0, ge=0, description="cap on any retry delay, Retry-After included")


def _error_text(body: bytes) -> str:
    """The human part of an error body: `error.message` when it is the vendor's JSON."""
    text = body.decode("utf-8", errors="replace").strip()
    try:
        data = json.loads(text)
    except json.JSONDecodeError:
        return text[:ERROR_TEXT_LIMIT] or "(empty body)"
    err = data.get("error", data) if isinstance(data, dict) else data
    if isinstance(err, dict) and "message" in err:
        return str(err["message"])[:ERROR_TEXT_LIMIT]
    return str(err)[:ERROR_TEXT_LIMIT]


class OpenAITTSEngine:
    """Hosted speech synthesis; word timings from PocketSphinx forced alignment."""

    name = "openai"

    def __init__(self, settings: OpenAITTSSettings | None = None, *, client: httpx.Client | None = None):
        self.settings = s = settings or OpenAITTSSettings()
        self.url = f"{s.base_url.rstrip('/')}/audio/speech"
        self._key = self._api_key()
        self._own_client = client is None
        self._client = client or httpx.Client(
            timeout=httpx.Timeout(s.read_timeout_s, connect=s.connect_timeout_s)
        )
        self._timer = WordTimer("openai")
        self._jitter = random.Random()  # spreads retries of parallel workers apart

    def _api_key(self) -> str | None:
        key = os.environ.get(self.settings.api_key_env) or None
        if key is None and urlparse(self.settings.base_url).hostname == OPENAI_HOST:
            raise ConfigError(
                f"{PROVIDER}: no API key: set the environment variable {self.settings.api_key_env}"
            )
        return key

    def voices(self) -> list[str]:
        """The configured voices."""
        return list(self.settings.voices)

    def synthesize(self, text: str, voice: str | None = None, rate: float = 1.0) -> Synthesis:
        """Ask the endpoint for `text` spoken by `voice` at `rate` x speed, then align its words."""
        if rate <= 0:
            raise ConfigError(f"speaking rate must be positive, got {rate}")
        s = self.settings
        body: dict[str, object] = {
            "model": s.model,
            "input": text,
            "voice": voice or s.voices[0],
            "response_format": s.response_format,
            "speed": min(MAX_SPEED, max(MIN_SPEED, rate)),
        }
        if s.instructions:
            body["instructions"] = s.instructions
        audio, sr = self._decode(self._post_with_retries(body))
        return Synthesis(audio, sr, self._timer.words(audio, sr, text))

    def _post_with_retries(self, body: dict[str, object]) -> bytes:
        s = self.settings
        for attempt in range(1, s.max_attempts + 1):
            try:
                return self._post(body)
            except llm.ProviderError as exc:
                if not exc.retryable or attempt == s.max_attempts:
                    if attempt == 1:
                        raise
                    raise type(exc)(
                        exc.provider, exc.url, f"{exc.problem}; gave up after {attempt} attempts",
                        status=exc.status, retry_after=exc.retry_after,
                    ) from exc  # fmt: skip
                time.sleep(self._delay(attempt, exc.retry_after))
        raise AssertionError("unreachable")  # pragma: no cover - the loop returns or raises

    def _delay(self, attempt: int, retry_after: float | None) -> float:
        """Seconds before the next try: the server's Retry-After, else jittered exponential back-off."""
        s = self.settings
        backoff = Backoff(s.max_attempts - 1, s.backoff_s, s.max_backoff_s, jitter=0.5)
        return backoff.delay(attempt - 1, self._jitter, retry_after)

    def _post(self, body: dict[str, object]) -> bytes:
        """One request: the audio bytes, or a `llm.ProviderError` for what went wrong."""
        headers = {"Authorization": f"Bearer {self._key}"} if self._key else {}
        url = self.url
        try:
            resp = self._client.post(url, json=body, headers=headers)
        except httpx.ConnectTimeout:
            raise llm.ProviderTimeoutError(
                PROVIDER, url, f"no connection within {self.settings.connect_timeout_s:g} s"
            ) from None
        except httpx.TimeoutException as exc:
            raise llm.ProviderTimeoutError(
                PROVIDER, url, f"no audio: the server sent nothing for {self.settings.read_timeout_s:g} s "
                f"({type(exc).__name__})",
            ) from None  # fmt: skip
        except httpx.ConnectError as exc:
            raise llm.ConnectionDroppedError(PROVIDER, url, f"cannot connect: {exc}") from None
        except (httpx.RemoteProtocolError, httpx.ReadError, httpx.WriteError) as exc:
            raise llm.ConnectionDroppedError(
                PROVIDER, url, f"connection dropped: {exc or type(exc).__name__}"
            ) from None
        except httpx.HTTPError as exc:  # anything else httpx can raise (proxy, TLS, protocol)
            raise llm.ConnectionDroppedError(PROVIDER, url, f"{type(exc).__name__}: {exc}") from None
        if resp.status_code >= 400:
            raise self._status_error(resp)
        if resp.headers.get("content-type", "").startswith("application/json"):
            raise llm.MalformedResponseError(
                PROVIDER, url, f"answered JSON instead of audio: {_error_text(resp.content)}"
            )
        return resp.content

    def _status_error(self, resp: httpx.Response) -> llm.ProviderError:
        status, url = resp.status_code, self.url
        problem = f"HTTP {status}: {_error_text(resp.content)}"
        if status == 429:
            return llm.RateLimitedError(
                PROVIDER, url, problem, status=status, retry_after=retry_after_seconds(resp.headers)
            )
        if status >= 500:
            return llm.ServerError(
                PROVIDER, url, problem, status=status, retry_after=retry_after_seconds(resp.headers)
            )
        if status in (401, 403):
            problem += f" (check the API key in ${self.settings.api_key_env})"
        return llm.RequestRejectedError(PROVIDER, url, problem, status=status)

    def _decode(self, data: bytes) -> tuple[np.ndarray, int]:
        s = self.settings
        try:
            if s.response_format == "wav":
                return decode_wav(data)
            return decode_pcm16(data, s.pcm_sample_rate)
        except ValueError as exc:
            raise llm.MalformedResponseError(
                PROVIDER, self.url, f"malformed {s.response_format} audio: {exc}"
            ) from None

    def close(self) -> None:
        """Close the HTTP connections (of a client this engine made)."""
        if self._own_client:
            self._client.close()

    def __enter__(self) -> OpenAITTSEngine:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()
