"""The special ids of Moshi's text stream, which the oracle stream shares.

Moshi's text stream is aligned to the audio: a frame without a word piece holds
PAD, the frame right before a piece holds end-of-padding, and step 0 reads the
initial ("start") id, which is also the id that marks the frame where a new
oracle begins. Their values belong to the model: `KameLM.text_ids` reads them from
a built model and `kamevoice.frontend.model.text_ids_for(lm_kwargs)` from a
configuration (moshi's own defaults where it sets none). Nothing else retypes them.
"""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class TextIds:
    """Text-stream ids of one model: PAD, end-of-padding and the start (initial) id."""

    pad: int  # a frame without a word piece (Moshi: 3)
    end_of_padding: int  # the frame right before a word piece (Moshi: 0)
    start: int  # step 0's input, and where a new oracle begins (Moshi: text_card, 32000)

    @property
    def timing(self) -> frozenset[int]:
        """Ids that decide *when* the model speaks, not what it says (PAD, end-of-padding)."""
        return frozenset((self.pad, self.end_of_padding))
