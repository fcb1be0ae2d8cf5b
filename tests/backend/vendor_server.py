"""A real local HTTP server that speaks one LLM vendor's streaming wire format.

Each request consumes the next step of a script: what to do ("ok", "429",
"500", "malformed", "stall", "drop", "error_event", "long_line", "slow") and with which
tokens and delays. The server records every request (headers, JSON body) and
whether the client went away before the stream was finished.
"""

from __future__ import annotations

import asyncio
import json
from dataclasses import dataclass, field
from typing import Any

from aiohttp import web

DEFAULT_TOKENS = ["Our ", "shops ", "open ", "at ", "nine."]

# How long a stalled handler waits for the client to give up before ending anyway.
STALL_LIMIT_S = 10.0


@dataclass
class Step:
    """One scripted response."""

    do: str = "ok"
    tokens: list[str] = field(default_factory=lambda: list(DEFAULT_TOKENS))
    first_delay: float = 0.0  # before the first token
    delay: float = 0.0  # between tokens
    # For malformed / stall / drop / error_event / long_line: good tokens sent before the failure.
    before: int = 2
    # For long_line: bytes of one `data:` line that never ends (sent in 64 KiB writes).
    line_bytes: int = 0


@dataclass
class Seen:
    """One request as the server received it."""

    path: str
    query: dict[str, str]
    headers: dict[str, str]
    body: dict[str, Any]
    step: Step
    disconnected: asyncio.Event = field(default_factory=asyncio.Event)
    finished: bool = False


