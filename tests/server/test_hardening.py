"""Attacks on a live server beside an honest conversation: the honest caller notices nothing.

A real `kamevoice serve` (the embedded KAME-tiny, its STT in child processes) runs in its own
process; each test starts the reference conversation, attacks from another process, and checks
what `kamevoice bench adversarial` checks: the honest caller's frames (>= 95 % of those due),
largest gap (under its solo run's + 300 ms), transcript and oracle, `/health` latency
(p90 under 100 ms), the server's memory (bounded), and that the attack was dealt with.
"""

from __future__ import annotations

import asyncio
import json

import pytest

from kamevoice.bench.adversary.reference import run_reference
from kamevoice.bench.adversary.run import MIN_SECONDS, reference_speech, run_scenario
from kamevoice.bench.adversary.server import ServerProcess

# Seconds of honest conversation beside each attack (longer where the attack needs it).
SECONDS = 6.0
SERVER_ENV = {
    "KAMEVOICE_SERVER__IDLE_TIMEOUT_S": "4",
    "KAMEVOICE_SERVER__LIMITS__HEADER_TIMEOUT_S": "3",
    "KAMEVOICE_SERVER__MAX_SESSIONS": "4",
}


@pytest.fixture(scope="module")
def server():
    with ServerProcess(env=SERVER_ENV) as srv:
        speech = reference_speech(None)
        solo = asyncio.run(run_reference(srv.url, speech, SECONDS))
        assert solo.frame_share >= 0.95 and solo.transcript and solo.oracle, solo
        # A second honest caller first: the server grows its batch to two conversations once,
        # so the attacks' memory figures compare like with like.
        asyncio.run(run_scenario(srv, "honest_caller", speech, SECONDS, solo.largest_gap_s))
        yield srv, speech, solo


@pytest.mark.parametrize(
    "attack",
    [
        "message_flood",
        "ping_flood",
        "big_pings_unread",
        "frozen_client",
        "idle_pinger",
        "slow_headers",
        "dns_rebinding",
        "stt_child_stopped",
    ],
)
def test_an_attack_leaves_the_honest_caller_alone(server, attack):
    srv, speech, solo = server
    seconds = max(SECONDS, MIN_SECONDS.get(attack, 0.0))
    result = asyncio.run(run_scenario(srv, attack, speech, seconds, solo.largest_gap_s))
    report = json.dumps(
        {"checks": result.checks, "reference": result.reference, "solo_gap_s": solo.largest_gap_s,
         "health": result.health, "memory_mb": result.memory_mb, "outcome": result.outcome},
        indent=1, default=str,
    )  # fmt: skip
    assert result.held, report


@pytest.mark.parametrize("scenario", ["llm_configured", "llm_runaway", "llm_long_line"])
def test_the_configured_llm_is_used_and_a_hostile_one_is_survived(scenario):
    """`KAMEVOICE_LLM__PROVIDER=openai` with the embedded front-end sends its requests to that server
    (no knowledge base in its place); a server that streams 20,000 chunks or a 50 MB line costs the
    honest caller nothing."""
    from kamevoice.bench.adversary.run import AdversaryOptions, run_adversarial

    report = asyncio.run(run_adversarial(AdversaryOptions(attacks=(scenario,), seconds=SECONDS)))
    (result,) = report["scenarios"]
    assert result["held"], json.dumps(result, indent=1, default=str)
    assert result["outcome"]["requests"] > 0
