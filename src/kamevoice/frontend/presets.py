"""Named LM shapes: the published 7B, a small model for CPU benchmarks, and the test fixture's shape.

Each preset is config.json-style LM kwargs (see `kamevoice.frontend.checkpoint`).
"""

from __future__ import annotations

import copy
from typing import Any

from moshi.models import loaders

from kamevoice.errors import ConfigError

# The published Moshi / KAME 7B shape (moshi's own defaults, used when a repo has no config.json).
MOSHI_7B: dict[str, Any] = dict(loaders._lm_kwargs)

# Moshi's streams and vocabularies (n_q 16, dep_q 8, card 2048, text_card 32000) on a small
# trunk: the CPU benchmark shape measured in docs/components.md (dim 512, 6 layers, depformer 256x2).
SMALL: dict[str, Any] = {
    **MOSHI_7B,
    "dim": 512,
    "num_heads": 8,
    "num_layers": 6,
    "context": 3000,
    "depformer_dim": 256,
    "depformer_dim_feedforward": int(4.125 * 256),
    "depformer_num_heads": 4,
    "depformer_num_layers": 2,
}

# The tiny LM of moshi's and KAME's test suites (tests/fixtures/kame_lm).
FIXTURE: dict[str, Any] = {
    "delays": [0, 1, 2, 4],
    "n_q": 3,
    "dep_q": 3,
    "card": 32,
    "text_card": 48,
    "dim": 16,
    "num_layers": 2,
    "num_heads": 1,
    "hidden_scale": 1,
    "depformer_dim": 16,
    "depformer_multi_linear": True,
    "depformer_weights_per_step": True,
    "depformer_weights_per_step_schedule": [0, 1, 1],
    "depformer_low_rank_embeddings": 8,
    "depformer_num_heads": 1,
    "depformer_gating": "silu",
    "context": 4,
}

# KAME-tiny (issue 7): Codec 2 mode 1200 streams (11 codebooks of 512 per 80 ms frame, per
# speaker: n_q 22, dep_q 11; the semantic-like first codebook undelayed, the rest one frame late),
# a SentencePiece vocabulary of ~1000 pieces trained on the generated QA corpus (text_card 1024),
# and a trunk small enough to train in 60 minutes on 2 CPU cores and ship in <= 25 MB (bf16).
# The depformer shares one weight set across the 10 acoustic steps (schedule [0, 1, 1, ...]):
# per-step weights would multiply its size by 5.5 for codebooks that carry little of the speech.
TINY_CODEBOOKS = 11
TINY: dict[str, Any] = {
    **MOSHI_7B,
    "n_q": 2 * TINY_CODEBOOKS,
    "dep_q": TINY_CODEBOOKS,
    "card": 512,
    "text_card": 1024,
    "delays": [0] + ([0] + [1] * (TINY_CODEBOOKS - 1)) * 2,
    "dim": 192,
    "num_heads": 4,
    "num_layers": 4,
    # 3000 frames = 4 minutes of attention window: longer than any tiny dialogue.
    "context": 3000,
    "depformer_dim": 128,
    "depformer_dim_feedforward": int(4.125 * 128),
    "depformer_num_heads": 2,
    "depformer_num_layers": 2,
    "depformer_weights_per_step_schedule": [0] + [1] * (TINY_CODEBOOKS - 1),
}

PRESETS: dict[str, dict[str, Any]] = {"moshi-7b": MOSHI_7B, "small": SMALL, "fixture": FIXTURE, "tiny": TINY}


def preset(name: str) -> dict[str, Any]:
    """A copy of the named preset's LM kwargs."""
    if name not in PRESETS:
        raise ConfigError(f"unknown model preset '{name}'; known: {', '.join(PRESETS)}")
    return copy.deepcopy(PRESETS[name])
