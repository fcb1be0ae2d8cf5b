"""Everything the published loaders load, loads: each layout built here with random weights.

- a hub repo (a local cache laid out as the hub's, `HF_HUB_OFFLINE`: the real `hf_hub_download`);
- `hf://OWNER/REPO/PATH` and `file://PATH` names in config.json;
- kame_finetune outputs (`model.safetensors` + `moshi_lm_kwargs.json`, its ZeRO-3 gating names),
  with the tokenizer and codec from the flags or from the base repo;
- LoRA checkpoints (`lora: true`, `lora_name`), merged or applied;
- `.pt` checkpoints (the published key `fsdp_best_state.model`, DeepSpeed's `module`, plain);
- the published server's flags, through the one start-up path.
"""

from __future__ import annotations

import json
import re
import shutil
from pathlib import Path

import pytest
import torch
from moshi.modules.lora import LoRALinear
from moshi.utils.compile import no_compile
from safetensors.torch import save_file

from kamevoice.errors import CheckpointError, ConfigError
from kamevoice.frontend.checkpoint import CheckpointOverrides, save_checkpoint
from kamevoice.frontend.generator import BatchedGenerator
from kamevoice.frontend.lm_gen import LM_GEN_KEYWORDS, check_lm_gen_config
from kamevoice.frontend.loading import load_frontend
from kamevoice.frontend.resolve import resolve_checkpoint
from kamevoice.frontend.sampling import SamplingOptions
from kamevoice.frontend.weights import load_lm, read_state_dict
from tests.frontend.helpers import SMALL_TEST_LM, small_lm

MIMI_NAME = "tokenizer-e351c8d8-checkpoint125.safetensors"  # Moshi's codec file name
TOKENIZER_NAME = "tokenizer_spm_32k_3.model"  # Moshi's tokenizer file name


def _same_weights(a, b) -> None:
    sa, sb = a.state_dict(), b.state_dict()
    assert sa.keys() == sb.keys()
    for k in sa:
        assert torch.equal(sa[k], sb[k]), k


@pytest.fixture
def hub(tmp_path, monkeypatch):
    """`put(repo, files)`: a repo in a local cache laid out as the hub's; loading runs offline."""
    import huggingface_hub.constants as hc

    cache = tmp_path / "hub"
    cache.mkdir()
    monkeypatch.setenv("HF_HUB_CACHE", str(cache))
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    monkeypatch.setattr(hc, "HF_HUB_CACHE", str(cache))
    monkeypatch.setattr(hc, "HF_HUB_OFFLINE", True)

    def put(repo: str, files: dict[str, Path]) -> Path:
        folder = cache / f"models--{repo.replace('/', '--')}"
        snapshot = folder / "snapshots" / ("0" * 40)
        snapshot.mkdir(parents=True, exist_ok=True)
        for name, source in files.items():
            (snapshot / name).parent.mkdir(parents=True, exist_ok=True)
            shutil.copy(source, snapshot / name)
        (folder / "refs").mkdir(exist_ok=True)
        (folder / "refs" / "main").write_text("0" * 40)
        return snapshot

    return put


def _finetune_output(root: Path, model) -> Path:
    """What kame_finetune's `MoshiForFinetuning.save_pretrained` writes: its ZeRO-3 names for the
    gating weights (`...gating.linear_in_weight`), and the LM kwargs apart."""
    root.mkdir(parents=True)
    state = {}
    for key, value in model.state_dict().items():
        for name in ("linear_in", "linear_out"):
            key = key.replace(f".gating.{name}.weight", f".gating.{name}_weight")
        state[key] = value.contiguous()
    assert any(k.endswith("gating.linear_in_weight") for k in state)
    save_file(state, str(root / "model.safetensors"))
    (root / "moshi_lm_kwargs.json").write_text(json.dumps(dict(SMALL_TEST_LM, gating="silu")))
    return root


@pytest.fixture(scope="module")
def gated_model():
    """The small test LM with gated feed-forwards (as Moshi's), whose names kame_finetune renames."""
    from kamevoice.frontend.checkpoint import build_lm

    torch.manual_seed(5)
    return build_lm(dict(SMALL_TEST_LM, gating="silu")).eval()


