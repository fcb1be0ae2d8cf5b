"""The network front doors: Moshi's WebSocket protocol at `/api/chat` (JSON events on request),
Twilio Media Streams at `/twilio`, a browser page.

`KameServer` (in `app`) serves conversations on one shared engine; each wire protocol is a
door (`doors`) on the one `Conversation`; `protocol` documents Moshi's wire format;
`kamevoice serve` runs it.
"""
