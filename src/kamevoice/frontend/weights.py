"""LM weights into a `KameLM`: straight from the file to the target device, every tensor checked.

- The model is built on the meta device (no memory) and the file's tensors are assigned to
  it (`load_state_dict(assign=True)`): nothing is allocated twice. safetensors files open on
  the target device (`safe_open(device=...)`), so weights bound for a GPU never sit in host
  memory as a whole; on the CPU they stay memory-mapped when their dtype is the model's.
- Files: safetensors (`.safetensors`, `.sft`, `.sfts`, as the published loaders), or a
  `torch.save` checkpoint (`.pt`, `.bin`, ...) read with `weights_only=True`: the published
  loaders' training checkpoint (`pkg["fsdp_best_state"]["model"]`), DeepSpeed's model states
  (`pkg["module"]`), or a plain state dict (what kame_finetune's `zero_to_fp32
  --no-safe_serialization` writes).
- Key names: Moshi's, `oracle_emb.weight` optional (copied from `text_emb`, as the published
  code does); kame_finetune's fine-tuning model exposes its gating weights as
  `...gating.linear_in_weight` (DeepSpeed ZeRO-3), which are read as Moshi's `linear_in.weight`.
- LoRA (`"lora": true` in the config, the adapters in `lora_name` or `--lora-weight`): moshi's
  `replace_all_linear_with_lora` adds the adapters; `fuse=True` merges them into the linear
  layers (W + scaling B A), as the published server does by default, else they stay applied.

Every failure names the file, the tensor and both shapes where shapes disagree.
"""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any

import torch
from moshi.modules.lora import LoRALinear, replace_all_linear_with_lora
from safetensors import safe_open

from kamevoice.errors import CheckpointError, ConfigError

# File suffixes read as safetensors (the published loaders' `_is_safetensors`).
SAFETENSORS_SUFFIXES = (".safetensors", ".sft", ".sfts")
# Where a `torch.save` checkpoint keeps its state dict, tried in order: the published loaders'
# training checkpoint, DeepSpeed's model states, a generic {"model": state} package.
PT_STATE_KEYS: tuple[tuple[str, ...], ...] = (("fsdp_best_state", "model"), ("module",), ("model",))
# kame_finetune's ZeRO-3 names of the gating weights (`expose_linear_weights_for_zero3`).
_EXPOSED_GATING = re.compile(r"^(?P<prefix>.*\.gating(?:\.\d+)?)\.(?P<name>linear_in|linear_out)_weight$")
# LoRA's defaults in a config that turns it on without saying (moshi's loaders').
LORA_RANK, LORA_SCALING = 128, 2.0


def _is_safetensors(path: Path) -> bool:
    return path.suffix in SAFETENSORS_SUFFIXES


def _cast(value: torch.Tensor, dtype: torch.dtype | None) -> torch.Tensor:
    if dtype is not None and value.dtype.is_floating_point and value.dtype != dtype:
        return value.to(dtype)
    return value


def read_state_dict(
    path: str | Path, device: str | torch.device = "cpu", dtype: torch.dtype | None = None
) -> dict[str, torch.Tensor]:
    """The tensors of a weights file, on `device`, floats cast to `dtype` one by one as read
    (None: as stored); kame_finetune's exposed gating names become Moshi's."""
    path = Path(path)
    if not path.is_file():
        raise CheckpointError(f"{path}: weights file is missing")
    if _is_safetensors(path):
        state = _read_safetensors(path, device, dtype)
    else:
        state = _read_torch(path, device, dtype)
    return normalize_keys(state)


def _read_safetensors(path: Path, device: str | torch.device, dtype: torch.dtype | None) -> dict:
    try:
        with safe_open(str(path), framework="pt", device=str(device)) as f:
            return {k: _cast(f.get_tensor(k), dtype) for k in f.keys()}  # noqa: SIM118 - no __iter__
    except Exception as exc:
        size = path.stat().st_size
        raise CheckpointError(
            f"{path}: not a readable safetensors file ({size} bytes; truncated or corrupt?): {exc}"
        ) from exc


