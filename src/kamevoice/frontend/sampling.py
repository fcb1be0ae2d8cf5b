"""How a front-end draws its tokens: one frozen options object, and where its values come from."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from kamevoice.errors import ConfigError
from kamevoice.frontend.lm_gen import passed_keywords
from kamevoice.oracle.timeline import LateTokens

# Sampling settings (`FrontendSettings` names) and the `lm_gen_config` keys (Moshi's) they read.
_LM_GEN_NAMES = {
    "temperature": "temp",
    "top_k": "top_k",
    "text_temperature": "temp_text",
    "text_top_k": "top_k_text",
}


@dataclass(frozen=True)
class SamplingOptions:
    """How tokens are drawn (docs/kame.md section 2 defaults)."""

    greedy: bool = False
    temperature: float = 0.8  # audio
    top_k: int = 250
    text_temperature: float = 0.7
    text_top_k: int = 25
    # Oracle following (`frontend.policies.oracle_follow`): logit bias toward the oracle's next piece.
    oracle_follow_bias: float = 0.0
    # An oracle token that arrives after its frame: placed at the next free frame (kamevoice) or
    # dropped (the published code); `kamevoice.oracle.timeline`.
    late_oracle: LateTokens = "next_free"
    # Further `LMGen` keywords from the checkpoint's `lm_gen_config`, as (name, value) pairs
    # (`kamevoice.frontend.lm_gen.PASSED_KEYWORDS`).
    lm_gen: tuple[tuple[str, Any], ...] = ()

    @classmethod
    def from_settings(
        cls,
        settings: Any,
        lm_gen_config: Mapping[str, Any] | None = None,
        checkpoint_extra: Mapping[str, Any] | None = None,
    ) -> SamplingOptions:
        """The sampling of a front-end with `settings` (a `FrontendSettings`) and a checkpoint
        whose config.json holds `lm_gen_config` and our `kamevoice` section (`checkpoint_extra`):
        a value set in the settings (file, environment, flag) wins; else the checkpoint's; else
        the settings' default. `use_sampling: false` in the checkpoint means greedy for the
        values the settings leave unset. Temperature 0: greedy."""
        gen = dict(lm_gen_config or {})
        extra = dict(checkpoint_extra or {})
        chosen = settings.model_fields_set
        follow = settings.oracle_follow_bias
        if "oracle_follow_bias" not in chosen and "oracle_follow_bias" in extra:
            follow = extra["oracle_follow_bias"]
            if isinstance(follow, bool) or not isinstance(follow, int | float) or follow < 0:
                raise ConfigError(
                    f"config.json: kamevoice.oracle_follow_bias must be a number >= 0, got {follow!r}"
                )
        if gen.get("use_sampling") is False:
            gen.update(temp=0.0, temp_text=0.0)
        values = {
            name: getattr(settings, name)
            if name in chosen or key not in gen
            else type(getattr(settings, name))(gen[key])
            for name, key in _LM_GEN_NAMES.items()
        }
        return cls(
            greedy=values["temperature"] == 0,
            oracle_follow_bias=float(follow),
            late_oracle=getattr(settings, "late_oracle_tokens", "next_free"),
            lm_gen=passed_keywords(gen),
            **values,
        )
