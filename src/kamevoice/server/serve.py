"""`kamevoice serve`: load the front-end, start the engine and the server, run until interrupted."""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import logging
import signal

log = logging.getLogger(__name__)


def settings_from_args(args: argparse.Namespace):
    """Settings with the command-line flags applied on top of file and environment."""
    from kamevoice.config import load_settings

    base = load_settings()
    server = base.server.model_dump()
    for flag, key in (
        ("host", "host"),
        ("port", "port"),
        ("max_sessions", "max_sessions"),
        ("log_dir", "log_dir"),
        ("token", "token"),
    ):
        value = getattr(args, flag, None)
        if value is not None:
            server[key] = value
    if getattr(args, "allowed_origin", None):
        server["allowed_origins"] = list(args.allowed_origin)
    if getattr(args, "no_oracle", False):
        server["oracle"] = False
    if getattr(args, "lockstep", False):
        server["lockstep"] = True
    if server.get("token") is not None and not isinstance(server["token"], str):
        server["token"] = server["token"].get_secret_value()
    frontend = base.frontend.model_dump()
    if getattr(args, "checkpoint", None):
        frontend["checkpoint"] = args.checkpoint
    if getattr(args, "device", None):
        frontend["device"] = args.device
    return load_settings(server=server, frontend=frontend)


async def serve_forever(frontend, settings, ready=None) -> None:
    """Run a `KameServer` until SIGINT/SIGTERM; `ready(host, port)` is called once it listens."""
    from kamevoice.server.app import KameServer

    server = KameServer(frontend, settings)
    host, port = await server.start()
    print(f"kamevoice: serving on http://{host}:{port}/ (WebSocket /api/chat)", flush=True)
    if ready is not None:
        ready(host, port)
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGINT, signal.SIGTERM):
        with contextlib.suppress(NotImplementedError, RuntimeError):  # not the main thread
            loop.add_signal_handler(sig, stop.set)
    try:
        await stop.wait()
    finally:
        await server.stop()


def _checkpoint_and_settings(args: argparse.Namespace):
    settings = settings_from_args(args)
    return settings.frontend.checkpoint, settings


def serve_command(args: argparse.Namespace) -> int:
    """Handler of `kamevoice serve`."""
    from kamevoice.frontend.device import apply_cpu_threads
    from kamevoice.frontend.loading import load_frontend
    from kamevoice.tiny.defaults import embedded_defaults

    checkpoint, settings = embedded_defaults(*_checkpoint_and_settings(args))

    fs = settings.frontend
    apply_cpu_threads(fs.cpu_threads)
    frontend = load_frontend(checkpoint, device=fs.device, dtype=fs.dtype)
    asyncio.run(serve_forever(frontend, settings))
    return 0
