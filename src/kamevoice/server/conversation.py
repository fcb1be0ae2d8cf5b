"""One client's conversation over a WebSocket, whatever the wire protocol spoken on it.

A front door (Moshi's binary protocol, OpenAI Realtime, Twilio Media Streams)
subclasses `Conversation` and supplies only its protocol: `greeting()`, the message
loop `read()` that decodes client messages into `push_audio()` calls, `on_output()`
that encodes what the session produces into outbox messages, `farewell()`, and
`close_code()` for protocols that say why in the WebSocket close frame.
Everything else is here, once, for every door:

- the `Session` (engine slot, STT stream, LLM provider, scheduler, event log);
- budgets (`RateLimiter`): a client over its message or byte rate is told and ended,
  and the reader yields to the loop every few messages, so no flood delays a frame;
- audio intake in whole 80 ms frames: a client sending one sample a message costs one
  hand-off (and one event) a frame, not a message;
- idle time measured on audio alone (a client that only pings is idle);
- the outbox (`kamevoice.server.outbox`): a client that stops reading is ended once its
  oldest queued audio is `max_send_delay_s` old, events are dropped before that;
- how it ended (`Ending`): a reason that is logged, written to the event log
  (`session.end`), counted (`EndCause`) and told to the client when its socket works.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import socket
import struct
import time
from abc import ABC, abstractmethod
from collections.abc import Callable
from dataclasses import dataclass

import numpy as np
from aiohttp import WSCloseCode, web

from kamevoice.errors import KameVoiceError
from kamevoice.runtime.clock import FRAME_SAMPLES, FRAME_SECONDS
from kamevoice.runtime.messages import EndCause
from kamevoice.runtime.session import Session, SessionOutput
from kamevoice.server.limits import LimitSettings, RateLimiter
from kamevoice.server.observe import ServerMetrics
from kamevoice.server.outbox import Outbox

log = logging.getLogger(__name__)

# User audio queued ahead of the engine before the client counts as flooding (seconds).
MAX_AUDIO_BACKLOG_S = 30.0
# Decoded audio allowed from one message (seconds): a single Ogg page or media chunk holds far less.
MAX_AUDIO_PER_MESSAGE_S = 5.0
# How long a new conversation may wait for its engine slot.
JOIN_TIMEOUT_S = 15.0
# How often the join is polled (the engine sets a thread event; polling keeps the loop free).
JOIN_POLL_S = 0.005
# How often the watchdog checks idle time and the outbox's delay (seconds).
WATCH_S = 0.25
# How long the farewell may take to reach the client before the socket is closed (seconds).
FAREWELL_S = 2.0
# The longest reason a WebSocket close frame carries (RFC 6455: 125 bytes of payload, 2 of them the code).
MAX_CLOSE_REASON_BYTES = 123


@dataclass(frozen=True)
class Ending:
    """How a conversation ended: a readable reason, its kind, and whether to tell the client."""

    reason: str
    cause: EndCause
    tell_client: bool = True


class BadRequest(ValueError):
    """A door refuses a request before the upgrade (a bad query): HTTP 400 with `why` and the text."""

    def __init__(self, why: str, message: str):
        super().__init__(message)
        self.why = why


class ConversationEnded(Exception):
    """Raised inside a door's reader to end the conversation."""

    def __init__(self, reason: str, cause: EndCause, tell_client: bool = True):
        super().__init__(reason)
        self.ending = Ending(reason, cause, tell_client)


@dataclass(frozen=True)
class ConversationParts:
    """What the server gives every door for one conversation."""

    ws: web.WebSocketResponse
    make_session: Callable[[Callable[[SessionOutput], None]], Session]  # called with the output callback
    sample_rate: int  # of the codec: the audio every door hands the session
    name: str  # for logs
    limits: LimitSettings
    metrics: ServerMetrics | None = None
    idle_timeout_s: float | None = None
    transport: asyncio.BaseTransport | None = None  # the connection's socket (aborted if unreachable)


