"""Oracle layouts: how a checkpoint reads its oracle stream at step 0 and in which order it sums it.

The oracle timeline (`kamevoice.oracle.timeline`) says which id each frame holds; a *layout*
says two more things a checkpoint was trained with (docs/kame.md section 3):

- `first`: what step 0 reads. The oracle id of frame t is read at step t + 1, so step 0 reads
  "frame -1", before any frame of the dialogue. `"timeline"`: frame -1 is a frame of the
  timeline like any other, PAD unless an oracle begins before the first step (the published
  inference, `LMGen.update_oracle_tokens_streaming`, and the published fine-tuning recipe,
  whose oracle stream holds PAD at position 0). `"start"`: step 0 always reads the start id,
  as the text stream does, and the timeline begins at frame 0 (the published
  `LMModel.forward`, and kamevoice before the published layout was adopted).
- `order`: where the oracle embedding enters the sum of embeddings. `"text_first"`: it is
  added to the text embedding, and that to the sum of the audio embeddings,
  `audio + (text + oracle)` (the published code, training and inference). `"after_text"`:
  `(audio + text) + oracle`, the order moshi's `sum_condition` gives. In fp32 the two agree to
  rounding; in bf16 the logits differ by up to ~1e-2.

A checkpoint declares its layout in config.json's `kamevoice` section (`"oracle_layout":
"kamevoice-v1"`); without one it has the published layout (`DEFAULT_LAYOUT`).
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any, Literal

from kamevoice.errors import ConfigError
from kamevoice.oracle.ids import TextIds
from kamevoice.oracle.timeline import LateTokens, OracleTimeline

# The key of config.json's `kamevoice` section that names a checkpoint's layout.
LAYOUT_KEY = "oracle_layout"

First = Literal["timeline", "start"]
Order = Literal["text_first", "after_text"]


@dataclass(frozen=True)
class OracleLayout:
    """What step 0 reads (`first`) and where the oracle embedding is summed (`order`); see module doc."""

    name: str
    first: First
    order: Order

    def __post_init__(self) -> None:
        if self.first not in ("timeline", "start"):
            raise ValueError(
                f"oracle layout {self.name}: first must be 'timeline' or 'start', got {self.first!r}"
            )
        if self.order not in ("text_first", "after_text"):
            raise ValueError(
                f"oracle layout {self.name}: order must be 'text_first' or 'after_text', got {self.order!r}"
            )

    @property
    def text_first(self) -> bool:
        """Whether the oracle embedding is added to the text embedding before the audio ones."""
        return self.order == "text_first"

    def initial_input(self, ids: TextIds) -> int:
        """Step 0's oracle input in a teacher-forced pass, whose events all lie at frames >= 0."""
        return ids.start if self.first == "start" else ids.pad

    def timeline(self, ids: TextIds, late: LateTokens = "next_free") -> OracleTimeline:
        """A streaming conversation's timeline: from frame -1 when step 0 reads the timeline,
        else from frame 0 (step 0 then reads `ids.start`, see `fixed_step0_input`)."""
        return OracleTimeline(ids, frame=-1 if self.first == "timeline" else 0, late=late)

    def fixed_step0_input(self, ids: TextIds) -> int | None:
        """The id step 0 reads whatever the timeline holds (None: step 0 reads the timeline)."""
        return ids.start if self.first == "start" else None


# The published KAME code: fine-tuning (kame_finetune `DataCollator`, `tempformer_forward`) and
# streaming (`SakanaAI/kame` `LMGen._step`): PAD before any oracle, text + oracle summed first.
KAME = OracleLayout("kame", first="timeline", order="text_first")
# The published `LMModel.forward` (the teacher-forced pass of SakanaAI/kame's `lm.py`): the start
# id at position 0, as for text. Neither the published training nor its inference reads position 0
# this way (docs/kame.md section 3); kept to reproduce that code's forward-pass test figures.
KAME_FORWARD = OracleLayout("kame-forward", first="start", order="text_first")
# kamevoice before it adopted the published layout (KAME-tiny was trained with it): the start id at
# step 0 and the oracle as moshi's sum condition, after the text and audio embeddings.
KAMEVOICE_V1 = OracleLayout("kamevoice-v1", first="start", order="after_text")

LAYOUTS: dict[str, OracleLayout] = {layout.name: layout for layout in (KAME, KAME_FORWARD, KAMEVOICE_V1)}
# A checkpoint that names no layout: the published one, so published checkpoints behave as there.
DEFAULT_LAYOUT = KAME


def layout_named(name: Any, where: str = "config.json") -> OracleLayout:
    """The layout called `name`; `ConfigError` naming the known ones otherwise."""
    if not isinstance(name, str) or name not in LAYOUTS:
        raise ConfigError(
            f"{where}: kamevoice.{LAYOUT_KEY} must be one of {', '.join(sorted(LAYOUTS))}, got {name!r}"
        )
    return LAYOUTS[name]


def layout_of(extra: Mapping[str, Any] | None, where: str = "config.json") -> OracleLayout:
    """The layout a checkpoint's `kamevoice` section declares (`DEFAULT_LAYOUT` if none)."""
    if not extra or LAYOUT_KEY not in extra:
        return DEFAULT_LAYOUT
    return layout_named(extra[LAYOUT_KEY], where)
