"""The base of every settings section (kept apart from `config`, which composes the sections)."""

from pydantic import BaseModel, ConfigDict


class Section(BaseModel):
    """A settings section: unknown keys are errors, not silently ignored; values are immutable."""

    model_config = ConfigDict(extra="forbid", frozen=True)
