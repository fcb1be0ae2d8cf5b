"""A conversation's back-end, built from the settings: its own STT stream and LLM provider.

`Backend` holds factories rather than instances because every conversation needs
its own STT stream (it keeps the audio's state) and its own provider (its own
connections). What is read-only and costly is shared: the knowledge base's index
(and its sentence encoder, ~400 MB with MiniLM) is loaded once per `Backend` and
shared by every conversation's provider.
"""

from __future__ import annotations

import threading
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from kamevoice.backend.scheduler import SchedulerSettings
from kamevoice.runtime.events import EventLog

# STT providers that compute in this machine's CPU (the hosted ones only wait on the network):
# they may run in a child process per conversation (`stt_process`).
LOCAL_STT_PROVIDERS = ("auto", "sphinx", "whisper", "paired")


@dataclass(frozen=True)
class Backend:
    """How a conversation gets its STT stream and LLM provider, and the scheduler's policy.

    `stt(events)` opens a stream that logs into `events` (on its clock); `llm()` builds a
    provider (it may load an index: call it off the event loop); `prepare()`, when set,
    loads what the providers share before the first conversation needs it.
    """

    stt: Callable[[EventLog], Any] | None = None
    llm: Callable[[], Any] | None = None
    scheduler: SchedulerSettings = field(default_factory=SchedulerSettings)
    prepare: Callable[[], None] | None = None


def backend_from_settings(settings: Any, *, stt_process: bool = False) -> Backend:
    """The configured providers (`settings.stt`, `settings.llm`, `settings.scheduler`).

    With `stt_process`, local STT engines run in a child process per conversation (the
    server's choice: PocketSphinx holds Python's GIL while decoding).
    """
    from kamevoice.backend.llm.factory import make_llm
    from kamevoice.backend.stt import make_stt

    shared: dict[str, Any] = {}
    lock = threading.Lock()  # providers may be built on worker threads: load the index once

    def knowledge_base() -> Any:
        from kamevoice.knowledge.base import KnowledgeBase

        with lock:
            if "kb" not in shared:
                shared["kb"] = KnowledgeBase.load(settings.llm.knowledge)
        return shared["kb"]

    def llm() -> Any:
        if settings.llm.provider != "knowledge":
            return make_llm(settings.llm)
        from kamevoice.backend.llm.knowledge import KnowledgeProvider

        return KnowledgeProvider(settings.llm.knowledge, kb=knowledge_base())

    def prepare() -> None:
        if settings.llm.provider == "knowledge":
            knowledge_base()

    def stt(events: EventLog) -> Any:
        if stt_process and settings.stt.provider in LOCAL_STT_PROVIDERS:
            from kamevoice.backend.stt.subprocess_host import ProcessSTT

            return ProcessSTT(settings.stt, events=events, clock=events.clock)
        return make_stt(settings.stt, events=events, clock=events.clock)

    return Backend(stt=stt, llm=llm, scheduler=settings.scheduler, prepare=prepare)
