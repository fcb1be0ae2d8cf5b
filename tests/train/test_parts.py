"""Model parts, freezing, LoRA (moshi's) merged on export, gradient checkpointing, config errors."""

from __future__ import annotations

import json

import pytest
import torch
from pydantic import BaseModel
from safetensors.torch import load_file, save_file

from kamevoice.errors import ConfigError
from kamevoice.frontend.checkpoint import save_checkpoint
from kamevoice.train.config import (
    FinetuneConfig,
    ModelConfig,
    TrainConfig,
    load_train_config,
    parse_train_config,
)
from kamevoice.train.losses import LossWeights, kame_loss
from kamevoice.train.parts import (
    ModelSource,
    apply_finetune,
    build_model,
    export_checkpoint,
    merged_model,
    part_of,
    resolve_source,
)
from tests.train.helpers import TRAIN_TEST_LM


def _model(**model_cfg):
    config = ModelConfig(lm_kwargs=dict(TRAIN_TEST_LM), tokenizer="unused.model", **model_cfg)
    source = ModelSource(lm_kwargs=dict(TRAIN_TEST_LM), tokenizer="unused.model")
    return build_model(source, config), source


def _batch(model, seed=0):
    g = torch.Generator().manual_seed(seed)
    codes = torch.randint(0, model.card, (2, model.num_codebooks, 10), generator=g)
    codes[:, 0] = torch.randint(0, 20, (2, 10), generator=g)
    return codes, torch.randint(0, model.text_card, (2, 10), generator=g)


def test_every_parameter_has_a_part_and_freezing_follows_parts():
    model, _ = _model()
    parts = {name: part_of(name) for name, _ in model.named_parameters()}
    assert set(parts.values()) == {"temporal", "depth", "embeddings", "oracle"}
    assert parts["oracle_emb.weight"] == "oracle" and parts["depformer_text_emb.weight"] == "depth"
    apply_finetune(model, FinetuneConfig(freeze=["depth", "embeddings"]))
    for name, p in model.named_parameters():
        assert p.requires_grad == (parts[name] in ("temporal", "oracle")), name
    with pytest.raises(ConfigError, match="nothing to train"):
        apply_finetune(model, FinetuneConfig(freeze=["depth", "embeddings", "temporal", "oracle"]))


def test_lora_starts_at_the_base_model_and_merges_exactly():
    model, source = _model()
    codes, oracle = _batch(model)
    with torch.no_grad():
        before = model(codes, oracle=oracle).text_logits
    finetune = FinetuneConfig(mode="lora", lora_rank=4, freeze=["depth"])
    counts = apply_finetune(model, finetune)
    trainable = {n for n, p in model.named_parameters() if p.requires_grad}
    assert trainable and all(".lora_" in n or n.startswith("oracle_emb") for n in trainable)
    assert not any(n.startswith("depformer") and ".lora_" in n for n, _ in model.named_parameters())
    assert counts["trainable"] < counts["params"]
    with torch.no_grad():
        torch.testing.assert_close(model(codes, oracle=oracle).text_logits, before, equal_nan=True)  # B = 0
        for name, p in model.named_parameters():
            if ".lora_B." in name:
                p.normal_(0, 0.05)  # as after training
        adapted = model(codes, oracle=oracle)
    merged = merged_model({k: v.clone() for k, v in model.state_dict().items()}, source, finetune)
    assert not any("lora" in k for k in merged.state_dict())
    with torch.no_grad():
        out = merged(codes, oracle=oracle)
    torch.testing.assert_close(out.text_logits, adapted.text_logits, equal_nan=True, rtol=1e-5, atol=1e-5)
    torch.testing.assert_close(out.logits, adapted.logits, equal_nan=True, rtol=1e-5, atol=1e-5)


def test_gradient_checkpointing_gives_the_same_gradients():
    grads = []
    for checkpointing in (False, True):
        model, _ = _model(gradient_checkpointing=checkpointing)
        assert model.transformer.checkpointing == checkpointing
        model.train()
        codes, oracle = _batch(model, seed=3)
        kame_loss(model(codes, oracle=oracle), codes, 3, LossWeights()).backward()
        grads.append(model.transformer.layers[0].self_attn.in_projs[0].weight.grad.clone())
    torch.testing.assert_close(grads[0], grads[1])


