"""The LLM provider interface and its typed errors.

A provider turns a conversation into a stream of text deltas. It is one small
object per session: `stream()` is an async generator, and cancelling the task
that iterates it closes the underlying HTTP stream at once (the server sees
the connection go), so a superseded request stops costing tokens.

Every failure is a `ProviderError` subclass that names the provider, the URL
and the problem, and says whether trying again can help (`retryable`).
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from collections.abc import AsyncIterator
from dataclasses import dataclass
from typing import ClassVar, Literal

from kamevoice.errors import KameVoiceError

Role = Literal["user", "assistant"]


@dataclass(frozen=True)
class ChatMessage:
    """One turn of the conversation as the LLM sees it."""

    role: Role
    content: str


class LLMProvider(ABC):
    """A streaming text LLM (a vendor API, a local server, or the offline knowledge base)."""

    #: Short name used in errors, events and metrics ("openai", "anthropic", ...).
    name: ClassVar[str] = "llm"

    @abstractmethod
    def stream(self, messages: list[ChatMessage], *, system: str) -> AsyncIterator[str]:
        """Yield the reply to `messages` as text deltas, in order.

        Raises a `ProviderError` on failure. Cancelling the consuming task (or
        closing the generator) aborts the request promptly.
        """

    async def warm_up(self) -> None:
        """Get ready for a first request (open the connection); the default does nothing.

        Raises a `ProviderError` when the provider cannot be reached.
        """
        return None

    async def aclose(self) -> None:
        """Release connections; the provider may not be used afterwards."""
        return None

    async def __aenter__(self) -> LLMProvider:
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.aclose()


class ProviderError(KameVoiceError):
    """An LLM request failed. `kind` is a stable short name for events and metrics."""

    kind: ClassVar[str] = "error"
    #: Whether the same request may succeed if tried again later.
    retryable: ClassVar[bool] = False

    def __init__(
        self,
        provider: str,
        url: str,
        problem: str,
        *,
        status: int | None = None,
        retry_after: float | None = None,
    ):
        self.provider = provider
        self.url = url
        self.problem = problem
        self.status = status
        self.retry_after = retry_after
        super().__init__(f"{provider}: {problem} ({url})")


class RateLimitedError(ProviderError):
    """HTTP 429: the vendor asks us to slow down (`retry_after` seconds, when it says)."""

    kind = "rate_limited"
    retryable = True


class ServerError(ProviderError):
    """HTTP 5xx, or an 'overloaded'/'internal' error event inside the stream."""

    kind = "server"
    retryable = True


class RequestRejectedError(ProviderError):
    """HTTP 4xx other than 429 (bad key, unknown model, bad request): retrying cannot help."""

    kind = "rejected"


class ProviderTimeoutError(ProviderError):
    """No connection, or no first token, within the configured time."""

    kind = "timeout"
    retryable = True


class StalledStreamError(ProviderTimeoutError):
    """The stream was open but no bytes arrived for the stall timeout."""

    kind = "stalled"


class MalformedResponseError(ProviderError):
    """The server answered something that is not the vendor's wire format (e.g. bad JSON)."""

    kind = "malformed"


class ConnectionDroppedError(ProviderError):
    """The connection failed or closed before the stream said it was complete."""

    kind = "dropped"
    retryable = True
