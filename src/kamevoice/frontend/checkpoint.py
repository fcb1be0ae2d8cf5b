"""Checkpoints in the published Moshi/KAME layout: their configuration, and writing them.

Layout (`kyutai/moshiko-pytorch-bf16`, `SakanaAI/kame`): a `config.json`
naming the LM weights (`moshi_name`), the codec weights (`mimi_name`), the text
tokenizer (`tokenizer_name`), optional LoRA adapters (`lora_name`), optional
generation settings (`lm_gen_config`, `kamevoice.frontend.lm_gen`), our own
`kamevoice` section, and the LM constructor arguments as the other top-level
keys. A repo without `config.json` is the original Moshi 7B; a kame_finetune
output holds `model.safetensors` and `moshi_lm_kwargs.json` (the LM arguments
alone). Finding the files is `kamevoice.frontend.resolve`; reading the weights
`kamevoice.frontend.weights`.

Weights saved by kamevoice use exactly the published key names (Moshi's plus
`oracle_emb.weight`). Every failure names the file and what was expected.
"""

from __future__ import annotations

import difflib
import inspect
import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch
from moshi.modules.transformer import StreamingTransformer, StreamingTransformerLayer
from safetensors.torch import save_file

from kamevoice.errors import ConfigError
from kamevoice.frontend.lm_gen import check_lm_gen_config
from kamevoice.frontend.model import ORACLE_KEY, KameLM, lm_argument_names
from kamevoice.oracle.layouts import layout_of

CONFIG_NAME = "config.json"
# kame_finetune's output (`MoshiForFinetuning.save_pretrained`, `tools/clean_moshi.py`): the LM
# constructor arguments alone, next to `model.safetensors`.
FINETUNE_KWARGS_NAME = "moshi_lm_kwargs.json"
# The published server's base repo (`--hf-repo`'s default): Moshi's tokenizer and Mimi live there.
DEFAULT_REPO = "kyutai/moshiko-pytorch-bf16"

# Keys of config.json that name files or settings rather than LM constructor arguments.
FILE_KEYS = ("moshi_name", "mimi_name", "tokenizer_name", "mimi_config_name", "lora_name")
META_KEYS = ("model_type", "lm_gen_config", "tts_config", "stt_config", "model_id", "kamevoice")
# Keys the moshi loader accepts but drops or renames before building the LM.
_LOADER_KEYS = ("depformer_causal", "demux_second_stream", "lora", "lora_rank", "lora_scaling")
# LM arguments without which the architecture is undefined (Moshi's defaults are not Moshi's sizes).
REQUIRED_LM_KEYS = ("dim", "text_card", "card", "n_q", "dep_q", "num_heads", "num_layers", "delays")


def _transformer_argument_names() -> frozenset[str]:
    names: set[str] = set()
    for cls in (StreamingTransformer, StreamingTransformerLayer):
        names |= set(inspect.signature(cls.__init__).parameters) - {"self", "kwargs", "device", "dtype"}
    return frozenset(names)


def valid_lm_keys() -> frozenset[str]:
    """Every key config.json may hold for the LM (Moshi's names, depformer_ variants included)."""
    transformer = _transformer_argument_names()
    return (
        lm_argument_names() | transformer | {f"depformer_{k}" for k in transformer} | set(_LOADER_KEYS)
    ) - {"device", "dtype", "condition_provider", "fuser"}


@dataclass(frozen=True)
class CheckpointFiles:
    """Where a checkpoint's parts are, and its parsed configuration."""

    source: str  # repo id or directory, as given
    lm_weights: Path
    tokenizer: Path
    codec_weights: Path | None
    lm_kwargs: dict[str, Any]
    codec_config: dict[str, Any] | None = None  # Mimi's config (`mimi_config_name`), None: moshi's default
    lm_gen_config: dict[str, Any] = field(default_factory=dict)
    model_type: str = "moshi"
    extra: dict[str, Any] = field(default_factory=dict)  # our own `kamevoice` section (codec kind, ...)
    lora_weights: Path | None = None  # LoRA adapters (`lora_name`, `--lora-weight`)
    kind: str = "config.json"  # how the checkpoint describes itself: config.json, kame_finetune, moshi-7b
    codec_missing: str = ""  # why `codec_weights` is None and how to supply it ("" if found or none named)


@dataclass(frozen=True)
class CheckpointOverrides:
    """Files named apart from the checkpoint, as the published server's flags name them (each a
    local path, `file://` path or `hf://OWNER/REPO/PATH`; None: the checkpoint's own)."""

    base_repo: str | None = None  # --hf-repo: the checkpoint if none is named; tokenizer/codec fallback
    lm_weights: str | None = None  # --moshi-weight
    codec_weights: str | None = None  # --mimi-weight
    tokenizer: str | None = None  # --tokenizer
    config: str | None = None  # --config-path (a config.json or a moshi_lm_kwargs.json)
    lora_weights: str | None = None  # --lora-weight

    @property
    def any(self) -> bool:
        """Whether anything is named."""
        return any(getattr(self, name) for name in self.__dataclass_fields__)


