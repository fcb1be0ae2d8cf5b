"""Build the configured LLM provider."""

from __future__ import annotations

import httpx

from kamevoice.backend.llm.base import LLMProvider
from kamevoice.backend.llm.settings import LLMSettings


def make_llm(settings: LLMSettings, *, client: httpx.AsyncClient | None = None) -> LLMProvider:
    """The provider named by `settings.provider`, configured by its section.

    `client` lets a caller share one connection pool between providers (tests,
    servers with many sessions); by default each provider owns its own.
    Vendor modules are imported here, on demand, so unused vendors cost nothing.
    """
    if settings.provider == "knowledge":
        from kamevoice.backend.llm.knowledge import KnowledgeProvider

        return KnowledgeProvider(settings.knowledge)
    if settings.provider == "openai":
        from kamevoice.backend.llm.openai_compat import OpenAICompatProvider

        return OpenAICompatProvider(settings.openai, client=client)
    if settings.provider == "anthropic":
        from kamevoice.backend.llm.anthropic import AnthropicProvider

        return AnthropicProvider(settings.anthropic, client=client)
    if settings.provider == "google":
        from kamevoice.backend.llm.google_genai import GoogleGenAIProvider

        return GoogleGenAIProvider(settings.google, client=client)
    raise AssertionError(f"unhandled provider {settings.provider!r}")  # pydantic's Literal forbids this
