"""The user's side of a Realtime conversation: speech started and stopped, commits, transcripts.

The full-duplex front-end hears every sample as it arrives; the Realtime API speaks of an input
*buffer* that is committed into user items. The door keeps the API's bookkeeping on top:

- with turn detection on, its own VAD (`backend/stt/endpoint.py`'s `Endpointer`, WebRTC's VAD
  at 16 kHz, the STT's settings) runs on the user's audio: `input_audio_buffer.speech_started`
  when an utterance begins (its start less the prefix padding), `speech_stopped` after the
  silence, then the commit: `input_audio_buffer.committed` and the user item
  (`conversation.item.added` + `.done` in GA, `conversation.item.created` in beta);
- with turn detection off, the client commits (`input_audio_buffer.commit`; at least
  `MIN_COMMIT_S` of audio since the last commit, as the API asks);
- `input_audio_buffer.clear` forgets the uncommitted audio's length (the front-end has heard it:
  it listens all the time);
- the STT's transcripts (the session's `stt.partial` / `stt.final`) become the committed items'
  `conversation.item.input_audio_transcription.delta` / `.completed`, in order: the STT cuts
  utterances with its own endpointer, so a final completes the oldest committed item still
  waiting for one. Deltas carry the text added to the last partial (a partial that rewrites
  earlier words sends none; `completed` carries the whole transcript). Text heard before its
  item is committed waits for the commit, so every transcription event names a known item.
"""

from __future__ import annotations

from collections import deque
from collections.abc import Callable
from dataclasses import dataclass

import numpy as np

from kamevoice.audio import StreamResampler
from kamevoice.backend.stt.endpoint import Endpointer, SpeechEnd, SpeechStart
from kamevoice.backend.stt.settings import EndpointSettings
from kamevoice.server.doors.realtime.config import TurnDetection
from kamevoice.server.doors.realtime.dialect import Dialect
from kamevoice.server.doors.realtime.wire import ErrorCode, Ids, ItemLog, RealtimeError

# WebRTC's VAD runs at 8, 16, 32 or 48 kHz, not at the codec's 24 kHz.
VAD_RATE = 16_000
# The API refuses to commit less audio than this (seconds).
MIN_COMMIT_S = 0.1
# Committed items waiting for a final transcript; beyond this the oldest is completed with what
# it has (the STT merged two of the VAD's utterances into one, or heard nothing in one).
MAX_AWAITING = 8


@dataclass
class _Awaiting:
    """A committed user item waiting for its transcript."""

    item_id: str
    seconds: float  # its audio's length
    sent: str = ""  # transcript text already sent as deltas


