"""OpenAI-compatible chat completions, streamed (`data: {chunk}` ... `data: [DONE]`).

Works with OpenAI and with every server that copies its protocol: vLLM,
Ollama (`/v1`), llama.cpp's server, LM Studio, Gemini's OpenAI endpoint.
"""

from __future__ import annotations

from typing import Any, ClassVar

from kamevoice.backend.llm.base import ChatMessage, MalformedResponseError, ServerError
from kamevoice.backend.llm.http_stream import HTTPRequest, SSEProvider, StreamState
from kamevoice.backend.llm.settings import OpenAICompatSettings
from kamevoice.backend.llm.sse import SSEEvent

DONE_MARKER = "[DONE]"


class OpenAICompatProvider(SSEProvider):
    """Streams `POST {base_url}/chat/completions`."""

    name: ClassVar[str] = "openai"
    requires_api_key: ClassVar[bool] = False  # local servers (vLLM, Ollama, llama.cpp) take none
    settings: OpenAICompatSettings

    def build_request(self, messages: list[ChatMessage], system: str) -> HTTPRequest:
        s = self.settings
        headers = {"Accept": "text/event-stream"}
        key = s.api_key()
        if key is not None:  # local servers (vLLM, Ollama, llama.cpp) usually take none
            headers["Authorization"] = f"Bearer {key}"
        chat: list[dict[str, str]] = [{"role": "system", "content": system}] if system else []
        chat += [{"role": m.role, "content": m.content} for m in messages]
        body: dict[str, Any] = {
            "model": s.model,
            "messages": chat,
            "stream": True,
            "temperature": s.temperature,
            "max_tokens": s.max_tokens,
        }
        return HTTPRequest(f"{s.base_url.rstrip('/')}/chat/completions", headers, body)

    def read_event(self, event: SSEEvent, state: StreamState, url: str) -> str | None:
        if event.data.strip() == DONE_MARKER:
            state.done = True
            return None
        chunk = self.parse_json(event.data, url)
        if not isinstance(chunk, dict):
            raise MalformedResponseError(
                self.name, url, f"stream chunk is not an object: {event.data[:120]!r}"
            )
        if "error" in chunk:  # vLLM and Ollama report mid-stream failures this way
            err = chunk["error"]
            message = err.get("message", err) if isinstance(err, dict) else err
            raise ServerError(self.name, url, f"error inside the stream: {message}")
        choices = chunk.get("choices")
        if not isinstance(choices, list):
            raise MalformedResponseError(
                self.name, url, f"stream chunk has no 'choices': {event.data[:120]!r}"
            )
        text = ""
        for choice in choices:
            if not isinstance(choice, dict) or choice.get("index", 0) != 0:
                continue
            if choice.get("finish_reason"):
                state.finish_reason = choice["finish_reason"]
            delta = choice.get("delta") or {}
            content = delta.get("content") if isinstance(delta, dict) else None
            if isinstance(content, str):
                text += content
        return text or None

    def stream_complete(self, state: StreamState) -> bool:
        # Some servers close without `[DONE]` after a final chunk with a finish reason.
        return state.done or state.finish_reason is not None