def _read_torch(path: Path, device: str | torch.device, dtype: torch.dtype | None) -> dict:
    try:
        try:
            package = torch.load(path, map_location=device, weights_only=True, mmap=True)
        except RuntimeError as exc:
            if "mmap" not in str(exc):
                raise
            package = torch.load(path, map_location=device, weights_only=True)  # a pre-zip file
    except Exception as exc:
        raise CheckpointError(
            f"{path}: not a readable torch checkpoint (read with weights_only=True; a file that "
            f"pickles other objects must be converted to safetensors first): {exc}"
        ) from exc
    state = _unwrap(package)
    if state is None:
        keys = sorted(package) if isinstance(package, dict) else type(package).__name__
        raise CheckpointError(
            f"{path}: no state dict found (looked for {', '.join('/'.join(k) for k in PT_STATE_KEYS)} "
            f"or a mapping of tensors; the file holds {keys})"
        )
    return {k: _cast(v, dtype) for k, v in state.items()}


def _unwrap(package: Any) -> dict[str, torch.Tensor] | None:
    def is_state(obj: Any) -> bool:
        return isinstance(obj, dict) and bool(obj) and all(isinstance(v, torch.Tensor) for v in obj.values())

    if is_state(package):
        return package
    for keys in PT_STATE_KEYS:
        node = package
        for key in keys:
            node = node.get(key) if isinstance(node, dict) else None
        if is_state(node):
            return node
    return None