def test_kame_finetune_output_without_tokenizer_names_what_is_missing_and_the_flag(tmp_path, gated_model):
    out = _finetune_output(tmp_path / "ft", gated_model)
    with pytest.raises(CheckpointError) as err:
        resolve_checkpoint(out)
    message = str(err.value)
    assert "tokenizer 'tokenizer_spm_32k_3.model'" in message and "--tokenizer" in message
    assert "kame_finetune" in message and "named by config.json" not in message


def test_kame_finetune_output_loads_with_the_tokenizer_flag(tmp_path, gated_model, spm_path):
    out = _finetune_output(tmp_path / "ft", gated_model)
    frontend = load_frontend(
        out, device="cpu", load_codec=False, overrides=CheckpointOverrides(tokenizer=str(spm_path))
    )
    assert frontend.files.kind == "kame_finetune" and frontend.files.tokenizer == spm_path
    _same_weights(frontend.model, gated_model)  # ZeRO-3 gating names read as Moshi's
    # No codec was named or found: loading one says what is missing and which flag gives it.
    with pytest.raises(CheckpointError, match="--mimi-weight"):
        load_frontend(out, device="cpu", overrides=CheckpointOverrides(tokenizer=str(spm_path)))


def test_kame_finetune_output_gets_tokenizer_and_codec_from_the_base_repo(
    tmp_path, gated_model, spm_path, hub
):
    codec = tmp_path / "codec.safetensors"
    save_file({"x": torch.zeros(1)}, str(codec))
    hub("kyutai/moshiko-pytorch-bf16", {TOKENIZER_NAME: spm_path, MIMI_NAME: codec})
    out = _finetune_output(tmp_path / "ft", gated_model)
    files = resolve_checkpoint(out)
    assert files.tokenizer.name == TOKENIZER_NAME and files.codec_weights.name == MIMI_NAME
    assert files.lm_weights == out / "model.safetensors"
    # --hf-repo names another base repo: it must hold them.
    with pytest.raises(CheckpointError, match="--tokenizer FILE, or --hf-repo"):
        resolve_checkpoint(out, overrides=CheckpointOverrides(base_repo="someone/else"))


def test_the_published_readme_command_loads_a_cleaned_checkpoint(tmp_path, gated_model, spm_path, hub):
    """`--moshi-weight DIR/model.safetensors --config-path DIR/moshi_lm_kwargs.json --tokenizer T`,
    no checkpoint: the base repo is the checkpoint (here it gives the codec)."""
    from kamevoice.startup import load_frontend as start_frontend
    from kamevoice.startup import settings_from_args

    codec = tmp_path / "codec.safetensors"
    save_file({"x": torch.zeros(1)}, str(codec))
    hub("kyutai/moshiko-pytorch-bf16", {MIMI_NAME: codec})
    out = _finetune_output(tmp_path / "ft", gated_model)
    args = {
        "moshi_weight": str(out / "model.safetensors"),
        "config_path": str(out / "moshi_lm_kwargs.json"),
        "tokenizer": str(spm_path),
        "device": "cpu",
        "half": True,
    }
    settings = settings_from_args(args)
    assert settings.frontend.dtype == "float16" and settings.frontend.names_checkpoint
    frontend, _ = start_frontend(settings, load_codec=False)
    assert frontend.model.text_emb.weight.dtype == torch.float16
    assert frontend.files.codec_weights.name == MIMI_NAME
    assert torch.equal(frontend.model.text_emb.weight, gated_model.text_emb.weight.half())


def test_hub_names_and_file_names_in_config_json(tmp_path, spm_path, hub):
    model = small_lm(seed=8)
    ckpt = save_checkpoint(tmp_path / "ckpt", model, dict(SMALL_TEST_LM), tokenizer=spm_path)
    hub("someone/weights", {"sub/lm.safetensors": ckpt / "model.safetensors"})
    config = json.loads((ckpt / "config.json").read_text())
    config["moshi_name"] = "hf://someone/weights/sub/lm.safetensors"
    config["tokenizer_name"] = f"file://{spm_path}"
    (ckpt / "model.safetensors").unlink()
    for name in [p.name for p in ckpt.glob("*.model")]:
        (ckpt / name).unlink()
    (ckpt / "config.json").write_text(json.dumps(config))
    frontend = load_frontend(ckpt, device="cpu", load_codec=False)
    assert frontend.files.tokenizer == spm_path and frontend.files.lm_weights.name == "lm.safetensors"
    _same_weights(frontend.model, model)
    # A hub repo id as the checkpoint: its config.json and its files through the hub cache.
    hub("someone/kame", {"config.json": ckpt / "config.json"})
    assert load_frontend("someone/kame", device="cpu", load_codec=False).files.source == "someone/kame"
    config["moshi_name"] = "hf://someone/weights/absent.safetensors"
    (ckpt / "config.json").write_text(json.dumps(config))
    with pytest.raises(CheckpointError, match=r"someone/weights: file 'absent\.safetensors' does not exist"):
        resolve_checkpoint(ckpt)
    config["moshi_name"] = "hf://nonsense"
    (ckpt / "config.json").write_text(json.dumps(config))
    with pytest.raises(CheckpointError, match="hf://OWNER/REPO/PATH"):
        resolve_checkpoint(ckpt)


