"""The oracle scheduler: when to (re)ask the LLM, and which answer reaches the front-end.

Driven by events on the session's event loop:

- `on_transcript(text, is_final, t)` from the STT side;
- `on_assistant_text(piece)` from the front-end's text stream.

Policy (every number is a `SchedulerSettings` field):

1. A request is due when the user's words have grown by `min_new_words`
   since the last start, or a non-empty final result arrived.
2. A due request waits `debounce_s` for the transcript to settle (each new
   change restarts the wait), but never more than `max_wait_s` after it fell due.
   A final result starts at once: the utterance has ended (the endpointer waited
   for silence already), so nothing is left to settle, and every frame of delay
   is one more frame the front-end speaks without the answer.
   Words that never make a trigger (the last word of a sentence, a corrected
   partial) get a trailing start `trailing_start_s` after the last change.
3. At most `rate_limit_starts` starts per `rate_limit_window_s`; a start over
   the cap is deferred, not dropped.
4. At most `max_in_flight` requests run; a new one cancels the oldest.
5. The newest answer wins: when a request's first non-empty chunk arrives,
   the sink is reset to it (`begin`) and every older request is cancelled;
   an older request never reaches the sink after a newer one began.
   Staleness is decided by generation numbers, not locks.
6. Failures before the first chunk are retried with bounded back-off (only
   for retryable errors); after that, or after the first chunk, the request
   ends and the session simply has no (new) oracle until the next trigger.
7. An answer longer than `max_oracle_chars` is cut there (at the last word
   boundary before it): the request stops reading and closes its stream (the
   provider sees the connection go), the oracle ends as complete with the cut
   text, and `llm.cancel` says `too_long`. A server that ignores `max_tokens`
   costs no more than one capped oracle.

At session start `warm_up()` opens the provider's connection (`llm.warm_up`),
so the first question does not pay for the TCP and TLS handshakes.
The published KAME policies are presets of `SchedulerSettings` (`settings.py`).

Every step is stamped into the event log (the `llm.*` and `oracle.*` kinds of
`kamevoice.runtime.messages`).
"""

from __future__ import annotations

import asyncio
import contextlib
import random
from collections import deque
from dataclasses import dataclass
from typing import Literal

from kamevoice.backend.llm.base import LLMProvider, ProviderError, ProviderTimeoutError
from kamevoice.backend.prompt import Conversation, Prompt, word_count
from kamevoice.backend.scheduler.settings import SchedulerSettings
from kamevoice.backend.scheduler.stream import OracleSink, Stop, Superseded, cut_oracle
from kamevoice.runtime.clock import Clock, WallClock
from kamevoice.runtime.events import EventLog
from kamevoice.runtime.messages import CancelWhy, EventKind

Reason = Literal["growth", "final", "trailing"]


@dataclass
class _Due:
    """A request that fell due and waits for the debounce or the rate cap."""

    reason: Reason
    since: float  # clock time it fell due
    change_t: float  # stamp of the newest transcript change it will include
    deferred: bool = False  # held back by the rate cap (logged once)