class UserTurns:
    """The user's speech and transcripts as Realtime events (see module doc)."""

    def __init__(self, send: Callable[..., None], ids: Ids, items: ItemLog, dialect: Dialect, rate: int):
        self._send = send
        self.ids, self.items, self.dialect, self.rate = ids, items, dialect, rate
        self.transcribe = True
        self.heard_s = 0.0  # user audio heard in the session
        self.buffered_s = 0.0  # since the last commit or clear
        self.last_stop_s: float | None = None  # where the last utterance ended (session audio)
        self.speaking: str | None = None  # the item of the utterance in progress (VAD)
        self._speech_start_s = 0.0
        self._committed_early = False  # the client committed the utterance in progress
        self._vad: Endpointer | None = None
        self._vad_settings: EndpointSettings | None = None
        self._vad_offset_s = 0.0  # session audio heard before the VAD started
        self._resampler: StreamResampler | None = None
        self._awaiting: deque[_Awaiting] = deque()
        self._early_partial = ""  # partial text heard before its item was committed
        self._early_final = ""  # final text heard before its item was committed

    def configure(self, turn_detection: TurnDetection | None, transcribe: bool) -> None:
        """Apply the session's turn detection (None: the client commits) and transcription."""
        self.transcribe = transcribe
        settings = turn_detection.endpoint_settings() if turn_detection is not None else None
        if settings == self._vad_settings:
            return
        self._vad_settings = settings
        self._vad = Endpointer(settings, VAD_RATE) if settings is not None else None
        self._resampler = StreamResampler(self.rate, VAD_RATE) if settings is not None else None
        self._vad_offset_s = self.heard_s
        self.speaking = None  # an utterance in progress is forgotten with the old settings

    # -- audio --------------------------------------------------------------------------------------

    def hear(self, pcm: np.ndarray) -> list[str]:
        """User audio (at `rate`); returns what the VAD saw in it: "started" / "stopped", in order."""
        self.heard_s += len(pcm) / self.rate
        self.buffered_s += len(pcm) / self.rate
        if self._vad is None or self._resampler is None:
            return []
        seen = []
        for event in self._vad.feed(self._resampler.process(pcm)):
            if isinstance(event, SpeechStart):
                self._started(self._vad_offset_s + event.t)
                seen.append("started")
            elif isinstance(event, SpeechEnd) and self.speaking is not None:
                self._stopped(self._vad_offset_s + event.t)
                seen.append("stopped")
        return seen

    def _started(self, t: float) -> None:
        self.speaking = self.ids.new("item")
        self._speech_start_s = t
        self._committed_early = False
        self._send(
            {
                "type": "input_audio_buffer.speech_started",
                "audio_start_ms": round(t * 1000),
                "item_id": self.speaking,
            }
        )

    def _stopped(self, t: float) -> None:
        item_id, self.speaking = self.speaking, None
        assert item_id is not None
        self.last_stop_s = t
        self._send(
            {"type": "input_audio_buffer.speech_stopped", "audio_end_ms": round(t * 1000), "item_id": item_id}
        )
        if not self._committed_early:
            self._commit(item_id, t - self._speech_start_s)

    def commit(self) -> None:
        """The client's `input_audio_buffer.commit`."""
        if self.buffered_s < MIN_COMMIT_S:
            raise RealtimeError(
                ErrorCode.COMMIT_EMPTY,
                f"buffer too small: expected at least {MIN_COMMIT_S * 1000:.0f} ms of audio since the last "
                f"commit, got {self.buffered_s * 1000:.0f} ms",
            )
        if self.speaking is not None:  # the utterance in progress: the VAD's stop will not commit it again
            self._committed_early = True
            self._commit(self.speaking, self.buffered_s)
        else:
            self._commit(self.ids.new("item"), self.buffered_s)

    def clear(self) -> None:
        """The client's `input_audio_buffer.clear`."""
        self.buffered_s = 0.0
        self._send({"type": "input_audio_buffer.cleared"})

    def _commit(self, item_id: str, seconds: float) -> None:
        previous = self.items.add(item_id, "user")
        record = self.items.get(item_id)
        if record is not None:
            record.audio_ms = round(seconds * 1000)
        self.buffered_s = 0.0
        d = self.dialect
        self._send({"type": "input_audio_buffer.committed", "item_id": item_id, "previous_item_id": previous})
        item = d.item(item_id, "user", "completed", [d.audio_content("user", None)])
        self._send({"type": d.item_added, "previous_item_id": previous, "item": item})
        if d.item_done is not None:
            self._send({"type": d.item_done, "previous_item_id": previous, "item": item})
        if not self.transcribe:
            return
        waiting = _Awaiting(item_id, seconds)
        self._awaiting.append(waiting)
        if self._early_partial:
            self._delta(waiting, self._early_partial)
            self._early_partial = ""
        if self._early_final:
            final, self._early_final = self._early_final, ""
            self.on_final(final)
        while len(self._awaiting) > MAX_AWAITING:
            oldest = self._awaiting.popleft()
            self._complete(oldest, oldest.sent)

    # -- transcripts --------------------------------------------------------------------------------

    def on_partial(self, text: str) -> None:
        """The STT's partial transcript of the utterance it is hearing."""
        text = text.strip()
        if not self.transcribe or not text:
            return
        if self._awaiting:
            self._delta(self._awaiting[0], text)
        else:
            self._early_partial = text

    def on_final(self, text: str) -> None:
        """The STT's final transcript of an utterance."""
        text = text.strip()
        if not self.transcribe:
            return
        if self._awaiting:
            self._complete(self._awaiting.popleft(), text)
        elif not text:
            return
        elif self.speaking is not None or self._vad is None:  # its commit is still to come
            self._early_final = f"{self._early_final} {text}".strip()
            self._early_partial = ""
        else:  # the VAD missed the utterance the STT heard: it gets an item of its own
            self._early_final = text
            self._commit(self.ids.new("item"), 0.0)

    def _delta(self, waiting: _Awaiting, text: str) -> None:
        if text.startswith(waiting.sent) and len(text) > len(waiting.sent):
            delta = text[len(waiting.sent) :]
            waiting.sent = text
            self._send(
                {
                    "type": "conversation.item.input_audio_transcription.delta",
                    "item_id": waiting.item_id,
                    "content_index": 0,
                    "delta": delta,
                }
            )

    def _complete(self, waiting: _Awaiting, text: str) -> None:
        self._delta(waiting, text)
        self._send(
            {
                "type": "conversation.item.input_audio_transcription.completed",
                "item_id": waiting.item_id,
                "content_index": 0,
                "transcript": text,
                "usage": {"type": "duration", "seconds": round(waiting.seconds, 3)},
            }
        )