# Endings after which the client cannot be reached (it stopped reading, or missed the heartbeat):
# the socket is reset, so its unsent buffers are freed at once rather than held for a close frame
# that can never be delivered.
UNREACHABLE = frozenset({EndCause.SLOW_CLIENT, EndCause.CONNECTION_LOST})


def _reset(transport: asyncio.BaseTransport) -> None:
    """Close with a TCP reset: the kernel drops what it still holds for the peer (a peer that does
    not read would otherwise keep the socket and its send buffer alive for minutes)."""
    sock = transport.get_extra_info("socket")
    if sock is not None:
        with contextlib.suppress(OSError):
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
    transport.abort()


class Conversation(ABC):
    """The link between one WebSocket and one `Session` (see module doc)."""

    def __init__(self, parts: ConversationParts):
        make_session, limits = parts.make_session, parts.limits
        self.ws = parts.ws
        self.name = parts.name
        self.limits = limits
        self.metrics = parts.metrics
        self.idle_timeout_s = parts.idle_timeout_s
        self.sample_rate = parts.sample_rate
        self.transport = parts.transport
        self.outbox = Outbox(limits.max_send_delay_s, limits.max_queued_events)
        self.budget = RateLimiter(limits)
        self._ended: asyncio.Future[Ending] = asyncio.get_running_loop().create_future()
        self._pending: list[np.ndarray] = []  # decoded audio not yet a whole frame
        self._pending_samples = 0
        self._messages = 0
        self._last_audio = time.monotonic()
        self.session = make_session(self._output)
        self.audio_in_s = 0.0
        self.reason = ""

    # -- what a door supplies ----------------------------------------------------------------------

    def greeting(self) -> bytes | str | None:
        """The first message once the session has its engine slot (None: none)."""
        return None

    @abstractmethod
    async def read(self) -> Ending:
        """Read client messages until the client closes (return how) or misbehaves (raise
        `ConversationEnded`); call `accept(size)` for each message and `push_audio` for audio."""

    @abstractmethod
    def on_output(self, out: SessionOutput) -> None:
        """Encode one session output into `self.outbox` (never await)."""

    def farewell(self, ending: Ending) -> bytes | str | None:
        """The last message when the client is told why it ended (None: just close)."""
        return None

    def close_code(self, ending: Ending) -> int:
        """The WebSocket close code (the close frame's reason is `ending.reason` when the client is
        told); normal closure unless a door's protocol says why in the close frame."""
        return WSCloseCode.OK

    # -- what a door calls ---------------------------------------------------------------------------

    async def accept(self, size: int) -> None:
        """Charge one client message of `size` bytes; yields to the loop every few messages."""
        over = self.budget.over(size)
        if over is not None:
            raise ConversationEnded(f"flood: {over}", EndCause.FLOOD)
        self._messages += 1
        if self._messages % self.limits.yield_every_messages == 0:
            await asyncio.sleep(0)  # let the other conversations' frames and the health check run

    async def push_audio(self, pcm: np.ndarray) -> None:
        """Decoded user audio (float32 mono at the codec's rate); handed on in whole frames."""
        if pcm.ndim != 1:
            raise ConversationEnded(
                f"bad audio: expected mono samples, got shape {pcm.shape}", EndCause.BAD_AUDIO
            )
        if len(pcm) > MAX_AUDIO_PER_MESSAGE_S * self.sample_rate:
            raise ConversationEnded(
                f"bad audio: {len(pcm) / self.sample_rate:.1f} s in one message", EndCause.BAD_AUDIO
            )
        if not len(pcm):
            return
        self._last_audio = time.monotonic()
        self.audio_in_s += len(pcm) / self.sample_rate
        backlog = self.audio_in_s - self.session.frames * FRAME_SECONDS
        if backlog > MAX_AUDIO_BACKLOG_S:
            raise ConversationEnded(f"audio flood: {backlog:.1f} s queued ahead of the model", EndCause.FLOOD)
        self._pending.append(pcm)
        self._pending_samples += len(pcm)
        if self._pending_samples < FRAME_SAMPLES:
            return
        data = np.concatenate(self._pending)
        whole = len(data) // FRAME_SAMPLES * FRAME_SAMPLES
        self._pending = [data[whole:]] if whole < len(data) else []
        self._pending_samples = len(data) - whole
        if self.metrics is not None:
            self.metrics.frames_in.inc(whole / FRAME_SAMPLES)
        try:
            await self.session.push_audio(data[:whole])
        except KameVoiceError as exc:
            raise ConversationEnded(f"bad audio: {exc}", EndCause.BAD_AUDIO) from None

    def socket_error(self) -> Ending:
        """How the conversation ended when the socket reported an error (call on `WSMsgType.ERROR`)."""
        exc = self.ws.exception()
        if getattr(exc, "code", None) == WSCloseCode.MESSAGE_TOO_BIG:  # aiohttp closed with 1009
            return Ending(f"message too big: {exc}", EndCause.TOO_BIG, False)
        return Ending(f"connection error: {type(exc).__name__}", EndCause.CONNECTION_LOST, False)

    def socket_closed(self) -> Ending:
        """How the conversation ended when the client's close frame (or its absence) ended the loop."""
        code = self.ws.close_code
        if code is not None and code not in (WSCloseCode.OK, WSCloseCode.GOING_AWAY):
            # 1009: message too big (aiohttp closes on its own);
            # 1006: the peer vanished or missed the heartbeat.
            if code == WSCloseCode.MESSAGE_TOO_BIG:
                return Ending(f"message too big (close code {code})", EndCause.TOO_BIG, False)
            why = "connection lost" if code == WSCloseCode.ABNORMAL_CLOSURE else "closed abnormally"
            return Ending(f"{why} (close code {code})", EndCause.CONNECTION_LOST, False)
        return Ending("client closed", EndCause.CLIENT_CLOSED, False)

    def end(self, reason: str, cause: EndCause, tell_client: bool = True) -> None:
        """End the conversation from outside the reader (engine failure, shutdown, slow client)."""
        if not self._ended.done():
            self._ended.set_result(Ending(reason, cause, tell_client))

    # -- the whole conversation --------------------------------------------------------------------

    async def run(self, engine_error: Callable[[], BaseException | None]) -> str:
        """Serve the conversation until it ends; returns the reason it ended."""
        sender = asyncio.create_task(self._sender(), name=f"{self.name}-send")
        watchdog = asyncio.create_task(self._watch(), name=f"{self.name}-watch")
        reader = None
        ending = Ending("client closed", EndCause.CLIENT_CLOSED, False)
        try:
            await self.session.start()
            await self._wait_joined(engine_error)
            if (hello := self.greeting()) is not None:
                self.outbox.put(hello)
            reader = asyncio.create_task(self.read(), name=f"{self.name}-read")
            done, _ = await asyncio.wait({reader, self._ended, sender}, return_when=asyncio.FIRST_COMPLETED)
            if self._ended in done:
                ending = self._ended.result()
            elif reader in done:
                ending = self._reader_outcome(reader)
            else:
                ending = Ending("send failed: connection lost", EndCause.CONNECTION_LOST, False)
        except ConversationEnded as exc:
            ending = exc.ending
        except asyncio.CancelledError:
            ending = Ending("server shutting down", EndCause.SHUTDOWN)
            raise  # after the `finally` below has said goodbye
        except Exception as exc:  # a bug in this conversation must not reach the others
            log.exception("%s: unexpected failure", self.name)
            ending = Ending(f"internal error: {type(exc).__name__}", EndCause.INTERNAL)
        finally:
            watchdog.cancel()
            if reader is not None and not reader.done():
                reader.cancel()
                with contextlib.suppress(asyncio.CancelledError, Exception):
                    await reader
            self.reason = ending.reason
            await self._finish(ending, sender)
        return ending.reason

    async def _finish(self, ending: Ending, sender: asyncio.Task) -> None:
        level = logging.INFO if ending.cause is EndCause.CLIENT_CLOSED else logging.WARNING
        log.log(level, "%s ended: %s", self.name, ending.reason)
        with contextlib.suppress(Exception):
            await self.session.close(ending.reason, ending.cause)
        if ending.tell_client and not self.ws.closed and (bye := self.farewell(ending)) is not None:
            self.outbox.put(bye)
        self.outbox.close()
        with contextlib.suppress(TimeoutError, asyncio.CancelledError, Exception):
            await asyncio.wait_for(sender, timeout=FAREWELL_S)
        sender.cancel()
        told = ending.tell_client and not self.ws.closed
        reason = _clip_utf8(ending.reason, MAX_CLOSE_REASON_BYTES) if told else b""
        if ending.cause in UNREACHABLE and self.transport is not None:
            _reset(self.transport)
            return
        with contextlib.suppress(Exception):
            await self.ws.close(code=self.close_code(ending) if told else WSCloseCode.OK, message=reason)

    async def _wait_joined(self, engine_error: Callable[[], BaseException | None]) -> None:
        loop = asyncio.get_running_loop()
        deadline = loop.time() + JOIN_TIMEOUT_S
        while not self.session.joined:
            if engine_error() is not None:
                raise ConversationEnded("engine failed", EndCause.ENGINE)
            if loop.time() > deadline:
                raise ConversationEnded("engine slot not granted in time", EndCause.ENGINE)
            await asyncio.sleep(JOIN_POLL_S)

    @staticmethod
    def _reader_outcome(reader: asyncio.Task) -> Ending:
        exc = reader.exception()
        if exc is None:
            return reader.result()
        if isinstance(exc, ConversationEnded):
            return exc.ending
        log.error("reader failed: %s: %s", type(exc).__name__, exc)
        return Ending(f"internal error: {type(exc).__name__}", EndCause.INTERNAL)

    def _output(self, out: SessionOutput) -> None:
        if self._ended.done():
            return
        self.on_output(out)
        if self.outbox.stalled:
            self._stalled()

    def _stalled(self) -> None:
        late = self.outbox.late_s()
        self.end(
            f"client too slow: stopped reading ({late:.1f} s behind)", EndCause.SLOW_CLIENT, tell_client=False
        )

    async def _watch(self) -> None:
        """Idle time on audio, and a client that stopped reading while nothing new was queued."""
        while True:
            await asyncio.sleep(WATCH_S)
            if self.outbox.stalled:
                self._stalled()
            idle = time.monotonic() - self._last_audio
            if self.idle_timeout_s and idle > self.idle_timeout_s:
                self.end(f"idle: no audio for {self.idle_timeout_s:g} s", EndCause.IDLE)

    async def _sender(self) -> None:
        while True:
            message = await self.outbox.get()
            if message is None or self.ws.closed:
                return
            try:
                if isinstance(message, str):
                    await self.ws.send_str(message)
                else:
                    await self.ws.send_bytes(message)
            except (ConnectionError, RuntimeError) as exc:
                self.end(f"send failed: {type(exc).__name__}", EndCause.CONNECTION_LOST, tell_client=False)
                return


def _clip_utf8(text: str, limit: int) -> bytes:
    """`text` as UTF-8 in at most `limit` bytes, never cutting a character in two."""
    return text.encode("utf-8")[:limit].decode("utf-8", errors="ignore").encode("utf-8")


def connection_name(counter: int, peer: object) -> str:
    """A short name for logs: session number and peer address."""
    return f"session-{counter}@{peer}"