class OracleScheduler:
    """One session's oracle policy: feed it transcripts, it drives the LLM and the sink."""

    def __init__(
        self,
        llm: LLMProvider,
        sink: OracleSink,
        *,
        settings: SchedulerSettings | None = None,
        events: EventLog | None = None,
        clock: Clock | None = None,
        rng: random.Random | None = None,
    ):
        self.llm = llm
        self.sink = sink
        self.settings = settings or SchedulerSettings()
        self.clock = clock or (events.clock if events is not None else WallClock())
        self.events = events or EventLog(self.clock)
        self.conversation = Conversation()
        # This conversation's system prompt: the settings' unless a client set its own.
        self.system_prompt = self.settings.system_prompt
        self._rng = rng or random.Random()
        self._backoff = self.settings.backoff()
        self._generation = 0  # last generation started
        self._shown = 0  # generation the sink currently shows (0: none)
        self._words_at_start = 0
        self._text_at_start = ""  # the user's current turn as the last request saw it
        self._warm_up: asyncio.Task[None] | None = None
        self._due: _Due | None = None
        self._timer: asyncio.TimerHandle | None = None
        self._starts: deque[float] = deque()
        self._tasks: dict[int, asyncio.Task[None]] = {}
        self._stops: dict[int, Stop] = {}  # why a request was cancelled from outside
        self._unavailable = False
        self._closed = False
        self._idle = asyncio.Event()
        self._idle.set()

    # -- inputs -------------------------------------------------------------------------------

    def on_transcript(self, text: str, is_final: bool, t: float | None = None) -> None:
        """A partial (`is_final=False`) or final STT result, stamped `t` (default: now).

        Call it on the event loop's thread (from another thread, use
        `loop.call_soon_threadsafe`). It never blocks: requests run as tasks.
        """
        if self._closed:
            return
        t = self.clock.now() if t is None else t
        conv = self.conversation
        if is_final:
            conv.add_final(text)
        else:
            conv.set_partial(text)
        if is_final and text.strip():
            reason: Reason | None = "final"
        elif conv.user_words() - self._words_at_start >= self.settings.min_new_words:
            reason = "growth"
        elif self._due is not None:
            reason = self._due.reason  # still due: the newer text rides along
        elif self.settings.trailing_start_s is not None and conv.current_user_turn() != self._text_at_start:
            reason = "trailing"
        else:
            return
        now = self.clock.now()
        if self._due is None:
            self._due = _Due(reason, now, t)
        else:
            self._due.change_t = t
            if reason != "trailing" and self._due.reason != "final":
                self._due.reason = reason  # a real trigger outranks a trailing start
        s = self.settings
        if reason == "final":
            settled = now
        elif reason == "trailing" and s.trailing_start_s is not None:
            settled = now + s.trailing_start_s  # each change restarts the wait
        else:
            settled = min(now + s.debounce_s, self._due.since + s.max_wait_s)
        self._schedule(self._due, now, settled)

    def warm_up(self) -> None:
        """Open the provider's connection now, in the background (when `settings.warm_up`).

        Call it at session start on the event loop. The outcome is an `llm.warm_up` event; a
        failure only means the first request connects itself.
        """
        if self.settings.warm_up and self._warm_up is None and not self._closed:
            self._warm_up = asyncio.get_running_loop().create_task(self._run_warm_up())

    async def _run_warm_up(self) -> None:
        t0 = self.clock.now()
        error: str | None = None
        try:
            async with asyncio.timeout(self.settings.request_timeout_s):
                await self.llm.warm_up()
        except TimeoutError:
            error = f"timeout: no answer in {self.settings.request_timeout_s:g} s"
        except ProviderError as exc:
            error = f"{exc.kind}: {exc}"
        except Exception as exc:  # a provider bug must not take the session down
            error = f"internal: {type(exc).__name__}: {exc}"
        after_s = round(self.clock.now() - t0, 6)
        self.events.emit(
            EventKind.LLM_WARM_UP, provider=self.llm.name, ok=error is None, after_s=after_s, error=error
        )

    def set_system_prompt(self, text: str | None) -> None:
        """This conversation's system prompt from the next request on (None: the settings' one)."""
        self.system_prompt = self.settings.system_prompt if text is None else text

    def on_assistant_text(self, text: str) -> None:
        """A piece of what the front-end said (SentencePiece, `▁` marks word starts)."""
        self.conversation.add_assistant_piece(text)

    # -- state --------------------------------------------------------------------------------

    @property
    def generation(self) -> int:
        """The last generation started (0 before the first request)."""
        return self._generation

    @property
    def shown_generation(self) -> int:
        """The generation the sink shows now (0: none yet)."""
        return self._shown

    @property
    def in_flight(self) -> list[int]:
        """Generations of the requests running now."""
        return sorted(self._tasks)

    async def wait_idle(self) -> None:
        """Return once nothing is due and no request is running."""
        await self._idle.wait()

    async def aclose(self) -> None:
        """Stop: drop anything due, cancel requests (the sink gets their `end`), wait for them."""
        self._closed = True
        self._disarm()
        self._due = None
        if self._warm_up is not None:
            self._warm_up.cancel()
            await asyncio.gather(self._warm_up, return_exceptions=True)
        tasks = list(self._tasks.values())
        for gen, task in list(self._tasks.items()):
            self._stops.setdefault(gen, Stop(CancelWhy.CLOSED))
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)
        self._update_idle()

    # -- timing -------------------------------------------------------------------------------

    def _arm(self, at: float) -> None:
        self._disarm()
        delay = max(0.0, at - self.clock.now())
        self._timer = asyncio.get_running_loop().call_later(delay, self._fire)
        self._idle.clear()

    def _disarm(self) -> None:
        if self._timer is not None:
            self._timer.cancel()
            self._timer = None

    def _fire(self) -> None:
        self._timer = None
        due = self._due
        if due is None or self._closed:
            self._update_idle()
            return
        now = self.clock.now()
        if self._rate_free_at(now) > now:
            self._schedule(due, now, now)
            return
        self._due = None
        self._start(due, now)

    def _schedule(self, due: _Due, now: float, at: float) -> None:
        """Fire at `at`, or later when the rate cap says so (logged once per due request)."""
        free_at = self._rate_free_at(now)
        if free_at > at and not due.deferred:
            due.deferred = True
            self.events.emit(EventKind.LLM_DEFERRED, wait_s=round(free_at - now, 4), reason=due.reason)
        self._arm(max(at, free_at))

    def _rate_free_at(self, now: float) -> float:
        """Earliest time a start fits under the rate cap (`now` if it fits already)."""
        s = self.settings
        while self._starts and now - self._starts[0] >= s.rate_limit_window_s:
            self._starts.popleft()
        if len(self._starts) < s.rate_limit_starts:
            return now
        return self._starts[0] + s.rate_limit_window_s

    def _update_idle(self) -> None:
        if self._timer is None and self._due is None and not self._tasks:
            self._idle.set()
        else:
            self._idle.clear()

    # -- requests -----------------------------------------------------------------------------

    def _start(self, due: _Due, now: float) -> None:
        s = self.settings
        conv = self.conversation
        self._generation += 1
        gen = self._generation
        self._starts.append(now)
        self._words_at_start = conv.user_words()
        self._text_at_start = conv.current_user_turn()
        prompt = conv.render(
            self.system_prompt,
            max_chars=s.context_chars,
            spoken_so_far_note=s.spoken_so_far_note,
            opening_user_text=s.opening_user_text,
        )
        while len(self._tasks) >= s.max_in_flight:
            oldest = min(self._tasks)
            self._stops[oldest] = Stop(CancelWhy.NEWER_REQUEST, by=gen)
            self._tasks.pop(oldest).cancel()
        self.events.emit(
            EventKind.LLM_REQUEST,
            gen=gen,
            reason=due.reason,
            words=word_count(conv.current_user_turn()),
            user_words=self._words_at_start,
            chars=sum(len(m.content) for m in prompt.messages),
            provider=self.llm.name,
            change_t=round(due.change_t, 6),
        )
        task = asyncio.get_running_loop().create_task(self._run(gen, prompt, due.change_t, now))
        self._tasks[gen] = task
        task.add_done_callback(lambda _t, gen=gen: self._finished(gen))
        self._update_idle()

    def _finished(self, gen: int) -> None:
        self._tasks.pop(gen, None)
        self._stops.pop(gen, None)
        self._update_idle()

    def _supersede_older(self, gen: int) -> None:
        """A newer answer began: cancel every request older than it."""
        for old in [g for g in self._tasks if g < gen]:
            self._stops[old] = Stop(None, by=gen)
            self._tasks.pop(old).cancel()

    async def _run(self, gen: int, prompt: Prompt, change_t: float, start_t: float) -> None:
        text, deltas, began, attempt, cut = "", 0, False, 0, False
        try:
            while True:
                try:
                    async with asyncio.timeout(self.settings.request_timeout_s):
                        async with contextlib.aclosing(
                            self.llm.stream(prompt.messages, system=prompt.system)
                        ) as stream:
                            async for delta in stream:
                                if not delta:
                                    continue
                                if not began:
                                    if gen < self._shown:  # a newer answer is already showing
                                        raise Superseded(self._shown)
                                    began = True
                                    self._begin(gen, change_t, start_t, attempt)
                                text += delta
                                deltas += 1
                                if len(text) > self.settings.max_oracle_chars:
                                    text, cut = cut_oracle(text, self.settings.max_oracle_chars), True
                                    self.sink.update(gen, text)
                                    break  # leaving the `aclosing` block closes the stream
                                self.sink.update(gen, text)
                    break
                except TimeoutError:
                    error: ProviderError = ProviderTimeoutError(
                        self.llm.name, "-", f"request took over {self.settings.request_timeout_s:g} s"
                    )
                except ProviderError as exc:
                    error = exc
                delay = self._failed(gen, error, attempt, began)
                if delay is None:
                    if began:
                        self.sink.end(gen, text, cancelled=True)
                    return
                await asyncio.sleep(delay)
                attempt += 1
        except (asyncio.CancelledError, Superseded) as exc:
            stop = Stop(None, by=exc.by) if isinstance(exc, Superseded) else self._stops.get(gen)
            after_s = round(self.clock.now() - start_t, 6)
            common = {"gen": gen, "began": began, "chars": len(text), "after_s": after_s}
            if stop is not None and stop.why is None:
                self.events.emit(EventKind.LLM_SUPERSEDED, by=stop.by, **common)
            else:
                why = stop.why if stop is not None else CancelWhy.CANCELLED
                by = {"by": stop.by} if stop is not None and stop.by is not None else {}
                self.events.emit(EventKind.LLM_CANCEL, why=why, **by, **common)
            if began:
                self.sink.end(gen, text, cancelled=True)
            if isinstance(exc, asyncio.CancelledError):
                raise
            return
        except Exception as exc:  # a bug in a provider or the sink must not take the session down
            message = f"{type(exc).__name__}: {exc}"
            self.events.emit(
                EventKind.LLM_ERROR,
                gen=gen,
                error="internal",
                retry=attempt,
                will_retry=False,
                message=message,
            )
            if began:
                with contextlib.suppress(Exception):
                    self.sink.end(gen, text, cancelled=True)
            return
        if cut:
            after_s = round(self.clock.now() - start_t, 6)
            self.events.emit(
                EventKind.LLM_CANCEL,
                gen=gen,
                why=CancelWhy.TOO_LONG,
                began=True,
                chars=len(text),
                after_s=after_s,
            )
        else:
            self.events.emit(
                EventKind.LLM_DONE,
                gen=gen,
                total_s=round(self.clock.now() - start_t, 6),
                deltas=deltas,
                chars=len(text),
                words=word_count(text),
            )
        if began:
            self.sink.end(gen, text, cancelled=False)
        if self._unavailable:
            self._unavailable = False
            self.events.emit(EventKind.ORACLE_RECOVERED, gen=gen)

    def _begin(self, gen: int, change_t: float, start_t: float, attempt: int) -> None:
        now = self.clock.now()
        self._shown = gen
        self._supersede_older(gen)
        self.events.emit(
            EventKind.LLM_FIRST_TOKEN,
            gen=gen,
            from_change_s=round(now - change_t, 6),
            from_start_s=round(now - start_t, 6),
            attempt=attempt,
        )
        self.sink.begin(gen)

    def _failed(self, gen: int, error: ProviderError, attempt: int, began: bool) -> float | None:
        """Log a failure; the delay before trying again, or None to give up."""
        retry = error.retryable and not began and attempt < self._backoff.max_retries
        delay = self._backoff.delay(attempt, self._rng, error.retry_after) if retry else None
        self.events.emit(
            EventKind.LLM_ERROR,
            gen=gen,
            error=error.kind,
            retry=attempt,
            will_retry=retry,
            delay_s=None if delay is None else round(delay, 4),
            status=error.status,
            message=str(error),
        )
        if not retry and not began:
            self._unavailable = True
            self.events.emit(EventKind.ORACLE_UNAVAILABLE, gen=gen, error=error.kind)
        return delay
