"""Each vendor provider against a real local server speaking that vendor's wire format."""

from __future__ import annotations

import asyncio
import socket
import time

import pytest

from kamevoice.backend.llm.base import (
    ChatMessage,
    ConnectionDroppedError,
    MalformedResponseError,
    ProviderTimeoutError,
    RateLimitedError,
    RequestRejectedError,
    ServerError,
    StalledStreamError,
)
from kamevoice.errors import ConfigError

from .conftest import KEY_ENV, TEST_KEY, USER_ONLY, VENDORS, make_provider
from .vendor_server import DEFAULT_TOKENS, Step

pytestmark = pytest.mark.usefixtures("api_key")


async def collect(provider, messages=USER_ONLY, system="Be brief.") -> list[str]:
    return [d async for d in provider.stream(messages, system=system)]


@pytest.mark.parametrize("vendor", VENDORS)
async def test_normal_stream_yields_the_text_in_order(vendor, vendor_server, providers):
    server = (await vendor_server(vendor)).then("ok")
    provider = make_provider(vendor, server.base_url)
    providers.append(provider)
    messages = [
        ChatMessage("user", "Hi."),
        ChatMessage("assistant", "Hello!"),
        ChatMessage("user", "When do you open?"),
    ]
    deltas = await collect(provider, messages, system="Answer briefly.")
    assert deltas == DEFAULT_TOKENS
    assert server.requests[0].finished


async def test_openai_request_is_chat_completions_with_bearer_key(vendor_server, providers):
    server = (await vendor_server("openai")).then("ok")
    provider = make_provider("openai", server.base_url, temperature=0.3, max_tokens=50)
    providers.append(provider)
    await collect(provider, system="SYS")
    seen = server.requests[0]
    assert seen.path == "/v1/chat/completions"
    assert seen.headers["Authorization"] == f"Bearer {TEST_KEY}"
    assert seen.body["stream"] is True and seen.body["model"] == "test-model"
    assert seen.body["temperature"] == 0.3 and seen.body["max_tokens"] == 50
    assert seen.body["messages"] == [
        {"role": "system", "content": "SYS"},
        {"role": "user", "content": "When do you open?"},
    ]


async def test_openai_sends_no_key_when_none_is_set(vendor_server, providers, monkeypatch):
    monkeypatch.delenv(KEY_ENV)
    server = (await vendor_server("openai")).then("ok")
    provider = make_provider("openai", server.base_url)
    providers.append(provider)
    assert await collect(provider) == DEFAULT_TOKENS
    assert "Authorization" not in server.requests[0].headers


async def test_anthropic_request_uses_messages_api_headers(vendor_server, providers):
    server = (await vendor_server("anthropic")).then("ok")
    provider = make_provider("anthropic", server.base_url)
    providers.append(provider)
    await collect(provider, system="SYS")
    seen = server.requests[0]
    assert seen.path == "/v1/messages"
    assert seen.headers["x-api-key"] == TEST_KEY
    assert seen.headers["anthropic-version"] == "2023-06-01"
    assert seen.body["system"] == "SYS" and seen.body["stream"] is True
    assert seen.body["messages"] == [{"role": "user", "content": "When do you open?"}]


async def test_google_request_uses_stream_generate_content(vendor_server, providers):
    server = (await vendor_server("google")).then("ok")
    provider = make_provider("google", server.base_url)
    providers.append(provider)
    await collect(
        provider, [ChatMessage("user", "a"), ChatMessage("assistant", "b"), ChatMessage("user", "c")]
    )
    seen = server.requests[0]
    assert seen.path == "/v1beta/models/test-model:streamGenerateContent"
    assert seen.query == {"alt": "sse"}
    assert seen.headers["x-goog-api-key"] == TEST_KEY
    assert [c["role"] for c in seen.body["contents"]] == ["user", "model", "user"]
    assert seen.body["systemInstruction"] == {"parts": [{"text": "Be brief."}]}
    assert seen.body["generationConfig"]["thinkingConfig"] == {"thinkingBudget": 0}


@pytest.mark.parametrize("vendor", ["anthropic", "google"])
async def test_missing_api_key_is_a_config_error_naming_the_variable(vendor, monkeypatch):
    monkeypatch.delenv(KEY_ENV)
    with pytest.raises(ConfigError, match=f"{vendor}: no API key: set the environment variable {KEY_ENV}"):
        make_provider(vendor, "http://127.0.0.1:9")


@pytest.mark.parametrize("vendor", VENDORS)
async def test_429_is_rate_limited_with_retry_after(vendor, vendor_server, providers):
    server = (await vendor_server(vendor)).then("429")
    provider = make_provider(vendor, server.base_url)
    providers.append(provider)
    with pytest.raises(RateLimitedError) as info:
        await collect(provider)
    err = info.value
    assert err.retryable and err.status == 429 and err.retry_after == 0.0
    assert err.provider == vendor and server.base_url in err.url
    assert "rate limit reached" in str(err) and vendor in str(err)


@pytest.mark.parametrize("vendor", VENDORS)
async def test_500_is_a_retryable_server_error(vendor, vendor_server, providers):
    server = (await vendor_server(vendor)).then("500")
    provider = make_provider(vendor, server.base_url)
    providers.append(provider)
    with pytest.raises(ServerError, match="HTTP 500: the server had an error") as info:
        await collect(provider)
    assert info.value.retryable


