"""The adversarial run: every attack against a live server beside an honest conversation.

For each scenario a reference conversation starts, an attack begins a second later
in a process of its own (so the attacker's CPU is not the reference client's), and
probes watch `/health` and the server's memory. A scenario *holds* when the honest
caller noticed nothing:

- it received at least `MIN_FRAME_SHARE` of the model frames due to it,
- its largest gap between frames stayed within `MAX_EXTRA_GAP_S` of its solo run's,
- its transcript and an oracle reached it, and no error ended it,
- `/health` answered within `MAX_HEALTH_MS` at the 90th percentile,
- the server's memory grew by less than `MAX_MEMORY_GROWTH_MB`,

and the attack itself was dealt with (`ATTACK_DEALT_WITH`: ended, refused or survived
as it should). Scenarios that need their own server (`llm_runaway`, `llm_configured`)
start one with a local OpenAI-compatible server as the back-end's LLM.
"""

from __future__ import annotations

import asyncio
import multiprocessing as mp
from collections.abc import Callable
from dataclasses import asdict, dataclass, field
from typing import Any

import numpy as np

from kamevoice.bench.adversary.attacks import ATTACKS, Target
from kamevoice.bench.adversary.reference import HealthProbe, MemoryProbe, run_reference
from kamevoice.bench.adversary.server import ServerProcess
from kamevoice.runtime.messages import EventKind

MIN_FRAME_SHARE = 0.95
MAX_EXTRA_GAP_S = 0.3
MAX_HEALTH_MS = 100.0
MAX_MEMORY_GROWTH_MB = 100.0
# The attack starts this long after the reference conversation (seconds): it is under way and
# settled (the reference's gaps count from then: `reference.SETTLE_S`).
ATTACK_LEAD_S = 1.0
# Settings of the server under attack: short idle and header timeouts keep the run short.
SERVER_ENV = {
    "KAMEVOICE_SERVER__IDLE_TIMEOUT_S": "4",
    "KAMEVOICE_SERVER__LIMITS__HEADER_TIMEOUT_S": "3",
    "KAMEVOICE_SERVER__MAX_SESSIONS": "4",
}
# Scenarios whose back-end never brings an oracle (the honest caller is told `oracle.unavailable`).
NO_ORACLE = frozenset({"llm_long_line"})
# Scenarios with a server of their own: the LLM back-end is a local server in this mode.
LLM_SCENARIOS = {"llm_configured": "answer", "llm_runaway": "runaway", "llm_long_line": "long_line"}

# Per attack: did the server deal with it as it should? (from the attack's own outcome)
# Attacks that need longer than the default run to be dealt with (seconds of the honest conversation):
# the frozen client is found by the heartbeat (5 s, pong within 2.5 s: freed 7.8 s after it stops
# reading when alone, 9-14 s under load) after a second of talk; the idle pinger by the idle timeout
# (4 s here); the stopped STT child (stopped 3 s after it starts) once 5 s of audio wait for it.
MIN_SECONDS = {"frozen_client": 20.0, "idle_pinger": 8.0, "stt_child_stopped": 14.0}

ATTACK_DEALT_WITH: dict[str, Callable[[dict], bool]] = {
    "honest_caller": lambda o: o.get("frame_share", 0) >= MIN_FRAME_SHARE and o.get("error") is None,
    "message_flood": lambda o: bool(o.get("error")) and "flood" in o["error"],
    "ping_flood": lambda o: bool(o.get("error")) and "flood" in o["error"],
    "big_pings_unread": lambda o: o.get("slot_freed_after_s") is not None,
    "frozen_client": lambda o: o.get("slot_freed_after_s") is not None,
    "idle_pinger": lambda o: o.get("ended_after_s") is not None and "idle" in (o.get("error") or ""),
    "slow_headers": lambda o: o.get("left_open", 1) == 0 and o.get("answered", 1) == 0,
    "dns_rebinding": lambda o: all(s == 421 for s in o.get("statuses", {}).values()),
    "stt_child_stopped": lambda o: o.get("stopped_child") is not None and o.get("told_stt_unavailable"),
    "llm_configured": lambda o: o.get("requests", 0) > 0,
    "llm_runaway": lambda o: o.get("requests", 0) > 0,
    "llm_long_line": lambda o: o.get("requests", 0) > 0,
}


@dataclass(frozen=True)
class AdversaryOptions:
    """Which attacks, and for how long the honest conversation runs beside each."""

    attacks: tuple[str, ...] = (*ATTACKS, *LLM_SCENARIOS)
    seconds: float = 10.0
    question: str | None = None  # what the honest caller asks (default: a KAME-tiny question)


@dataclass
class ScenarioResult:
    """One attack beside the reference, and the verdicts."""

    attack: str
    reference: dict
    solo_gap_s: float
    health: dict
    memory_mb: dict
    outcome: dict
    checks: dict[str, bool] = field(default_factory=dict)

    @property
    def held(self) -> bool:
        return all(self.checks.values())


# The attacker's process runs niced: a real attacker's CPU is not on the server's machine, and on a
# small test machine a flooder at full speed would otherwise starve the server and the honest client.
ATTACKER_NICENESS = 10


def _attack_process(name: str, target: Target, seconds: float, out) -> None:
    import os

    import kamevoice  # noqa: F401 - process-wide settings before numpy and torch load

    os.nice(ATTACKER_NICENESS)
    try:
        out.send(asyncio.run(ATTACKS[name](target, seconds)))
    except Exception as exc:  # a broken attack is reported, not fatal
        out.send({"attack_failed": f"{type(exc).__name__}: {exc}"})


