"""Settings of the front-end: which checkpoint, where it runs, how it samples."""

from __future__ import annotations

from typing import Literal

from pydantic import Field

from kamevoice.section import Section


class FrontendSettings(Section):
    """Which front-end model to run, where, and how it samples."""

    checkpoint: str | None = Field(
        None, description="hub repo id (SakanaAI/kame, kyutai/moshiko-pytorch-bf16) or local directory"
    )
    device: str = Field("auto", description="'auto' (cuda if available), 'cpu', 'cuda', 'cuda:1', ...")
    dtype: Literal["auto", "float32", "bfloat16", "float16"] = "auto"
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
