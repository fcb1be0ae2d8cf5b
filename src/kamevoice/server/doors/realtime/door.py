"""The Realtime door: OpenAI's Realtime API over a WebSocket, into a `Conversation`.

Client events (JSON text frames) are decoded into user audio and control; what the session
produces becomes Realtime server events. `responses.py` turns the front-end's stretches of
speech into responses, `turns.py` keeps the user's side (VAD, commits, transcripts),
`config.py` the session's configuration, `dialect.py` the GA / beta differences, `audio.py`
the wire's audio formats, `wire.py` errors and ids. Limits, intake, idle time and the outbox
are the `Conversation`'s; admission is the server's.

Client events honoured: `session.update`, `input_audio_buffer.append` / `.commit` / `.clear`,
`response.create`, `response.cancel`, `conversation.item.truncate`. The other API client events
get an `unsupported_event` error, an unknown type `unknown_event_type`; every error is one
`error` event to that client, and the conversation goes on. Only an over-budget client (message
or byte rate, audio flooding ahead of the model), a message over the socket's hard limit, or a
client that stopped reading is ended, as at every door.

Silence. `response.cancel` (and `conversation.item.truncate` of the reply under way, and with
`interrupt_response` the user's speech) silences the front-end from its next step
(`Session.set_silent`), takes the reply's queued audio back from the outbox and ends the
response as cancelled; the front-end stays silent until the user has spoken again
(`speech_stopped`, or a commit) or the client asks for a response. With turn detection off, or
`create_response: false`, the front-end speaks only inside responses the client asked for.

kamevoice's own events (`kamevoice.event`: the session's client events, oracle and latency among
them; `kamevoice.latency`: each reply's onset after the user stopped) are sent only when the
client asks (`?kamevoice_events=1`, or `"kamevoice": {"events": true}` in `session.update`):
strict clients fail on event types outside the API.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from typing import Any

from aiohttp import WSCloseCode, WSMsgType

from kamevoice.runtime.clock import FRAME_SAMPLES, FRAME_SECONDS
from kamevoice.runtime.events import Event
from kamevoice.runtime.messages import CLIENT_KINDS, EndCause, EventKind, spec
from kamevoice.runtime.session import OutputKind, SessionOutput
from kamevoice.server.conversation import Conversation, ConversationEnded, ConversationParts, Ending
from kamevoice.server.doors.moshi import NEWEST_WINS
from kamevoice.server.doors.realtime.audio import AudioIn, AudioOut
from kamevoice.server.doors.realtime.config import DEFAULT_MODEL, RealtimeConfig, apply_update, session_object
from kamevoice.server.doors.realtime.dialect import BETA, GA
from kamevoice.server.doors.realtime.responses import Responses
from kamevoice.server.doors.realtime.turns import UserTurns
from kamevoice.server.doors.realtime.wire import (
    CLIENT_EVENTS,
    ErrorCode,
    ErrorType,
    Ids,
    ItemLog,
    RealtimeError,
    client_event_id,
    dumps,
    parse_client_event,
)

log = logging.getLogger(__name__)

# Audio handed to the session at a time (seconds): an `append` may carry a whole recording,
# while a conversation takes at most `MAX_AUDIO_PER_MESSAGE_S` from one message.
PUSH_CHUNK_S = 1.0
# The default largest event (characters of JSON); the server passes half its socket limit, so
# that a message between the two is answered with an error instead of closing the socket.
DEFAULT_MAX_EVENT_BYTES = 512 * 1024
# Endings the client caused: their farewell is an `invalid_request_error`, the others a `server_error`.
CLIENT_CAUSES = frozenset(
    {
        EndCause.PROTOCOL,
        EndCause.BAD_AUDIO,
        EndCause.TOO_BIG,
        EndCause.IDLE,
        EndCause.FLOOD,
        EndCause.SLOW_CLIENT,
    }
)


@dataclass(frozen=True)
class RealtimeOptions:
    """How one Realtime connection was opened (query and headers, see `door_for`)."""

    beta: bool = False  # `OpenAI-Beta: realtime=v1`: the beta API's event names and shapes
    model: str = DEFAULT_MODEL  # `?model=`: reported in the session, nothing else
    kamevoice_events: bool = False  # `?kamevoice_events=1`: kamevoice's own events as well
    max_event_bytes: int = DEFAULT_MAX_EVENT_BYTES  # larger events get `message_too_large`


class RealtimeDoor(Conversation):
    """One conversation in the Realtime API (see module doc)."""

    def __init__(
        self,
        parts: ConversationParts,
        *,
        options: RealtimeOptions = RealtimeOptions(),
    ):
        self.options = options
        self.dialect = BETA if options.beta else GA
        self.ids = Ids()
        self.items = ItemLog()
        self.session_id = self.ids.new("sess")
        self.responses = Responses(self._send, self.ids, self.items, self.dialect)
        self.turns = UserTurns(self._send, self.ids, self.items, self.dialect, parts.sample_rate)
        self.errors_sent = 0
        self._held = False  # silenced after a cancel until the user speaks again
        self._audio_frame = 0  # the newest model audio frame out
        super().__init__(parts)
        self.audio_in = AudioIn(RealtimeConfig().input_format, parts.sample_rate)
        self.audio_out = AudioOut(RealtimeConfig().output_format, parts.sample_rate)
        self.config = RealtimeConfig(
            model=options.model,
            instructions=self.session.instructions or "",
            kamevoice_events=options.kamevoice_events,
        )
        self._configure(self.config)
        self.session.events.subscribe(self._on_event)
        self._handlers = {
            "session.update": self._session_update,
            "input_audio_buffer.append": self._append,
            "input_audio_buffer.commit": self._commit,
            "input_audio_buffer.clear": self._clear,
            "response.create": self._response_create,
            "response.cancel": self._response_cancel,
            "conversation.item.truncate": self._truncate,
        }

    # -- the conversation's ends ---------------------------------------------------------------------

    def greeting(self) -> str:
        self._apply_silence()  # the slot exists now: a session without turn detection starts silent
        return self._event({"type": "session.created", "session": self._session_object()})

    def farewell(self, ending: Ending) -> str:
        kind = ErrorType.INVALID_REQUEST if ending.cause in CLIENT_CAUSES else ErrorType.SERVER
        error = RealtimeError(ErrorCode.SESSION_ENDED, f"the session ended: {ending.reason}", kind=kind)
        return self._event({"type": "error", "error": error.body()})

    # -- client -> session -----------------------------------------------------------------------------

    async def read(self) -> Ending:
        while True:
            msg = await self.ws.receive()
            if msg.type in (WSMsgType.CLOSE, WSMsgType.CLOSING, WSMsgType.CLOSED):
                break
            if msg.type == WSMsgType.TEXT:
                await self.accept(len(msg.data))
                await self._on_message(msg.data)
            elif msg.type == WSMsgType.BINARY:
                await self.accept(len(msg.data))
                self._error(
                    RealtimeError(
                        ErrorCode.INVALID_EVENT, "binary frames are not part of the API: send JSON text"
                    )
                )
            elif msg.type == WSMsgType.ERROR:
                exc = self.ws.exception()
                if getattr(exc, "code", None) == WSCloseCode.MESSAGE_TOO_BIG:
                    return Ending(f"message too big: {exc}", EndCause.TOO_BIG, False)
                return Ending(f"connection error: {type(exc).__name__}", EndCause.CONNECTION_LOST, False)
        code = self.ws.close_code
        if code == WSCloseCode.MESSAGE_TOO_BIG:
            return Ending(f"message too big (close code {code})", EndCause.TOO_BIG, False)
        if code is not None and code not in (WSCloseCode.OK, WSCloseCode.GOING_AWAY):
            return Ending(f"closed abnormally (close code {code})", EndCause.CONNECTION_LOST, False)
        return Ending("client closed", EndCause.CLIENT_CLOSED, False)

    async def _on_message(self, data: str) -> None:
        event: dict[str, Any] | None = None
        try:
            if len(data) > self.options.max_event_bytes:
                raise RealtimeError(
                    ErrorCode.MESSAGE_TOO_LARGE,
                    f"an event may be at most {self.options.max_event_bytes} bytes, this one is {len(data)}: "
                    "send audio in smaller appends",
                )
            event = parse_client_event(data)
            kind = event["type"]
            handler = self._handlers.get(kind)
            if handler is None:
                if kind in CLIENT_EVENTS:
                    raise RealtimeError(
                        ErrorCode.UNSUPPORTED_EVENT, f"'{kind}' is not offered by this server", "type"
                    )
                raise RealtimeError(
                    ErrorCode.UNKNOWN_EVENT_TYPE, f"unknown event type {kind[:100]!r}", "type"
                )
            await handler(event)
        except RealtimeError as err:
            self._error(err, client_event_id(event))
        except ConversationEnded:
            raise
        except Exception:  # a bug answering one event: that client is told, the conversation goes on
            log.exception("%s: failed to handle an event", self.name)
            error = RealtimeError(
                ErrorCode.INTERNAL, "the server failed to handle this event", kind=ErrorType.SERVER
            )
            self._error(error, client_event_id(event))

    def _error(self, err: RealtimeError, client_event: str | None = None) -> None:
        self.errors_sent += 1
        log.info("%s: %s (%s)", self.name, err.code.value, err.message)
        self._send({"type": "error", "error": err.body(client_event)})

    async def _session_update(self, event: dict[str, Any]) -> None:
        if "session" not in event:
            raise RealtimeError(ErrorCode.MISSING_PARAMETER, "session.update needs a 'session'", "session")
        self._configure(apply_update(self.config, event["session"], self.dialect.beta))
        self._send({"type": "session.updated", "session": self._session_object()})

    def _configure(self, new: RealtimeConfig) -> None:
        old = self.config
        if new.input_format != self.audio_in.format:
            self.audio_in = AudioIn(new.input_format, self.sample_rate)
        if new.output_format != self.audio_out.format:
            self.audio_out = AudioOut(new.output_format, self.sample_rate)
        if new.instructions != old.instructions:
            self.session.set_instructions(new.instructions)
        self.turns.configure(new.turn_detection, transcribe=new.transcription is not None)
        self.responses.voice, self.responses.audio_format = new.voice, new.output_format
        self.config = new
        self._apply_silence()

    async def _append(self, event: dict[str, Any]) -> None:
        audio = event.get("audio")
        if not isinstance(audio, str):
            raise RealtimeError(
                ErrorCode.MISSING_PARAMETER, "input_audio_buffer.append needs base64 'audio'", "audio"
            )
        pcm = self.audio_in.decode(audio)
        step = round(PUSH_CHUNK_S * self.sample_rate)
        for start in range(0, len(pcm), step):
            chunk = pcm[start : start + step]
            await self.push_audio(chunk)
            self.responses.user_frames += len(chunk) / FRAME_SAMPLES
            for seen in self.turns.hear(chunk):
                if seen == "started":
                    self._speech_started()
                else:
                    self._release()

    async def _commit(self, event: dict[str, Any]) -> None:
        self.turns.commit()
        self._release()

    async def _clear(self, event: dict[str, Any]) -> None:
        self.turns.clear()

    async def _response_create(self, event: dict[str, Any]) -> None:
        params = event.get("response") or {}
        if not isinstance(params, dict):
            raise RealtimeError(ErrorCode.INVALID_VALUE, "'response' must be an object", "response")
        metadata = params.get("metadata")
        if metadata is not None and not isinstance(metadata, dict):
            raise RealtimeError(
                ErrorCode.INVALID_VALUE, "'response.metadata' must be an object", "response.metadata"
            )
        if self.responses.current is not None:
            return  # a reply is under way: it is the answer (its events carry on)
        self._held = False
        self.audio_out.reset()
        self.responses.open(self._audio_frame, requested=True, metadata=metadata)
        self._apply_silence()

    async def _response_cancel(self, event: dict[str, Any]) -> None:
        wanted = event.get("response_id")
        current = self.responses.current
        if current is None or (wanted is not None and wanted != current.response_id):
            which = f"response {str(wanted)[:100]!r} is" if wanted is not None else "no response is"
            raise RealtimeError(
                ErrorCode.CANCEL_NOT_ACTIVE,
                f"Cancellation failed: {which} in progress",
                "response_id" if wanted is not None else None,
            )
        self._cancel("client_cancelled")

    async def _truncate(self, event: dict[str, Any]) -> None:
        item_id, end_ms = event.get("item_id"), event.get("audio_end_ms")
        index = event.get("content_index", 0)
        if not isinstance(item_id, str):
            raise RealtimeError(ErrorCode.MISSING_PARAMETER, "truncate needs an 'item_id'", "item_id")
        if isinstance(end_ms, bool) or not isinstance(end_ms, int) or end_ms < 0:
            raise RealtimeError(
                ErrorCode.INVALID_VALUE, "'audio_end_ms' must be an integer >= 0", "audio_end_ms"
            )
        if index != 0:
            raise RealtimeError(
                ErrorCode.INVALID_VALUE, "an item has one content part: 'content_index' is 0", "content_index"
            )
        record = self.items.get(item_id)
        if record is None:
            raise RealtimeError(
                ErrorCode.ITEM_NOT_FOUND, f"no item {item_id[:100]!r} in the conversation", "item_id"
            )
        if record.role != "assistant":
            raise RealtimeError(
                ErrorCode.INVALID_VALUE, "only the assistant's audio can be truncated", "item_id"
            )
        if end_ms > record.audio_ms:
            raise RealtimeError(
                ErrorCode.INVALID_VALUE,
                f"audio_end_ms {end_ms} is beyond the item's {record.audio_ms} ms of audio",
                "audio_end_ms",
            )
        current = self.responses.current
        if current is not None and current.item_id == item_id:
            self._cancel("client_cancelled")
        record.audio_ms = end_ms
        self._send(
            {
                "type": "conversation.item.truncated",
                "item_id": item_id,
                "content_index": 0,
                "audio_end_ms": end_ms,
            }
        )

    # -- silence ----------------------------------------------------------------------------------------

    def _cancel(self, reason: str) -> None:
        """Silence the front-end now, take the reply's queued audio back, end it as cancelled."""
        reply = self.responses.current
        assert reply is not None
        self._held = True
        self._apply_silence()
        dropped = len(self.outbox.discard(reply.response_id))
        self.responses.close("cancelled", reason)
        log.info(
            "%s: %s cancelled (%s), %d queued audio deltas dropped",
            self.name,
            reply.response_id,
            reason,
            dropped,
        )

    def _speech_started(self) -> None:
        td = self.config.turn_detection
        if td is not None and td.interrupt_response and self.responses.current is not None:
            self._cancel("turn_detected")

    def _release(self) -> None:
        """The user has said something new: a cancelled front-end may speak again."""
        if self._held:
            self._held = False
            self._apply_silence()

    def _apply_silence(self) -> None:
        td = self.config.turn_detection
        on_its_own = td is not None and td.create_response  # else: only inside responses asked for
        current = self.responses.current
        silent = self._held or (not on_its_own and not (current is not None and current.requested))
        if silent != self.session.silent:
            self.session.set_silent(silent)

    # -- session -> client --------------------------------------------------------------------------------

    def on_output(self, out: SessionOutput) -> None:
        if out.kind is OutputKind.AUDIO and out.pcm is not None:
            self._audio_frame = out.frame
            if self.responses.tick(out.frame) is not None:
                self._apply_silence()
            if self.responses.current is not None:
                self.responses.audio(self.audio_out.encode(out.pcm))
                if self.metrics is not None:
                    self.metrics.frames_out.inc()
        elif out.kind is OutputKind.TEXT:
            if self.session.silent:
                return  # a piece drawn before the silence took hold
            if self.responses.current is None:
                self._open_reply(out.frame)
            self.responses.text(out.text, out.frame)

    def _open_reply(self, frame: int) -> None:
        """The front-end starts speaking of its own accord at step `frame`."""
        self.audio_out.reset()
        reply = self.responses.open(frame)
        reply.last_speech_frame = frame
        stop = self.turns.last_stop_s
        if self.config.kamevoice_events and stop is not None:
            onset = frame * FRAME_SECONDS
            self._send_extra(
                {
                    "type": "kamevoice.latency",
                    "response_id": reply.response_id,
                    "onset_s": round(onset, 3),
                    "speech_stopped_s": round(stop, 3),
                    "latency_s": round(onset - stop, 3),
                }
            )

    def _on_event(self, event: Event) -> None:
        """Every event of the session's log (its STT, scheduler, front-end), as it is emitted."""
        if self.session.closed:
            return
        try:
            self._follow(event)
        except Exception:  # never into the emitter (the frame callback, the STT reader)
            log.exception("%s: failed to follow a %s event", self.name, event["kind"])

    def _follow(self, event: Event) -> None:
        kind = event["kind"]
        if kind == EventKind.REPLY_ONSET:
            if self.responses.current is None and not self.session.silent:
                self._open_reply(event["frame"])
        elif kind == EventKind.STT_PARTIAL:
            self.turns.on_partial(event.get("text", ""))
        elif kind == EventKind.STT_FINAL:
            self.turns.on_final(event.get("text", ""))
        elif kind == EventKind.ORACLE_PIECE and not event.get("start"):
            self.responses.oracle_pieces += 1
        if self.config.kamevoice_events and kind in CLIENT_KINDS:
            self._send_extra(
                {"type": "kamevoice.event", "event": spec(kind).for_client(event)},
                key=kind if kind in NEWEST_WINS else None,
            )

    # -- sending --------------------------------------------------------------------------------------------

    def _event(self, event: dict[str, Any]) -> str:
        return dumps({"event_id": self.ids.new("event"), **event})

    def _send(self, event: dict[str, Any], tag: str | None = None) -> None:
        """An API event: never dropped (`tag`: the response whose audio a cancel takes back)."""
        self.outbox.put(self._event(event), tag=tag)

    def _send_extra(self, event: dict[str, Any], key: str | None = None) -> None:
        """One of kamevoice's own events: dropped first for a client that reads slowly."""
        self.outbox.put_event(self._event(event), key=key)

    def _session_object(self) -> dict[str, Any]:
        return session_object(self.config, self.session_id, self.dialect.beta)
