"""The Twilio door: a phone call through Twilio Media Streams at `/twilio`, into a `Conversation`.

Point a number's voice webhook at TwiML with a bidirectional stream (docs/doors/twilio.md):

    <Response><Connect><Stream url="wss://HOST/twilio"/></Connect></Response>

The call goes `connected` -> `start` -> `media`... -> `stop` (`twilio_wire` has the
messages). The caller's mu-law audio is decoded, resampled to the codec's 24 kHz and
handed to the session like any door's audio; every 80 ms frame of model audio goes
back as one `media` message followed by a `mark` named after its frame, which Twilio
echoes once the caller has heard it. So the door knows what is queued (our outbox)
and what is sent but unplayed (marks not yet echoed), and whether any of it is
speech. When the caller starts talking over such speech (`barge_in.SpeechOnset`),
the door takes the queued audio back from the outbox and sends `clear`, so the
caller stops hearing what the model said before it heard them; the model, full
duplex, reacts to the caller by itself. Text pieces and JSON events have no place in
the protocol and are not sent.

Twilio has no error message: a call that breaks the protocol (malformed JSON, an
unknown event, bad base64, another media format, a message over the size limit,
media before `start`) is ended with a WebSocket close code and the reason in the close
frame, and logged. With a server token, `start` must carry it as the custom
parameter `token` (Twilio cannot send headers, nor a query string on a stream URL).
Log lines name the call and stream ids, the event log gets `call.start` with them,
and its file is renamed to carry them.
"""

from __future__ import annotations

import asyncio
import functools
import hmac
import logging
from collections import deque
from collections.abc import Callable, Mapping

from aiohttp import WSCloseCode, WSMsgType

from kamevoice.runtime.messages import EndCause, EventKind
from kamevoice.runtime.session import OutputKind, SessionOutput
from kamevoice.server.conversation import Conversation, ConversationEnded, ConversationParts, Ending
from kamevoice.server.doors.barge_in import SpeechOnset, is_speech
from kamevoice.server.doors.twilio_wire import (
    CALLER_TRACK,
    CallAudio,
    Start,
    WireError,
    clear_message,
    dtmf_digit,
    mark_message,
    mark_name,
    media_message,
    media_payload,
    parse,
    parse_start,
)

log = logging.getLogger(__name__)

# Outbox tags of the model's audio and of the marks after it: taken back on barge-in.
MEDIA_TAG = "media"
MARK_TAG = "mark"
# Twilio sends `connected` and `start` as soon as the socket opens; a client that has not sent
# `start` by then is not Twilio (and holds an engine slot while it waits).
START_TIMEOUT_S = 10.0
# Frames sent and not yet acknowledged that are remembered (30 s): Twilio echoes every mark, so only
# a client that never does reaches it, and it must not grow our memory.
MAX_UNPLAYED_FRAMES = 375
# How each way of ending reads in the close frame (RFC 6455 codes); the reason text goes with it.
CLOSE_CODES = {
    EndCause.PROTOCOL: WSCloseCode.POLICY_VIOLATION,
    EndCause.BAD_AUDIO: WSCloseCode.INVALID_TEXT,  # 1007: data inconsistent with the message type
    EndCause.TOO_BIG: WSCloseCode.MESSAGE_TOO_BIG,
    EndCause.FLOOD: WSCloseCode.POLICY_VIOLATION,
    EndCause.SHUTDOWN: WSCloseCode.GOING_AWAY,
    EndCause.ENGINE: WSCloseCode.INTERNAL_ERROR,
    EndCause.INTERNAL: WSCloseCode.INTERNAL_ERROR,
    EndCause.START_FAILED: WSCloseCode.INTERNAL_ERROR,
}


