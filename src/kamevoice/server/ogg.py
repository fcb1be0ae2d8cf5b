"""A structural check of Ogg pages: every audio message must hold whole pages.

Opus clients (Moshi's, ours) send each Ogg page the encoder completes as one
message. The Opus decoder in `sphn` buffers a cut page and carries on, so a
client sending truncated pages would get mangled audio instead of an answer;
checking the framing first turns that into a clear protocol error. Checksums
are not verified (the transport already guards the bytes).
"""

from __future__ import annotations

from kamevoice.server.protocol import ProtocolError

CAPTURE = b"OggS"
# Fixed part of a page header: capture pattern, version, flags, granule, serial, sequence, CRC, segments.
HEADER_BYTES = 27
OGG_VERSION = 0


def check_pages(data: bytes) -> int:
    """Raise `ProtocolError` unless `data` is a sequence of whole Ogg pages; returns the page count."""
    pos, pages = 0, 0
    while pos < len(data):
        if len(data) - pos < HEADER_BYTES:
            raise ProtocolError(f"truncated Ogg page header at byte {pos}")
        if data[pos : pos + 4] != CAPTURE:
            raise ProtocolError(f"no Ogg page at byte {pos} (capture pattern {data[pos : pos + 4]!r})")
        if data[pos + 4] != OGG_VERSION:
            raise ProtocolError(f"unknown Ogg version {data[pos + 4]} at byte {pos}")
        segments = data[pos + 26]
        table_end = pos + HEADER_BYTES + segments
        if table_end > len(data):
            raise ProtocolError(f"truncated Ogg segment table at byte {pos}")
        end = table_end + sum(data[pos + HEADER_BYTES : table_end])
        if end > len(data):
            raise ProtocolError(f"truncated Ogg page at byte {pos}: {end - len(data)} bytes missing")
        pos, pages = end, pages + 1
    return pages
