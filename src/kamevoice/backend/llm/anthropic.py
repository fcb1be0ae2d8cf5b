"""Anthropic Messages API, streamed.

Events: `message_start`, `content_block_start`, `ping`, `content_block_delta`
(text in `delta.text` when `delta.type == "text_delta"`), `content_block_stop`,
`message_delta`, `message_stop` (the end), and `error`.
"""

from __future__ import annotations

from typing import Any, ClassVar

from kamevoice.backend.llm.base import (
    ChatMessage,
    MalformedResponseError,
    ProviderError,
    RateLimitedError,
    RequestRejectedError,
    ServerError,
)
from kamevoice.backend.llm.http_stream import HTTPRequest, SSEProvider, StreamState
from kamevoice.backend.llm.settings import AnthropicSettings
from kamevoice.backend.llm.sse import SSEEvent

# In-stream error types that are the server's trouble (retry) rather than ours.
_SERVER_ERROR_TYPES = {"overloaded_error", "api_error", "internal_server_error", "timeout_error"}


class AnthropicProvider(SSEProvider):
    """Streams `POST {base_url}/messages`."""

    name: ClassVar[str] = "anthropic"
    settings: AnthropicSettings

    def build_request(self, messages: list[ChatMessage], system: str) -> HTTPRequest:
        s = self.settings
        headers = {
            "x-api-key": s.require_api_key(self.name),
            "anthropic-version": s.anthropic_version,
            "accept": "text/event-stream",
        }
        body: dict[str, Any] = {
            "model": s.model,
            "max_tokens": s.max_tokens,
            "temperature": s.temperature,
            "stream": True,
            "messages": [{"role": m.role, "content": m.content} for m in messages],
        }
        if system:
            body["system"] = system
        return HTTPRequest(f"{s.base_url.rstrip('/')}/messages", headers, body)

    def read_event(self, event: SSEEvent, state: StreamState, url: str) -> str | None:
        data = self.parse_json(event.data, url)
        if not isinstance(data, dict):
            raise MalformedResponseError(self.name, url, f"event data is not an object: {event.data[:120]!r}")
        kind = data.get("type", event.event)
        if kind == "content_block_delta":
            delta = data.get("delta")
            if not isinstance(delta, dict):
                raise MalformedResponseError(self.name, url, f"content_block_delta without delta: {data}")
            if delta.get("type") == "text_delta":
                text = delta.get("text")
                if not isinstance(text, str):
                    raise MalformedResponseError(self.name, url, f"text_delta without text: {data}")
                return text
            return None  # thinking / tool-input deltas are not spoken
        if kind == "message_delta":
            delta = data.get("delta") or {}
            state.finish_reason = delta.get("stop_reason") if isinstance(delta, dict) else None
        elif kind == "message_stop":
            state.done = True
        elif kind == "error":
            raise self._stream_error(data.get("error") or {}, url)
        return None

    def _stream_error(self, err: Any, url: str) -> ProviderError:
        kind = err.get("type", "error") if isinstance(err, dict) else "error"
        message = err.get("message", "") if isinstance(err, dict) else str(err)
        problem = f"error event {kind}: {message}"
        if kind == "rate_limit_error":
            return RateLimitedError(self.name, url, problem)
        if kind in _SERVER_ERROR_TYPES:
            return ServerError(self.name, url, problem)
        return RequestRejectedError(self.name, url, problem)