class TwilioDoor(Conversation):
    """One phone call in Twilio's Media Streams protocol (see module doc)."""

    def __init__(
        self,
        parts: ConversationParts,
        *,
        token: str | None = None,
    ):
        self.token = token
        self.audio = CallAudio(parts.sample_rate)
        self.onset = SpeechOnset(parts.sample_rate)
        self.call: Start | None = None
        self.played = 0  # frames the caller has heard (marks echoed)
        self.barge_ins = 0
        self._connected = False
        # [mark name, speech?] of each frame queued or sent and not yet heard, oldest first.
        self._unplayed: deque[list] = deque(maxlen=MAX_UNPLAYED_FRAMES)
        super().__init__(parts)

    def close_code(self, ending: Ending) -> int:
        return CLOSE_CODES.get(ending.cause, WSCloseCode.OK)

    # -- caller -> session ----------------------------------------------------------------------------

    async def read(self) -> Ending:
        loop = asyncio.get_running_loop()
        deadline = loop.time() + START_TIMEOUT_S
        while True:
            timeout = None if self.call is not None else max(0.0, deadline - loop.time())
            try:
                msg = await self.ws.receive(timeout=timeout)
            except TimeoutError:
                raise ConversationEnded(
                    f"protocol error: no start message within {START_TIMEOUT_S:g} s", EndCause.PROTOCOL
                ) from None
            if msg.type in (WSMsgType.CLOSE, WSMsgType.CLOSING, WSMsgType.CLOSED):
                break
            if msg.type == WSMsgType.ERROR:
                return self.socket_error()
            if msg.type == WSMsgType.BINARY:
                raise ConversationEnded(
                    "protocol error: binary frames are not part of Twilio's protocol", EndCause.PROTOCOL
                )
            if msg.type != WSMsgType.TEXT:
                continue
            await self.accept(len(msg.data))
            try:
                ended = await self._on_message(parse(msg.data))
            except WireError as exc:
                what = "bad audio" if exc.cause is EndCause.BAD_AUDIO else "protocol error"
                raise ConversationEnded(f"{what}: {exc}", exc.cause) from None
            if ended is not None:
                return ended
        return self.socket_closed()

    async def _on_message(self, message: dict) -> Ending | None:
        event = message["event"]
        if event == "connected":
            if self._connected or self.call is not None:
                raise WireError("connected: sent twice, or after start")
            self._connected = True
            return None
        if self.call is None:
            if event != "start":
                raise WireError(f"{event} before start")
            self._begin(parse_start(message))
            return None
        if event == "start":
            raise WireError("start: the stream has already started")
        sid = message.get("streamSid", self.call.stream_sid)
        if sid != self.call.stream_sid:
            raise WireError(f"{event}: for another stream ({str(sid)[:64]!r})")
        if event == "media":
            track, payload = media_payload(message)
            if track != CALLER_TRACK:
                return None  # what the call plays, in a unidirectional stream: never the model's input
            pcm = self.audio.decode(payload)
            if self.onset.feed(pcm) and self._speech_unplayed():
                self._barge_in()
            await self.push_audio(pcm)
        elif event == "mark":
            self._heard(mark_name(message))
        elif event == "dtmf":
            digit = dtmf_digit(message)
            self.session.events.emit(EventKind.CALL_DTMF, digit=digit)
            log.info("%s: key %s pressed", self.name, digit)
        elif event == "stop":
            return Ending("call ended (stop)", EndCause.CLIENT_CLOSED, False)
        return None

    def _begin(self, start: Start) -> None:
        if self.token is not None:
            given = start.custom_parameters.get("token", "")
            if not hmac.compare_digest(given.encode("utf-8"), self.token.encode("utf-8")):
                why = "unauthorized: the start message's 'token' parameter is missing or wrong"
                raise ConversationEnded(why, EndCause.PROTOCOL)
        self.call = start
        self.name = f"{self.name} call={start.call_sid} stream={start.stream_sid}"
        events = self.session.events
        events.emit(
            EventKind.CALL_START,
            door="twilio",
            call=start.call_sid,
            stream=start.stream_sid,
            account=start.account_sid,
            tracks=list(start.tracks),
            params={k: v for k, v in start.custom_parameters.items() if k != "token"},
        )
        if events.path is not None:
            path = events.path
            events.rename(f"{path.stem}-{start.call_sid}-{start.stream_sid}{path.suffix}")
        log.info("%s: call started (tracks: %s)", self.name, ", ".join(start.tracks))

    # -- session -> caller ------------------------------------------------------------------------------

    def on_output(self, out: SessionOutput) -> None:
        if out.kind is not OutputKind.AUDIO or out.pcm is None or self.call is None:
            return  # no text or event channel in the protocol; no stream to address before `start`
        payload = self.audio.encode(out.pcm)
        if not payload:
            return
        name = str(out.frame)
        self.outbox.put(media_message(self.call.stream_sid, payload), tag=MEDIA_TAG)
        self.outbox.put(mark_message(self.call.stream_sid, name), tag=MARK_TAG)
        self._unplayed.append([name, is_speech(out.pcm)])
        if self.metrics is not None:
            self.metrics.frames_out.inc()

    def _heard(self, name: str) -> None:
        """Twilio echoed a mark: the caller has heard every frame up to it (or it was cleared)."""
        for i, (sent, _) in enumerate(self._unplayed):
            if sent == name:
                for _ in range(i + 1):
                    self._unplayed.popleft()
                self.played += i + 1
                return
        log.debug("%s: mark %r is not one pending", self.name, name[:64])

    def _speech_unplayed(self) -> bool:
        return any(speech for _, speech in self._unplayed)

    def _barge_in(self) -> None:
        """The caller talks over queued or unplayed speech: take it back, tell Twilio to clear."""
        assert self.call is not None
        self.outbox.discard(MEDIA_TAG)
        dropped = len(self.outbox.discard(MARK_TAG))  # frames whose mark never left: never heard
        for _ in range(dropped):
            self._unplayed.pop()
        for entry in self._unplayed:
            entry[1] = False  # Twilio drops them too, and echoes their marks
        self.outbox.put(clear_message(self.call.stream_sid))
        self.barge_ins += 1
        self.session.events.emit(
            EventKind.CALL_BARGE_IN, dropped_frames=dropped, unplayed_frames=len(self._unplayed)
        )
        log.info("%s: barge-in: %d queued frames dropped, %d cleared at Twilio", self.name, dropped,
                 len(self._unplayed))  # fmt: skip


def door_for(query: Mapping[str, str], token: str | None) -> tuple[Callable[..., Conversation], bool]:
    """The Twilio door (Twilio's stream URLs carry no query; `token`: the server's, checked in
    `start`), and False: the protocol has no place for JSON events."""
    return functools.partial(TwilioDoor, token=token), False
