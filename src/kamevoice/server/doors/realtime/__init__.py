"""The Realtime door: OpenAI's Realtime API at `/v1/realtime` (GA events, beta ones on request).

    client = AsyncOpenAI(base_url="http://127.0.0.1:8998/v1", api_key="x")
    async with client.realtime.connect(model="kamevoice") as conn: ...

A client connects with a WebSocket (`?model=...` accepted and reported), receives
`session.created`, may `session.update`, streams `input_audio_buffer.append`, and gets the
front-end's replies as responses (audio and transcript deltas) whenever it chooses to speak.
`OpenAI-Beta: realtime=v1` (the header, or the `openai-beta.realtime-v1` subprotocol) selects
the beta API's names and shapes. `door.py` holds the door; docs/doors/realtime.md the guide.

`door_for(request, max_message_bytes)` reads a connection's options from its request, for
`KameServer.converse`.
"""

from __future__ import annotations

import functools
from collections.abc import Callable

from aiohttp import web

from kamevoice.server.conversation import Conversation
from kamevoice.server.doors.realtime.config import DEFAULT_MODEL
from kamevoice.server.doors.realtime.door import RealtimeDoor, RealtimeOptions

__all__ = ["REALTIME_PROTOCOLS", "RealtimeDoor", "RealtimeOptions", "door_for"]

# Subprotocols a browser client offers: "realtime" is accepted (the API key and beta flag ride
# along as other subprotocols, which are only read).
REALTIME_PROTOCOLS = ("realtime",)
# The subprotocol by which a browser asks for the beta API (it cannot set headers).
BETA_PROTOCOL = "openai-beta.realtime-v1"
# Query values that turn kamevoice's own events on.
EVENTS_ON = frozenset({"1", "true", "yes", "on"})
# A model name longer than this is cut (it is only reported back).
MAX_MODEL_CHARS = 128


def door_for(request: web.Request, max_message_bytes: int) -> Callable[..., Conversation]:
    """The door for one request: GA or beta, its model, kamevoice events, the event size limit
    (half the socket's, so an oversized event is answered, not the socket closed)."""
    offered = {p.strip() for p in request.headers.get("Sec-WebSocket-Protocol", "").split(",")}
    beta_header = request.headers.get("OpenAI-Beta", "").replace(" ", "")
    options = RealtimeOptions(
        beta="realtime=v1" in beta_header.split(",") or BETA_PROTOCOL in offered,
        model=(request.query.get("model") or DEFAULT_MODEL)[:MAX_MODEL_CHARS],
        kamevoice_events=request.query.get("kamevoice_events", "").lower() in EVENTS_ON,
        max_event_bytes=max_message_bytes // 2,
    )
    return functools.partial(RealtimeDoor, options=options)
