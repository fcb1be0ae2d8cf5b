"""Fixtures of the back-end tests: local vendor servers, providers aimed at them, a recording sink."""

from __future__ import annotations

import asyncio
import os
from collections.abc import AsyncIterator, Awaitable, Callable
from dataclasses import dataclass, field
from typing import Any

import pytest

from kamevoice.backend.llm.anthropic import AnthropicProvider
from kamevoice.backend.llm.base import ChatMessage, LLMProvider
from kamevoice.backend.llm.google_genai import GoogleGenAIProvider
from kamevoice.backend.llm.http_stream import SSEProvider
from kamevoice.backend.llm.openai_compat import OpenAICompatProvider
from kamevoice.backend.llm.settings import AnthropicSettings, GoogleGenAISettings, OpenAICompatSettings

from .vendor_server import FakeVendor

os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")

VENDORS = ("openai", "anthropic", "google")
KEY_ENV = "KAMEVOICE_TEST_LLM_KEY"
TEST_KEY = "test-key-123"

# Short deadlines so failure tests take a fraction of a second.
FAST_TIMEOUTS: dict[str, Any] = {
    "connect_timeout_s": 2.0,
    "first_token_timeout_s": 2.0,
    "stall_timeout_s": 0.3,
}


def make_provider(vendor: str, base_url: str, **overrides: Any) -> SSEProvider:
    """A provider of `vendor` aimed at a local server."""
    common = {"model": "test-model", "api_key_env": KEY_ENV, **FAST_TIMEOUTS, **overrides}
    if vendor == "openai":
        return OpenAICompatProvider(OpenAICompatSettings(base_url=f"{base_url}/v1", **common))
    if vendor == "anthropic":
        return AnthropicProvider(AnthropicSettings(base_url=f"{base_url}/v1", **common))
    return GoogleGenAIProvider(GoogleGenAISettings(base_url=f"{base_url}/v1beta", **common))


@pytest.fixture
def api_key(monkeypatch: pytest.MonkeyPatch) -> str:
    monkeypatch.setenv(KEY_ENV, TEST_KEY)
    return TEST_KEY


@pytest.fixture
async def vendor_server() -> AsyncIterator[Callable[[str], Awaitable[FakeVendor]]]:
    """Start fake vendor servers on demand; all are stopped after the test."""
    servers: list[FakeVendor] = []

    async def start(vendor: str) -> FakeVendor:
        server = FakeVendor(vendor)
        await server.start()
        servers.append(server)
        return server

    yield start
    for server in servers:
        await server.stop()


@pytest.fixture
async def providers() -> AsyncIterator[list[LLMProvider]]:
    """Providers appended here are closed after the test."""
    made: list[LLMProvider] = []
    yield made
    for p in made:
        await p.aclose()


@dataclass
class RecordingSink:
    """An `OracleSink` that records every call, in order."""

    calls: list[tuple[str, int, str | None, bool | None]] = field(default_factory=list)
    ended: dict[int, asyncio.Event] = field(default_factory=dict)

    def begin(self, generation: int) -> None:
        self.calls.append(("begin", generation, None, None))

    def update(self, generation: int, text: str) -> None:
        self.calls.append(("update", generation, text, None))

    def end(self, generation: int, text: str, cancelled: bool) -> None:
        self.calls.append(("end", generation, text, cancelled))
        self.ended.setdefault(generation, asyncio.Event()).set()

    def generations(self, call: str) -> list[int]:
        return [g for c, g, _, _ in self.calls if c == call]

    def final(self, generation: int) -> tuple[str, bool] | None:
        """(text, cancelled) of a generation's `end`, if it ended."""
        for c, g, text, cancelled in self.calls:
            if c == "end" and g == generation:
                assert text is not None and cancelled is not None
                return text, cancelled
        return None


@pytest.fixture
def sink() -> RecordingSink:
    return RecordingSink()


USER_ONLY = [ChatMessage("user", "When do you open?")]
