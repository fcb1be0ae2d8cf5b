"""The LLM oracle simulator against a real local HTTP server speaking OpenAI-style chat-completion SSE."""

from __future__ import annotations

import asyncio
import json
import threading
from dataclasses import dataclass, field

import pytest
from aiohttp import web

from kamevoice.backend.llm.openai_compat import OpenAICompatProvider
from kamevoice.backend.llm.settings import OpenAICompatSettings
from kamevoice.data.formats import Word, read_oracle_events, read_words
from kamevoice.data.llm_calls import RetryPolicy
from kamevoice.data.oracle_llm import LEVEL_GUIDANCE, LLMSimulator, LLMSimulatorOptions, clean_prediction
from kamevoice.data.oracles import OracleOptions, oracle_slots

from .helpers import GSM8K_ITEMS, cli, write_jsonl

REPLY = "B: Sure, I think the answer is seventy two clips in all."


@dataclass
class ServerState:
    """What the fake server saw, and how it misbehaves."""

    requests: list[dict] = field(default_factory=list)
    rate_limited_first: int = 1  # the first N requests get HTTP 429
    reply: str = REPLY
    fail_always_with: int | None = None
    in_flight: int = 0
    max_in_flight: int = 0


class FakeOpenAI:
    """An aiohttp server on 127.0.0.1 in its own thread."""

    def __init__(self, state: ServerState):
        self.state = state
        self.loop = asyncio.new_event_loop()
        self.port = 0
        ready = threading.Event()
        self.thread = threading.Thread(target=self._serve, args=(ready,), daemon=True)
        self.thread.start()
        assert ready.wait(10)

    async def _chat(self, request: web.Request) -> web.StreamResponse:
        body = await request.json()
        s = self.state
        s.requests.append(body)
        if s.fail_always_with:
            return web.json_response({"error": {"message": "down"}}, status=s.fail_always_with)
        if len(s.requests) <= s.rate_limited_first:
            return web.json_response({"error": {"message": "rate limited"}}, status=429)
        s.in_flight += 1
        s.max_in_flight = max(s.max_in_flight, s.in_flight)
        try:
            resp = web.StreamResponse(headers={"Content-Type": "text/event-stream"})
            await resp.prepare(request)
            first = {"choices": [{"index": 0, "delta": {"role": "assistant"}}]}
            await resp.write(f"data: {json.dumps(first)}\n\n".encode())
            for piece in s.reply.split(" "):
                chunk = {"choices": [{"index": 0, "delta": {"content": piece + " "}}]}
                await resp.write(f"data: {json.dumps(chunk)}\n\n".encode())
                await asyncio.sleep(0.002)
            await resp.write(b"data: [DONE]\n\n")
            await resp.write_eof()
            return resp
        finally:
            s.in_flight -= 1

    def _serve(self, ready: threading.Event) -> None:
        asyncio.set_event_loop(self.loop)
        app = web.Application()
        app.router.add_post("/v1/chat/completions", self._chat)
        self.runner = web.AppRunner(app)
        self.loop.run_until_complete(self.runner.setup())
        site = web.TCPSite(self.runner, "127.0.0.1", 0)
        self.loop.run_until_complete(site.start())
        self.port = site._server.sockets[0].getsockname()[1]
        ready.set()
        self.loop.run_forever()

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}/v1"

    def close(self) -> None:
        asyncio.run_coroutine_threadsafe(self.runner.cleanup(), self.loop).result(10)
        self.loop.call_soon_threadsafe(self.loop.stop)
        self.thread.join(10)
        self.loop.close()


@pytest.fixture
def server():
    state = ServerState()
    fake = FakeOpenAI(state)
    yield fake
    fake.close()


@pytest.fixture(scope="module")
def voiced(tmp_path_factory):
    root = tmp_path_factory.mktemp("llm")
    qa = write_jsonl(root / "qa.jsonl", GSM8K_ITEMS[:2])
    assert cli("data", "dialogues", qa, "--preset", "gsm8k", "--out", root / "s", "--no-progress") == 0
    assert cli("data", "synth", root / "s", "--out", root / "data", "--no-progress") == 0
    return root / "data"


