"""The scheduler's settings, and the named presets that fill them in.

A preset is a set of defaults: `SchedulerSettings(preset="kame-parallel", max_in_flight=3)`
takes every field from the preset except `max_in_flight`. Settable from a settings file
(`[scheduler] preset = "kame-main"`) or the environment (`KAMEVOICE_SCHEDULER__PRESET`).
"""

from __future__ import annotations

from typing import Any, Literal

from pydantic import Field, model_validator

from kamevoice.backend.prompt import (
    DEFAULT_OPENING_USER_TEXT,
    DEFAULT_SPOKEN_SO_FAR_NOTE,
    DEFAULT_SYSTEM_PROMPT,
)
from kamevoice.backoff import Backoff
from kamevoice.section import Section

PresetName = Literal["kamevoice", "kame-main", "kame-parallel"]

#: The published KAME servers' oracle policies, in our settings' terms.
PRESETS: dict[str, dict[str, Any]] = {
    # The published main branch polls every 0.5 s and restarts its one stream when the user's
    # words grew by 2 or an utterance ended, at most 5 restarts per 2 s. Polling every 0.5 s
    # is modelled as "no debounce, at most one start per 0.5 s" (a change waits for the next
    # free slot, as it waited for the next poll); the 5-per-2-s cap is then never reached.
    "kame-main": {
        "min_new_words": 2,
        "debounce_s": 0.0,
        "max_wait_s": 0.0,
        "rate_limit_starts": 1,
        "rate_limit_window_s": 0.5,
        "max_in_flight": 1,
        "trailing_start_s": None,
        "warm_up": False,
    },
    # The published parallel multiplexer: a start on each partial, at most one per 0.5 s, up
    # to 7 streams at once, the first newer stream to emit adopted, a trailing start so the
    # last words get a request, and the connection warmed up at session start.
    "kame-parallel": {
        "min_new_words": 1,
        "debounce_s": 0.0,
        "max_wait_s": 0.0,
        "rate_limit_starts": 1,
        "rate_limit_window_s": 0.5,
        "max_in_flight": 7,
        "trailing_start_s": 0.5,
        "warm_up": True,
    },
    # Ours: the field defaults below (debounced growth triggers, one stream, no trailing start
    # and no warm-up until measured; set them, or take `kame-parallel`, to have them).
    "kamevoice": {},
}

# One stream until `kamevoice bench oracle` (not written yet) measures what overlapping streams
# buy: the `kame-parallel` preset runs seven.
DEFAULT_MAX_IN_FLIGHT = 1


class SchedulerSettings(Section):
    """The policy that turns transcripts into LLM requests (`preset` fills in the defaults)."""

    preset: PresetName = Field("kamevoice", description="named policy whose values are the defaults")
    min_new_words: int = Field(2, ge=1, description="user words added since the last start that trigger one")
    debounce_s: float = Field(
        0.15,
        ge=0.0,
        description="quiet time before a request due to partials starts (a final starts at once)",
    )
    # The published server checked every 0.5 s; waiting longer than that is worse than it.
    max_wait_s: float = Field(0.5, ge=0.0, description="longest delay of a due request by the debounce")
    rate_limit_starts: int = Field(5, ge=1)
    rate_limit_window_s: float = Field(2.0, gt=0.0)
    max_in_flight: int = Field(
        DEFAULT_MAX_IN_FLIGHT, ge=1, description="requests running at once; a new one cancels the oldest"
    )
    # Words that never add up to `min_new_words` (the last word of a sentence, a corrected
    # partial) would otherwise wait for the final result: this starts a request for them once
    # the transcript has been still this long.
    trailing_start_s: float | None = Field(
        None,
        ge=0.0,
        description="start for any transcript change this long after it when no trigger fired (None: off)",
    )
    warm_up: bool = Field(False, description="open the provider's connection at session start")
    context_chars: int = Field(6000, ge=200, description="newest characters of conversation sent")
    system_prompt: str = DEFAULT_SYSTEM_PROMPT
    spoken_so_far_note: str = DEFAULT_SPOKEN_SO_FAR_NOTE
    opening_user_text: str = DEFAULT_OPENING_USER_TEXT
    max_retries: int = Field(2, ge=0, description="retries of a request that failed before its first chunk")
    retry_base_s: float = Field(0.25, ge=0.0)
    retry_max_delay_s: float = Field(2.0, ge=0.0)
    retry_jitter: float = Field(0.5, ge=0.0, le=1.0)
    # A safety net above the providers' own deadlines: no oracle is useful after this.
    request_timeout_s: float = Field(30.0, gt=0.0, description="longest a whole request may take")
    # The front-end takes one oracle piece per 80 ms frame (~4 characters a piece), so 600
    # characters are ~150 frames, 12 s: text beyond that is never used before the user's next
    # words bring a newer oracle. The prompt asks for at most 30 words (~180 characters) and
    # `max_tokens` is 120 (~500): only a server that ignores both gets near the cap.
    max_oracle_chars: int = Field(
        600,
        ge=20,
        description="longest oracle kept; a longer answer is cut at a word boundary and its request closed",
    )

    @model_validator(mode="before")
    @classmethod
    def _apply_preset(cls, data: Any) -> Any:
        """Fill the fields not given explicitly from the named preset."""
        if isinstance(data, dict):
            name = data.get("preset", "kamevoice")
            if name in PRESETS:
                return {**PRESETS[name], **data}
        return data

    def backoff(self) -> Backoff:
        """The retry back-off these settings describe."""
        return Backoff(self.max_retries, self.retry_base_s, self.retry_max_delay_s, self.retry_jitter)
