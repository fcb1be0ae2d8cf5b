"""The message vocabulary: every event kind a session's log can hold, declared once.

An event is a plain dict `{"t": seconds since the session start, "kind": EventKind, ...fields}`
(`kamevoice.runtime.events.EventLog` stamps and stores it). This module says, for each kind,
which fields it carries, which part of the system emits it, and whether a client that asked
for events sees it (the WebSocket's `0x04` metadata, our browser page). Every other module
names kinds through `EventKind`; a test fails if a kind is spelled as a string anywhere else.

Names are `<part>.<what>`, so a kind never reads like a field name ("text", "reason").
Fields are the declared superset: an emitter may leave optional ones out, never add others
(`EventLog.emit` refuses an undeclared field, which keeps this table the truth).
"""

from __future__ import annotations

from dataclasses import dataclass
from enum import StrEnum


class EventKind(StrEnum):
    """Every kind of event (the value is what the JSONL log and the clients read)."""

    # session lifetime and audio
    SESSION_START = "session.start"
    SESSION_END = "session.end"
    AUDIO_IN = "audio.in"
    FRAME_STATS = "engine.frame_stats"
    # speech-to-text
    STT_PARTIAL = "stt.partial"
    STT_FINAL = "stt.final"
    STT_ERROR = "stt.error"
    STT_UNAVAILABLE = "stt.unavailable"
    USER_TURN = "user.turn"
    # the oracle scheduler and its LLM requests
    LLM_WARM_UP = "llm.warm_up"
    LLM_REQUEST = "llm.request"
    LLM_DEFERRED = "llm.deferred"
    LLM_FIRST_TOKEN = "llm.first_token"
    LLM_DONE = "llm.done"
    LLM_CANCEL = "llm.cancel"
    LLM_SUPERSEDED = "llm.superseded"
    LLM_ERROR = "llm.error"
    ORACLE_UNAVAILABLE = "oracle.unavailable"
    ORACLE_RECOVERED = "oracle.recovered"
    # the oracle as the front-end receives it
    ORACLE_BEGIN = "oracle.begin"
    ORACLE_TEXT = "oracle.text"
    ORACLE_END = "oracle.end"
    ORACLE_PIECE = "oracle.piece"
    # what the front-end says
    FRONTEND_TEXT = "frontend.text"
    REPLY_ONSET = "frontend.reply_onset"
    # what a front door learns of its call (a phone call through Twilio)
    CALL_START = "call.start"
    CALL_DTMF = "call.dtmf"
    CALL_BARGE_IN = "call.barge_in"
    # the cascade baseline of the evaluation (STT -> LLM -> TTS after the turn)
    CASCADE_REQUEST = "cascade.request"
    CASCADE_FIRST_AUDIO = "cascade.first_audio"
    CASCADE_REPLY = "cascade.reply"


class Emitter(StrEnum):
    """The part of the system that emits a kind."""

    SESSION = "session"  # kamevoice.runtime.session
    ENGINE = "engine"  # the frame loop, reported through the session
    STT = "stt"  # kamevoice.backend.stt (any provider)
    SCHEDULER = "scheduler"  # kamevoice.backend.scheduler
    EVAL = "eval"  # kamevoice.eval (baselines only)
    DOOR = "door"  # kamevoice.server.doors (what a wire protocol tells of its call)


@dataclass(frozen=True)
class EventSpec:
    """What one kind means and carries."""

    kind: EventKind
    emitter: Emitter
    fields: frozenset[str]
    client: bool  # sent to clients that asked for events
    doc: str
    # Fields kept out of what clients receive (vendor text, URLs): they stay in the server's log.
    private: frozenset[str] = frozenset()
    # Each event carries the whole state (not a change), so a client needs only the newest:
    # a session sends it at most every `COALESCE_S`, the newest one, the last one always.
    coalesce: bool = False

    def for_client(self, event: dict) -> dict:
        """`event` as a client may see it (private fields left out)."""
        return {k: v for k, v in event.items() if k not in self.private} if self.private else event


def _spec(
    kind: EventKind,
    emitter: Emitter,
    fields: str,
    client: bool,
    doc: str,
    private: str = "",
    coalesce: bool = False,
) -> EventSpec:
    return EventSpec(
        kind, emitter, frozenset(fields.split()), client, doc, frozenset(private.split()), coalesce
    )


