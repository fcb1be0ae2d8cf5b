"""`kamevoice tiny build` end to end at toy scale, its resume, and the shipped config."""

from __future__ import annotations

import json
import tomllib
from pathlib import Path

import pytest

pytest.importorskip("pycodec2")
pytest.importorskip("espeakng_loader")

from kamevoice.cli import main
from kamevoice.frontend.presets import preset
from kamevoice.tiny.build import DECODING_EXTRA, LM_GEN_CONFIG, MAX_CHECKPOINT_MB, STAGES, TRAIN_RECIPE

REPO = Path(__file__).resolve().parents[2]
TOY = ["--facts", "20", "--dialogues", "6", "--train-steps", "2", "--train-minutes", "0.5", "--workers", "1"]


@pytest.fixture(scope="module")
def built(tmp_path_factory):
    out = tmp_path_factory.mktemp("tiny") / "build"
    assert main(["tiny", "build", str(out), *TOY]) == 0
    return out


def test_build_makes_a_loadable_codec2_checkpoint(built):
    from kamevoice.frontend.codec2 import Codec2Codec
    from kamevoice.frontend.loading import load_frontend

    summary = json.loads((built / "summary.json").read_text())
    assert summary["ran"] == list(STAGES)
    assert set(summary["stages"]) == set(STAGES)
    assert summary["stages"]["train"]["steps"] == 2
    assert summary["stages"]["publish"]["size_mb"] <= MAX_CHECKPOINT_MB
    frontend = load_frontend(built / "checkpoint", device="cpu")
    assert isinstance(frontend.codec, Codec2Codec)
    assert frontend.model.dep_q == 11 and frontend.model.card == 512
    assert frontend.tokenizer.vocab_size() <= frontend.model.text_card
    assert frontend.files.extra["train_step"] == 2
    # A new build trains, and says it trains, with the published oracle layout; the shipped
    # KAME-tiny predates it and says kamevoice-v1 (tests/tiny/test_trained_model.py).
    assert frontend.files.extra["oracle_layout"] == "kame" == frontend.model.oracle_layout.name
    assert frontend.files.lm_gen_config == LM_GEN_CONFIG  # greedy text unless the settings say otherwise
    # ... and oracle following (kamevoice.frontend.policies.oracle_follow), as the shipped checkpoint asks.
    assert frontend.files.extra["oracle_follow_bias"] == DECODING_EXTRA["oracle_follow_bias"] > 0


def test_rerun_resumes_without_redoing_stages(built, capsys):
    stages_before = (built / "stages.json").read_text()
    weights = (built / "checkpoint" / "model.safetensors").stat().st_mtime_ns
    assert main(["tiny", "build", str(built), *TOY]) == 0
    summary = json.loads((built / "summary.json").read_text())
    assert summary["ran"] == []
    assert (built / "stages.json").read_text() == stages_before
    assert (built / "checkpoint" / "model.safetensors").stat().st_mtime_ns == weights
    assert "skipped" in capsys.readouterr().out


def test_a_half_done_build_resumes_from_the_next_stage(built, tmp_path, capsys):
    import shutil

    copy = tmp_path / "copy"
    shutil.copytree(built, copy)
    stages = json.loads((copy / "stages.json").read_text())
    for later in ("train", "publish"):
        del stages[later]
    (copy / "stages.json").write_text(json.dumps(stages))
    assert main(["tiny", "build", str(copy), *TOY]) == 0
    summary = json.loads((copy / "summary.json").read_text())
    assert summary["ran"] == ["train", "publish"]
    # The run resumed from its step-2 checkpoint: no step was trained again.
    assert summary["stages"]["train"]["steps_this_run"] == 0


def test_other_options_refuse_to_mix_builds(built):
    from kamevoice.errors import ConfigError
    from kamevoice.tiny.build import BuildOptions, TinyBuild

    with pytest.raises(ConfigError, match="holds a build"):
        TinyBuild(built, BuildOptions(facts=21, dialogues=6))


def test_shipped_config_matches_the_build_recipe():
    from kamevoice.train.config import load_train_config

    raw = tomllib.loads((REPO / "configs" / "train_tiny.toml").read_text())
    for section, values in TRAIN_RECIPE.items():
        for key, value in values.items():
            assert raw[section][key] == value, (section, key)
    load_train_config(REPO / "configs" / "train_tiny.toml")  # a valid config


def test_tiny_preset_shape():
    kwargs = preset("tiny")
    assert (kwargs["n_q"], kwargs["dep_q"], kwargs["card"]) == (22, 11, 512)
    assert kwargs["delays"] == [0] + ([0] + [1] * 10) * 2
    assert kwargs["text_card"] >= 1000