@pytest.mark.parametrize("vendor", VENDORS)
async def test_401_is_rejected_and_not_retryable(vendor, vendor_server, providers):
    server = (await vendor_server(vendor)).then("401")
    provider = make_provider(vendor, server.base_url)
    providers.append(provider)
    with pytest.raises(RequestRejectedError, match="invalid api key") as info:
        await collect(provider)
    assert not info.value.retryable


@pytest.mark.parametrize("vendor", VENDORS)
async def test_malformed_chunk_raises_after_the_good_text(vendor, vendor_server, providers):
    server = (await vendor_server(vendor)).then("malformed")
    provider = make_provider(vendor, server.base_url)
    providers.append(provider)
    got: list[str] = []
    with pytest.raises(MalformedResponseError, match="not valid JSON"):
        async for delta in provider.stream(USER_ONLY, system=""):
            got.append(delta)
    assert got == DEFAULT_TOKENS[:2]


@pytest.mark.parametrize("vendor", VENDORS)
async def test_a_line_over_the_cap_is_malformed_and_read_no_further(vendor, vendor_server, providers):
    # 8 MiB of one line against a 64 KiB cap: the provider gives up after ~64 KiB.
    server = (await vendor_server(vendor)).then(Step("long_line", line_bytes=8 << 20))
    provider = make_provider(vendor, server.base_url, max_line_bytes=1 << 16)
    providers.append(provider)
    got: list[str] = []
    with pytest.raises(MalformedResponseError, match=r"line over 65536 bytes") as info:
        async for delta in provider.stream(USER_ONLY, system=""):
            got.append(delta)
    assert info.value.kind == "malformed" and not info.value.retryable
    assert got == DEFAULT_TOKENS[:2]
    await asyncio.wait_for(server.requests[0].disconnected.wait(), 2.0)
    assert not server.requests[0].finished


@pytest.mark.parametrize("vendor", VENDORS)
async def test_stalled_stream_times_out_and_closes_the_connection(vendor, vendor_server, providers):
    server = (await vendor_server(vendor)).then("stall")
    provider = make_provider(vendor, server.base_url)  # stall timeout 0.3 s
    providers.append(provider)
    got: list[str] = []
    start = time.monotonic()
    with pytest.raises(StalledStreamError, match=r"no data for 0\.3 s"):
        async for delta in provider.stream(USER_ONLY, system=""):
            got.append(delta)
    assert 0.25 < time.monotonic() - start < 1.5
    assert got == DEFAULT_TOKENS[:2]
    await asyncio.wait_for(server.requests[0].disconnected.wait(), 2.0)


@pytest.mark.parametrize("vendor", VENDORS)
async def test_no_first_token_in_time_is_a_timeout(vendor, vendor_server, providers):
    server = (await vendor_server(vendor)).then(Step("ok", first_delay=3.0))
    provider = make_provider(vendor, server.base_url, first_token_timeout_s=0.4)
    providers.append(provider)
    start = time.monotonic()
    with pytest.raises(ProviderTimeoutError, match=r"no first token within 0\.4 s") as info:
        await collect(provider)
    assert not isinstance(info.value, StalledStreamError)
    assert time.monotonic() - start < 1.5


@pytest.mark.parametrize("vendor", VENDORS)
async def test_dropped_connection_mid_stream(vendor, vendor_server, providers):
    server = (await vendor_server(vendor)).then("drop")
    provider = make_provider(vendor, server.base_url)
    providers.append(provider)
    got: list[str] = []
    with pytest.raises(ConnectionDroppedError) as info:
        async for delta in provider.stream(USER_ONLY, system=""):
            got.append(delta)
    assert got == DEFAULT_TOKENS[:2]
    assert info.value.retryable


@pytest.mark.parametrize("vendor", ["openai", "anthropic"])
async def test_error_event_inside_the_stream_is_a_server_error(vendor, vendor_server, providers):
    server = (await vendor_server(vendor)).then("error_event")
    provider = make_provider(vendor, server.base_url)
    providers.append(provider)
    with pytest.raises(ServerError, match=r"verloaded|internal error"):
        await collect(provider)


async def test_refused_connection_is_a_dropped_connection(providers):
    with socket.socket() as s:  # a port that was free a moment ago: nothing listens there
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    provider = make_provider("openai", f"http://127.0.0.1:{port}")
    providers.append(provider)
    with pytest.raises(ConnectionDroppedError, match="cannot connect"):
        await collect(provider)


@pytest.mark.parametrize("vendor", VENDORS)
async def test_cancelling_the_consumer_closes_the_http_stream(vendor, vendor_server, providers):
    server = (await vendor_server(vendor)).then(Step("ok", tokens=["w "] * 100, delay=0.05))
    provider = make_provider(vendor, server.base_url)
    providers.append(provider)
    first = asyncio.Event()

    async def consume() -> None:
        async for _ in provider.stream(USER_ONLY, system=""):
            first.set()

    task = asyncio.create_task(consume())
    await asyncio.wait_for(first.wait(), 2.0)
    task.cancel()
    with pytest.raises(asyncio.CancelledError):
        await task
    await asyncio.wait_for(server.requests[0].disconnected.wait(), 2.0)
    assert not server.requests[0].finished


async def test_provider_system_prompt_overrides_the_callers(vendor_server, providers):
    server = (await vendor_server("anthropic")).then("ok")
    provider = make_provider("anthropic", server.base_url, system_prompt="OVERRIDE")
    providers.append(provider)
    await collect(provider, system="from scheduler")
    assert server.requests[0].body["system"] == "OVERRIDE"