_K, _E = EventKind, Emitter
VOCABULARY: dict[EventKind, EventSpec] = {
    s.kind: s
    for s in (
        _spec(_K.SESSION_START, _E.SESSION, "sample_rate", False, "the session joined its engine"),
        _spec(
            _K.SESSION_END,
            _E.SESSION,
            "reason cause frames audio_s",
            False,
            "the session ended: `cause` is one of `EndCause`, `reason` the readable text",
        ),
        _spec(_K.AUDIO_IN, _E.SESSION, "seconds total_s", False, "user audio received (seconds)"),
        _spec(
            _K.FRAME_STATS,
            _E.ENGINE,
            "frame step_ms p50_ms p99_ms overruns underruns",
            True,
            "engine step times, every `STATS_EVERY_FRAMES` frames",
        ),
        _spec(
            _K.STT_PARTIAL,
            _E.STT,
            "provider text words audio_end lag_s compute_s",
            True,
            "a partial transcript of the current utterance (it may still change)",
        ),
        _spec(
            _K.STT_FINAL,
            _E.STT,
            "provider text words audio_end lag_s compute_s",
            True,
            "the final transcript of an utterance",
        ),
        _spec(
            _K.STT_ERROR,
            _E.STT,
            "provider cause error",
            True,
            "the STT stream failed (`cause`: one of `STTCause`)",
            private="error",
        ),
        _spec(
            _K.STT_UNAVAILABLE,
            _E.SESSION,
            "cause error",
            True,
            "the session goes on without transcripts (`cause`: one of `STTCause`; the readable "
            "`error` stays in the server's log)",
            private="error",
        ),
        _spec(
            _K.USER_TURN,
            _E.SESSION,
            "text start end words",
            True,
            "a final utterance with its word times (seconds of session audio)",
        ),
        _spec(
            _K.LLM_WARM_UP,
            _E.SCHEDULER,
            "provider ok after_s error",
            False,
            "the provider's connection was opened at session start (`ok` false: `error` says why)",
        ),
        _spec(
            _K.LLM_REQUEST,
            _E.SCHEDULER,
            "gen reason words user_words chars provider change_t",
            True,
            "an LLM request started (`reason`: growth, final or trailing)",
        ),
        _spec(_K.LLM_DEFERRED, _E.SCHEDULER, "wait_s reason", False, "a start held back by the rate cap"),
        _spec(
            _K.LLM_FIRST_TOKEN,
            _E.SCHEDULER,
            "gen from_change_s from_start_s attempt",
            True,
            "a request's first text arrived (the oracle resets to it)",
        ),
        _spec(_K.LLM_DONE, _E.SCHEDULER, "gen total_s deltas chars words", False, "a request completed"),
        _spec(
            _K.LLM_CANCEL,
            _E.SCHEDULER,
            "gen why by began chars after_s",
            False,
            "a request was stopped (`why`: one of `CancelWhy`; `too_long`: its oracle ends, "
            "complete, as cut at `chars`)",
        ),
        _spec(
            _K.LLM_SUPERSEDED,
            _E.SCHEDULER,
            "gen by began chars after_s",
            False,
            "a request was dropped because request `by` began first",
        ),
        _spec(
            _K.LLM_ERROR,
            _E.SCHEDULER,
            "gen error retry will_retry delay_s status message",
            True,
            "an LLM attempt failed (`error`: its kind, `status`: the HTTP status; the vendor's "
            "`message` stays in the server's log)",
            private="message",
        ),
        _spec(
            _K.ORACLE_UNAVAILABLE,
            _E.SCHEDULER,
            "gen error",
            True,
            "a request gave up: no new oracle until the next trigger",
        ),
        _spec(_K.ORACLE_RECOVERED, _E.SCHEDULER, "gen", False, "first success after `oracle.unavailable`"),
        _spec(_K.ORACLE_BEGIN, _E.SESSION, "gen frame", False, "a new oracle resets the timeline"),
        _spec(
            _K.ORACLE_TEXT,
            _E.SESSION,
            "gen text",
            True,
            "the current oracle's whole text, logged when it gained a word and once more at its "
            "end (`oracle.end` has the final text too); clients get it coalesced",
            coalesce=True,
        ),
        _spec(
            _K.ORACLE_END,
            _E.SESSION,
            "gen text cancelled pieces",
            False,
            "no more text will come for this oracle",
        ),
        _spec(
            _K.ORACLE_PIECE,
            _E.SESSION,
            "frame frame_t start id piece",
            False,
            "an oracle id entered the model at `frame` (`start`: the reset id)",
        ),
        _spec(
            _K.FRONTEND_TEXT,
            _E.SESSION,
            "frame frame_t id piece",
            True,
            "a piece of the front-end's inner monologue",
        ),
        _spec(
            _K.REPLY_ONSET,
            _E.SESSION,
            "frame frame_t",
            False,
            "the first piece after a silence of `GAP_S` (a new stretch of speech)",
        ),
        _spec(
            _K.CALL_START,
            _E.DOOR,
            "door call stream account tracks params",
            False,
            "a phone call's media stream began: its call and stream ids, tracks and custom parameters "
            "(a `token` parameter left out)",
        ),
        _spec(_K.CALL_DTMF, _E.DOOR, "digit", False, "the caller pressed a key"),
        _spec(
            _K.CALL_BARGE_IN,
            _E.DOOR,
            "dropped_frames unplayed_frames",
            False,
            "the caller spoke over the model: its queued speech was dropped (`dropped_frames`, 80 ms "
            "each) and the call's playback buffer cleared (`unplayed_frames` sent but not yet heard)",
        ),
        _spec(_K.CASCADE_REQUEST, _E.EVAL, "turn text", False, "the cascade baseline asked its LLM"),
        _spec(
            _K.CASCADE_FIRST_AUDIO,
            _E.EVAL,
            "turn chunk tts_s",
            False,
            "the cascade baseline's first synthesised audio",
        ),
        _spec(_K.CASCADE_REPLY, _E.EVAL, "turn text", False, "the cascade baseline's whole reply"),
    )
}

