"""Settings sections of the LLM providers (compose them into the app's settings)."""

from __future__ import annotations

import os
from typing import Literal

from pydantic import Field

from kamevoice.errors import ConfigError
from kamevoice.knowledge.settings import KnowledgeSettings
from kamevoice.section import Section


class HTTPProviderSettings(Section):
    """What every HTTP streaming provider needs; vendor sections only change defaults."""

    base_url: str
    model: str
    api_key_env: str = Field(description="environment variable that holds the API key")
    temperature: float = Field(0.7, ge=0.0, le=2.0)
    # KAME's oracles are at most ~30 words; 120 tokens leaves room without paying for essays.
    max_tokens: int = Field(120, ge=1)
    connect_timeout_s: float = Field(5.0, gt=0, description="TCP/TLS connect and request upload")
    first_token_timeout_s: float = Field(
        10.0, gt=0, description="from sending the request to the first text delta"
    )
    stall_timeout_s: float = Field(5.0, gt=0, description="longest silence (no bytes) inside an open stream")
    system_prompt: str | None = Field(
        None, description="replaces the scheduler's system prompt for this provider when set"
    )
    # One streamed chunk is a few hundred bytes of JSON; 1 MiB is thousands of times that and
    # still bounds what a broken or hostile server can make us hold (a line is read in pieces).
    max_line_bytes: int = Field(
        1 << 20,
        ge=1024,
        description="longest line (and event data) of the stream; a longer one ends the request "
        "as malformed, read no further than this",
    )

    def api_key(self) -> str | None:
        """The API key from the environment, or None when the variable is unset or empty."""
        return os.environ.get(self.api_key_env) or None

    def require_api_key(self, provider: str) -> str:
        """The API key, or a ConfigError naming the variable to set."""
        key = self.api_key()
        if key is None:
            raise ConfigError(f"{provider}: no API key: set the environment variable {self.api_key_env}")
        return key


class OpenAICompatSettings(HTTPProviderSettings):
    """OpenAI chat completions, or any server speaking that protocol (vLLM, Ollama, llama.cpp, ...).

    The key is optional: local servers usually need none.
    """

    base_url: str = "https://api.openai.com/v1"
    model: str = "gpt-4.1-mini"
    api_key_env: str = "OPENAI_API_KEY"


class AnthropicSettings(HTTPProviderSettings):
    """Anthropic Messages API."""

    base_url: str = "https://api.anthropic.com/v1"
    model: str = "claude-sonnet-4-5"
    api_key_env: str = "ANTHROPIC_API_KEY"
    anthropic_version: str = "2023-06-01"


class GoogleGenAISettings(HTTPProviderSettings):
    """Google Gemini `streamGenerateContent` (server-sent events)."""

    base_url: str = "https://generativelanguage.googleapis.com/v1beta"
    model: str = "gemini-2.5-flash"
    api_key_env: str = "GEMINI_API_KEY"
    # Thinking delays the first spoken token by seconds; an oracle needs speed more than depth.
    thinking_budget: int | None = Field(
        0, ge=0, description="tokens the model may think before answering (None: the model's default)"
    )


class LLMSettings(Section):
    """Which LLM back-end answers, and each provider's settings."""

    provider: Literal["knowledge", "openai", "anthropic", "google"] = "knowledge"
    openai: OpenAICompatSettings = OpenAICompatSettings()
    anthropic: AnthropicSettings = AnthropicSettings()
    google: GoogleGenAISettings = GoogleGenAISettings()
    knowledge: KnowledgeSettings = KnowledgeSettings()
