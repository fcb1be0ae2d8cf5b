"""The Realtime wire's plumbing: client events in, errors out, ids, and the conversation's items.

Every client message is one JSON object with a `type` (and optionally the client's
`event_id`, which an error about it quotes back). Anything wrong with a message, from bad JSON
to an event the session cannot honour, is a `RealtimeError`: the door answers it with one
`error` event (`type`, `code`, `message`, `param`, the client's `event_id`) to that client,
and the conversation goes on. The codes are listed in `ErrorCode` and in docs/doors/realtime.md.
"""

from __future__ import annotations

import itertools
import json
import secrets
from collections import OrderedDict
from dataclasses import dataclass
from enum import StrEnum
from typing import Any

# The client events of the Realtime API (GA and beta together): the door honours some, and
# answers the others with `unsupported_event` rather than `unknown_event_type`.
CLIENT_EVENTS = frozenset(
    {
        "session.update",
        "input_audio_buffer.append",
        "input_audio_buffer.commit",
        "input_audio_buffer.clear",
        "conversation.item.create",
        "conversation.item.retrieve",
        "conversation.item.truncate",
        "conversation.item.delete",
        "response.create",
        "response.cancel",
        "output_audio_buffer.clear",
        "transcription_session.update",
    }
)
# Items kept for `conversation.item.truncate` (ids and audio lengths only): a long call makes
# hundreds; a client truncates the reply it is playing, never one from minutes ago.
MAX_ITEMS = 256


class ErrorType(StrEnum):
    """The `error.type` of an error event."""

    INVALID_REQUEST = "invalid_request_error"  # the client's message is at fault
    SERVER = "server_error"  # ours


class ErrorCode(StrEnum):
    """The `error.code` of an error event (docs/doors/realtime.md lists them with examples)."""

    INVALID_JSON = "invalid_json"
    INVALID_EVENT = "invalid_event"  # not a JSON object with a string `type`, or a binary frame
    UNKNOWN_EVENT_TYPE = "unknown_event_type"
    UNSUPPORTED_EVENT = "unsupported_event"  # an API event this server does not offer
    MISSING_PARAMETER = "missing_required_parameter"
    UNKNOWN_PARAMETER = "unknown_parameter"
    INVALID_VALUE = "invalid_value"
    UNSUPPORTED_FEATURE = "unsupported_feature"  # a valid setting this server cannot honour
    INVALID_AUDIO_FORMAT = "invalid_audio_format"
    INVALID_BASE64 = "invalid_base64"
    INVALID_AUDIO = "invalid_audio"  # base64 that does not decode to whole samples
    MESSAGE_TOO_LARGE = "message_too_large"
    COMMIT_EMPTY = "input_audio_buffer_commit_empty"
    CANCEL_NOT_ACTIVE = "response_cancel_not_active"
    ITEM_NOT_FOUND = "item_not_found"
    SESSION_ENDED = "session_ended"  # the last event before the server closes the socket
    INTERNAL = "internal_error"


class RealtimeError(Exception):
    """A client message the door cannot honour: answered with an `error` event, nothing more."""

    def __init__(
        self,
        code: ErrorCode,
        message: str,
        param: str | None = None,
        kind: ErrorType = ErrorType.INVALID_REQUEST,
    ):
        super().__init__(message)
        self.code, self.message, self.param, self.kind = code, message, param, kind

    def body(self, client_event_id: str | None = None) -> dict[str, Any]:
        """The `error` object of the event."""
        return {
            "type": self.kind.value,
            "code": self.code.value,
            "message": self.message,
            "param": self.param,
            "event_id": client_event_id,
        }


def parse_client_event(data: str) -> dict[str, Any]:
    """One client message as an event dict with a string `type` (else `RealtimeError`)."""
    try:
        event = json.loads(data)
    except (ValueError, RecursionError) as exc:
        raise RealtimeError(ErrorCode.INVALID_JSON, f"the message is not valid JSON: {exc}") from None
    if not isinstance(event, dict):
        raise RealtimeError(ErrorCode.INVALID_EVENT, f"an event is a JSON object, got {type(event).__name__}")
    kind = event.get("type")
    if not isinstance(kind, str) or not kind:
        raise RealtimeError(ErrorCode.MISSING_PARAMETER, "the event has no string 'type'", "type")
    return event


def client_event_id(event: Any) -> str | None:
    """The client's `event_id` of a parsed event, when it gave a string one."""
    value = event.get("event_id") if isinstance(event, dict) else None
    return value if isinstance(value, str) else None


def dumps(event: dict[str, Any]) -> str:
    """A server event as compact JSON text."""
    return json.dumps(event, separators=(",", ":"), ensure_ascii=False)


class Ids:
    """Ids in the API's style (`event_...`, `item_...`, `resp_...`, `sess_...`): a random prefix
    per conversation and a counter, cheap enough to stamp every audio delta."""

    def __init__(self) -> None:
        self._prefix = secrets.token_hex(6)
        self._counter = itertools.count(1)

    def new(self, kind: str) -> str:
        return f"{kind}_{self._prefix}{next(self._counter):06d}"


@dataclass
class ItemRecord:
    """What the door remembers of a conversation item."""

    item_id: str
    role: str  # "user" or "assistant"
    audio_ms: int = 0  # audio the client has been sent (assistant) or has sent (user)


class ItemLog:
    """The conversation's items in order (the newest `MAX_ITEMS`): ids for `previous_item_id`
    and audio lengths for `conversation.item.truncate`."""

    def __init__(self) -> None:
        self._items: OrderedDict[str, ItemRecord] = OrderedDict()
        self.last_id: str | None = None

    def add(self, item_id: str, role: str) -> str | None:
        """Append an item; returns the id of the one before it (None for the first)."""
        previous = self.last_id
        self._items[item_id] = ItemRecord(item_id, role)
        self.last_id = item_id
        while len(self._items) > MAX_ITEMS:
            self._items.popitem(last=False)
        return previous

    def get(self, item_id: str) -> ItemRecord | None:
        return self._items.get(item_id)