class FakeVendor:
    """The server. `vendor` is "openai", "anthropic" or "google"."""

    def __init__(self, vendor: str):
        self.vendor = vendor
        self.script: list[Step] = []
        self.requests: list[Seen] = []
        self._runner: web.AppRunner | None = None
        self.base_url = ""

    def then(self, *steps: Step | str) -> FakeVendor:
        """Append steps to the script (a string is a step with defaults)."""
        self.script.extend(Step(s) if isinstance(s, str) else s for s in steps)
        return self

    async def start(self) -> str:
        app = web.Application()
        app.router.add_post("/v1/chat/completions", self._handle)
        app.router.add_post("/v1/messages", self._handle)
        app.router.add_post("/v1beta/models/{tail}", self._handle)
        self._runner = web.AppRunner(app, access_log=None)
        await self._runner.setup()
        site = web.TCPSite(self._runner, "127.0.0.1", 0)
        await site.start()
        port = site._server.sockets[0].getsockname()[1]  # type: ignore[union-attr]
        self.base_url = f"http://127.0.0.1:{port}"
        return self.base_url

    async def stop(self) -> None:
        if self._runner is not None:
            await self._runner.cleanup()

    # -- handling -----------------------------------------------------------------------------

    async def _handle(self, request: web.Request) -> web.StreamResponse:
        step = self.script.pop(0) if self.script else Step()
        seen = Seen(request.path, dict(request.query), dict(request.headers), await request.json(), step)
        self.requests.append(seen)
        if step.do in ("429", "500", "401"):
            status = int(step.do)
            return web.json_response(
                self._error_body(status), status=status, headers={"Retry-After": "0"} if status == 429 else {}
            )
        resp = web.StreamResponse(headers={"Content-Type": "text/event-stream", "Cache-Control": "no-cache"})
        await resp.prepare(request)
        try:
            await self._stream(request, resp, step, seen)
        except ConnectionError:  # aiohttp's ClientConnectionResetError is one
            seen.disconnected.set()
        return resp

    async def _stream(self, request: web.Request, resp: web.StreamResponse, step: Step, seen: Seen) -> None:
        for event in self._opening():
            await resp.write(event)
        await _sleep_while_connected(request, step.first_delay)
        failing = step.do in ("malformed", "stall", "drop", "error_event", "long_line")
        tokens = step.tokens[: step.before] if failing else step.tokens
        for i, token in enumerate(tokens):
            if i:
                await _sleep_while_connected(request, step.delay)
            await resp.write(self._token(token))
        if step.do == "malformed":
            await resp.write(b'data: {"choices": [{"delta": {"content": "oops"\n\n')
        elif step.do == "error_event":
            await resp.write(self._error_event())
        elif step.do == "long_line":
            await _write_long_line(resp, step.line_bytes)
            await self._wait_for_disconnect(request, seen)
            return
        elif step.do == "stall":
            await self._wait_for_disconnect(request, seen)
            return
        elif step.do == "drop":
            assert request.transport is not None
            request.transport.close()  # mid-body: the chunked stream never terminates
            raise ConnectionResetError
        else:
            for event in self._closing():
                await resp.write(event)
            seen.finished = True
        await resp.write_eof()

    async def _wait_for_disconnect(self, request: web.Request, seen: Seen) -> None:
        loop = asyncio.get_running_loop()
        end = loop.time() + STALL_LIMIT_S
        while loop.time() < end:
            if request.transport is None or request.transport.is_closing():
                seen.disconnected.set()
                return
            await asyncio.sleep(0.01)

    # -- wire formats -------------------------------------------------------------------------

    def _opening(self) -> list[bytes]:
        if self.vendor == "openai":
            return [
                _data({"id": "c1", "choices": [{"index": 0, "delta": {"role": "assistant", "content": ""}}]})
            ]
        if self.vendor == "anthropic":
            return [
                _event("message_start", {"type": "message_start", "message": {"id": "m1", "content": []}}),
                _event(
                    "content_block_start",
                    {
                        "type": "content_block_start",
                        "index": 0,
                        "content_block": {"type": "text", "text": ""},
                    },
                ),
                _event("ping", {"type": "ping"}),
            ]
        return []

    def _token(self, text: str) -> bytes:
        if self.vendor == "openai":
            return _data(
                {"id": "c1", "choices": [{"index": 0, "delta": {"content": text}, "finish_reason": None}]}
            )
        if self.vendor == "anthropic":
            return _event(
                "content_block_delta",
                {"type": "content_block_delta", "index": 0, "delta": {"type": "text_delta", "text": text}},
            )
        return _data({"candidates": [{"content": {"parts": [{"text": text}], "role": "model"}, "index": 0}]})

    def _closing(self) -> list[bytes]:
        if self.vendor == "openai":
            return [
                _data({"id": "c1", "choices": [{"index": 0, "delta": {}, "finish_reason": "stop"}]}),
                b"data: [DONE]\n\n",
            ]
        if self.vendor == "anthropic":
            return [
                _event("content_block_stop", {"type": "content_block_stop", "index": 0}),
                _event("message_delta", {"type": "message_delta", "delta": {"stop_reason": "end_turn"}}),
                _event("message_stop", {"type": "message_stop"}),
            ]
        return [
            _data(
                {
                    "candidates": [
                        {
                            "content": {"parts": [{"text": ""}], "role": "model"},
                            "finishReason": "STOP",
                            "index": 0,
                        }
                    ],
                    "usageMetadata": {"promptTokenCount": 10, "candidatesTokenCount": 5},
                }
            )
        ]

    def _error_event(self) -> bytes:
        if self.vendor == "anthropic":
            return _event(
                "error", {"type": "error", "error": {"type": "overloaded_error", "message": "Overloaded"}}
            )
        return _data({"error": {"code": 500, "message": "internal error while generating"}})

    def _error_body(self, status: int) -> dict[str, Any]:
        message = {429: "rate limit reached", 500: "the server had an error", 401: "invalid api key"}[status]
        if self.vendor == "anthropic":
            kind = {429: "rate_limit_error", 500: "api_error", 401: "authentication_error"}[status]
            return {"type": "error", "error": {"type": kind, "message": message}}
        if self.vendor == "google":
            return {"error": {"code": status, "message": message, "status": "RESOURCE_EXHAUSTED"}}
        return {"error": {"message": message, "type": "server_error", "code": None}}


async def _sleep_while_connected(request: web.Request, seconds: float) -> None:
    """Sleep, but raise ConnectionResetError as soon as the client has gone."""
    loop = asyncio.get_running_loop()
    end = loop.time() + seconds
    while True:
        if request.transport is None or request.transport.is_closing():
            raise ConnectionResetError
        left = end - loop.time()
        if left <= 0:
            return
        await asyncio.sleep(min(left, 0.01))


async def _write_long_line(resp: web.StreamResponse, size: int) -> None:
    """`size` bytes of one `data:` line with no end-of-line (the client should give up midway)."""
    piece = b"x" * (1 << 16)
    await resp.write(b"data: ")
    for _ in range(size // len(piece)):
        await resp.write(piece)


def _data(obj: dict[str, Any]) -> bytes:
    return f"data: {json.dumps(obj)}\n\n".encode()


def _event(name: str, obj: dict[str, Any]) -> bytes:
    return f"event: {name}\ndata: {json.dumps(obj)}\n\n".encode()
