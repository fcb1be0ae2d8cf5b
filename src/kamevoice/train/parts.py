"""The model to train: initial weights, LoRA adapters, frozen parts, and export in the published layout.

Parts of a `KameLM` (by parameter name):

- `temporal`: the temporal transformer, its output norm and the text head;
- `depth`: the depth transformer, its input projections, embeddings, norms and the audio heads;
- `embeddings`: the text and audio input tables of the temporal transformer (`text_emb`, `emb`);
- `oracle`: KAME's `oracle_emb`.

LoRA uses moshi's own `replace_all_linear_with_lora` (adapters on every linear
layer of the chosen parts, B initialised to zero so training starts from the
base model exactly) and `replace_lora_with_linear` to merge them on export.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch
from moshi.modules.lora import LoRALinear, replace_all_linear_with_lora, replace_lora_with_linear

from kamevoice.errors import ConfigError
from kamevoice.frontend.checkpoint import build_lm, save_checkpoint
from kamevoice.frontend.model import KameLM
from kamevoice.frontend.presets import preset
from kamevoice.frontend.resolve import resolve_checkpoint
from kamevoice.frontend.weights import load_weights, read_state_dict
from kamevoice.oracle.layouts import DEFAULT_LAYOUT, LAYOUT_KEY, OracleLayout, layout_of
from kamevoice.train.config import FinetuneConfig, ModelConfig, Part

# Parameter-name prefixes of each part (first match wins).
PART_PREFIXES: dict[Part, tuple[str, ...]] = {
    "oracle": ("oracle_emb.",),
    "embeddings": ("text_emb.", "emb."),
    "depth": ("depformer", "linears."),
    "temporal": ("transformer.", "out_norm.", "text_linear.", "extra_heads."),
}
# Modules (attribute names of the LM) that make up each part, for inserting LoRA adapters.
PART_MODULES: dict[Part, tuple[str, ...]] = {
    "oracle": (),
    "embeddings": (),  # embedding tables have no linear layers worth adapting
    "depth": ("depformer", "depformer_in", "linears"),
    "temporal": ("transformer", "text_linear"),
}
# LM kwargs that only matter while training: never written into a saved config.json.
TRAIN_ONLY_KWARGS = ("gradient_checkpointing",)
# Keys of config.json's `kamevoice` section that a run's checkpoints carry from the initial one:
# the codec (e.g. Codec 2 and its mode), or they would load with Mimi; the oracle layout, or a
# checkpoint trained with another layout would be read with the default one.
CARRIED_EXTRA_KEYS = ("codec", "codec_mode", "codec_bits_per_codebook", LAYOUT_KEY)


@dataclass
class ModelSource:
    """What a run starts from and what its saved checkpoints must carry along."""

    lm_kwargs: dict[str, Any]
    tokenizer: Path
    codec_weights: Path | None = None
    codec_config: dict[str, Any] | None = None
    lm_gen_config: dict[str, Any] = field(default_factory=dict)
    weights: Path | None = None  # LM safetensors (None: random init)
    carried_extra: dict[str, Any] = field(default_factory=dict)  # `CARRIED_EXTRA_KEYS` of `kamevoice`

    @property
    def layout(self) -> OracleLayout:
        """The oracle layout the run trains with: the initial checkpoint's (the default if none)."""
        return layout_of(self.carried_extra) if self.carried_extra else DEFAULT_LAYOUT


def part_of(name: str) -> Part:
    """The part a parameter name belongs to (LoRA's `frozen_W` / `lora_A` names included)."""
    for part, prefixes in PART_PREFIXES.items():
        if name.startswith(prefixes):
            return part
    raise ValueError(f"parameter '{name}' belongs to no known part")


def resolve_source(config: ModelConfig) -> ModelSource:
    """Find the initial weights (or shape) and the files a checkpoint of this run must include."""
    if config.checkpoint is not None:
        files = resolve_checkpoint(config.checkpoint)
        return ModelSource(
            lm_kwargs=dict(files.lm_kwargs),
            tokenizer=Path(config.tokenizer) if config.tokenizer else files.tokenizer,
            codec_weights=files.codec_weights,
            codec_config=files.codec_config,
            lm_gen_config=dict(files.lm_gen_config),
            weights=files.lm_weights,
            carried_extra={k: files.extra[k] for k in CARRIED_EXTRA_KEYS if k in files.extra},
        )
    kwargs = preset(config.preset) if config.preset else {}
    kwargs.update(config.lm_kwargs or {})
    codec_config = None
    if config.codec_config:
        codec_config = json.loads(Path(config.codec_config).read_text(encoding="utf-8"))
    assert config.tokenizer is not None  # checked by ModelConfig
    return ModelSource(
        lm_kwargs=kwargs,
        tokenizer=Path(config.tokenizer),
        codec_weights=Path(config.codec_weights) if config.codec_weights else None,
        codec_config=codec_config,
    )


