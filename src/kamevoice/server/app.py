"""The HTTP/WebSocket server: one shared `Engine`, one `Conversation` per client (any door).

    server = KameServer(frontend, settings)
    host, port = await server.start()      # engine thread + aiohttp site
    ...
    await server.stop()

Routes: `GET /api/chat` (WebSocket, Moshi's protocol, see `protocol`), `GET /twilio`
(WebSocket, Twilio Media Streams, see `doors.twilio`), `GET /v1/realtime` (WebSocket,
OpenAI's Realtime API, see `doors.realtime`), `GET /health` (JSON),
`GET /metrics` (Prometheus text), `GET /` and `/static/*` (the browser page; with
`server.static_dir`, `/` and every other path serve that folder instead, e.g. Kyutai's
web client). Admission happens before the upgrade, in this order: a bad query (400),
origin (403), token (401, Twilio's in its `start` message), capacity (503 with a JSON
body `{"error": "busy", ...}`).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections.abc import Callable
from importlib import resources
from pathlib import Path
from typing import Any

from aiohttp import WSCloseCode, web

from kamevoice.backend.factory import Backend
from kamevoice.config import Settings
from kamevoice.errors import ConfigError
from kamevoice.frontend.sampling import SamplingOptions
from kamevoice.runtime.clock import LoopClock
from kamevoice.runtime.engine import Engine, EngineOptions
from kamevoice.runtime.events import EventLog
from kamevoice.runtime.messages import CLIENT_KINDS, EndCause
from kamevoice.runtime.metrics import CONTENT_TYPE, Metrics
from kamevoice.runtime.session import Session
from kamevoice.server.access import bearer_ok, host_ok, origin_ok, token_ok
from kamevoice.server.conversation import BadRequest, Conversation, ConversationParts, connection_name
from kamevoice.server.doors import moshi, twilio
from kamevoice.server.doors.realtime import REALTIME_PROTOCOLS
from kamevoice.server.doors.realtime import door_for as realtime_door
from kamevoice.server.guard import GuardedSite, GuardStats
from kamevoice.server.observe import ServerMetrics
from kamevoice.startup import backend_for

log = logging.getLogger(__name__)

# Conversation logs and their folder are private to the server's user.
LOG_DIR_MODE = 0o700
# How often engine counters are carried into the metrics and the engine's health is checked (seconds).
POLL_S = 0.5


class KameServer:
    """Serves conversations with one front-end model."""

    def __init__(
        self,
        frontend: Any,
        settings: Settings,
        *,
        sampling: SamplingOptions | None = None,
        backend: Backend | None = None,
        metrics: Metrics | None = None,
    ):
        if frontend.codec is None:
            raise ValueError("the server needs a front-end with its codec loaded")
        self.frontend = frontend
        self.settings = settings
        self.server_settings = settings.server
        self.backend = (
            backend
            if backend is not None
            else backend_for(settings, stt_process=settings.server.stt_process) or Backend()
        )
        self.metrics = metrics or Metrics()
        self.observe = ServerMetrics(self.metrics)
        self.engine = Engine(
            frontend.model,
            frontend.codec,
            EngineOptions(
                max_sessions=self.server_settings.max_sessions,
                sampling=sampling
                or SamplingOptions.from_settings(
                    settings.frontend, frontend.files.lm_gen_config, frontend.files.extra
                ),
                paced=not self.server_settings.lockstep,
            ),
        )
        self.connections: set[Conversation] = set()
        self._reserved = 0  # admitted connections, counted before any await (no admission race)
        self._counter = 0
        self._runner: web.AppRunner | None = None
        self._poller: asyncio.Task | None = None
        self._started_at = 0.0
        self.guard = GuardStats()
        self.draining = False  # set once by `drain`: no new conversations
        self._drainer: asyncio.Task | None = None
        self.app = self._build_app()
        if self.server_settings.log_dir is not None:
            log_dir = Path(self.server_settings.log_dir)
            log_dir.mkdir(parents=True, exist_ok=True, mode=LOG_DIR_MODE)
            log_dir.chmod(LOG_DIR_MODE)  # conversations are private: owner only

    # -- lifetime -----------------------------------------------------------------------------------

    async def start(self, host: str | None = None, port: int | None = None) -> tuple[str, int]:
        """Prepare the back-end (its knowledge base's index), start the engine thread and listen;
        returns the bound (host, port). A knowledge base that cannot be loaded fails here."""
        if self.backend.prepare is not None:
            await asyncio.to_thread(self.backend.prepare)
        self.engine.start()
        self._started_at = time.monotonic()
        self._poller = asyncio.create_task(self._poll(), name="kamevoice-server-poll")
        self._runner = web.AppRunner(self.app, access_log=None, handle_signals=False)
        await self._runner.setup()
        site = GuardedSite(
            self._runner,
            host or self.server_settings.host,
            self.server_settings.port if port is None else port,
            self.server_settings.limits,
            self.guard,
        )
        await site.start()
        addresses = self._runner.addresses  # the bound sockets' names, (host, port, ...) each
        bound = addresses[0][:2] if addresses else (host, port)
        log.info("kamevoice serving on http://%s:%s", *bound)
        return bound[0], int(bound[1])

    async def stop(self) -> None:
        """End every conversation, stop listening, stop the engine."""
        for conn in list(self.connections):
            conn.end("server shutting down", EndCause.SHUTDOWN)
        for _ in range(200):  # let conversations say goodbye (up to ~2 s)
            if not self.connections:
                break
            await asyncio.sleep(0.01)
        if self._runner is not None:
            await self._runner.cleanup()
            self._runner = None
        if self._drainer is not None:
            self._drainer.cancel()
        if self._poller is not None:
            self._poller.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._poller
            self._poller = None
        await asyncio.to_thread(self.engine.__exit__, None, None, None)  # stop the thread, leave streaming

    async def _poll(self) -> None:
        while True:
            self.observe.poll_engine(self.engine)
            if self.engine.error is not None:
                for conn in list(self.connections):
                    conn.end(f"engine failed: {self.engine.error}", EndCause.ENGINE)
            await asyncio.sleep(POLL_S)

    # -- routes -------------------------------------------------------------------------------------

    def _build_app(self) -> web.Application:
        app = web.Application(
            client_max_size=self.server_settings.max_message_bytes, middlewares=[self._check_host]
        )
        static = resources.files("kamevoice.server") / "static"
        other = self.server_settings.static_dir
        app.router.add_get("/", self._index if other is None else self._other_index)
        app.router.add_get("/api/chat", self._chat)
        app.router.add_get("/twilio", self._twilio)
        app.router.add_get("/v1/realtime", self._realtime)
        app.router.add_get("/health", self._health)
        app.router.add_get("/live", self._live)
        app.router.add_get("/ready", self._ready)
        app.router.add_post("/admin/drain", self._admin_drain)
        app.router.add_get("/api/event-kinds", self._event_kinds)
        app.router.add_get("/metrics", self._metrics)
        app.router.add_static("/static/", Path(str(static)), follow_symlinks=False)
        if other is not None:  # last: the routes above win over the folder's files
            if not (Path(other) / "index.html").is_file():
                raise ConfigError(f"server.static_dir {other}: no index.html there (a built web client)")
            app.router.add_static("/", Path(other), follow_symlinks=False)
        return app

    @web.middleware
    async def _check_host(self, request: web.Request, handler) -> web.StreamResponse:
        """Every route: the Host must be one this server answers to (DNS rebinding)."""
        s = self.server_settings
        if not host_ok(request.headers.get("Host"), s.allowed_hosts, s.host):
            return self._reject(421, "host", "this server does not answer to that Host name")
        return await handler(request)

    async def _index(self, request: web.Request) -> web.StreamResponse:
        page = resources.files("kamevoice.server") / "static" / "index.html"
        return web.Response(text=page.read_text(encoding="utf-8"), content_type="text/html")

    async def _other_index(self, request: web.Request) -> web.StreamResponse:
        """`/` with `server.static_dir`: that folder's index.html (another web client)."""
        assert self.server_settings.static_dir is not None
        return web.FileResponse(Path(self.server_settings.static_dir) / "index.html")

    async def _event_kinds(self, request: web.Request) -> web.Response:
        """The kinds of the JSON events a client may receive (name -> wire value), for the page."""
        return web.json_response({kind.name: kind.value for kind in sorted(CLIENT_KINDS)})

    def health(self) -> dict[str, Any]:
        """What `/health` answers."""
        stats = self.engine.stats
        max_sessions = self.server_settings.max_sessions

        def ms(q: float) -> float | None:
            value = stats.percentile(q)
            return None if value != value else round(value, 2)  # NaN before the first step

        return {
            "ok": self.engine.error is None,
            "sessions": len(self.connections),
            "max_sessions": max_sessions,
            "free_slots": max(0, max_sessions - self._reserved),
            "uptime_s": round(time.monotonic() - self._started_at, 1),
            "engine": {
                "paced": self.engine.options.paced,
                "steps": stats.steps,
                "overruns": stats.overruns,
                "underruns": stats.underruns,
                "step_ms_p50": ms(0.5),
                "step_ms_p99": ms(0.99),
                "rows": stats.rows,
                "failed": self.engine.error is not None,
            },
        }

    async def _health(self, request: web.Request) -> web.Response:
        body = self.health()
        return web.json_response(body, status=200 if body["ok"] else 503)

    def not_ready(self) -> str | None:
        """Why a new conversation would not be admitted now (`starting`, `draining`, `full`), or None.
        Cheap: reads counters only, so a probe flood costs the frame loop nothing."""
        if self._started_at == 0.0 or self.engine.error is not None:
            return "starting" if self.engine.error is None else "engine"
        if self.draining:
            return "draining"
        if self._reserved >= self.server_settings.max_sessions:
            return "full"
        return None

    async def _live(self, request: web.Request) -> web.Response:
        ok = self.engine.error is None
        return web.json_response({"live": ok}, status=200 if ok else 503)

    async def _ready(self, request: web.Request) -> web.Response:
        why = self.not_ready()
        return web.json_response({"ready": why is None, "reason": why}, status=200 if why is None else 503)

    async def _admin_drain(self, request: web.Request) -> web.Response:
        token = self.server_settings.admin_token
        if token is None or not bearer_ok(request, token.get_secret_value()):
            return self._reject(401, "auth", "/admin/drain needs server.admin_token as its bearer token")
        self.drain()
        return web.json_response({"draining": True, "sessions": len(self.connections)})

    def drain(self) -> asyncio.Task:
        """Stop admitting conversations; those running go on until they end or `drain_timeout_s`
        passes, then each is ended with `EndCause.DRAIN`. Returns the task that waits (idempotent)."""
        if self._drainer is None:
            self.draining = True
            log.info("draining: %d conversations running, no new ones", len(self.connections))
            self._drainer = asyncio.create_task(self._drain(), name="kamevoice-drain")
        return self._drainer

    async def _drain(self) -> None:
        deadline = time.monotonic() + self.server_settings.drain_timeout_s
        while self._reserved > 0 and time.monotonic() < deadline:
            await asyncio.sleep(0.05)
        for conn in list(self.connections):
            conn.end("the server is draining and the drain timeout passed", EndCause.DRAIN)
        while self._reserved > 0:
            await asyncio.sleep(0.05)
        log.info("drained")

    async def _metrics(self, request: web.Request) -> web.Response:
        token = self.server_settings.metrics_token
        if token is not None and not bearer_ok(request, token.get_secret_value()):
            return self._reject(401, "auth", "/metrics needs its bearer token")
        self.observe.poll_engine(self.engine)
        self.observe.active.set(len(self.connections))
        self.observe.capacity(self.server_settings.max_sessions, self._reserved, self.draining)
        return web.Response(body=self.metrics.exposition(), headers={"Content-Type": CONTENT_TYPE})

    def _reject(self, status: int, why: str, message: str) -> web.Response:
        self.observe.rejected.labels(why).inc()
        log.info("connection refused (%s): %s", why, message)
        return web.json_response({"error": why, "message": message}, status=status)

    def admit(self, request: web.Request, token: bool = True) -> web.Response | None:
        """Whether a new conversation may start: None, or the refusal to send (any door).

        In this order: the browser Origin (403), the token (401; `token=False`: the door checks
        it itself, as Twilio's does in its `start` message), a failed engine (503), a free slot
        (503 `busy`). Call it before the upgrade, then `converse` at once: a slot is reserved
        from `converse`'s first line, before any await, so two cannot take the last one.
        """
        s = self.server_settings
        if not origin_ok(request, s.allowed_origins):
            return self._reject(403, "origin", f"origin {request.headers.get('Origin')!r} is not allowed")
        if token and not token_ok(request, s.token.get_secret_value() if s.token else None):
            return self._reject(401, "auth", "a valid bearer token is required")
        if self.engine.error is not None:
            return self._reject(503, "engine", "the engine has failed; see the server's log")
        if self.draining:
            return self._reject(503, "draining", "this server is draining; connect to another one")
        if self._reserved >= s.max_sessions:
            return self._reject(
                503, "busy", f"all {s.max_sessions} conversation slots are taken; retry later"
            )
        return None

    async def converse(
        self,
        request: web.Request,
        door: Callable[..., Conversation],
        forward_events: bool,
        protocols: tuple[str, ...] = (),
    ) -> web.StreamResponse:
        """Upgrade `request` and serve one conversation through `door` (a `Conversation` subclass,
        called with the conversation's `ConversationParts`)."""
        self._reserved += 1
        try:
            return await self._converse(request, door, forward_events, protocols)
        finally:
            self._reserved -= 1

    async def _chat(self, request: web.Request) -> web.StreamResponse:
        sampling, files = self.engine.options.sampling, self.frontend.files
        return await self._open(request, lambda: moshi.door_for(request.query, sampling, files))

    async def _twilio(self, request: web.Request) -> web.StreamResponse:
        token = self.server_settings.token
        secret = token.get_secret_value() if token else None
        return await self._open(request, lambda: twilio.door_for(request.query, secret), token=False)

    async def _open(
        self,
        request: web.Request,
        door_for: Callable[[], tuple[Callable[..., Conversation], bool]],
        token: bool = True,
    ) -> web.StreamResponse:
        """A door's route: its query read (`door_for`: the door and whether it forwards events;
        400 on `BadRequest`), then `admit` and `converse`."""
        try:
            door, send_events = door_for()
        except BadRequest as exc:
            return self._reject(400, exc.why, str(exc))
        refused = self.admit(request, token=token)
        if refused is not None:
            return refused
        return await self.converse(request, door, send_events)

    async def _realtime(self, request: web.Request) -> web.StreamResponse:
        """OpenAI's Realtime API; its own events replace ours (`forward_events` off)."""
        refused = self.admit(request)
        if refused is not None:
            return refused
        door = realtime_door(request, self.server_settings.max_message_bytes)
        return await self.converse(request, door, False, REALTIME_PROTOCOLS)

    async def _converse(
        self,
        request: web.Request,
        door: Callable[..., Conversation],
        send_events: bool,
        protocols: tuple[str, ...],
    ) -> web.StreamResponse:
        heartbeat = self.server_settings.limits.heartbeat_s or None  # a ping; no pong in half of it: gone
        ws = web.WebSocketResponse(
            max_msg_size=self.server_settings.max_message_bytes,
            autoping=True,
            heartbeat=heartbeat,
            protocols=protocols,
        )
        await ws.prepare(request)
        self._counter += 1
        name = connection_name(self._counter, request.remote)
        llm = None
        conn: Conversation | None = None
        try:
            llm = await asyncio.to_thread(self.backend.llm) if self.backend.llm else None

            def make_session(on_output) -> Session:
                events = EventLog(LoopClock(), self._log_path(name))
                self.observe.attach(events)
                stt = self.backend.stt(events) if self.backend.stt else None
                return Session(
                    self.engine,
                    self.frontend.tokenizer,
                    stt=stt,
                    llm=llm,
                    events=events,
                    scheduler_settings=self.backend.scheduler,
                    on_output=on_output,
                    sample_rate=self.frontend.codec.sample_rate,
                    forward_events=send_events,
                )

            s = self.server_settings
            conn = door(
                ConversationParts(
                    ws, make_session, self.frontend.codec.sample_rate, name, s.limits, self.observe,
                    s.idle_timeout_s or None, request.transport,
                )
            )  # fmt: skip
            self.connections.add(conn)
            self.observe.started.inc()
            self.observe.active.set(len(self.connections))
            await conn.run(lambda: self.engine.error)
        except Exception as exc:  # the back-end could not be built: this conversation only
            log.warning("%s could not start: %s: %s", name, type(exc).__name__, exc)
            with contextlib.suppress(Exception):
                # The cause stays in the server's log: it may name hosts or files of this server.
                await ws.close(
                    code=WSCloseCode.INTERNAL_ERROR, message=f"could not start: {type(exc).__name__}".encode()
                )
        finally:
            if conn is not None:
                self.connections.discard(conn)
                self.observe.active.set(len(self.connections))
            if llm is not None:
                with contextlib.suppress(Exception):
                    await llm.aclose()
        return ws

    def _log_path(self, name: str) -> Path | None:
        if self.server_settings.log_dir is None:
            return None
        stamp = time.strftime("%Y%m%dT%H%M%S")
        return Path(self.server_settings.log_dir) / f"{stamp}-{name.split('@')[0]}.jsonl"
