"""Small random-weight models for front-end tests."""

from __future__ import annotations

import torch

from kamevoice.frontend.checkpoint import build_lm

# Moshi's structure in miniature: 1 text + 2 model audio + 2 user audio streams, acoustic delay 1.
SMALL_TEST_LM = {
    "delays": [0, 0, 1, 0, 1],
    "n_q": 4,
    "dep_q": 2,
    "card": 32,
    "text_card": 160,
    "dim": 32,
    "num_heads": 2,
    "num_layers": 2,
    "hidden_scale": 2,
    "context": 64,
    "positional_embedding": "rope",
    "norm": "rms_norm_f32",
    "gating": "silu",
    "depformer_dim": 16,
    "depformer_num_heads": 1,
    "depformer_num_layers": 1,
    "depformer_multi_linear": True,
    "depformer_weights_per_step": True,
    "depformer_pos_emb": "none",
}


def small_lm(seed: int = 0):
    torch.manual_seed(seed)
    model = build_lm(dict(SMALL_TEST_LM))
    # Distinct oracle weights, so a bug that reads text_emb instead of oracle_emb shows.
    with torch.no_grad():
        model.oracle_emb.weight.normal_(0, 1.0)
    return model.eval()


def make_test_codec(num_codebooks: int = 2, bins: int = 32, seed: int = 0):
    """A reduced, random-weight Mimi whose codebooks have `bins` entries (the test LM's `card`)."""
    from kamevoice.frontend.codec import MimiCodec, mimi_config

    config = mimi_config(reduced=True)
    config["quantizer"]["bins"] = bins
    torch.manual_seed(seed)
    return MimiCodec.load(None, num_codebooks=num_codebooks, config=config), config


def save_codec_checkpoint(root, tokenizer, model=None, lm_kwargs=None, seed: int = 0):
    """A published-layout checkpoint with a test codec: weights file + mimi_config.json + tokenizer."""
    from pathlib import Path

    from safetensors.torch import save_file

    from kamevoice.frontend.checkpoint import save_checkpoint

    lm_kwargs = dict(lm_kwargs or SMALL_TEST_LM)
    model = model if model is not None else small_lm()
    codec, config = make_test_codec(num_codebooks=lm_kwargs["dep_q"], bins=lm_kwargs["card"], seed=seed)
    root = Path(root)
    root.mkdir(parents=True, exist_ok=True)
    weights = root / "mimi_test.safetensors"
    save_file({k: v.contiguous() for k, v in codec.model.state_dict().items()}, str(weights))
    return save_checkpoint(
        root / "ckpt", model, lm_kwargs, tokenizer=tokenizer, codec_weights=weights, codec_config=config
    )
