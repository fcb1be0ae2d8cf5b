"""Front doors: the wire protocols a client may speak, each a small `Conversation` subclass.

A door decodes its protocol's client messages into user audio and control, and encodes
what the session produces into its protocol's messages; everything else (the session,
limits, intake, outbox, ending) is `kamevoice.server.conversation`'s, and admission and
the session's making are the server's (`KameServer.admit`, `KameServer.converse`).

- `moshi`: Kyutai's binary protocol at `/api/chat`.
- `realtime`: OpenAI's Realtime API at `/v1/realtime` (docs/doors/realtime.md).
"""
