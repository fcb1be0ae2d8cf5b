"""The oracle scheduler's policy: triggers, debounce, rate cap, cancellation, newest wins."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator

import pytest

from kamevoice.backend.llm.base import ChatMessage, LLMProvider
from kamevoice.backend.scheduler import OracleScheduler, SchedulerSettings, cut_oracle
from kamevoice.runtime.clock import WallClock
from kamevoice.runtime.events import EventLog
from kamevoice.runtime.messages import CancelWhy, EventKind

from .conftest import RecordingSink, make_provider
from .vendor_server import Step

# Policy tests run without debounce unless they test it.
# Trailing starts off: these tests are about the other triggers (tests/backend/test_streams.py has them).
NO_WAIT = {"debounce_s": 0.0, "max_wait_s": 0.0, "trailing_start_s": None}


class ScriptedLLM(LLMProvider):
    """An in-process provider: a fixed reply with set delays; records every call and cancellation."""

    name = "scripted"

    def __init__(self, reply: str = "We open at nine.", first_delay: float = 0.0, delay: float = 0.0):
        self.reply, self.first_delay, self.delay = reply, first_delay, delay
        self.calls: list[tuple[float, list[ChatMessage], str]] = []
        self.closed_early: list[int] = []
        self._clock = WallClock()

    async def stream(self, messages: list[ChatMessage], *, system: str) -> AsyncIterator[str]:
        index = len(self.calls)
        self.calls.append((self._clock.now(), messages, system))
        words = self.reply.split()
        try:
            await asyncio.sleep(self.first_delay)
            for i, word in enumerate(words):
                if i:
                    await asyncio.sleep(self.delay)
                yield word if i == 0 else " " + word
        except (asyncio.CancelledError, GeneratorExit):
            self.closed_early.append(index)
            raise


def make(llm: LLMProvider, sink: RecordingSink, **settings) -> tuple[OracleScheduler, EventLog]:
    log = EventLog(WallClock())
    return OracleScheduler(llm, sink, settings=SchedulerSettings(**settings), events=log), log


async def test_growth_by_two_words_triggers_a_request(sink):
    llm = ScriptedLLM()
    sched, log = make(llm, sink, **NO_WAIT)
    sched.on_transcript("what", False)
    await sched.wait_idle()
    assert llm.calls == []  # one word: not yet
    sched.on_transcript("what time", False)
    await sched.wait_idle()
    assert len(llm.calls) == 1
    assert llm.calls[0][1][-1] == ChatMessage("user", "what time")
    sched.on_transcript("what time do", False)
    await sched.wait_idle()
    assert len(llm.calls) == 1  # one more word since the last start
    sched.on_transcript("what time do you", False)
    await sched.wait_idle()
    assert len(llm.calls) == 2
    requests = log.of_kind(EventKind.LLM_REQUEST)
    assert [(e["gen"], e["reason"], e["words"]) for e in requests] == [(1, "growth", 2), (2, "growth", 4)]
    assert sink.final(2) == ("We open at nine.", False)


async def test_min_new_words_is_configurable(sink):
    llm = ScriptedLLM()
    sched, _ = make(llm, sink, min_new_words=4, **NO_WAIT)
    sched.on_transcript("what time do", False)
    await sched.wait_idle()
    assert llm.calls == []
    sched.on_transcript("what time do you", False)
    await sched.wait_idle()
    assert len(llm.calls) == 1


async def test_final_result_triggers_even_without_growth(sink):
    llm = ScriptedLLM()
    sched, log = make(llm, sink, **NO_WAIT)
    sched.on_transcript("hello", False)
    await sched.wait_idle()
    assert llm.calls == []
    sched.on_transcript("hello", True)
    await sched.wait_idle()
    assert [e["reason"] for e in log.of_kind(EventKind.LLM_REQUEST)] == ["final"]
    sched.on_transcript("", True)  # an empty final adds nothing
    await sched.wait_idle()
    assert len(llm.calls) == 1


async def test_debounce_waits_for_the_transcript_to_settle(sink):
    llm = ScriptedLLM()
    sched, log = make(llm, sink, debounce_s=0.2, max_wait_s=2.0)
    words = ["so", "what", "time", "do", "you", "open"]
    clock = log.clock
    for n in range(2, len(words) + 1):  # a partial every 50 ms
        sched.on_transcript(" ".join(words[:n]), False)
        await asyncio.sleep(0.05)
    last_change = clock.now() - 0.05
    await sched.wait_idle()
    assert len(llm.calls) == 1  # five partials, one request
    assert llm.calls[0][1][-1].content == "so what time do you open"
    assert llm.calls[0][0] - last_change == pytest.approx(0.2, abs=0.08)


async def test_a_final_result_starts_without_the_debounce(sink):
    llm = ScriptedLLM()
    sched, log = make(llm, sink, debounce_s=0.3, max_wait_s=2.0)
    sched.on_transcript("so what time", False)
    await asyncio.sleep(0.05)  # due (growth), waiting for the debounce
    t = log.clock.now()
    sched.on_transcript("so what time do you open", True)
    await sched.wait_idle()
    (request,) = log.of_kind(EventKind.LLM_REQUEST)
    assert request["reason"] == "final" and request["t"] - t < 0.05
    assert llm.calls[0][1][-1].content == "so what time do you open"


async def test_debounce_never_delays_a_due_request_beyond_max_wait(sink):
    llm = ScriptedLLM()
    sched, log = make(llm, sink, debounce_s=0.2, max_wait_s=0.3)
    t0 = log.clock.now()
    for n in range(2, 12):  # partials every 0.1 s for a second: the debounce alone would starve
        sched.on_transcript(" ".join(["word"] * n), False)
        await asyncio.sleep(0.1)
    await sched.wait_idle()
    starts = [e["t"] for e in log.of_kind(EventKind.LLM_REQUEST)]
    assert starts[0] - t0 == pytest.approx(0.3, abs=0.08)
    assert len(starts) >= 3


async def test_rate_cap_defers_starts_beyond_the_limit(sink):
    llm = ScriptedLLM()
    sched, log = make(llm, sink, rate_limit_starts=2, rate_limit_window_s=0.6, **NO_WAIT)
    t0 = log.clock.now()
    for n in range(1, 5):
        sched.on_transcript(f"question number {n}", True)
        await asyncio.sleep(0.02)
    await sched.wait_idle()
    starts = [e["t"] - t0 for e in log.of_kind(EventKind.LLM_REQUEST)]
    # Two start at once; the rest are coalesced into one start when the window frees up.
    assert len(starts) == 3
    assert starts[1] < 0.1
    assert starts[2] == pytest.approx(0.6, abs=0.08)
    assert log.of_kind(EventKind.LLM_DEFERRED)
    # Any 0.6 s window holds at most two starts.
    assert all(b - a >= 0.59 for a, b in zip(starts, starts[2:], strict=False))
    assert llm.calls[-1][1][-1].content.endswith("question number 4")


async def test_new_request_cancels_the_one_in_flight(sink):
    llm = ScriptedLLM("a long answer that takes its time to stream", delay=0.05)
    sched, log = make(llm, sink, **NO_WAIT, max_in_flight=1)  # at the cap, a new request cancels the oldest
    sched.on_transcript("first question here", True)
    await asyncio.sleep(0.12)  # gen 1 is streaming
    sched.on_transcript("second question", True)
    await sched.wait_idle()
    assert llm.closed_early == [0]
    cancel = log.of_kind(EventKind.LLM_CANCEL)
    assert (
        cancel
        and cancel[0]["gen"] == 1
        and cancel[0]["why"] == CancelWhy.NEWER_REQUEST
        and cancel[0]["by"] == 2
        and cancel[0]["began"]
    )
    text, cancelled = sink.final(1)
    assert cancelled and 0 < len(text) < len(llm.reply)
    assert sink.final(2) == (llm.reply, False)
    assert sink.generations("begin") == [1, 2]


async def test_cancelled_request_closes_the_vendor_connection(vendor_server, providers, sink, api_key):
    server = (await vendor_server("openai")).then(Step("slow", tokens=["w "] * 200, delay=0.03), "ok")
    provider = make_provider("openai", server.base_url)
    providers.append(provider)
    sched, log = make(provider, sink, **NO_WAIT, max_in_flight=1)
    sched.on_transcript("what are your opening hours", True)
    while not sink.generations("update"):
        await asyncio.sleep(0.01)
    sched.on_transcript("and on sundays", True)
    await asyncio.wait_for(server.requests[0].disconnected.wait(), 2.0)
    await sched.wait_idle()
    assert not server.requests[0].finished and server.requests[1].finished
    assert sink.final(2) == ("Our shops open at nine.", False)
    assert sink.final(1)[1] is True
    assert [e["gen"] for e in log.of_kind(EventKind.LLM_CANCEL)] == [1]


async def test_newest_wins_a_slow_old_stream_never_reaches_the_sink(vendor_server, providers, sink, api_key):
    # Two requests may run at once; the older one is slow to start.
    server = (await vendor_server("openai")).then(
        Step("ok", tokens=["old "] * 5, first_delay=0.6), Step("ok", tokens=["new ", "answer."])
    )
    provider = make_provider("openai", server.base_url)
    providers.append(provider)
    sched, log = make(provider, sink, max_in_flight=2, **NO_WAIT)
    sched.on_transcript("first question", True)
    await asyncio.sleep(0.05)
    sched.on_transcript("second question", True)
    await sched.wait_idle()
    assert [c for c in sink.calls if c[1] == 1] == []  # gen 1 never began
    assert sink.final(2) == ("new answer.", False)
    superseded = log.of_kind(EventKind.LLM_SUPERSEDED)
    assert [(e["gen"], e["by"], e["began"]) for e in superseded] == [(1, 2, False)]
    await asyncio.wait_for(server.requests[0].disconnected.wait(), 2.0)


async def test_newer_answer_supersedes_an_older_one_already_streaming(sink):
    class TwoSpeeds(ScriptedLLM):
        async def stream(self, messages, *, system):
            slow = len(self.calls) == 0
            self.delay = 0.1 if slow else 0.0
            self.reply = "old " * 10 if slow else "new answer"
            async for d in super().stream(messages, system=system):
                yield d

    llm = TwoSpeeds()
    sched, log = make(llm, sink, max_in_flight=2, **NO_WAIT)
    sched.on_transcript("first question", True)
    await asyncio.sleep(0.15)
    sched.on_transcript("second question", True)
    await sched.wait_idle()
    begin2 = sink.calls.index(("begin", 2, None, None))
    # After gen 2 began, gen 1 only gets its `end`, never another update.
    assert [c[0] for c in sink.calls[begin2:] if c[1] == 1] == ["end"]
    assert sink.final(1)[1] is True and sink.final(2) == ("new answer", False)
    assert log.of_kind(EventKind.LLM_SUPERSEDED)[0]["began"] is True


async def test_prompt_carries_both_sides_and_the_pending_partial(sink):
    llm = ScriptedLLM()
    sched, _ = make(llm, sink, **NO_WAIT)
    sched.on_transcript("hi there", True)
    await sched.wait_idle()
    for piece in ["▁Hello", "!", "▁How", "▁can", "▁I", "▁help", "?"]:
        sched.on_assistant_text(piece)
    sched.on_transcript("what time do you", False)
    await sched.wait_idle()
    messages, system = llm.calls[-1][1], llm.calls[-1][2]
    assert messages == [
        ChatMessage("user", "hi there"),
        ChatMessage("assistant", "Hello! How can I help?"),
        ChatMessage("user", "what time do you"),
    ]
    assert system == SchedulerSettings().system_prompt


async def test_front_end_words_after_the_users_go_into_the_system_prompt(sink):
    llm = ScriptedLLM()
    sched, _ = make(llm, sink, debounce_s=0.1, max_wait_s=0.5)
    sched.on_transcript("when do you open", True)
    for piece in ["▁We", "▁open", "▁at", "▁ni", "ne"]:  # spoken during the debounce
        sched.on_assistant_text(piece)
    await sched.wait_idle()
    messages, system = llm.calls[-1][1], llm.calls[-1][2]
    assert messages == [ChatMessage("user", "when do you open")]
    assert system.startswith(SchedulerSettings().system_prompt)
    assert system.endswith('The assistant has already started replying aloud with: "We open at nine"')


async def test_assistant_speaking_first_gets_an_opening_user_message(sink):
    llm = ScriptedLLM()
    sched, _ = make(llm, sink, **NO_WAIT)
    sched.on_assistant_text("▁Welcome")
    sched.on_transcript("hi when do you open", False)
    await sched.wait_idle()
    roles = [m.role for m in llm.calls[0][1]]
    assert roles == ["user", "assistant", "user"]
    assert llm.calls[0][1][0].content == SchedulerSettings().opening_user_text


async def test_context_is_trimmed_to_the_newest_characters(sink):
    llm = ScriptedLLM()
    sched, _ = make(llm, sink, context_chars=200, **NO_WAIT)
    for i in range(30):
        sched.conversation.add_final(f"user sentence number {i} with some padding words")
        sched.conversation.add_assistant_piece(f"▁reply{i}")
    sched.on_transcript("the final question", True)
    await sched.wait_idle()
    messages = llm.calls[0][1]
    assert sum(len(m.content) for m in messages) <= 200
    assert messages[0].role == "user" and messages[-1].content.endswith("the final question")
    text = " ".join(m.content for m in messages)
    assert "number 29" in text and "number 3 " not in text


async def test_close_cancels_everything_and_ends_the_sink(sink):
    llm = ScriptedLLM("slow " * 50, delay=0.05)
    sched, log = make(llm, sink, **NO_WAIT)
    sched.on_transcript("tell me everything", True)
    while not sink.generations("begin"):
        await asyncio.sleep(0.01)
    await sched.aclose()
    assert sink.final(1)[1] is True
    assert log.of_kind(EventKind.LLM_CANCEL)[0]["why"] == CancelWhy.CLOSED
    sched.on_transcript("more words after close", True)
    await asyncio.sleep(0.05)
    assert len(llm.calls) == 1


async def test_first_token_latency_is_measured_from_the_change_and_the_start(sink):
    llm = ScriptedLLM(first_delay=0.2)
    sched, log = make(llm, sink, debounce_s=0.1, max_wait_s=0.5)
    t = log.clock.now()
    sched.on_transcript("opening hours please", True, t=t - 0.5)  # the STT stamped it 0.5 s ago
    await sched.wait_idle()
    (first,) = log.of_kind(EventKind.LLM_FIRST_TOKEN)
    assert first["from_start_s"] == pytest.approx(0.2, abs=0.06)
    assert first["from_change_s"] == pytest.approx(0.5 + 0.2, abs=0.08)  # a final skips the debounce
    (done,) = log.of_kind(EventKind.LLM_DONE)
    assert done["deltas"] == 4 and done["words"] == 4


async def test_a_failing_sink_degrades_the_request_not_the_scheduler():
    class BrokenSink(RecordingSink):
        def update(self, generation: int, text: str) -> None:
            super().update(generation, text)
            if generation == 1:
                raise RuntimeError("display went away")

    sink = BrokenSink()
    sched, log = make(ScriptedLLM(), sink, **NO_WAIT)
    sched.on_transcript("first question", True)
    await sched.wait_idle()
    (error,) = log.of_kind(EventKind.LLM_ERROR)
    assert error["error"] == "internal" and "display went away" in error["message"]
    assert sink.final(1)[1] is True
    sched.on_transcript("second question", True)
    await sched.wait_idle()
    assert sink.final(2) == ("We open at nine.", False)


async def test_a_runaway_answer_is_cut_at_the_cap_and_its_stream_closed(sink):
    llm = ScriptedLLM("word " * 20_000)  # a server that ignores max_tokens, streaming fast
    sched, log = make(llm, sink, max_oracle_chars=100, **NO_WAIT)
    sched.on_transcript("tell me everything", True)
    await asyncio.wait_for(sched.wait_idle(), 5.0)
    text, cancelled = sink.final(1)
    # Complete as cut: at most the cap, on a word boundary, and not a cancelled oracle.
    assert not cancelled and text == " ".join(["word"] * 20) and len(text) <= 100
    assert llm.closed_early == [0]  # the stream was closed, not read to its end
    assert max(len(t) for c, _, t, _ in sink.calls if c == "update") <= 100
    assert len(sink.generations("update")) <= 21  # one per delta up to the cap, then none
    (cancel,) = log.of_kind(EventKind.LLM_CANCEL)
    assert cancel["why"] == CancelWhy.TOO_LONG and cancel["chars"] == len(text) and cancel["began"]
    assert not log.of_kind(EventKind.LLM_DONE)
    sched.on_transcript("and something short", True)  # the session goes on
    llm.reply = "Short."
    await sched.wait_idle()
    assert sink.final(2) == ("Short.", False)


async def test_a_runaway_vendor_stream_is_closed_at_the_cap(vendor_server, providers, sink, api_key):
    # Paced a little (1 ms a chunk) so that the server is still writing when the client hangs up.
    server = (await vendor_server("openai")).then(Step("ok", tokens=["w "] * 20_000, delay=0.001))
    provider = make_provider("openai", server.base_url)
    providers.append(provider)
    sched, log = make(provider, sink, max_oracle_chars=50, **NO_WAIT)
    sched.on_transcript("what are your opening hours", True)
    await asyncio.wait_for(sched.wait_idle(), 5.0)
    await asyncio.wait_for(server.requests[0].disconnected.wait(), 2.0)
    assert not server.requests[0].finished
    assert sink.final(1) == (" ".join(["w"] * 25), False)
    assert log.of_kind(EventKind.LLM_CANCEL)[0]["why"] == CancelWhy.TOO_LONG


@pytest.mark.parametrize(
    ("text", "cap", "cut"),
    [
        ("We open at nine tomorrow", 14, "We open at"),  # mid-word: back to the space before it
        ("We open at nine tomorrow", 15, "We open at nine"),  # the cap falls on a space
        ("We open at nine tomorrow", 16, "We open at nine"),  # the cap falls after a space
        ("Supercalifragilistic", 5, "Super"),  # one endless word: cut hard
        ("short", 10, "short"),
    ],
)
def test_cut_oracle_keeps_whole_words(text, cap, cut):
    assert cut_oracle(text, cap) == cut


async def test_a_conversation_can_set_its_own_system_prompt(sink):
    """A client's instructions (the Realtime door's `session.update`) replace the configured
    system prompt for this conversation only, from its next request on; None restores it."""
    llm = ScriptedLLM()
    sched, _ = make(llm, sink, **NO_WAIT)
    other, _ = make(ScriptedLLM(), RecordingSink(), **NO_WAIT)
    sched.set_system_prompt("Answer like a pirate.")
    sched.on_transcript("hi there", True)
    await sched.wait_idle()
    assert llm.calls[-1][2] == "Answer like a pirate."
    assert other.system_prompt == SchedulerSettings().system_prompt
    sched.set_system_prompt(None)
    sched.on_transcript("and again", True)
    await sched.wait_idle()
    assert llm.calls[-1][2] == SchedulerSettings().system_prompt
