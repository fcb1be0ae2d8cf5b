"""`kamevoice serve`: load the front-end, start the engine and the server, run until interrupted."""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import logging
import signal

from kamevoice.frontend.flags import add_frontend_flags

log = logging.getLogger(__name__)


def register(sub: argparse._SubParsersAction) -> None:
    serve = sub.add_parser(
        "serve",
        help="serve conversations over WebSocket (Moshi's protocol at /api/chat, Twilio at /twilio) "
        "with a browser page at /",
        description="Serve KAME conversations: Moshi's binary WebSocket protocol at /api/chat (JSON "
        "events with ?events=1), Twilio Media Streams at /twilio, a browser page at /, /health and "
        "/metrics. Binds 127.0.0.1 unless told otherwise.",
    )
    add_frontend_flags(serve, published=True)
    serve.add_argument("--host", default=None, help="address to bind (default 127.0.0.1)")
    serve.add_argument("--port", type=int, default=None, help="TCP port (default 8998)")
    serve.add_argument("--max-sessions", type=int, default=None, help="concurrent conversations")
    serve.add_argument("--token", default=None, help="require this bearer token on /api/chat")
    serve.add_argument(
        "--allowed-origin", action="append", help="browser Origin allowed (repeat; '*' for any)"
    )
    serve.add_argument("--log-dir", default=None, help="write per-session event logs (JSONL) here")
    serve.add_argument(
        "--static", metavar="DIR", default=None,
        help="serve another web client from DIR at / (e.g. Kyutai's built client), same origin as /api/chat",
    )  # fmt: skip
    serve.add_argument("--no-oracle", action="store_true", help="front-end alone: no STT, no LLM")
    serve.add_argument(
        "--lockstep", action="store_true", help="testing: step when every session has audio (deterministic)"
    )
    serve.set_defaults(handler=serve_command)


async def serve_forever(stack, ready=None) -> None:
    """Run a `KameServer` for a started `Stack` until SIGINT/SIGTERM; `ready(host, port)` is called
    once it listens."""
    from kamevoice.server.app import KameServer

    server = KameServer(stack.frontend, stack.settings, sampling=stack.sampling, backend=stack.backend)
    host, port = await server.start()
    print(f"kamevoice: serving on http://{host}:{port}/ (WebSockets /api/chat, /twilio)", flush=True)
    if ready is not None:
        ready(host, port)
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()

    def on_term() -> None:  # first SIGTERM drains, a second one ends at once
        if server.draining:
            log.warning("second SIGTERM: ending now, without waiting for the drain")
            stop.set()
            return
        server.drain().add_done_callback(lambda _: stop.set())

    with contextlib.suppress(NotImplementedError, RuntimeError):  # not the main thread
        loop.add_signal_handler(signal.SIGINT, stop.set)
        loop.add_signal_handler(signal.SIGTERM, on_term)
    try:
        await stop.wait()
    finally:
        await server.stop()


def serve_command(args: argparse.Namespace) -> int:
    """Handler of `kamevoice serve`."""
    from kamevoice.startup import settings_from_args, start

    settings = settings_from_args(args)
    stack = start(settings, stt_process=settings.server.stt_process)
    asyncio.run(serve_forever(stack))
    return 0
