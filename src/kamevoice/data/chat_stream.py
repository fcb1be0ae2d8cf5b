"""A minimal OpenAI-compatible chat-completions client with the `stream(messages, system=...)` interface.

Enough for the LLM oracle simulator and its tests (any server speaking
`POST /v1/chat/completions` with `"stream": true` server-sent events:
OpenAI, vLLM, llama.cpp, ...). The full back-end providers live in
`kamevoice.backend.llm`.
"""

from __future__ import annotations

import json
import os
from collections.abc import AsyncIterator
from dataclasses import dataclass


class ChatHTTPError(RuntimeError):
    """The server answered with an error status (429 and 5xx are worth retrying)."""

    def __init__(self, status: int, body: str):
        super().__init__(f"HTTP {status}: {body[:200]}")
        self.status = status


@dataclass(frozen=True)
class OpenAIChatOptions:
    """Where and what to ask."""

    base_url: str = "https://api.openai.com/v1"
    model: str = "gpt-4.1-nano"
    # Read from the environment at request time, never stored in files.
    api_key_env: str = "OPENAI_API_KEY"
    temperature: float = 0.8
    max_tokens: int = 120
    connect_timeout_s: float = 10.0


class OpenAIChatStream:
    """Streams chat completions over aiohttp; one session per client, closed by `close()`."""

    def __init__(self, options: OpenAIChatOptions | None = None):
        self.options = options or OpenAIChatOptions()
        self._session = None

    async def _client(self):
        import aiohttp

        if self._session is None or self._session.closed:
            timeout = aiohttp.ClientTimeout(sock_connect=self.options.connect_timeout_s)
            self._session = aiohttp.ClientSession(timeout=timeout)
        return self._session

    async def stream(self, messages: list[dict[str, str]], system: str | None = None) -> AsyncIterator[str]:
        """Yield the text pieces of the reply to `messages` (with `system` as the system message)."""
        o = self.options
        body = {
            "model": o.model,
            "messages": ([{"role": "system", "content": system}] if system else []) + list(messages),
            "stream": True,
            "temperature": o.temperature,
            "max_tokens": o.max_tokens,
        }
        headers = {"Content-Type": "application/json"}
        key = os.environ.get(o.api_key_env)
        if key:
            headers["Authorization"] = f"Bearer {key}"
        session = await self._client()
        async with session.post(
            f"{o.base_url.rstrip('/')}/chat/completions", json=body, headers=headers
        ) as resp:
            if resp.status != 200:
                raise ChatHTTPError(resp.status, await resp.text())
            async for raw in resp.content:
                line = raw.decode("utf-8").strip()
                if not line.startswith("data:"):
                    continue
                data = line[len("data:") :].strip()
                if data == "[DONE]":
                    return
                choices = json.loads(data).get("choices") or [{}]
                piece = (choices[0].get("delta") or {}).get("content")
                if piece:
                    yield piece

    async def close(self) -> None:
        """Close the HTTP session."""
        if self._session is not None:
            await self._session.close()
            self._session = None
