"""Checkpoints in the published Moshi/KAME layout, from a hub repo id or a local directory.

Layout (`kyutai/moshiko-pytorch-bf16`, `SakanaAI/kame`): a `config.json`
naming the LM weights (`moshi_name`, safetensors), the codec weights
(`mimi_name`), the text tokenizer (`tokenizer_name`), optional generation
settings (`lm_gen_config`), and the LM constructor arguments as the other
top-level keys. A repo without `config.json` is the original Moshi 7B.

Weights saved by kamevoice use exactly the published key names (Moshi's plus
`oracle_emb.weight`). A Moshi checkpoint, which has no `oracle_emb`, loads
with `oracle_emb` copied from `text_emb`.

Every failure names the file and what was expected: a missing file, a
truncated or unreadable safetensors file, a tensor of the wrong shape (a
checkpoint of another architecture), unknown or missing config keys.
"""

from __future__ import annotations

import difflib
import inspect
import json
import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch
from moshi.models import loaders
from moshi.modules.transformer import StreamingTransformer, StreamingTransformerLayer
from safetensors import safe_open
from safetensors.torch import save_file

from kamevoice.errors import CheckpointError, ConfigError
from kamevoice.frontend.lm_gen import check_lm_gen_config
from kamevoice.frontend.model import ORACLE_KEY, KameLM, lm_argument_names
from kamevoice.oracle.layouts import layout_of

CONFIG_NAME = "config.json"

# Keys of config.json that name files or settings rather than LM constructor arguments.
FILE_KEYS = ("moshi_name", "mimi_name", "tokenizer_name", "mimi_config_name", "lora_name")
META_KEYS = ("model_type", "lm_gen_config", "tts_config", "stt_config", "model_id", "kamevoice")
# Keys the moshi loader accepts but drops or renames before building the LM.
_LOADER_KEYS = ("depformer_causal", "demux_second_stream", "lora", "lora_rank", "lora_scaling")
# LM arguments without which the architecture is undefined (Moshi's defaults are not Moshi's sizes).
REQUIRED_LM_KEYS = ("dim", "text_card", "card", "n_q", "dep_q", "num_heads", "num_layers", "delays")

_HUB_ID = re.compile(r"^[\w.-]+/[\w.-]+$")


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


def resolve_checkpoint(source: str | Path, revision: str | None = None) -> CheckpointFiles:
    """Find a checkpoint's files: a local directory, or a hub repo id (downloaded through huggingface_hub)."""
    path = Path(source)
    if path.is_dir():
        fetch = _local_fetcher(path)
    elif isinstance(source, str) and _HUB_ID.match(source) and not path.exists():
        fetch = _hub_fetcher(source, revision)
    else:
        raise CheckpointError(
            f"checkpoint '{source}' is neither a local directory nor a hub repo id (owner/name)"
        )
    config_path = fetch(CONFIG_NAME, required=False)
    if config_path is None:
        # The original Moshi 7B repos carry no config.json: moshi's defaults describe them.
        meta, lm_kwargs = {}, dict(loaders._lm_kwargs)
    else:
        try:
            raw = json.loads(config_path.read_text(encoding="utf-8"))
        except (UnicodeDecodeError, json.JSONDecodeError) as exc:
            raise ConfigError(f"{config_path}: not valid JSON ({exc})") from exc
        meta, lm_kwargs = parse_config(raw, str(config_path))
    lm_weights = fetch(meta.get("moshi_name", loaders.MOSHI_NAME))
    tokenizer = fetch(meta.get("tokenizer_name", loaders.TEXT_TOKENIZER_NAME))
    codec_name = meta.get("mimi_name", loaders.MIMI_NAME)
    codec_weights = fetch(codec_name, required=False) if codec_name else None
    codec_config = None
    if meta.get("mimi_config_name"):
        config_file = fetch(meta["mimi_config_name"])
        try:
            codec_config = json.loads(config_file.read_text(encoding="utf-8"))
        except (UnicodeDecodeError, json.JSONDecodeError) as exc:
            raise ConfigError(f"{config_file}: not valid JSON ({exc})") from exc
    return CheckpointFiles(
        source=str(source),
        lm_weights=lm_weights,
        tokenizer=tokenizer,
        codec_weights=codec_weights,
        lm_kwargs=lm_kwargs,
        codec_config=codec_config,
        lm_gen_config=dict(meta.get("lm_gen_config", {})),
        model_type=meta.get("model_type", "moshi"),
        extra=dict(meta.get("kamevoice", {})),
    )


def _local_fetcher(root: Path):
    def fetch(name: str, required: bool = True) -> Path | None:
        candidate = Path(name) if Path(name).is_absolute() else root / name
        if candidate.is_file():
            return candidate
        if required:
            raise CheckpointError(f"checkpoint {root}: file '{name}' is missing (named by {CONFIG_NAME})")
        return None

    return fetch