def test_cli_llm_simulator_retries_a_429_and_resumes(server, voiced, tmp_path):
    out = tmp_path / "out"
    args = ("data", "oracles", voiced, "--out", out, "--simulator", "llm", "--llm-base-url", server.url,
            "--concurrency", "3", "--no-progress")  # fmt: skip
    assert cli(*args) == 0
    state = server.state
    summary = json.loads((out / "summary-oracles.json").read_text())
    assert summary["items_done"] == 2 and summary["items_failed"] == 0
    assert summary["totals"]["llm_retries"] == 1  # the 429, then success
    assert summary["totals"]["llm_calls"] == len(state.requests)
    assert state.max_in_flight <= 3

    asked = 0
    for path in sorted((voiced / "text").glob("*.json")):
        words = read_words(path)
        events = read_oracle_events(out / "oracle_raw" / path.name)
        slots = list(oracle_slots(path.stem, words, OracleOptions()))
        assert [e.timestamp_ms for e in events] == [s.timestamp_ms for s in slots]
        for event, slot in zip(events, slots, strict=True):
            if slot.ratio >= 1.0:
                assert event.prediction == slot.truth  # no LLM call: the true reply itself
            else:
                assert event.prediction == clean_prediction(REPLY) == REPLY[3:]
                asked += 1
    assert asked + 1 == len(state.requests)

    # Each request carries its level's own guidance; the true reply is shown only from level 1 on.
    by_level: dict[int, set[str]] = {}
    for body in state.requests:
        system = body["messages"][0]["content"]
        user = body["messages"][1]["content"]
        level = next(
            i for i, g in enumerate(LEVEL_GUIDANCE) if any(g.format(speaker=x) in system for x in "AB")
        )
        by_level.setdefault(level, set()).add(system)
        assert ("actually said next:" in user) == (level > 0)
        assert body["stream"] is True and body["model"] == "gpt-4.1-nano"
    assert {0, 1, 2, 3} <= set(by_level)

    before = len(state.requests)
    assert cli(*args) == 0  # rerun: every dialogue already done, nothing asked again
    assert len(state.requests) == before
    assert json.loads((out / "summary-oracles.json").read_text())["items_skipped_already_done"] == 2


def test_failing_provider_fails_the_dialogue_and_writes_nothing(server, voiced, tmp_path):
    server.state.fail_always_with = 500
    out = tmp_path / "out"
    code = cli("data", "oracles", voiced, "--out", out, "--simulator", "llm", "--llm-base-url", server.url,
               "--limit", "1", "--llm-attempts", "2", "--llm-backoff", "0.01", "--no-progress")  # fmt: skip
    assert code == 3
    summary = json.loads((out / "summary-oracles.json").read_text())
    assert summary["items_failed"] == 1 and "HTTP 500" in summary["failures"][0]["reason"]
    assert not (out / "oracle_raw").exists() or not list((out / "oracle_raw").iterdir())
    assert summary["totals"]["llm_failed_requests"] >= 1


async def test_backoff_grows_and_concurrency_is_bounded(server):
    server.state.rate_limited_first = 2
    provider = OpenAICompatProvider(OpenAICompatSettings(base_url=server.url, model="m"))
    simulator = LLMSimulator(
        provider, LLMSimulatorOptions(retry=RetryPolicy(max_concurrency=2, backoff_base_s=0.05))
    )
    words = [
        Word("A", w, 0.1 + 0.3 * i, 0.35 + 0.3 * i)
        for i, w in enumerate(["what", "is", "two", "plus", "two"])
    ]
    words += [Word("B", w, 2.0 + 0.3 * i, 2.25 + 0.3 * i) for i, w in enumerate(["it", "is", "four"])]
    slots = [s for s in oracle_slots("d", words, OracleOptions(interval_s=0.1)) if s.ratio < 1.0]
    loop = asyncio.get_running_loop()
    started = loop.time()
    predictions = await asyncio.gather(*(simulator.predict(s) for s in slots))
    elapsed = loop.time() - started
    await provider.aclose()
    assert predictions and all(p == REPLY[3:] for p in predictions)
    assert simulator.stats.retries == 2 and simulator.stats.errors == {"RateLimitedError": 2}
    assert elapsed >= 0.025 + 0.05  # two back-offs of at least half their nominal delay
    assert server.state.max_in_flight <= 2
    with pytest.raises(TypeError):
        LLMSimulator(object())  # no stream() method


def test_paraphrased_dialogues_keep_the_true_answers(server, tmp_path):
    server.state.reply = (
        'Here is the spoken version: "So Natalia sold clips to 48 friends in April and half as many in May, '
        'how many in total?"'
    )
    qa = write_jsonl(tmp_path / "qa.jsonl", GSM8K_ITEMS[:2])
    plain, para = tmp_path / "plain", tmp_path / "para"
    assert cli("data", "dialogues", qa, "--preset", "gsm8k", "--out", plain, "--no-progress") == 0
    args = ("data", "dialogues", qa, "--preset", "gsm8k", "--out", para, "--paraphrase",
            "--llm-base-url", server.url, "--llm-backoff", "0.01", "--no-progress")  # fmt: skip
    assert cli(*args) == 0
    offline = [json.loads(line) for line in (plain / "dialogues.jsonl").read_text().splitlines()]
    rephrased = [json.loads(line) for line in (para / "dialogues.jsonl").read_text().splitlines()]
    assert sorted(d["id"] for d in rephrased) == [d["id"] for d in offline]
    by_id = {d["id"]: d for d in rephrased}
    for script in offline:
        mine = by_id[script["id"]]["turns"]
        assert mine[0]["text"] == (
            "So Natalia sold clips to forty eight friends in April and half as many in May, "
            "how many in total?"
        )
        assert mine[1:] == script["turns"][1:]  # the answers are the source's, untouched
    summary = json.loads((para / "summary-dialogues.json").read_text())
    assert summary["totals"]["llm_retries"] == 1 and summary["totals"]["llm_calls"] == 3
    asked = server.state.requests[-1]["messages"]
    assert asked[0]["role"] == "system" and "out loud" in asked[0]["content"]
    assert "Written question:" in asked[1]["content"]
    before = len(server.state.requests)
    assert cli(*args) == 0  # resume: nothing asked again
    assert len(server.state.requests) == before
