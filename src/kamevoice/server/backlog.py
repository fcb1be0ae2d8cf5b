"""What a backed-up send queue may leave out: metadata events, never audio or text pieces.

A conversation ends as "client too slow" when its send queue passes its cap
(`connection.MAX_SEND_BACKLOG`). Audio and the front-end's text pieces are the
conversation itself and are never dropped; metadata events (transcripts, oracle
text, statistics) are a view of it. So once the queue is a quarter full, new
metadata is left out: a burst of events (a runaway back-end, a chatty STT) can never
fill the queue by itself, and only a client that stops reading audio is ended.
"""

from __future__ import annotations

from kamevoice.runtime.session import OutputKind, SessionOutput

# Share of the send cap beyond which metadata is dropped: the other three quarters are
# left for audio and text, ~7 s of them at 12.5 frames a second with one piece each.
METADATA_SHARE = 0.25


def sheds(out: SessionOutput, queued: int, max_backlog: int) -> bool:
    """Whether `out` is left out of a send queue that holds `queued` of at most `max_backlog`."""
    return out.kind is OutputKind.EVENT and queued >= max_backlog * METADATA_SHARE
