"""Front doors: the wire protocols a client may speak, each a small `Conversation` subclass.

A door decodes its protocol's client messages into user audio and control, and encodes
what the session produces into its protocol's messages; everything else (the session,
limits, intake, outbox, ending) is `kamevoice.server.conversation`'s, and admission and
the session's making are the server's (`KameServer.admit`, `KameServer.converse`).

- `moshi`: Kyutai's binary protocol at `/api/chat` (docs/doors/moshi.md);
- `realtime`: OpenAI's Realtime API at `/v1/realtime` (docs/doors/realtime.md), a package:
  the door, its response lifecycle, turn detection, session config and wire dialects;
- `twilio`: Twilio Media Streams at `/twilio`, phone calls (docs/doors/twilio.md), with
  `twilio_wire` (its messages and the call's audio) and `barge_in` (a caller talking over
  the model's queued speech).

Each door module offers `door_for(query, ...)`: the door for a request, and whether it
forwards JSON events; a bad query raises `conversation.BadRequest` (HTTP 400).
"""