def normalize_keys(state: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    """`state` with kame_finetune's exposed gating names (`...gating.linear_in_weight`) renamed to
    Moshi's (`...gating.linear_in.weight`), as its `restore_linear_weights_from_exposed_state_dict`."""
    out = {}
    for key, value in state.items():
        match = _EXPOSED_GATING.match(key)
        out[f"{match['prefix']}.{match['name']}.weight" if match else key] = value
    return out


def load_weights(
    model: torch.nn.Module, state: dict[str, torch.Tensor], where: str, device: str | torch.device = "cpu"
) -> None:
    """Assign a (Moshi or KAME) state dict to `model` (built on meta), copying text_emb into
    oracle_emb if absent; every missing, extra or misshapen tensor is named with `where`."""
    state = dict(state)
    if not any(k.startswith("oracle_emb.") for k in state):
        for key in [k for k in state if k.startswith("text_emb.")]:
            state["oracle_emb." + key.removeprefix("text_emb.")] = state[key].clone()
    dtype = model.text_emb.weight.dtype
    for key, value in state.items():
        state[key] = (
            value.to(device=device, dtype=dtype) if value.dtype.is_floating_point else value.to(device)
        )
    _check_shapes(model, state, where)
    try:
        result = model.load_state_dict(state, strict=False, assign=True)
    except RuntimeError as exc:
        raise CheckpointError(f"{where}: weights do not fit the configuration: {exc}") from exc
    if result.missing_keys:
        raise CheckpointError(
            f"{where}: {len(result.missing_keys)} tensor(s) missing, e.g. '{result.missing_keys[0]}'"
        )
    if result.unexpected_keys:
        raise CheckpointError(
            f"{where}: {len(result.unexpected_keys)} unexpected tensor(s), "
            f"e.g. '{result.unexpected_keys[0]}' (a checkpoint of another architecture?)"
        )
    leftover = [n for n, p in list(model.named_parameters()) + list(model.named_buffers()) if p.is_meta]
    if leftover:
        raise CheckpointError(f"{where}: no value for '{leftover[0]}'")


def _check_shapes(model: torch.nn.Module, state: dict[str, torch.Tensor], where: str) -> None:
    """A tensor whose shape differs from the model's: a checkpoint of another architecture."""
    expected = model.state_dict()
    lora = {n + ".weight" for n, m in model.named_modules() if isinstance(m, LoRALinear)}
    for key, value in state.items():
        target = key.removesuffix(".weight") + ".frozen_W.weight" if key in lora else key
        if target in expected and tuple(expected[target].shape) != tuple(value.shape):
            raise CheckpointError(
                f"{where}: tensor '{key}' has shape {list(value.shape)}, but the configuration expects "
                f"{list(expected[target].shape)} (a checkpoint of another architecture?)"
            )


def lora_settings(lm_kwargs: dict[str, Any]) -> tuple[bool, int, float]:
    """(LoRA on, rank, scaling) from config.json-style LM kwargs (moshi's loaders' defaults)."""
    return (
        bool(lm_kwargs.get("lora", False)),
        int(lm_kwargs.get("lora_rank", LORA_RANK)),
        float(lm_kwargs.get("lora_scaling", LORA_SCALING)),
    )


def add_lora(model: torch.nn.Module, rank: int, scaling: float) -> None:
    """LoRA adapters on every linear layer, on meta (their weights come from the LoRA file)."""
    replace_all_linear_with_lora(model, rank, scaling, device=torch.device("meta"))


@torch.no_grad()
def merge_lora(module: torch.nn.Module) -> int:
    """Replace every `LoRALinear` with a plain linear layer holding W + scaling B A (bias kept);
    returns how many were merged."""
    merged = 0
    for name, child in module.named_children():
        if isinstance(child, LoRALinear):
            base = child.frozen_W
            delta = (child.lora_B.weight.float() @ child.lora_A.weight.float()) * child.scaling
            weight = (base.weight.float() + delta).to(base.weight.dtype)
            linear = torch.nn.Linear(
                base.in_features,
                base.out_features,
                bias=base.bias is not None,
                device="meta",
                dtype=weight.dtype,
            )
            linear.weight = torch.nn.Parameter(weight, requires_grad=False)
            if base.bias is not None:
                linear.bias = torch.nn.Parameter(base.bias.detach(), requires_grad=False)
            setattr(module, name, linear)
            merged += 1
        else:
            merged += merge_lora(child)
    return merged


def check_lora(lm_kwargs: dict[str, Any], lora_weights: Path | None, where: str) -> None:
    """A config that turns LoRA on has adapter weights, and adapter weights come with LoRA on."""
    on, rank, scaling = lora_settings(lm_kwargs)
    if lora_weights is not None and not on:
        raise ConfigError(
            f"{where}: LoRA weights {lora_weights} given (lora_name or --lora-weight), but the "
            'configuration does not set "lora": true'
        )
    if on and lora_weights is None:
        raise ConfigError(
            f'{where}: the configuration sets "lora": true but names no LoRA weights '
            "(config.json 'lora_name' or --lora-weight)"
        )
    if on and (rank < 1 or scaling <= 0):
        raise ConfigError(f"{where}: lora_rank must be >= 1 and lora_scaling > 0, got {rank}, {scaling}")


def load_lm(files: Any, device: str | torch.device = "cpu", dtype=torch.float32, fuse_lora: bool = True):
    """The `KameLM` that `files` (a `CheckpointFiles`) describe, its weights read straight to
    `device` in `dtype`, LoRA adapters applied (`fuse_lora`: merged) and the checkpoint's oracle
    layout set; in eval mode."""
    from kamevoice.frontend.checkpoint import build_lm
    from kamevoice.oracle.layouts import layout_of

    check_lora(files.lm_kwargs, files.lora_weights, files.source)
    lora, rank, scaling = lora_settings(files.lm_kwargs)
    model = build_lm(files.lm_kwargs, device="meta", dtype=dtype)
    state = read_state_dict(files.lm_weights, device=device, dtype=dtype)
    where = str(files.lm_weights)
    if lora:
        add_lora(model, rank, scaling)
        adapters = read_state_dict(files.lora_weights, device=device, dtype=dtype)
        clash = sorted(set(adapters) & set(state))
        if clash:
            raise CheckpointError(f"{files.lora_weights}: tensor '{clash[0]}' is also in {where}")
        state.update(adapters)
        where = f"{where} + {files.lora_weights}"
    load_weights(model, state, where=where, device=device)
    del state
    if lora and fuse_lora:
        merge_lora(model)
    model.oracle_layout = layout_of(files.extra, files.source)
    return model.eval()
