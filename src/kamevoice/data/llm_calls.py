"""Calling a streaming chat LLM for data building: bounded concurrency, time limits, retries with back-off.

Works with any `kamevoice.backend.llm` provider (OpenAI-compatible, Anthropic,
Google, or anything with the same async `stream(messages, system=...)`).
Messages are plain `{"role", "content"}` dicts here and become `ChatMessage`s.
"""

from __future__ import annotations

import asyncio
import logging
import random
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass, field
from typing import Any, Protocol

from kamevoice.backoff import Backoff

log = logging.getLogger(__name__)


class ChatStreamer(Protocol):
    """A streaming chat LLM (`kamevoice.backend.llm.base.LLMProvider`): messages in, text pieces out."""

    def stream(self, messages: list[Any], *, system: str) -> AsyncIterator[str]:
        """Stream the reply to `messages` under `system`."""
        ...


@dataclass(frozen=True)
class RetryPolicy:
    """How many calls at once, how long each may take, and how failures are retried."""

    # Requests in flight at once, over the whole run: what a rate limit usually allows.
    max_concurrency: int = 8
    max_attempts: int = 5
    # Exponential back-off: base x 2^attempt, capped, with jitter so retries do not arrive in lockstep.
    backoff_base_s: float = 0.5
    backoff_max_s: float = 20.0
    # One request (the whole stream) may take this long before it is retried.
    request_timeout_s: float = 60.0
    seed: int = 0


@dataclass
class LLMStats:
    """Counters of one client's calls (read at the end of a run)."""

    calls: int = 0
    retries: int = 0
    failures: int = 0
    errors: dict[str, int] = field(default_factory=dict)

    def totals(self) -> dict[str, int]:
        """The figures a stage summary reports."""
        return {"llm_calls": self.calls, "llm_retries": self.retries, "llm_failed_requests": self.failures}


class RetryingChat:
    """Complete chat requests through a provider under a `RetryPolicy`; counts what happened."""

    def __init__(self, provider: Any, policy: RetryPolicy | None = None):
        if not callable(getattr(provider, "stream", None)):
            raise TypeError("the provider needs an async stream(messages, system=...) method")
        self.provider = provider
        self.policy = policy or RetryPolicy()
        self.stats = LLMStats()
        self._slots: asyncio.Semaphore | None = None

    def _semaphore(self) -> asyncio.Semaphore:
        # Created lazily so that it belongs to the running event loop.
        if self._slots is None:
            self._slots = asyncio.Semaphore(self.policy.max_concurrency)
        return self._slots

    async def _ask(self, messages: list[dict[str, str]], system: str | None) -> str:
        from kamevoice.backend.llm.base import ChatMessage

        chat = [ChatMessage(m["role"], m["content"]) for m in messages]
        pieces = [piece async for piece in self.provider.stream(chat, system=system or "")]
        return "".join(pieces)

    async def complete(
        self,
        messages: list[dict[str, str]],
        system: str | None,
        key: str,
        clean: Callable[[str], str] = str.strip,
    ) -> str:
        """The whole reply, cleaned by `clean`; an empty reply counts as a failure.

        Retried with exponential back-off (jitter seeded by `key`, so reruns wait
        alike); the last failure is raised.
        """
        p = self.policy
        rng = random.Random(f"{p.seed}:{key}")
        async with self._semaphore():
            for attempt in range(p.max_attempts):
                self.stats.calls += 1
                try:
                    text = clean(await asyncio.wait_for(self._ask(messages, system), p.request_timeout_s))
                    if not text:
                        raise ValueError("empty reply")
                    return text
                except asyncio.CancelledError:
                    raise
                except Exception as exc:
                    name = type(exc).__name__
                    self.stats.errors[name] = self.stats.errors.get(name, 0) + 1
                    if attempt + 1 >= p.max_attempts:
                        self.stats.failures += 1
                        raise
                    delay = Backoff(p.max_attempts - 1, p.backoff_base_s, p.backoff_max_s).delay(attempt, rng)
                    log.info("%s: %s (%s), retry in %.2f s", key, name, exc, delay)
                    self.stats.retries += 1
                    await asyncio.sleep(delay)
        raise AssertionError("unreachable")  # pragma: no cover
