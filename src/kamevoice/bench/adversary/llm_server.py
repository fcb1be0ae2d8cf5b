"""A local OpenAI-compatible chat server for the adversarial bench: an honest one, and the runaways.

It speaks the chat-completions streaming protocol (`POST /v1/chat/completions`,
`data: {json}` server-sent events, `data: [DONE]`) and counts the requests it got.
Modes: `answer` streams a short reply; `runaway` streams `RUNAWAY_CHUNKS` chunks as
fast as it can and ignores `max_tokens`; `long_line` sends one line of
`LONG_LINE_BYTES` bytes that never ends.
"""

from __future__ import annotations

import asyncio
import json
from typing import Literal

from aiohttp import web

ANSWER = "Let me check. It opens at nine in the morning on Saturday."
# What the attacker measured: a stream of 20,000 chunks that ignored max tokens.
RUNAWAY_CHUNKS = 20_000
# One line without a newline, far past any sane event's size.
LONG_LINE_BYTES = 50 << 20

Mode = Literal["answer", "runaway", "long_line"]


def _chunk(text: str) -> bytes:
    body = {"choices": [{"index": 0, "delta": {"content": text}, "finish_reason": None}]}
    return f"data: {json.dumps(body)}\n\n".encode()


class ChatServer:
    """The server (use `async with`); `requests` counts the chat requests it received."""

    def __init__(self, mode: Mode = "answer"):
        self.mode = mode
        self.requests = 0
        self.url = ""
        self._runner: web.AppRunner | None = None

    async def __aenter__(self) -> ChatServer:
        app = web.Application()
        app.router.add_post("/v1/chat/completions", self._chat)
        self._runner = web.AppRunner(app, access_log=None)
        await self._runner.setup()
        site = web.TCPSite(self._runner, "127.0.0.1", 0)
        await site.start()
        host, port = self._runner.addresses[0][:2]
        self.url = f"http://{host}:{port}/v1"
        return self

    async def __aexit__(self, *exc) -> None:
        if self._runner is not None:
            await self._runner.cleanup()

    async def _chat(self, request: web.Request) -> web.StreamResponse:
        self.requests += 1
        await request.read()
        resp = web.StreamResponse(headers={"Content-Type": "text/event-stream"})
        await resp.prepare(request)
        try:
            if self.mode == "answer":
                for word in ANSWER.split(" "):
                    await resp.write(_chunk(word + " "))
                    await asyncio.sleep(0.02)
            elif self.mode == "runaway":
                for i in range(RUNAWAY_CHUNKS):
                    await resp.write(_chunk("more "))
                    if i % 100 == 0:
                        await asyncio.sleep(0)
            else:
                block = b"x" * (1 << 20)
                await resp.write(b"data: " + block)
                for _ in range(LONG_LINE_BYTES // len(block)):
                    await resp.write(block)
            await resp.write(b"data: [DONE]\n\n")
        except (ConnectionResetError, RuntimeError):
            pass  # the client went away: what a client with a length cap does
        return resp