#: Kinds a client that asked for events receives.
CLIENT_KINDS: frozenset[EventKind] = frozenset(k for k, s in VOCABULARY.items() if s.client)

# A person reads the oracle panel: four updates a second look continuous, and the front-end
# takes only one piece per 80 ms frame, so a client is never more than ~3 pieces behind;
# a runaway back-end streaming thousands of chunks a second costs a client 4 events a second.
COALESCE_S = 0.25


class EndCause(StrEnum):
    """Why a session ended: a fixed set (metric labels), the readable reason goes with it."""

    CLIENT_CLOSED = "client_closed"
    END_OF_INPUT = "end_of_input"
    PROTOCOL = "protocol_error"
    BAD_AUDIO = "bad_audio"
    TOO_BIG = "message_too_big"
    IDLE = "idle"
    FLOOD = "flood"
    SLOW_CLIENT = "slow_client"
    CONNECTION_LOST = "connection_lost"
    ENGINE = "engine_failed"
    SHUTDOWN = "shutdown"
    DRAIN = "drain_timeout"  # the server drained and this conversation outlived the drain timeout
    START_FAILED = "start_failed"
    INTERNAL = "internal_error"


class STTCause(StrEnum):
    """Why a conversation's STT failed: a fixed set (clients and metrics read it), the text goes with it."""

    ENGINE = "engine_error"  # the recogniser or the hosted service reported an error
    AUTH = "auth_refused"  # the hosted service refused the credentials
    CONFIG = "config_error"  # the engine could not start with its settings (model files, LM)
    STALLED = "stalled"  # the STT process stopped reading its audio (frozen, stopped, stuck)
    EXITED = "process_exited"  # the STT process died
    INTERNAL = "internal_error"  # anything else: a bug


class CancelWhy(StrEnum):
    """Why the scheduler stopped a request (the `why` field of `llm.cancel`)."""

    NEWER_REQUEST = "newer_request"  # over `max_in_flight`: the oldest makes room
    CLOSED = "closed"  # the session ended
    CANCELLED = "cancelled"  # cancelled from outside
    TOO_LONG = "too_long"  # the answer passed `max_oracle_chars`: kept as cut, the stream closed


def spec(kind: EventKind | str) -> EventSpec:
    """The declaration of `kind`; a `KeyError` names an undeclared one."""
    try:
        return VOCABULARY[EventKind(kind)]
    except ValueError:
        raise KeyError(f"event kind {kind!r} is not declared in kamevoice.runtime.messages") from None