async def _run_attack(name: str, target: Target, seconds: float) -> dict:
    ctx = mp.get_context("spawn")
    parent, child = ctx.Pipe(duplex=False)
    proc = ctx.Process(target=_attack_process, args=(name, target, seconds, child), daemon=True)
    proc.start()
    try:
        return await asyncio.to_thread(
            lambda: parent.recv() if parent.poll(seconds + 60) else {"attack_failed": "timeout"}
        )
    finally:
        await asyncio.to_thread(proc.join, 5)
        if proc.is_alive():
            proc.kill()


async def run_scenario(
    server: ServerProcess, name: str, speech: np.ndarray, seconds: float, solo_gap_s: float, outcome_of=None
) -> ScenarioResult:
    """The reference beside one attack (`outcome_of`: an awaitable for scenarios without an attack
    process, e.g. the LLM ones, whose outcome is read after the run)."""
    stop = asyncio.Event()
    health = HealthProbe(server.url)
    memory = MemoryProbe(lambda: server.rss_mb(with_children=False))
    probes = [asyncio.create_task(health.run(stop)), asyncio.create_task(memory.run(stop))]
    reference = asyncio.create_task(run_reference(server.url, speech, seconds))
    outcome: dict[str, Any] = {}
    if name in ATTACKS:
        await asyncio.sleep(ATTACK_LEAD_S)
        target = Target(server.url, server.pid, speech)
        outcome = await _run_attack(name, target, seconds - ATTACK_LEAD_S)
    ref = await reference
    stop.set()
    await asyncio.gather(*probes)
    if outcome_of is not None:
        outcome = outcome_of()
    mem = memory.samples or [0.0]
    result = ScenarioResult(
        attack=name,
        reference=asdict(ref) | {"frame_share": round(ref.frame_share, 3)},
        solo_gap_s=solo_gap_s,
        health=health.summary(),
        memory_mb={"start": round(mem[0], 1), "peak": round(max(mem), 1), "end": round(mem[-1], 1)},
        outcome=outcome,
    )
    result.checks = {
        "frames": ref.frame_share >= MIN_FRAME_SHARE,
        "gap": ref.largest_gap_s <= solo_gap_s + MAX_EXTRA_GAP_S,
        "transcript": bool(ref.transcript),
        # A back-end that never answers sensibly brings no oracle: the caller must be told instead.
        "oracle": bool(ref.oracle) if name not in NO_ORACLE else EventKind.ORACLE_UNAVAILABLE in ref.told,
        "no_error": ref.error is None,
        "health": result.health.get("p90_ms", 1e9) < MAX_HEALTH_MS and not result.health.get("failures"),
        "memory": max(mem) - mem[0] < MAX_MEMORY_GROWTH_MB,
        "dealt_with": ATTACK_DEALT_WITH.get(name, lambda o: True)(outcome),
    }
    return result


def reference_speech(question: str | None) -> np.ndarray:
    from kamevoice.bench.load.question import kb_question, question_speech
    from kamevoice.tiny.defaults import tiny_knowledge_base

    return question_speech(question or kb_question(tiny_knowledge_base()))


async def _with_server(env: dict[str, str], work) -> Any:
    with ServerProcess(env={**SERVER_ENV, **env}) as server:
        return await work(server)


async def run_adversarial(options: AdversaryOptions, progress=lambda name: None) -> dict:
    """Every attack of `options` (see module doc); returns the figures and verdicts."""
    from kamevoice.bench.adversary.llm_server import ChatServer

    speech = reference_speech(options.question)
    results: list[ScenarioResult] = []
    solo: dict = {}

    async def shared(server: ServerProcess) -> None:
        progress("solo")
        alone = await run_reference(server.url, speech, options.seconds)
        solo.update(asdict(alone) | {"frame_share": round(alone.frame_share, 3)})
        for name in (a for a in options.attacks if a in ATTACKS):
            progress(name)
            seconds = max(options.seconds, MIN_SECONDS.get(name, 0.0))
            results.append(await run_scenario(server, name, speech, seconds, alone.largest_gap_s))

    await _with_server({}, shared)
    for name in (a for a in options.attacks if a in LLM_SCENARIOS):
        progress(name)
        async with ChatServer(LLM_SCENARIOS[name]) as llm:
            env = {
                "KAMEVOICE_LLM__PROVIDER": "openai",
                "KAMEVOICE_LLM__OPENAI__BASE_URL": llm.url,
                "KAMEVOICE_LLM__OPENAI__MODEL": "adversary",
                "KAMEVOICE_LLM__OPENAI__API_KEY_ENV": "KAMEVOICE_ADVERSARY_KEY",
                "KAMEVOICE_ADVERSARY_KEY": "not-a-secret",
            }

            async def one(server: ServerProcess, name=name, llm=llm) -> ScenarioResult:
                return await run_scenario(
                    server, name, speech, options.seconds, solo.get("largest_gap_s", 0.5),
                    outcome_of=lambda: {"requests": llm.requests},
                )  # fmt: skip

            results.append(await _with_server(env, one))
    return {
        "solo": solo,
        "thresholds": {
            "min_frame_share": MIN_FRAME_SHARE,
            "max_extra_gap_s": MAX_EXTRA_GAP_S,
            "max_health_p90_ms": MAX_HEALTH_MS,
            "max_memory_growth_mb": MAX_MEMORY_GROWTH_MB,
        },
        "scenarios": [asdict(r) | {"held": r.held} for r in results],
        "held": all(r.held for r in results),
    }