def _lora_checkpoint(root: Path, spm_path, rank=4, scaling=2.0):
    """A base model saved plain, its adapters apart, and a config turning LoRA on."""
    from moshi.modules.lora import replace_all_linear_with_lora

    base = small_lm(seed=11)
    ckpt = save_checkpoint(root, base, dict(SMALL_TEST_LM), tokenizer=spm_path)
    adapted = small_lm(seed=11)
    replace_all_linear_with_lora(adapted, rank, scaling)
    torch.manual_seed(12)
    adapters = {}
    for name, module in adapted.named_modules():
        if isinstance(module, LoRALinear):
            torch.nn.init.normal_(module.lora_B.weight, std=0.05)  # non-zero: the adapters matter
            adapters[f"{name}.lora_A.weight"] = module.lora_A.weight.detach().contiguous()
            adapters[f"{name}.lora_B.weight"] = module.lora_B.weight.detach().contiguous()
    save_file(adapters, str(ckpt / "lora.safetensors"))
    config = json.loads((ckpt / "config.json").read_text())
    config.update(lora=True, lora_rank=rank, lora_scaling=scaling, lora_name="lora.safetensors")
    (ckpt / "config.json").write_text(json.dumps(config))
    return ckpt, base, adapted.eval()


@torch.no_grad()
@no_compile()  # moshi compiles its generic gating (LoRA layers): half a minute for nothing here
def test_lora_checkpoints_load_merged_or_applied(tmp_path, spm_path):
    ckpt, base, adapted = _lora_checkpoint(tmp_path / "lora", spm_path)
    codes = torch.randint(0, 32, (1, 5, 6))
    codes[:, 0] = torch.randint(0, 160, (1, 6))
    want = adapted(codes).text_logits
    merged = load_frontend(ckpt, device="cpu", load_codec=False).model
    applied = load_frontend(ckpt, device="cpu", load_codec=False, fuse_lora=False).model
    assert not any(isinstance(m, LoRALinear) for m in merged.modules())
    assert any(isinstance(m, LoRALinear) for m in applied.modules())
    torch.testing.assert_close(applied(codes).text_logits, want, rtol=0, atol=0, equal_nan=True)
    torch.testing.assert_close(merged(codes).text_logits, want, rtol=1e-4, atol=1e-5, equal_nan=True)
    assert not torch.allclose(base(codes).text_logits[:, :, 1:], want[:, :, 1:])
    with BatchedGenerator(applied, 1, SamplingOptions(greedy=True)) as gen:  # it streams too
        gen.start()
        gen.step(torch.zeros(1, 2, dtype=torch.long))
    # A LoRA config without adapters, and adapters without a LoRA config, are named.
    config = json.loads((ckpt / "config.json").read_text())
    (ckpt / "config.json").write_text(json.dumps({k: v for k, v in config.items() if k != "lora_name"}))
    with pytest.raises(ConfigError, match="names no LoRA weights"):
        load_frontend(ckpt, device="cpu", load_codec=False)
    (ckpt / "config.json").write_text(json.dumps({k: v for k, v in config.items() if k != "lora"}))
    with pytest.raises(ConfigError, match='does not set "lora": true'):
        load_frontend(ckpt, device="cpu", load_codec=False)
    (ckpt / "config.json").write_text(json.dumps(config))
    flag = CheckpointOverrides(lora_weights=str(ckpt / "lora.safetensors"))
    assert load_frontend(ckpt, device="cpu", load_codec=False, overrides=flag).files.lora_weights.is_file()


