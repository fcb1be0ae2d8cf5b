"""A checkpoint's `lm_gen_config`: every keyword of moshi's `LMGen`, each read, passed on or refused.

config.json may hold generation settings under `lm_gen_config`, in `LMGen`'s own
keyword names (the published servers pass them as `LMGen(**lm_gen_config)`). Here
each keyword has a fate:

- sampling (`use_sampling`, `temp`, `temp_text`, `top_k`, `top_k_text`): read into
  `SamplingOptions` (settings a user sets win, `kamevoice.frontend.sampling`);
- passed to `LMGen` as they are (`check`, `cfg_is_masked_until`, `cfg_is_no_text`:
  the last two only act with classifier-free guidance, i.e. never at `cfg_coef` 1);
- `support_out_of_sync`: accepted, but kamevoice always steps out of sync
  (conversations start at different frames), whatever the value;
- `cfg_coef`: 1.0 only. Guidance needs conditioning tensors that KAME checkpoints do not
  have and doubles the batch, which the oracle input does not follow: refused otherwise;
- `condition_tensors` and the hooks: Python objects, which JSON cannot hold: refused.

Anything else is not an `LMGen` keyword and is refused with the list of the known ones.
"""

from __future__ import annotations

import inspect
from collections.abc import Mapping
from typing import Any

from moshi.models.lm import LMGen

from kamevoice.errors import ConfigError

# Every keyword `LMGen.__init__` takes besides the model.
LM_GEN_KEYWORDS = frozenset(inspect.signature(LMGen.__init__).parameters) - {"self", "lm_model"}
# Read into `SamplingOptions`.
SAMPLING_KEYWORDS = frozenset({"use_sampling", "temp", "temp_text", "top_k", "top_k_text"})
# Handed to `LMGen` unchanged.
PASSED_KEYWORDS = frozenset({"check", "cfg_is_masked_until", "cfg_is_no_text"})
# Accepted whatever their value: the generator sets them itself.
OVERRIDDEN_KEYWORDS = frozenset({"support_out_of_sync"})
# Refused: objects, not JSON values (the generator attaches its own hooks).
OBJECT_KEYWORDS = frozenset({"condition_tensors", "on_text_hook", "on_text_logits_hook", "on_audio_hook"})
# Guidance strength: only "none" (1.0) is supported.
CFG_KEYWORD = "cfg_coef"


def _number(value: Any) -> bool:
    return isinstance(value, int | float) and not isinstance(value, bool)


# What each plain-valued keyword must hold, and how to say it.
_VALUE_RULES: dict[str, tuple[Any, str]] = {
    **{k: (lambda v: isinstance(v, bool), "true or false") for k in (
        "use_sampling", "check", "cfg_is_no_text", "support_out_of_sync")},
    **{k: (lambda v: _number(v) and v >= 0, "a number >= 0") for k in ("temp", "temp_text")},
    **{k: (lambda v: _number(v) and isinstance(v, int) and v >= 0, "an integer >= 0")
       for k in ("top_k", "top_k_text")},
    "cfg_is_masked_until": (
        lambda v: v is None or (isinstance(v, list) and all(_number(x) and isinstance(x, int) for x in v)),
        "a list of integers or null",
    ),
}  # fmt: skip


def check_lm_gen_config(gen: Any, where: str) -> dict[str, Any]:
    """`gen` validated (a copy); `ConfigError` naming the first keyword that cannot be honoured."""
    if not isinstance(gen, Mapping):
        raise ConfigError(f"{where}: lm_gen_config must be a JSON object, got {type(gen).__name__}")
    for key, value in gen.items():
        if key not in LM_GEN_KEYWORDS:
            raise ConfigError(
                f"{where}: lm_gen_config has unknown key '{key}' (not a keyword of moshi's LMGen); "
                f"known: {', '.join(sorted(LM_GEN_KEYWORDS - OBJECT_KEYWORDS))}"
            )
        if key in OBJECT_KEYWORDS:
            raise ConfigError(f"{where}: lm_gen_config '{key}' is a Python object, which a config cannot set")
        if key == CFG_KEYWORD and not (_number(value) and value == 1):
            raise ConfigError(
                f"{where}: lm_gen_config '{CFG_KEYWORD}' = {value!r} is not supported: classifier-free "
                "guidance needs conditioning, which KAME checkpoints do not have (use 1.0 or leave it out)"
            )
        rule = _VALUE_RULES.get(key)
        if rule is not None and not rule[0](value):
            raise ConfigError(f"{where}: lm_gen_config '{key}' must be {rule[1]}, got {value!r}")
    return dict(gen)


def passed_keywords(gen: Mapping[str, Any]) -> tuple[tuple[str, Any], ...]:
    """The `LMGen` keywords of a (checked) `lm_gen_config` that go to `LMGen` unchanged, as pairs."""
    return tuple(
        sorted((k, tuple(v) if isinstance(v, list) else v) for k, v in gen.items() if k in PASSED_KEYWORDS)
    )
