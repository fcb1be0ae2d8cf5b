"""Checkpoints in the published layout: save, load, legacy Moshi, hub loading, and every failure named."""

from __future__ import annotations

import json
import shutil

import pytest
import torch
from moshi.models.lm import LMModel
from safetensors.torch import load_file, save_file

from kamevoice.errors import CheckpointError, ConfigError, InputError
from kamevoice.frontend.checkpoint import CONFIG_NAME, build_lm, parse_config, save_checkpoint
from kamevoice.frontend.loading import load_frontend
from kamevoice.frontend.model import ORACLE_KEY
from kamevoice.frontend.resolve import resolve_checkpoint
from kamevoice.frontend.weights import load_lm
from tests.frontend.helpers import SMALL_TEST_LM, small_lm


@pytest.fixture
def ckpt(tmp_path, spm_path):
    model = small_lm(seed=3)
    out = save_checkpoint(
        tmp_path / "ckpt",
        model,
        dict(SMALL_TEST_LM),
        tokenizer=spm_path,
        lm_gen_config={"temp": 0.6, "top_k": 100},
    )
    return out, model


def _same_weights(a, b) -> None:
    sa, sb = a.state_dict(), b.state_dict()
    assert sa.keys() == sb.keys()
    for k in sa:
        assert torch.equal(sa[k], sb[k]), k


def test_round_trip_and_layout(ckpt):
    out, model = ckpt
    config = json.loads((out / CONFIG_NAME).read_text())
    assert config["moshi_name"] == "model.safetensors" and config["tokenizer_name"].endswith(".model")
    assert config["dim"] == SMALL_TEST_LM["dim"] and config["lm_gen_config"] == {"temp": 0.6, "top_k": 100}
    frontend = load_frontend(out, device="cpu", load_codec=False)
    _same_weights(frontend.model, model)
    assert frontend.files.lm_gen_config["top_k"] == 100
    assert frontend.tokenizer.vocab_size() <= frontend.model.text_card


def test_saved_keys_are_moshi_names_plus_oracle_emb(ckpt):
    out, _ = ckpt
    state = load_file(out / "model.safetensors")
    torch.manual_seed(0)
    plain = LMModel(**SMALL_TEST_LM)
    assert set(state) == set(plain.state_dict()) | {ORACLE_KEY}
    # Without oracle_emb, the same file is a valid plain Moshi state dict (strict load).
    plain.load_state_dict({k: v for k, v in state.items() if k != ORACLE_KEY}, strict=True)


def test_moshi_checkpoint_without_oracle_copies_text_emb(ckpt, tmp_path):
    out, model = ckpt
    state = load_file(out / "model.safetensors")
    del state[ORACLE_KEY]
    save_file(state, str(out / "model.safetensors"))
    loaded = load_frontend(out, device="cpu", load_codec=False).model
    assert torch.equal(loaded.oracle_emb.weight, loaded.text_emb.weight)
    assert torch.equal(loaded.text_emb.weight, model.text_emb.weight)


def test_hub_repo_id_goes_through_huggingface_hub_cache(ckpt, tmp_path, monkeypatch):
    """A repo id is fetched with hf_hub_download: a cache laid out as the hub's loads offline."""
    out, model = ckpt
    cache = tmp_path / "hub"
    snapshot = cache / "models--SakanaAI--kame" / "snapshots" / ("0" * 40)
    snapshot.mkdir(parents=True)
    for f in out.iterdir():
        shutil.copy(f, snapshot / f.name)
    (cache / "models--SakanaAI--kame" / "refs").mkdir()
    (cache / "models--SakanaAI--kame" / "refs" / "main").write_text("0" * 40)
    monkeypatch.setenv("HF_HUB_CACHE", str(cache))
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    import huggingface_hub.constants as hc

    monkeypatch.setattr(hc, "HF_HUB_CACHE", str(cache))
    monkeypatch.setattr(hc, "HF_HUB_OFFLINE", True)
    files = resolve_checkpoint("SakanaAI/kame")
    assert files.lm_weights.parent == snapshot
    _same_weights(load_lm(files), model)
    with pytest.raises(CheckpointError, match="hub repo kyutai/unknown-repo"):
        resolve_checkpoint("kyutai/unknown-repo")


def test_missing_file_is_named(ckpt):
    out, _ = ckpt
    (out / "model.safetensors").unlink()
    with pytest.raises(CheckpointError, match=r"'model\.safetensors' is missing"):
        resolve_checkpoint(out)


