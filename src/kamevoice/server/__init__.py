"""The network front door: Moshi's WebSocket protocol at `/api/chat`, JSON events, a browser page.

`KameServer` (in `app`) serves conversations on one shared engine;
`protocol` documents the wire format; `kamevoice serve` runs it.
"""
