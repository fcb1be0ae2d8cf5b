"""Google Gemini `models/{model}:streamGenerateContent?alt=sse`.

Each event is a whole `GenerateContentResponse`; the text is in
`candidates[0].content.parts[*].text` and the last one carries a `finishReason`.
"""

from __future__ import annotations

from typing import Any, ClassVar

from kamevoice.backend.llm.base import ChatMessage, MalformedResponseError, ServerError
from kamevoice.backend.llm.http_stream import HTTPRequest, SSEProvider, StreamState
from kamevoice.backend.llm.settings import GoogleGenAISettings
from kamevoice.backend.llm.sse import SSEEvent

# Gemini names the assistant "model".
_ROLES = {"user": "user", "assistant": "model"}


class GoogleGenAIProvider(SSEProvider):
    """Streams `POST {base_url}/models/{model}:streamGenerateContent?alt=sse`."""

    name: ClassVar[str] = "google"
    settings: GoogleGenAISettings

    def build_request(self, messages: list[ChatMessage], system: str) -> HTTPRequest:
        s = self.settings
        headers = {"x-goog-api-key": s.require_api_key(self.name), "accept": "text/event-stream"}
        config: dict[str, Any] = {"temperature": s.temperature, "maxOutputTokens": s.max_tokens}
        if s.thinking_budget is not None:
            config["thinkingConfig"] = {"thinkingBudget": s.thinking_budget}
        body: dict[str, Any] = {
            "contents": [{"role": _ROLES[m.role], "parts": [{"text": m.content}]} for m in messages],
            "generationConfig": config,
        }
        if system:
            body["systemInstruction"] = {"parts": [{"text": system}]}
        url = f"{s.base_url.rstrip('/')}/models/{s.model}:streamGenerateContent?alt=sse"
        return HTTPRequest(url, headers, body)

    def read_event(self, event: SSEEvent, state: StreamState, url: str) -> str | None:
        data = self.parse_json(event.data, url)
        if not isinstance(data, dict):
            raise MalformedResponseError(self.name, url, f"event data is not an object: {event.data[:120]!r}")
        if "error" in data:
            err = data["error"]
            message = err.get("message", err) if isinstance(err, dict) else err
            raise ServerError(self.name, url, f"error inside the stream: {message}")
        candidates = data.get("candidates")
        if candidates is None:
            feedback = data.get("promptFeedback") or {}
            if isinstance(feedback, dict) and feedback.get("blockReason"):
                state.finish_reason = str(feedback["blockReason"])  # refused: an empty answer
                state.done = True
                return None
            return None  # usage-only chunks
        if not isinstance(candidates, list):
            raise MalformedResponseError(self.name, url, f"'candidates' is not a list: {event.data[:120]!r}")
        if not candidates:
            return None
        first = candidates[0]
        if not isinstance(first, dict):
            raise MalformedResponseError(self.name, url, f"candidate is not an object: {event.data[:120]!r}")
        text = ""
        parts = (first.get("content") or {}).get("parts") or []
        for part in parts:
            if isinstance(part, dict) and isinstance(part.get("text"), str) and not part.get("thought"):
                text += part["text"]
        if first.get("finishReason"):
            state.finish_reason = first["finishReason"]
        return text or None

    def stream_complete(self, state: StreamState) -> bool:
        # Gemini has no end marker: the stream ends after a chunk with a finish reason.
        return state.done or state.finish_reason is not None
