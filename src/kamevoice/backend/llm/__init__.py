"""LLM providers behind one tiny streaming interface, and the offline knowledge base."""

from kamevoice.backend.llm.base import (
    ChatMessage,
    ConnectionDroppedError,
    LLMProvider,
    MalformedResponseError,
    ProviderError,
    ProviderTimeoutError,
    RateLimitedError,
    RequestRejectedError,
    ServerError,
    StalledStreamError,
)
from kamevoice.backend.llm.factory import make_llm
from kamevoice.backend.llm.settings import (
    AnthropicSettings,
    GoogleGenAISettings,
    KnowledgeSettings,
    LLMSettings,
    OpenAICompatSettings,
)

__all__ = [
    "AnthropicSettings",
    "ChatMessage",
    "ConnectionDroppedError",
    "GoogleGenAISettings",
    "KnowledgeSettings",
    "LLMProvider",
    "LLMSettings",
    "MalformedResponseError",
    "OpenAICompatSettings",
    "ProviderError",
    "ProviderTimeoutError",
    "RateLimitedError",
    "RequestRejectedError",
    "ServerError",
    "StalledStreamError",
    "make_llm",
]