def test_training_sized_by_the_clock(built, tmp_path):
    """Without --train-steps the run is planned from a timed probe, within --train-minutes."""
    import shutil

    copy = tmp_path / "clock"
    shutil.copytree(built, copy)
    for done in ("train", "checkpoint"):  # the run and its result, the data kept
        shutil.rmtree(copy / done)
    stages = json.loads((copy / "stages.json").read_text())
    for later in ("train", "publish"):
        del stages[later]
    (copy / "stages.json").write_text(json.dumps(stages))
    argv = ["tiny", "build", str(copy), "--facts", "20", "--dialogues", "6", "--train-minutes", "0.25"]
    assert main([*argv, "--workers", "1"]) == 0
    train = json.loads((copy / "summary.json").read_text())["stages"]["train"]
    assert train["probe_step_s"]["copy"] > 0 and train["probe_step_s"]["dialogues"] > 0
    assert train["planned_steps"] >= 1
    assert train["steps"] == train["planned_steps"] or train["stopped_by_clock"]
    assert (copy / "checkpoint" / "model.safetensors").is_file()


def test_ship_copies_a_finished_build_whole(built, tmp_path):
    from kamevoice.frontend.loading import load_frontend

    dest = tmp_path / "assets" / "tiny"
    dest.mkdir(parents=True)
    (dest / "stale.txt").write_text("from an older build")
    assert main(["tiny", "ship", str(built), "--into", str(dest)]) == 0
    assert sorted(p.name for p in dest.iterdir()) == [
        "build.json",
        "checkpoint",
        "kb.jsonl",
        "qa_held_out.jsonl",
    ]
    info = json.loads((dest / "build.json").read_text())
    assert info["options"]["facts"] == 20 and "train" in info["stages"]
    assert (dest / "kb.jsonl").read_bytes() == (built / "knowledge" / "kb.jsonl").read_bytes()
    load_frontend(dest / "checkpoint", device="cpu", load_codec=False)


def test_ship_refuses_an_unfinished_build(tmp_path, capsys):
    assert main(["tiny", "ship", str(tmp_path), "--into", str(tmp_path / "dest")]) == 1
    assert "no summary.json" in capsys.readouterr().err
    assert not (tmp_path / "dest").exists()


def test_value_token_accuracy_on_a_build(built, capsys):
    from kamevoice.frontend.loading import load_tokenizer
    from kamevoice.tiny.value_tokens import value_token_ids

    assert main(["tiny", "value-tokens", str(built / "checkpoint"), str(built / "shards" / "valid")]) == 0
    figures = json.loads(capsys.readouterr().out)
    assert figures["value_tokens"] > 0  # held-out replies state prices, codes, counts or hours
    # Without shards: copy episodes over the build's held-out facts (no training data needed).
    kb = built / "knowledge" / "kb.jsonl"
    assert main(["tiny", "value-tokens", str(built / "checkpoint"), "--kb", str(kb)]) == 0
    episodes = json.loads(capsys.readouterr().out)
    assert episodes["scored_on"] == "copy episodes" and episodes["value_tokens"] > 0
    for name in ("value_token_accuracy_oracle", "value_token_accuracy_no_oracle", "text_accuracy_oracle"):
        assert 0.0 <= figures[name] <= 1.0
    tokenizer = load_tokenizer(built / "checkpoint" / "tokenizer_tiny.model")
    ids = value_token_ids(tokenizer)
    said = {tokenizer.id_to_piece(i).replace("\u2581", "") for i in ids}
    assert said and said <= {"hundred", "zero", "one", "two", "three",
                             "four", "five", "six", "seven", "eight", "nine", "ten", "eleven", "twelve",
                             "thirteen", "fourteen", "fifteen", "sixteen", "seventeen", "eighteen",
                             "nineteen", "twenty", "thirty", "forty", "fifty", "sixty", "seventy",
                             "eighty", "ninety", *"BDFKLMRTVZ"}  # fmt: skip


def test_planned_steps_fit_the_copy_warm_up_and_the_mixed_steps():
    from kamevoice.tiny.build import planned_steps
    from kamevoice.train.config import DataConfig

    data = DataConfig(train=["x"], copy_replies="r.txt", copy_warmup_steps=100, copy_every=3)
    # 100 copy steps at 0.3 s = 30 s; then 3 steps (2 dialogue + 1 copy) take 2.3 s.
    assert planned_steps(30 + 23.0, 0.3, 1.0, data) == 100 + 30
    assert planned_steps(15, 0.3, 1.0, data) == 50  # the warm-up does not fit: copy steps only
    plain = DataConfig(train=["x"])
    assert planned_steps(50, 0.3, 1.0, plain) == 50