def parse_config(raw: Any, where: str) -> tuple[dict[str, Any], dict[str, Any]]:
    """Split a config.json mapping into (file/meta keys, LM kwargs); reject unknown or missing keys."""
    if not isinstance(raw, dict):
        raise ConfigError(f"{where}: expected a JSON object, got {type(raw).__name__}")
    meta = {k: raw[k] for k in (*FILE_KEYS, *META_KEYS) if k in raw}
    lm_kwargs = {k: v for k, v in raw.items() if k not in meta}
    known = valid_lm_keys()
    unknown = sorted(k for k in lm_kwargs if k not in known)
    if unknown:
        hints = []
        for key in unknown:
            close = difflib.get_close_matches(key, sorted(known | set(FILE_KEYS) | set(META_KEYS)), n=1)
            hints.append(f"'{key}'" + (f" (did you mean '{close[0]}'?)" if close else ""))
        raise ConfigError(f"{where}: unknown key(s) {', '.join(hints)}")
    missing = [k for k in REQUIRED_LM_KEYS if k not in lm_kwargs]
    if missing:
        raise ConfigError(f"{where}: missing LM key(s) {', '.join(missing)}")
    delays, n_q = lm_kwargs["delays"], lm_kwargs["n_q"]
    if not isinstance(delays, list) or len(delays) != n_q + 1:
        raise ConfigError(f"{where}: 'delays' must list n_q + 1 = {n_q + 1} integers, got {delays!r}")
    check_lm_gen_config(meta.get("lm_gen_config", {}), where)
    extra = meta.get("kamevoice", {})
    if not isinstance(extra, dict):
        raise ConfigError(f"{where}: 'kamevoice' must be a JSON object, got {type(extra).__name__}")
    layout_of(extra, where)
    return meta, lm_kwargs


def build_lm(lm_kwargs: dict[str, Any], device: str | torch.device = "cpu", dtype=torch.float32) -> KameLM:
    """Construct a `KameLM` from config.json-style kwargs (random weights)."""
    kwargs = dict(lm_kwargs)
    kwargs.pop("depformer_causal", None)
    if "demux_second_stream" in kwargs:
        kwargs["demux_second_text_stream"] = kwargs.pop("demux_second_stream")
    for key in ("lora", "lora_rank", "lora_scaling"):  # LoRA adapters: `weights.load_lm` adds them
        kwargs.pop(key, None)
    try:
        return KameLM(device=device, dtype=dtype, **kwargs)
    except (TypeError, AssertionError, ValueError) as exc:
        raise ConfigError(f"LM configuration rejected by moshi: {exc}") from exc


def save_checkpoint(
    out_dir: str | Path,
    model: KameLM,
    lm_kwargs: dict[str, Any],
    tokenizer: str | Path,
    codec_weights: str | Path | None = None,
    codec_config: dict[str, Any] | None = None,
    lm_gen_config: dict[str, Any] | None = None,
    extra: dict[str, Any] | None = None,
    weights_name: str = "model.safetensors",
) -> Path:
    """Write `model` in the published layout; returns the directory.

    The tokenizer and codec files are copied in and named in config.json; the
    LM weights keep Moshi's key names plus `oracle_emb.weight`.
    """
    import shutil

    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    parse_config(dict(lm_kwargs), "lm_kwargs")  # refuse to write a config we could not read back
    state = {k: v.detach().contiguous().cpu() for k, v in model.state_dict().items()}
    assert ORACLE_KEY in state
    save_file(state, str(out / weights_name))
    tok = Path(tokenizer)
    if tok.resolve() != (out / tok.name).resolve():
        shutil.copyfile(tok, out / tok.name)
    config: dict[str, Any] = {"moshi_name": weights_name, "tokenizer_name": tok.name, "model_type": "moshi"}
    if codec_weights is not None:
        codec = Path(codec_weights)
        if codec.resolve() != (out / codec.name).resolve():
            shutil.copyfile(codec, out / codec.name)
        config["mimi_name"] = codec.name
    else:
        config["mimi_name"] = ""
    if codec_config is not None:
        (out / "mimi_config.json").write_text(json.dumps(codec_config, indent=2) + "\n", encoding="utf-8")
        config["mimi_config_name"] = "mimi_config.json"
    if lm_gen_config:
        config["lm_gen_config"] = dict(lm_gen_config)
    if extra:
        config["kamevoice"] = dict(extra)
    config.update(lm_kwargs)
    (out / CONFIG_NAME).write_text(json.dumps(config, indent=2) + "\n", encoding="utf-8")
    return out