def _hub_fetcher(repo: str, revision: str | None):
    from huggingface_hub import hf_hub_download
    from huggingface_hub.errors import EntryNotFoundError

    def fetch(name: str, required: bool = True) -> Path | None:
        try:
            return Path(hf_hub_download(repo, name, revision=revision))
        except EntryNotFoundError as exc:
            if required:
                raise CheckpointError(f"hub repo {repo}: file '{name}' does not exist") from exc
            return None
        except Exception as exc:  # offline, unknown repo, auth: all end the same way for the user
            raise CheckpointError(f"hub repo {repo}: cannot fetch '{name}': {exc}") from exc

    return fetch


def read_state_dict(path: Path) -> dict[str, torch.Tensor]:
    """Read a safetensors file; a truncated or foreign file gives an error naming it."""
    try:
        with safe_open(str(path), framework="pt", device="cpu") as f:
            return {k: f.get_tensor(k) for k in f.keys()}  # noqa: SIM118 - safe_open has no __iter__
    except Exception as exc:
        size = path.stat().st_size if path.exists() else 0
        raise CheckpointError(
            f"{path}: not a readable safetensors file ({size} bytes; truncated or corrupt?): {exc}"
        ) from exc


def build_lm(lm_kwargs: dict[str, Any], device: str | torch.device = "cpu", dtype=torch.float32) -> KameLM:
    """Construct a `KameLM` from config.json-style kwargs (random weights)."""
    kwargs = dict(lm_kwargs)
    kwargs.pop("depformer_causal", None)
    if "demux_second_stream" in kwargs:
        kwargs["demux_second_text_stream"] = kwargs.pop("demux_second_stream")
    for key in ("lora", "lora_rank", "lora_scaling"):
        if kwargs.pop(key, None):
            raise ConfigError("LoRA checkpoints are not supported yet: merge the LoRA weights first")
    try:
        return KameLM(device=device, dtype=dtype, **kwargs)
    except (TypeError, AssertionError, ValueError) as exc:
        raise ConfigError(f"LM configuration rejected by moshi: {exc}") from exc


def load_lm(files: CheckpointFiles, device: str | torch.device = "cpu", dtype=torch.float32) -> KameLM:
    """Build the LM described by `files` and load its weights, checking every tensor."""
    state = read_state_dict(files.lm_weights)
    model = build_lm(files.lm_kwargs, device="meta", dtype=dtype)
    load_weights(model, state, where=str(files.lm_weights), device=device)
    model.oracle_layout = layout_of(files.extra, files.source)
    return model.eval()


def load_weights(
    model: KameLM, state: dict[str, torch.Tensor], where: str, device: str | torch.device = "cpu"
) -> None:
    """Load a (Moshi or KAME) state dict into `model`, copying text_emb into oracle_emb if absent."""
    state = dict(state)
    if not any(k.startswith("oracle_emb.") for k in state):
        for key in [k for k in state if k.startswith("text_emb.")]:
            state["oracle_emb." + key.removeprefix("text_emb.")] = state[key].clone()
    dtype = model.text_emb.weight.dtype
    for key, value in state.items():
        if value.dtype.is_floating_point:
            state[key] = value.to(device=device, dtype=dtype)
        else:
            state[key] = value.to(device=device)
    expected = model.state_dict()
    try:
        result = model.load_state_dict(state, strict=False, assign=True)
    except RuntimeError as exc:
        # Size mismatches: a checkpoint of another architecture. Name the first tensor clearly.
        for key, value in state.items():
            if key in expected and tuple(expected[key].shape) != tuple(value.shape):
                raise CheckpointError(
                    f"{where}: tensor '{key}' has shape {list(value.shape)}, but the configuration expects "
                    f"{list(expected[key].shape)} (a checkpoint of another architecture?)"
                ) from exc
        raise CheckpointError(f"{where}: weights do not fit the configuration: {exc}") from exc
    if result.missing_keys:
        raise CheckpointError(
            f"{where}: {len(result.missing_keys)} tensor(s) missing, e.g. '{result.missing_keys[0]}'"
        )
    if result.unexpected_keys:
        raise CheckpointError(
            f"{where}: {len(result.unexpected_keys)} unexpected tensor(s), "
            f"e.g. '{result.unexpected_keys[0]}' "
            "(a checkpoint of another architecture?)"
        )
    leftover = [n for n, p in list(model.named_parameters()) + list(model.named_buffers()) if p.is_meta]
    if leftover:
        raise CheckpointError(f"{where}: no value for '{leftover[0]}'")


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