def build_model(source: ModelSource, config: ModelConfig, device: torch.device | str = "cpu") -> KameLM:
    """The initial `KameLM` in fp32 on `device`: checkpoint weights, or a seeded random init."""
    kwargs = dict(source.lm_kwargs)
    if config.gradient_checkpointing:
        kwargs["gradient_checkpointing"] = True
    if source.weights is None:
        torch.manual_seed(config.init_seed)
        model = build_lm(kwargs, device=device, dtype=torch.float32)
    else:
        model = build_lm(kwargs, device="meta", dtype=torch.float32)
        state = read_state_dict(source.weights, device=device, dtype=torch.float32)
        load_weights(model, state, where=str(source.weights), device=device)
    model.oracle_layout = source.layout
    return model


def apply_finetune(model: KameLM, config: FinetuneConfig) -> dict[str, int]:
    """Insert LoRA adapters if asked, set `requires_grad` per part; returns parameter counts."""
    frozen = set(config.freeze)
    if config.mode == "lora":
        for part in config.lora_parts:
            if part in frozen:
                continue
            for attr in PART_MODULES[part]:
                replace_all_linear_with_lora(getattr(model, attr), config.lora_rank, config.lora_scaling)
        for module in model.modules():
            if isinstance(module, LoRALinear):
                # Standard LoRA init: B = 0, so the adapted model starts as the base model.
                torch.nn.init.zeros_(module.lora_B.weight)
    for name, param in model.named_parameters():
        part = part_of(name)
        if config.mode == "full":
            param.requires_grad_(part not in frozen)
        else:
            adapter = ".lora_A." in name or ".lora_B." in name
            param.requires_grad_(adapter or (part in config.lora_full_parts and part not in frozen))
    total = sum(p.numel() for p in model.parameters())
    trainable = sum(p.numel() for p in model.parameters() if p.requires_grad)
    if trainable == 0:
        raise ConfigError("nothing to train: every part is frozen")
    return {"params": total, "trainable": trainable}


def trainable_names(model: torch.nn.Module) -> list[str]:
    """Names of the parameters that train, in registration order."""
    return [n for n, p in model.named_parameters() if p.requires_grad]


def merged_model(state: dict[str, torch.Tensor], source: ModelSource, finetune: FinetuneConfig) -> KameLM:
    """A plain `KameLM` (LoRA merged) holding a full training-form state dict (as on the CPU)."""
    model = build_lm(export_kwargs(source.lm_kwargs), device="meta", dtype=torch.float32)
    if finetune.mode == "lora":
        apply_finetune(model, finetune)  # same adapters, on meta: only the structure matters
    model.load_state_dict(state, strict=True, assign=True)
    if finetune.mode == "lora":
        replace_lora_with_linear(model)
    model.oracle_layout = source.layout
    return model


def export_kwargs(lm_kwargs: dict[str, Any]) -> dict[str, Any]:
    """LM kwargs as config.json must hold them (training-only switches removed)."""
    return {k: v for k, v in lm_kwargs.items() if k not in TRAIN_ONLY_KWARGS}


def export_checkpoint(
    out_dir: Path,
    state: dict[str, torch.Tensor],
    source: ModelSource,
    finetune: FinetuneConfig,
    dtype: torch.dtype = torch.float32,
    extra: dict[str, Any] | None = None,
) -> Path:
    """Write a full training-form state dict as a published-layout checkpoint (LoRA merged)."""
    model = merged_model(state, source, finetune).to(dtype)
    return save_checkpoint(
        out_dir,
        model,
        export_kwargs(source.lm_kwargs),
        tokenizer=source.tokenizer,
        codec_weights=source.codec_weights,
        codec_config=source.codec_config,
        lm_gen_config=source.lm_gen_config or None,
        # The layout is written out even when the source named none: it is what the run trained with.
        extra={**source.carried_extra, LAYOUT_KEY: source.layout.name, **(extra or {})},
    )
