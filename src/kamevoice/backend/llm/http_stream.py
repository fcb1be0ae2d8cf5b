"""Shared machinery of the HTTP providers: one streamed POST, its timeouts, its errors.

A vendor file only says how to build its request and how to read one of its
events (`SSEProvider.build_request`, `SSEProvider.read_event`); everything
about sockets, deadlines, status codes and cancellation lives here, once.

Deadlines, all on the event loop's clock:

- connect: `connect_timeout_s` for TCP/TLS and sending the request (httpx);
- first token: from sending the request to the first text delta;
- stall: once text flows, the longest wait for the next bytes of the stream.

Sizes: the stream is read in the chunks the network delivers and split into lines
here (`LineSplitter`), so a line (or an event) over `max_line_bytes` ends the request
as malformed as soon as that many bytes of it arrived; memory never holds more.
"""

from __future__ import annotations

import asyncio
import json
from abc import abstractmethod
from collections.abc import AsyncIterator
from contextlib import AsyncExitStack
from dataclasses import dataclass, field
from typing import Any, ClassVar

import httpx

from kamevoice.backend.llm import base as llm
from kamevoice.backend.llm.settings import HTTPProviderSettings
from kamevoice.backend.llm.sse import LineSplitter, SSEEvent, SSEParser, StreamLimitError
from kamevoice.backoff import retry_after_seconds

# Error bodies are read only this far: enough for the vendor's message, never a whole HTML page.
ERROR_BODY_LIMIT = 2000
# A Retry-After longer than this is not worth honouring inside a live conversation.
MAX_RETRY_AFTER_S = 30.0


@dataclass(frozen=True)
class HTTPRequest:
    """What to POST: the URL, headers and JSON body of one streamed request."""

    url: str
    headers: dict[str, str]
    body: dict[str, Any]


@dataclass
class StreamState:
    """What a vendor parser learns while reading one stream."""

    done: bool = False
    finish_reason: str | None = None
    extra: dict[str, Any] = field(default_factory=dict)


