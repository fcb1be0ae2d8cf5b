"""The scheduler survives every vendor failure: it degrades to "no oracle", then recovers."""

from __future__ import annotations

import random

import pytest

from kamevoice.backend.observe import LLMMetrics
from kamevoice.backend.scheduler import OracleScheduler, SchedulerSettings
from kamevoice.runtime.clock import WallClock
from kamevoice.runtime.events import EventLog
from kamevoice.runtime.messages import EventKind
from kamevoice.runtime.metrics import Metrics

from .conftest import VENDORS, make_provider
from .vendor_server import Step

pytestmark = pytest.mark.usefixtures("api_key")

FAST_RETRY = {
    "debounce_s": 0.0,
    "max_wait_s": 0.0,
    "max_retries": 1,
    "retry_base_s": 0.01,
    "trailing_start_s": None,
}
FULL = "Our shops open at nine."


def scheduler(provider, sink, **settings):
    log = EventLog(WallClock())
    sched = OracleScheduler(
        provider,
        sink,
        settings=SchedulerSettings(**{**FAST_RETRY, **settings}),
        events=log,
        rng=random.Random(0),
    )
    return sched, log


@pytest.mark.parametrize("vendor", VENDORS)
async def test_429_then_success_is_retried_within_the_same_request(vendor, vendor_server, providers, sink):
    server = (await vendor_server(vendor)).then("429", "ok")
    provider = make_provider(vendor, server.base_url)
    providers.append(provider)
    sched, log = scheduler(provider, sink)
    sched.on_transcript("when do you open", True)
    await sched.wait_idle()
    assert len(server.requests) == 2
    assert sink.generations("begin") == [1] and sink.final(1) == (FULL, False)
    (error,) = log.of_kind(EventKind.LLM_ERROR)
    assert (error["error"], error["retry"], error["will_retry"], error["status"]) == (
        "rate_limited",
        0,
        True,
        429,
    )
    assert log.of_kind(EventKind.LLM_FIRST_TOKEN)[0]["attempt"] == 1
    assert not log.of_kind(EventKind.ORACLE_UNAVAILABLE)


# (failure, its error kind, whether the scheduler retries it)
FAILURES = [
    ("500", "server", True),
    ("malformed", "malformed", False),
    ("stall", "timeout", True),  # before any text: no first token in time
    ("drop", "dropped", True),
]


@pytest.mark.parametrize("vendor", VENDORS)
@pytest.mark.parametrize(("failure", "kind", "retried"), FAILURES)
async def test_failure_degrades_to_no_oracle_then_recovers(
    vendor, failure, kind, retried, vendor_server, providers, sink
):
    server = await vendor_server(vendor)
    attempts = 2 if retried else 1  # max_retries=1
    server.then(*[Step(failure, before=0) for _ in range(attempts)], "ok")
    provider = make_provider(vendor, server.base_url, first_token_timeout_s=0.3)
    providers.append(provider)
    sched, log = scheduler(provider, sink)
    metrics = LLMMetrics(Metrics()).attach(log)

    sched.on_transcript("when do you open", True)
    await sched.wait_idle()
    assert sink.calls == []  # no oracle at all
    errors = log.of_kind(EventKind.LLM_ERROR)
    assert [e["error"] for e in errors] == [kind] * attempts
    assert [e["will_retry"] for e in errors] == [True] * (attempts - 1) + [False]
    assert log.of_kind(EventKind.ORACLE_UNAVAILABLE)[0]["error"] == kind
    assert metrics.errors.labels(kind)._value.get() == attempts

    sched.on_transcript("when do you open on sundays", True)  # the next trigger works again
    await sched.wait_idle()
    assert sink.generations("begin") == [2] and sink.final(2) == (FULL, False)
    assert log.of_kind(EventKind.ORACLE_RECOVERED)[0]["gen"] == 2
    assert len(server.requests) == attempts + 1


@pytest.mark.parametrize("vendor", VENDORS)
@pytest.mark.parametrize("failure", ["malformed", "stall", "drop"])
async def test_failure_after_text_keeps_the_partial_oracle_and_is_not_retried(
    vendor, failure, vendor_server, providers, sink
):
    server = (await vendor_server(vendor)).then(Step(failure, before=2), "ok")
    provider = make_provider(vendor, server.base_url)
    providers.append(provider)
    sched, log = scheduler(provider, sink)
    sched.on_transcript("when do you open", True)
    await sched.wait_idle()
    assert sink.final(1) == ("Our shops ", True)  # what arrived stays; no more will come
    assert len(server.requests) == 1
    assert not log.of_kind(EventKind.ORACLE_UNAVAILABLE)
    sched.on_transcript("and on sundays please", True)
    await sched.wait_idle()
    assert sink.final(2) == (FULL, False)


async def test_unreachable_server_degrades_without_raising(providers, sink):
    provider = make_provider("openai", "http://127.0.0.1:9")  # discard port: nothing listens
    providers.append(provider)
    sched, log = scheduler(provider, sink)
    sched.on_transcript("hello are you there", True)
    await sched.wait_idle()
    assert sink.calls == []
    assert [e["error"] for e in log.of_kind(EventKind.LLM_ERROR)] == ["dropped", "dropped"]
    assert log.of_kind(EventKind.ORACLE_UNAVAILABLE)
