"""Typed training configuration: one TOML or YAML file, every field documented.

Example (`configs/train_small_cpu.toml`)::

    [model]
    preset = "small"
    tokenizer = "path/to/tokenizer.model"

    [data]
    train = ["shards/train"]
    valid = ["shards/valid"]
    seq_len = 128

    [run]
    out_dir = "runs/small"
    steps = 200

Defaults follow the published recipe (docs/kame.md section 6): AdamW (0.9, 0.95),
lr 3e-5, weight decay 0.1, sequences of 512 frames, loss weights of
`kamevoice.train.losses.LossWeights`.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any, Literal

from pydantic import Field, ValidationError, model_validator

from kamevoice.config import read_settings_file
from kamevoice.errors import ConfigError
from kamevoice.section import Section
from kamevoice.train.losses import LossWeights

# Parts of the LM that can be frozen or trained on their own (see `kamevoice.train.parts`).
Part = Literal["temporal", "depth", "embeddings", "oracle"]


class ModelConfig(Section):
    """Where the initial weights come from: a checkpoint, or from scratch (preset or explicit kwargs)."""

    checkpoint: str | None = Field(
        None,
        description="local directory in the published layout (config.json + safetensors + tokenizer); "
        "a plain Moshi checkpoint gets oracle_emb copied from text_emb",
    )
    preset: str | None = Field(None, description="from scratch: a named shape (small, moshi-7b, fixture)")
    lm_kwargs: dict[str, Any] | None = Field(
        None, description="from scratch: explicit LM constructor kwargs (config.json style); override preset"
    )
    tokenizer: str | None = Field(
        None, description="SentencePiece model; required from scratch, optional override with a checkpoint"
    )
    codec_weights: str | None = Field(
        None, description="codec (Mimi) safetensors copied into saved checkpoints (from scratch only)"
    )
    codec_config: str | None = Field(None, description="JSON file with the codec's config (reduced Mimi)")
    init_seed: int = Field(0, description="seed of the random initialisation (from scratch)")
    gradient_checkpointing: bool = Field(
        False, description="recompute transformer activations in the backward pass (saves memory)"
    )

    @model_validator(mode="after")
    def _one_source(self) -> ModelConfig:
        scratch = self.preset is not None or self.lm_kwargs is not None
        if (self.checkpoint is None) == (not scratch):
            raise ValueError("give either 'checkpoint' or a from-scratch shape ('preset' and/or 'lm_kwargs')")
        if scratch and self.tokenizer is None:
            raise ValueError("a from-scratch model needs 'tokenizer' (a SentencePiece model)")
        return self


class FinetuneConfig(Section):
    """Which weights train: full fine-tuning or LoRA, and which parts are frozen."""

    mode: Literal["full", "lora"] = Field("full", description="'full': every unfrozen weight; 'lora'")
    freeze: list[Part] = Field(
        default_factory=list,
        description="parts kept fixed: temporal (transformer + text head), depth (depformer + audio "
        "heads), embeddings (text and audio input tables), oracle (oracle_emb)",
    )
    lora_rank: int = Field(128, ge=1, description="LoRA rank (moshi's default 128)")
    lora_scaling: float = Field(2.0, gt=0, description="LoRA scaling (moshi's default 2.0)")
    lora_parts: list[Part] = Field(
        default_factory=lambda: ["temporal", "depth"],
        description="LoRA mode: parts whose linear layers get adapters (frozen parts excluded)",
    )
    lora_full_parts: list[Part] = Field(
        default_factory=lambda: ["oracle"],
        description="LoRA mode: parts trained in full beside the adapters (default: the new oracle_emb)",
    )


class DataConfig(Section):
    """Training and validation shards (`kamevoice data shards` output directories)."""

    train: list[str] = Field(min_length=1, description="shard directories for training")
    valid: list[str] = Field(default_factory=list, description="held-out shard directories for validation")
    seq_len: int = Field(512, ge=2, description="frames per sample (512 = ~41 s, published)")
    augment: bool = Field(True, description="published oracle augmentation (skip and shift events)")
    seed: int = Field(0, description="seed of data order, crops and augmentation")
    valid_samples: int = Field(64, ge=1, description="held-out samples per validation (first N, fixed)")
    copy_replies: str | None = Field(
        None,
        description="text file, one reply a line: oracle copy episodes (kamevoice.data.copy_episodes), "
        "text-only samples whose inner monologue says the latest oracle; see copy_warmup_steps, copy_every",
    )
    copy_warmup_steps: int = Field(
        0, ge=0, description="the first N optimiser steps train on copy episodes only"
    )
    copy_every: int = Field(
        0, ge=0, description="after the warm-up, every Nth step is a copy-episode step (0: none)"
    )
    copy_seq_len: int = Field(256, ge=16, description="frames per copy episode sample")

    @model_validator(mode="after")
    def _copy_schedule(self) -> DataConfig:
        scheduled = self.copy_warmup_steps > 0 or self.copy_every > 0
        if scheduled and self.copy_replies is None:
            raise ValueError("copy_warmup_steps / copy_every need 'copy_replies' (a text file of replies)")
        if self.copy_every == 1:
            raise ValueError("copy_every = 1 would leave no step for the dialogues (use 0 or >= 2)")
        return self

    def is_copy_step(self, step: int) -> bool:
        """Whether optimiser step `step` (0-based) trains on copy episodes instead of the shards."""
        if self.copy_replies is None:
            return False
        if step < self.copy_warmup_steps:
            return True
        after = step - self.copy_warmup_steps
        return self.copy_every > 0 and after % self.copy_every == self.copy_every - 1


class OptimConfig(Section):
    """AdamW with linear warm-up and cosine decay; defaults as published."""

    lr: float = Field(3e-5, gt=0, description="peak learning rate (published 3e-5)")
    betas: tuple[float, float] = Field((0.9, 0.95), description="AdamW betas (published 0.9, 0.95)")
    weight_decay: float = Field(0.1, ge=0, description="on matrices and embeddings, not on norms/biases")
    eps: float = Field(1e-8, gt=0, description="AdamW epsilon")
    warmup_steps: int = Field(100, ge=0, description="linear warm-up from 0")
    min_lr_ratio: float = Field(0.1, ge=0, le=1, description="cosine decays to lr * this at the last step")
    grad_clip: float = Field(1.0, ge=0, description="max global gradient norm (0: no clipping)")
    batch_size: int = Field(8, ge=1, description="global batch (samples per optimiser step, all ranks)")
    micro_batch: int = Field(1, ge=1, description="samples per forward pass on one rank (accumulation)")


class RunConfig(Section):
    """Where and how long to run, how often to log, validate and save."""

    out_dir: str = Field(description="run directory: log.jsonl, checkpoints/step-N, plots")
    steps: int = Field(1000, ge=1, description="optimiser steps in all")
    device: str = Field("auto", description="auto (cuda if available), cpu, cuda")
    precision: Literal["auto", "fp32", "bf16"] = Field(
        "auto", description="auto: bf16 mixed precision on GPU (fp32 master weights), fp32 on CPU"
    )
    strategy: Literal["auto", "single", "ddp", "fsdp"] = Field(
        "auto", description="auto: single for 1 process, else ddp below fsdp_min_params, fsdp above"
    )
    fsdp_min_params: int = Field(
        1_000_000_000, ge=0, description="auto strategy picks FSDP from this many parameters on"
    )
    log_every: int = Field(10, ge=1, description="steps between log lines")
    eval_every: int = Field(200, ge=0, description="steps between validations (0: never)")
    save_every: int = Field(500, ge=0, description="steps between checkpoints (0: only at the end)")
    keep_checkpoints: int = Field(2, ge=1, description="newest checkpoints kept on disk")
    export_dtype: Literal["float32", "bfloat16"] = Field(
        "float32", description="dtype of saved model weights (the published 7B ships bfloat16)"
    )
    resume: bool = Field(True, description="continue from the newest checkpoint in out_dir if any")
    progress: bool = Field(True, description="progress bar on the console")
    tensorboard: bool = Field(False, description="also write TensorBoard events (if installed)")
    seed: int = Field(0, description="seed of torch/numpy/python RNGs (dropout etc.)")


class TrainConfig(Section):
    """A whole training run."""

    model: ModelConfig = Field(description="initial weights: a checkpoint, or a shape from scratch")
    finetune: FinetuneConfig = Field(FinetuneConfig(), description="full or LoRA, frozen parts")
    data: DataConfig = Field(description="training and validation shards")
    optim: OptimConfig = Field(OptimConfig(), description="AdamW, schedule, batch sizes")
    loss: LossWeights = Field(LossWeights(), description="loss weights (kamevoice.train.losses)")
    run: RunConfig = Field(description="run directory, length, devices, logging, checkpoints")


def load_train_config(path: str | Path, **overrides: Any) -> TrainConfig:
    """Read a TOML/YAML training config; `overrides` are dotted keys (`run.steps=10`) given as kwargs
    with `__` for dots (`run__steps=10`). Errors name the file and the field."""
    raw = read_settings_file(Path(path))
    for dotted, value in overrides.items():
        section, _, key = dotted.partition("__")
        raw.setdefault(section, {})[key] = value
    return parse_train_config(raw, str(path))


def parse_train_config(raw: dict[str, Any], where: str = "config") -> TrainConfig:
    """Validate a training config mapping."""
    try:
        return TrainConfig.model_validate(raw)
    except ValidationError as exc:
        problems = "; ".join(f"{'.'.join(str(p) for p in e['loc'])}: {e['msg']}" for e in exc.errors())
        raise ConfigError(f"{where}: invalid training config: {problems}") from exc