def test_config_errors_name_the_field():
    base = {"data": {"train": ["x"]}, "run": {"out_dir": "r"}}
    with pytest.raises(ConfigError, match="either 'checkpoint' or"):
        parse_train_config({**base, "model": {}})
    with pytest.raises(ConfigError, match="needs 'tokenizer'"):
        parse_train_config({**base, "model": {"preset": "small"}})
    with pytest.raises(ConfigError, match=r"finetune.mode"):
        parse_train_config({**base, "model": {"checkpoint": "c"}, "finetune": {"mode": "qlora"}})
    with pytest.raises(ConfigError, match=r"optim.lrr"):
        parse_train_config({**base, "model": {"checkpoint": "c"}, "optim": {"lrr": 1}})


def test_a_plain_moshi_checkpoint_starts_with_oracle_emb_equal_to_text_emb(tmp_path, spm_path):
    model, _ = _model()
    ckpt = save_checkpoint(tmp_path / "moshi", model, dict(TRAIN_TEST_LM), tokenizer=spm_path)
    state = load_file(str(ckpt / "model.safetensors"))
    del state["oracle_emb.weight"]  # what a Moshi checkpoint looks like
    save_file(state, str(ckpt / "model.safetensors"))
    config = ModelConfig(checkpoint=str(ckpt))
    source = resolve_source(config)
    assert source.tokenizer.name == spm_path.name and source.weights is not None
    loaded = build_model(source, config)
    assert torch.equal(loaded.oracle_emb.weight, loaded.text_emb.weight)
    assert torch.equal(loaded.text_emb.weight, model.text_emb.weight)


def test_checkpoints_of_a_run_name_the_codec_of_the_checkpoint_it_started_from(tmp_path, spm_path):
    model, _ = _model()
    codec = {"codec": "codec2", "codec_mode": 1200}
    ckpt = save_checkpoint(tmp_path / "init", model, dict(TRAIN_TEST_LM), tokenizer=spm_path, extra=codec)
    source = resolve_source(ModelConfig(checkpoint=str(ckpt)))
    assert source.carried_extra == codec
    out = export_checkpoint(
        tmp_path / "step", model.state_dict(), source, FinetuneConfig(), extra={"train_step": 7}
    )
    saved = resolve_source(ModelConfig(checkpoint=str(out)))
    # The run's checkpoints also say which oracle layout they were trained with (the default here).
    assert saved.carried_extra == {**codec, "oracle_layout": "kame"}
    assert json.loads((out / "config.json").read_text())["kamevoice"] == {
        **codec,
        "oracle_layout": "kame",
        "train_step": 7,
    }


def test_yaml_and_toml_configs_read_the_same(tmp_path):
    (tmp_path / "a.toml").write_text(
        '[model]\npreset = "small"\ntokenizer = "t.model"\n[data]\ntrain = ["s"]\n'
        '[run]\nout_dir = "r"\n[loss]\naudio_weight = 1.0\n'
    )
    (tmp_path / "a.yaml").write_text(
        "model: {preset: small, tokenizer: t.model}\ndata: {train: [s]}\nrun: {out_dir: r}\n"
        "loss: {audio_weight: 1.0}\n"
    )
    a, b = load_train_config(tmp_path / "a.toml"), load_train_config(tmp_path / "a.yaml", run__steps=7)
    assert a.loss.audio_weight == b.loss.audio_weight == 1.0 and a.loss.semantic == 100.0
    assert (a.run.steps, b.run.steps) == (1000, 7) and a.optim.lr == 3e-5 and a.optim.betas == (0.9, 0.95)


def test_every_config_field_is_documented():
    def walk(model: type[BaseModel], prefix: str):
        for name, field in model.model_fields.items():
            yield f"{prefix}{name}", field
            if isinstance(field.annotation, type) and issubclass(field.annotation, BaseModel):
                yield from walk(field.annotation, f"{prefix}{name}.")

    fields = dict(walk(TrainConfig, ""))
    assert len(fields) > 50 and "run.export_dtype" in fields and "loss.audio_weight" in fields
    assert [name for name, field in fields.items() if not field.description] == []