class SSEProvider(llm.LLMProvider):
    """An LLM reached by one streamed HTTP POST answered with server-sent events."""

    #: Whether the vendor always needs an API key (checked when the provider is built).
    requires_api_key: ClassVar[bool] = True

    def __init__(self, settings: HTTPProviderSettings, *, client: httpx.AsyncClient | None = None):
        if self.requires_api_key:
            settings.require_api_key(self.name)  # fail at start-up, not on the first question
        self.settings = settings
        self._own_client = client is None
        self._client = client or httpx.AsyncClient(
            timeout=httpx.Timeout(
                connect=settings.connect_timeout_s,
                write=settings.connect_timeout_s,
                pool=settings.connect_timeout_s,
                # Reads are bounded by our own first-token and stall deadlines below.
                read=None,
            )
        )

    @abstractmethod
    def build_request(self, messages: list[llm.ChatMessage], system: str) -> HTTPRequest:
        """The vendor's request for this conversation (with `stream` switched on)."""

    @abstractmethod
    def read_event(self, event: SSEEvent, state: StreamState, url: str) -> str | None:
        """Turn one event into a text delta (or None); set `state.done` at the end marker.

        Raises a `llm.ProviderError` for error events and malformed data.
        """

    def stream_complete(self, state: StreamState) -> bool:
        """Whether a stream that ended here finished properly (default: an end marker was seen)."""
        return state.done

    def error_for_status(
        self, status: int, message: str, url: str, retry_after: float | None
    ) -> llm.ProviderError:
        """Map an HTTP error status to the error hierarchy (vendors may refine)."""
        problem = f"HTTP {status}: {message}"
        if status == 429:
            return llm.RateLimitedError(self.name, url, problem, status=status, retry_after=retry_after)
        if status >= 500:
            return llm.ServerError(self.name, url, problem, status=status, retry_after=retry_after)
        return llm.RequestRejectedError(self.name, url, problem, status=status)

    def parse_json(self, data: str, url: str) -> Any:
        """Decode one event's JSON payload; bad JSON is a `llm.MalformedResponseError`."""
        try:
            return json.loads(data)
        except json.JSONDecodeError as exc:
            raise llm.MalformedResponseError(
                self.name, url, f"stream event is not valid JSON ({exc.msg}): {data[:120]!r}"
            ) from None

    async def stream(self, messages: list[llm.ChatMessage], *, system: str) -> AsyncIterator[str]:
        if self.settings.system_prompt is not None:
            system = self.settings.system_prompt
        request = self.build_request(messages, system)
        url = request.url
        s = self.settings
        loop = asyncio.get_running_loop()
        first_token_deadline = loop.time() + s.first_token_timeout_s
        phase = "response"  # what we are waiting for when a deadline fires
        # No deadline may span a `yield`: while this generator is suspended the
        # consumer runs, and a timer firing then would cancel the consumer instead.
        try:
            async with AsyncExitStack() as stack:
                async with asyncio.timeout_at(first_token_deadline):
                    resp = await stack.enter_async_context(
                        self._client.stream("POST", url, headers=request.headers, json=request.body)
                    )
                    if resp.status_code >= 400:
                        raise await self._status_error(resp, url)
                phase = "first token"
                splitter = LineSplitter(s.max_line_bytes)
                parser, state = SSEParser(max_data_chars=s.max_line_bytes), StreamState()
                chunks = resp.aiter_bytes()
                while not state.done:
                    limit = loop.time() + s.stall_timeout_s if phase == "stall" else first_token_deadline
                    try:
                        async with asyncio.timeout_at(limit):
                            chunk = await anext(chunks)
                    except StopAsyncIteration:
                        break
                    for line in self._lines(splitter, chunk, url):
                        text = self._read_line(parser, line, state, url)
                        if text:
                            phase = "stall"
                            yield text
                        if state.done:
                            break
                if not state.done:
                    last = self._lines(splitter, None, url)
                    text = self._read_line(parser, last[0], state, url) if last else None
                    if text:
                        yield text
                    tail = parser.finish()
                    text = self.read_event(tail, state, url) if tail is not None else None
                    if text:
                        yield text
                    if not self.stream_complete(state):
                        raise llm.ConnectionDroppedError(
                            self.name, url, "the stream ended before the server said it was complete"
                        )
        except TimeoutError:
            raise self._timeout_error(phase, url) from None
        except httpx.ConnectTimeout:
            raise llm.ProviderTimeoutError(
                self.name, url, f"no connection within {s.connect_timeout_s:g} s"
            ) from None
        except httpx.TimeoutException as exc:
            raise llm.ProviderTimeoutError(self.name, url, f"{type(exc).__name__}: {exc}") from None
        except httpx.ConnectError as exc:
            raise llm.ConnectionDroppedError(self.name, url, f"cannot connect: {exc}") from None
        except (httpx.RemoteProtocolError, httpx.ReadError, httpx.WriteError) as exc:
            raise llm.ConnectionDroppedError(
                self.name, url, f"connection dropped mid-stream: {exc or type(exc).__name__}"
            ) from None
        except UnicodeDecodeError as exc:
            raise llm.MalformedResponseError(self.name, url, f"stream is not UTF-8: {exc}") from None

    def _lines(self, splitter: LineSplitter, chunk: bytes | None, url: str) -> list[str]:
        """The lines `chunk` completes (None: the stream ended, its unfinished last line)."""
        try:
            if chunk is None:
                last = splitter.finish()
                return [] if last is None else [last]
            return splitter.feed(chunk)
        except StreamLimitError as exc:
            raise llm.MalformedResponseError(self.name, url, str(exc)) from None

    def _read_line(self, parser: SSEParser, line: str, state: StreamState, url: str) -> str | None:
        """Feed one line to the parser; the text delta of the event it completes, if any."""
        try:
            event = parser.feed(line)
        except StreamLimitError as exc:
            raise llm.MalformedResponseError(self.name, url, str(exc)) from None
        return self.read_event(event, state, url) if event is not None else None

    def _timeout_error(self, phase: str, url: str) -> llm.ProviderError:
        s = self.settings
        if phase == "stall":
            return llm.StalledStreamError(
                self.name, url, f"stream stalled: no data for {s.stall_timeout_s:g} s"
            )
        return llm.ProviderTimeoutError(self.name, url, f"no {phase} within {s.first_token_timeout_s:g} s")

    async def _status_error(self, resp: httpx.Response, url: str) -> llm.ProviderError:
        body = b""
        async for chunk in resp.aiter_bytes():
            body += chunk
            if len(body) >= ERROR_BODY_LIMIT:
                break
        return self.error_for_status(
            resp.status_code, _error_message(body[:ERROR_BODY_LIMIT]), url, _retry_after(resp.headers)
        )

    async def warm_up(self) -> None:
        """Open the connection (TCP, TLS) with a body-less HEAD to the stream URL; it stays pooled.

        Any HTTP answer counts (an endpoint that only takes POST says 405): the point is the
        open connection, which the next request reuses.
        """
        url = self.build_request([], "").url
        try:
            await self._client.request("HEAD", url, timeout=self.settings.connect_timeout_s)
        except httpx.TimeoutException:
            raise llm.ProviderTimeoutError(
                self.name, url, f"warm-up: no answer within {self.settings.connect_timeout_s:g} s"
            ) from None
        except httpx.HTTPError as exc:
            raise llm.ConnectionDroppedError(self.name, url, f"warm-up failed: {exc}") from None

    async def aclose(self) -> None:
        if self._own_client:
            await self._client.aclose()


def _error_message(body: bytes) -> str:
    """The human part of an error body: the vendor's `error.message` when there is one."""
    text = body.decode("utf-8", errors="replace").strip()
    try:
        data = json.loads(text)
    except json.JSONDecodeError:
        return text[:300] or "(empty body)"
    if isinstance(data, list) and data:  # Gemini sometimes wraps errors in a list
        data = data[0]
    if isinstance(data, dict):
        err = data.get("error", data)
        if isinstance(err, dict) and "message" in err:
            return str(err["message"])[:300]
        if isinstance(err, str):
            return err[:300]
    return text[:300]


def _retry_after(headers: httpx.Headers) -> float | None:
    return retry_after_seconds(headers, MAX_RETRY_AFTER_S)