def test_truncated_weights_are_named(ckpt):
    out, _ = ckpt
    path = out / "model.safetensors"
    data = path.read_bytes()
    path.write_bytes(data[: len(data) // 2])
    with pytest.raises(CheckpointError, match=r"model\.safetensors: not a readable safetensors file"):
        load_frontend(out, device="cpu", load_codec=False)


def test_other_architecture_names_the_tensor(ckpt):
    out, _ = ckpt
    config = json.loads((out / CONFIG_NAME).read_text())
    config["dim"] = 48
    (out / CONFIG_NAME).write_text(json.dumps(config))
    with pytest.raises(
        CheckpointError, match=r"tensor '.*' has shape \[.*32.*\], but the configuration expects"
    ):
        load_frontend(out, device="cpu", load_codec=False)


def test_fewer_layers_in_file_than_config(ckpt):
    out, _ = ckpt
    config = json.loads((out / CONFIG_NAME).read_text())
    config["num_layers"] = 3
    (out / CONFIG_NAME).write_text(json.dumps(config))
    with pytest.raises(CheckpointError, match=r"missing, e\.g\. 'transformer\.layers\.2"):
        load_frontend(out, device="cpu", load_codec=False)


def test_config_unknown_and_missing_keys(ckpt):
    out, _ = ckpt
    config = json.loads((out / CONFIG_NAME).read_text())
    bad = dict(config, num_layer=2)
    (out / CONFIG_NAME).write_text(json.dumps(bad))
    with pytest.raises(ConfigError, match=r"unknown key.*'num_layer' \(did you mean 'num_layers'"):
        resolve_checkpoint(out)
    missing = {k: v for k, v in config.items() if k != "text_card"}
    (out / CONFIG_NAME).write_text(json.dumps(missing))
    with pytest.raises(ConfigError, match=r"missing LM key.*text_card"):
        resolve_checkpoint(out)
    (out / CONFIG_NAME).write_text("{not json")
    with pytest.raises(ConfigError, match="not valid JSON"):
        resolve_checkpoint(out)


def test_config_structural_errors():
    base = {
        k: SMALL_TEST_LM[k] for k in ("dim", "text_card", "card", "n_q", "dep_q", "num_heads", "num_layers")
    }
    with pytest.raises(ConfigError, match="'delays' must list n_q \\+ 1 = 5"):
        parse_config(dict(base, delays=[0, 1]), "cfg")
    with pytest.raises(ConfigError, match="lm_gen_config has unknown key"):
        parse_config(dict(base, delays=[0] * 5, lm_gen_config={"temperature": 1}), "cfg")
    with pytest.raises(ConfigError, match="expected a JSON object"):
        parse_config([1, 2], "cfg")


def test_bad_tokenizer_and_missing_codec(ckpt):
    out, _ = ckpt
    with pytest.raises(CheckpointError, match="no codec weights"):
        load_frontend(out, device="cpu", load_codec=True)
    tok = next(out.glob("*.model"))
    tok.write_bytes(b"garbage")
    with pytest.raises(CheckpointError, match=f"tokenizer .*{tok.name}: not a SentencePiece model"):
        load_frontend(out, device="cpu", load_codec=False)


def test_not_a_checkpoint_source(tmp_path):
    with pytest.raises(CheckpointError, match="neither a local directory nor a hub repo id"):
        resolve_checkpoint(str(tmp_path / "nope" / "deeper"))


def test_forward_rejects_bad_shapes_and_ids():
    model = small_lm()
    codes = torch.zeros(2, model.num_codebooks, 6, dtype=torch.long)
    with pytest.raises(InputError, match=r"codes: expected shape \[B, 5, T\]"):
        model(codes[:, :3])
    with pytest.raises(InputError, match="int64"):
        model(codes.float())
    bad = codes.clone()
    bad[0, 1, 0] = model.card + 1
    with pytest.raises(InputError, match="audio token ids"):
        model(bad)
    with pytest.raises(InputError, match=r"oracle: expected shape \(2, 6\)"):
        model(codes, oracle=torch.zeros(2, 5, dtype=torch.long))
    with pytest.raises(InputError, match="out of range"):
        model(codes, oracle=torch.full((2, 6), model.text_card + 1))


def test_build_lm_rejects_nonsense():
    with pytest.raises(ConfigError, match="rejected by moshi"):
        build_lm(dict(SMALL_TEST_LM, delays=[0, 1]))


def test_codec_weights_and_config_in_the_layout(tmp_path, spm_path):
    """A checkpoint with Mimi weights and a mimi_config.json loads a codec with exactly those weights."""
    from kamevoice.frontend.codec import MimiCodec, mimi_config

    torch.manual_seed(5)
    codec = MimiCodec.load(None, num_codebooks=2, reduced=True)
    weights = tmp_path / "mimi_test.safetensors"
    save_file({k: v.contiguous() for k, v in codec.model.state_dict().items()}, str(weights))
    out = save_checkpoint(
        tmp_path / "ckpt",
        small_lm(),
        dict(SMALL_TEST_LM),
        tokenizer=spm_path,
        codec_weights=weights,
        codec_config=mimi_config(reduced=True),
    )
    frontend = load_frontend(out, device="cpu", load_codec=True)
    assert frontend.codec.num_codebooks == 2 and frontend.codec.frame_size == 1920
    pcm = 0.1 * torch.randn(1, 1, 1920 * 3, generator=torch.Generator().manual_seed(1))
    assert torch.equal(frontend.codec.encode(pcm), codec.encode(pcm))

    data = (out / weights.name).read_bytes()
    (out / weights.name).write_bytes(data[:1000])
    with pytest.raises(CheckpointError, match=r"codec weights .*mimi_test\.safetensors: cannot load as Mimi"):
        load_frontend(out, device="cpu", load_codec=True)
