"""The Realtime door's replies: the front-end's stretches of speech as Realtime responses.

A full-duplex front-end speaks whenever it chooses; the Realtime API has the model answer in
*responses*. Each stretch of the front-end's speech becomes one: it opens when the front-end
starts a reply (the session's `frontend.reply_onset`, or a text piece while none is open), or
at once when the client asks (`response.create`); it carries the model's audio frames as audio
deltas and its inner monologue as transcript deltas; it closes once the model has been silent
for `END_SILENCE_S` (a reply the client asked for that never starts closes after
`REQUESTED_WAIT_S`), or when the client cancels it.

Opening sends `response.created`, `response.output_item.added`, the item's
`conversation.item.added` (GA) / `conversation.item.created` (beta) and
`response.content_part.added`; closing sends the audio's and transcript's `.done`,
`response.content_part.done`, `response.output_item.done`, `conversation.item.done` (GA) and
`response.done` with the status and the usage. Frames are counted on the model's own timeline
(its steps: a text piece at step s is said in audio frame s), so the timing does not depend on
how fast the client reads.

Usage, in the API's token fields: output audio tokens are the audio frames sent (80 ms each),
output text tokens the inner-monologue pieces; input audio tokens are the user's 80 ms frames
heard and input text tokens the oracle's pieces read since the previous response ended.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from kamevoice.runtime.clock import FRAME_SECONDS
from kamevoice.server.doors.realtime.audio import WireFormat
from kamevoice.server.doors.realtime.dialect import Dialect
from kamevoice.server.doors.realtime.wire import Ids, ItemLog

# A reply is over once the model has been silent this long (seconds of its own audio). Its words
# come as text pieces every 0.2-0.4 s while it speaks and the last word's audio outlasts its
# piece by up to half a second, so a shorter wait would split replies at every comma; a longer
# one keeps strict clients waiting for `response.done`.
END_SILENCE_S = 1.2
# A reply the client asked for waits this long for the model's first word before it completes
# empty: the front-end speaks when it has something to say (an oracle), typically within a
# second or two.
REQUESTED_WAIT_S = 3.0
END_SILENCE_FRAMES = round(END_SILENCE_S / FRAME_SECONDS)
REQUESTED_WAIT_FRAMES = round(REQUESTED_WAIT_S / FRAME_SECONDS)
FRAME_MS = round(FRAME_SECONDS * 1000)

# Send one server event: (event without its id, tag for `Outbox.discard`).
Send = Callable[..., None]


@dataclass
class Reply:
    """One response under way."""

    response_id: str
    item_id: str
    previous_item_id: str | None
    requested: bool  # the client asked for it (`response.create`)
    opened_frame: int
    last_speech_frame: int | None = None
    pieces: list[str] = field(default_factory=list)
    audio_frames: int = 0
    metadata: dict[str, Any] | None = None

    @property
    def transcript(self) -> str:
        return "".join(self.pieces)


class Responses:
    """The response lifecycle of one Realtime conversation (see module doc)."""

    def __init__(self, send: Send, ids: Ids, items: ItemLog, dialect: Dialect):
        self._send = send
        self.ids, self.items, self.dialect = ids, items, dialect
        self.current: Reply | None = None
        self.voice = ""
        self.audio_format = WireFormat.PCM16
        self.user_frames = 0  # heard since the previous response ended (usage)
        self.oracle_pieces = 0  # read since the previous response ended (usage)
        self.done: dict[str, int] = {}  # responses ended, by status

    def _response(self, reply: Reply, status: str, output: list, **extra: Any) -> dict[str, Any]:
        return self.dialect.response(
            reply.response_id,
            status,
            output,
            voice=self.voice,
            audio_format=self.audio_format,
            metadata=reply.metadata,
            **extra,
        )

    def _ids(self, reply: Reply) -> dict[str, Any]:
        return {
            "response_id": reply.response_id,
            "item_id": reply.item_id,
            "output_index": 0,
            "content_index": 0,
        }

    def open(self, frame: int, *, requested: bool = False, metadata: dict | None = None) -> Reply:
        """A new response from model frame `frame` on (there must be none under way)."""
        assert self.current is None, "a response is under way"
        item_id = self.ids.new("item")
        reply = Reply(
            self.ids.new("resp"),
            item_id,
            self.items.add(item_id, "assistant"),
            requested,
            frame,
            metadata=metadata,
        )
        self.current = reply
        d = self.dialect
        self._send({"type": "response.created", "response": self._response(reply, "in_progress", [])})
        item = d.item(reply.item_id, "assistant", "in_progress", [])
        self._send(
            {
                "type": "response.output_item.added",
                "response_id": reply.response_id,
                "output_index": 0,
                "item": item,
            }
        )
        self._send({"type": d.item_added, "previous_item_id": reply.previous_item_id, "item": item})
        ids = self._ids(reply)
        self._send(
            {"type": "response.content_part.added", **ids, "part": {"type": "audio", "transcript": ""}}
        )
        return reply

    def text(self, piece: str, frame: int) -> None:
        """A piece of the inner monologue said at model step `frame` (the reply must be open)."""
        reply = self.current
        assert reply is not None
        if not reply.pieces:
            piece = piece.lstrip()  # the transcript starts with its first word, not a space
        reply.last_speech_frame = frame
        if piece:
            reply.pieces.append(piece)
            self._send({"type": self.dialect.transcript_delta, **self._ids(reply), "delta": piece})

    def audio(self, delta: str) -> None:
        """One frame of model audio, encoded for the wire (the reply must be open)."""
        reply = self.current
        assert reply is not None
        reply.audio_frames += 1
        record = self.items.get(reply.item_id)
        if record is not None:
            record.audio_ms += FRAME_MS
        self._send(
            {"type": self.dialect.audio_delta, **self._ids(reply), "delta": delta}, tag=reply.response_id
        )

    def tick(self, frame: int) -> Reply | None:
        """Model audio frame `frame` is out: close the reply (returned) if the model has gone quiet."""
        reply = self.current
        if reply is None:
            return None
        if reply.last_speech_frame is None:
            over = reply.requested and frame - reply.opened_frame > REQUESTED_WAIT_FRAMES
        else:
            over = frame - reply.last_speech_frame > END_SILENCE_FRAMES
        return self.close() if over else None

    def close(self, status: str = "completed", reason: str | None = None) -> Reply:
        """End the reply under way: `completed`, or `cancelled` with the API's `reason`
        (`client_cancelled`, `turn_detected`)."""
        reply = self.current
        assert reply is not None
        self.current = None
        d, ids, transcript = self.dialect, self._ids(reply), reply.transcript
        self._send({"type": d.audio_done, **ids})
        self._send({"type": d.transcript_done, **ids, "transcript": transcript})
        part = {"type": "audio", "transcript": transcript}
        self._send({"type": "response.content_part.done", **ids, "part": part})
        item_status = "completed" if status == "completed" else "incomplete"
        item = d.item(reply.item_id, "assistant", item_status, [d.audio_content("assistant", transcript)])
        self._send(
            {
                "type": "response.output_item.done",
                "response_id": reply.response_id,
                "output_index": 0,
                "item": item,
            }
        )
        if d.item_done is not None:
            self._send({"type": d.item_done, "previous_item_id": reply.previous_item_id, "item": item})
        details = {"type": status, "reason": reason} if status != "completed" else None
        response = self._response(reply, status, [item], status_details=details, usage=self._usage(reply))
        self._send({"type": "response.done", "response": response})
        self.done[status] = self.done.get(status, 0) + 1
        self.user_frames = self.oracle_pieces = 0
        return reply

    def _usage(self, reply: Reply) -> dict[str, Any]:
        text_in, audio_in = self.oracle_pieces, self.user_frames
        text_out, audio_out = len(reply.pieces), reply.audio_frames
        return {
            "total_tokens": text_in + audio_in + text_out + audio_out,
            "input_tokens": text_in + audio_in,
            "output_tokens": text_out + audio_out,
            "input_token_details": {"text_tokens": text_in, "audio_tokens": audio_in, "cached_tokens": 0},
            "output_token_details": {"text_tokens": text_out, "audio_tokens": audio_out},
        }
