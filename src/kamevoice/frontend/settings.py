"""Settings of the front-end: which checkpoint, where it runs, how it samples."""

from __future__ import annotations

from typing import Literal

from pydantic import Field

from kamevoice.section import Section


class FrontendSettings(Section):
    """Which front-end model to run, where, and how it samples.

    `hf_repo` ... `fuse_lora` are the published KAME server's flags (`--hf-repo`, `--moshi-weight`,
    `--mimi-weight`, `--tokenizer`, `--config-path`, `--lora-weight`, `--no-fuse-lora`), with its
    meaning (`kamevoice.frontend.resolve`); `--half` sets `dtype` to float16.
    """

    checkpoint: str | None = Field(
        None,
        description="hub repo id (SakanaAI/kame, kyutai/moshiko-pytorch-bf16) or local directory (published "
        "layout with config.json, or a kame_finetune output: model.safetensors + moshi_lm_kwargs.json)",
    )
    hf_repo: str | None = Field(
        None,
        description="base hub repo: the checkpoint when none is named, and where a checkpoint without "
        "config.json gets its tokenizer and codec (unset: kyutai/moshiko-pytorch-bf16)",
    )
    moshi_weight: str | None = Field(
        None, description="LM weights file (path, file://PATH or hf://OWNER/REPO/PATH): .safetensors or .pt"
    )
    mimi_weight: str | None = Field(None, description="Mimi codec weights file (path, file:// or hf://)")
    tokenizer: str | None = Field(
        None, description="SentencePiece text tokenizer file (path, file:// or hf://)"
    )
    config_path: str | None = Field(
        None, description="config file replacing the checkpoint's: a config.json or a moshi_lm_kwargs.json"
    )
    lora_weight: str | None = Field(None, description="LoRA adapter weights (safetensors) for a LoRA config")
    fuse_lora: bool = Field(True, description="merge LoRA adapters into the linear layers (False: keep them)")
    device: str = Field("auto", description="'auto' (cuda if available), 'cpu', 'cuda', 'cuda:1', ...")
    dtype: Literal["auto", "float32", "bfloat16", "float16"] = Field(
        "auto", description="weights and compute dtype ('auto': bfloat16 on a GPU, float32 on the CPU)"
    )
    # The four sampling values: where left unset, the checkpoint's config.json `lm_gen_config`
    # decides (`SamplingOptions.from_settings`), then these defaults (docs/kame.md section 2).
    temperature: float = Field(
        0.8, ge=0.0, description="audio sampling temperature (0 = greedy; unset: the checkpoint's, else 0.8)"
    )
    top_k: int = Field(250, ge=0, description="audio top-k (unset: the checkpoint's, else 250)")
    text_temperature: float = Field(
        0.7, ge=0.0, description="text sampling temperature (0 = greedy; unset: the checkpoint's, else 0.7)"
    )
    text_top_k: int = Field(25, ge=0, description="text top-k (unset: the checkpoint's, else 25)")
    oracle_follow_bias: float = Field(
        0.0,
        ge=0.0,
        description="logit bias toward the oracle's next piece when the model speaks (0: off; unset: "
        "the checkpoint's `kamevoice.oracle_follow_bias`, else 0); see frontend.policies.oracle_follow",
    )
    late_oracle_tokens: Literal["next_free", "drop"] = Field(
        "next_free",
        description="an oracle token that arrives after its frame: 'next_free' places it at the next "
        "free frame (kamevoice), 'drop' drops it as the published KAME code does (docs/kame.md section 9)",
    )
    seed: int = 42
    # A small model's step is as fast on one thread as on two, and the second thread costs CPU
    # that STT and other sessions need (KAME-tiny's default is one: `kamevoice.tiny.defaults`).
    cpu_threads: int = Field(
        0, ge=0, description="torch threads for the model on the CPU (0: torch's default, one a core)"
    )

    @property
    def names_checkpoint(self) -> bool:
        """Whether these settings name a front-end at all (else the embedded KAME-tiny runs)."""
        return any((self.checkpoint, self.hf_repo, self.moshi_weight, self.config_path))

    def overrides(self):
        """The files these settings name apart from the checkpoint (`CheckpointOverrides`)."""
        from kamevoice.frontend.checkpoint import CheckpointOverrides

        return CheckpointOverrides(
            base_repo=self.hf_repo,
            lm_weights=self.moshi_weight,
            codec_weights=self.mimi_weight,
            tokenizer=self.tokenizer,
            config=self.config_path,
            lora_weights=self.lora_weight,
        )
