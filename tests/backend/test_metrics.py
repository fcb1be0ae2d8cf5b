"""Prometheus metrics derived from the scheduler's events; registries are independent objects."""

from __future__ import annotations

from kamevoice.backend.observe import LLMMetrics
from kamevoice.backend.scheduler import OracleScheduler, SchedulerSettings
from kamevoice.runtime.clock import WallClock
from kamevoice.runtime.events import EventLog
from kamevoice.runtime.metrics import Metrics

from .test_scheduler import NO_WAIT, ScriptedLLM


async def test_scheduler_events_feed_the_llm_metrics(sink):
    log = EventLog(WallClock())
    metrics = Metrics()
    llm_metrics = LLMMetrics(metrics).attach(log)
    llm = ScriptedLLM("a reply of five words", delay=0.03)
    sched = OracleScheduler(llm, sink, settings=SchedulerSettings(**NO_WAIT, max_in_flight=1), events=log)
    sched.on_transcript("first question here", True)
    await __import__("asyncio").sleep(0.05)
    sched.on_transcript("second question", True)  # cancels the first
    await sched.wait_idle()
    assert metrics.value("kamevoice_llm_requests_total", {"reason": "final"}) == 2
    assert metrics.value("kamevoice_llm_cancels_total", {"why": "cancelled"}) == 1
    assert metrics.value("kamevoice_llm_first_token_seconds_count", {"since": "start"}) == 2
    assert metrics.value("kamevoice_llm_request_seconds_count") == 1
    assert metrics.value("kamevoice_llm_deltas_total") == 5
    text = metrics.exposition().decode()
    assert "kamevoice_llm_first_token_seconds_bucket" in text
    assert llm_metrics.requests is metrics.counter("llm_requests", "ignored", ["reason"])


def test_each_metrics_object_has_its_own_registry():
    a, b = Metrics(), Metrics()
    LLMMetrics(a).requests.labels("final").inc()
    LLMMetrics(b)  # same names, another registry: no clash
    assert a.value("kamevoice_llm_requests_total", {"reason": "final"}) == 1
    assert b.value("kamevoice_llm_requests_total", {"reason": "final"}) is None