@pytest.mark.parametrize("package", ["published", "deepspeed", "plain"])
def test_pt_training_checkpoints_load(tmp_path, spm_path, package):
    model = small_lm(seed=13)
    ckpt = save_checkpoint(tmp_path / "ckpt", model, dict(SMALL_TEST_LM), tokenizer=spm_path)
    state = {k: v.clone() for k, v in model.state_dict().items()}
    wrapped = {"published": {"fsdp_best_state": {"model": state}}, "deepspeed": {"module": state}}
    torch.save(wrapped.get(package, state), ckpt / "checkpoint.pt")
    files = resolve_checkpoint(ckpt, overrides=CheckpointOverrides(lm_weights=str(ckpt / "checkpoint.pt")))
    _same_weights(load_lm(files), model)


def test_pt_without_a_state_dict_names_what_it_holds(tmp_path):
    path = tmp_path / "other.pt"
    torch.save({"optimizer": {"lr": 1.0}, "step": 3}, path)
    with pytest.raises(CheckpointError, match=r"other\.pt: no state dict found .*fsdp_best_state/model"):
        read_state_dict(path)


def test_a_misshapen_tensor_names_the_file_the_tensor_and_both_shapes(tmp_path, gated_model, spm_path):
    out = _finetune_output(tmp_path / "ft", gated_model)
    kwargs = json.loads((out / "moshi_lm_kwargs.json").read_text())
    (out / "moshi_lm_kwargs.json").write_text(json.dumps(dict(kwargs, text_card=200)))
    with pytest.raises(CheckpointError) as err:
        load_frontend(
            out, device="cpu", load_codec=False, overrides=CheckpointOverrides(tokenizer=str(spm_path))
        )
    message = str(err.value)
    assert message.startswith(str(out / "model.safetensors"))
    assert re.search(r"tensor '\w*text_emb\.weight' has shape \[161, \d+\], .* expects \[201, \d+\]", message)


def test_every_lm_gen_keyword_is_read_passed_or_refused_by_name():
    accepted = {
        "use_sampling": False, "temp": 0.5, "temp_text": 0.6, "top_k": 10, "top_k_text": 5, "cfg_coef": 1.0,
        "check": True, "support_out_of_sync": False, "cfg_is_masked_until": None, "cfg_is_no_text": False,
    }  # fmt: skip
    objects = {"condition_tensors", "on_text_hook", "on_text_logits_hook", "on_audio_hook"}
    assert set(accepted) | objects == LM_GEN_KEYWORDS  # every LMGen keyword has a fate
    assert check_lm_gen_config(accepted, "cfg") == accepted
    for key in objects:
        with pytest.raises(ConfigError, match=f"'{key}'"):
            check_lm_gen_config({key: None}, "cfg")
    for bad in ({"cfg_coef": 2.0}, {"top_k": -1}, {"temp": "hot"}, {"check": 1}, {"temperature": 1}):
        with pytest.raises(ConfigError, match=f"'{next(iter(bad))}'"):
            check_lm_gen_config(bad, "cfg")


def test_lm_gen_keywords_reach_lm_gen(tmp_path, spm_path):
    from kamevoice.frontend.settings import FrontendSettings

    model = small_lm(seed=14)
    gen_config = {"check": True, "top_k_text": 7}
    ckpt = save_checkpoint(
        tmp_path / "c", model, dict(SMALL_TEST_LM), tokenizer=spm_path, lm_gen_config=gen_config
    )
    frontend = load_frontend(ckpt, device="cpu", load_codec=False)
    sampling = SamplingOptions.from_settings(FrontendSettings(), frontend.files.lm_gen_config)
    generator = BatchedGenerator(frontend.model, 1, sampling)
    assert generator.lm_gen.check is True and generator.lm_gen.top_k_text == 7


def test_an_unreachable_base_repo_only_fails_the_parts_it_must_give(tmp_path, gated_model, spm_path, hub):
    """Offline, with the base repo not in the cache: the codec is noted missing (an error only when
    it is loaded), the tokenizer flag still loads the LM."""
    out = _finetune_output(tmp_path / "ft", gated_model)
    flags = CheckpointOverrides(
        lm_weights=str(out / "model.safetensors"),
        config=str(out / "moshi_lm_kwargs.json"),
        tokenizer=str(spm_path),
    )
    files = resolve_checkpoint(None, overrides=flags)  # the base repo is the checkpoint
    assert files.source == "kyutai/moshiko-pytorch-bf16" and files.codec_weights is None
    assert "--mimi-weight" in files.codec_missing
    _same_weights(load_lm(files), gated_model)
