"""Scheduler presets, the trailing start and the connection warm-up."""

from __future__ import annotations

import asyncio
import socket

from kamevoice.backend.scheduler import OracleScheduler, SchedulerSettings
from kamevoice.backend.scheduler.settings import PRESETS
from kamevoice.runtime.clock import WallClock
from kamevoice.runtime.events import EventLog
from kamevoice.runtime.messages import EventKind

from .conftest import make_provider
from .test_scheduler import ScriptedLLM

# Trailing wait of these tests (seconds): short, with room for a loaded machine after it.
TRAILING_S = 0.2


def test_a_preset_fills_the_fields_not_given():
    parallel = SchedulerSettings(preset="kame-parallel")
    assert (parallel.max_in_flight, parallel.trailing_start_s, parallel.warm_up) == (7, 0.5, True)
    mine = SchedulerSettings(preset="kame-parallel", max_in_flight=3)
    assert (mine.max_in_flight, mine.rate_limit_window_s) == (
        3,
        PRESETS["kame-parallel"]["rate_limit_window_s"],
    )
    main = SchedulerSettings(preset="kame-main")
    assert (main.max_in_flight, main.min_new_words, main.trailing_start_s) == (1, 2, None)
    assert SchedulerSettings().max_in_flight == SchedulerSettings(preset="kamevoice").max_in_flight


async def test_a_change_no_trigger_fires_for_gets_a_trailing_start(sink):
    llm = ScriptedLLM()
    log = EventLog(WallClock())
    settings = SchedulerSettings(debounce_s=0.0, max_wait_s=0.0, trailing_start_s=TRAILING_S)
    sched = OracleScheduler(llm, sink, settings=settings, events=log)
    sched.on_transcript("what", False)  # one word: no growth trigger
    await asyncio.sleep(TRAILING_S * 4)
    await sched.wait_idle()
    assert [e["reason"] for e in log.of_kind(EventKind.LLM_REQUEST)] == ["trailing"]
    assert len(llm.calls) == 1


async def test_a_session_with_trailing_off_waits_for_a_trigger(sink):
    llm = ScriptedLLM()
    settings = SchedulerSettings(debounce_s=0.0, max_wait_s=0.0, trailing_start_s=None)
    sched = OracleScheduler(llm, sink, settings=settings, events=EventLog(WallClock()))
    sched.on_transcript("what", False)
    await asyncio.sleep(TRAILING_S * 4)
    await sched.wait_idle()
    assert llm.calls == []


async def _warm_up_event(provider, sink) -> dict:
    log = EventLog(WallClock())
    sched = OracleScheduler(provider, sink, settings=SchedulerSettings(warm_up=True), events=log)
    sched.warm_up()
    for _ in range(100):
        if log.of_kind(EventKind.LLM_WARM_UP):
            break
        await asyncio.sleep(0.05)
    (event,) = log.of_kind(EventKind.LLM_WARM_UP)
    return event


async def test_the_warm_up_reaches_a_real_server_and_a_dead_one_is_an_event(
    vendor_server, providers, api_key, sink
):
    server = await vendor_server("openai")
    live = make_provider("openai", server.base_url)
    with socket.socket() as s:  # a port nobody listens on
        s.bind(("127.0.0.1", 0))
        dead_port = s.getsockname()[1]
    dead = make_provider("openai", f"http://127.0.0.1:{dead_port}")
    providers.extend([live, dead])
    ok = await _warm_up_event(live, sink)
    assert ok["ok"] is True and ok["error"] is None
    failed = await _warm_up_event(dead, sink)
    assert failed["ok"] is False and failed["error"]
