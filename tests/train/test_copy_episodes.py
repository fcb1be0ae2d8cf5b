"""Oracle copy episodes: their layout, the text-only forward pass, and training with them."""

from __future__ import annotations

import random

import numpy as np
import pytest
import torch

from kamevoice.data.copy_episodes import (
    NO_AUDIO,
    CopyEpisodeOptions,
    CopyEpisodes,
    read_replies,
)
from kamevoice.errors import InputError
from kamevoice.frontend.model import text_ids_for
from kamevoice.train.config import parse_train_config
from kamevoice.train.logging import read_log
from kamevoice.train.loop import train
from kamevoice.train.state import read_trainer_state
from tests.frontend.helpers import SMALL_TEST_LM, small_lm
from tests.train.helpers import tiny_config

# Replies in the test tokenizer's vocabulary (an unknown piece would be id 0, end-of-padding).
REPLIES = [
    "How much is the kettle? Seven plus five is twelve.",
    "The warranty covers manufacturing defects for two years.",
    "Paris is the capital of France, and Berlin is the capital of Germany.",
]
IDS = text_ids_for(SMALL_TEST_LM)
TEXT_PAD, TEXT_END_OF_PADDING = IDS.pad, IDS.end_of_padding


@pytest.fixture
def episodes(spm):
    return CopyEpisodes(REPLIES, spm, IDS, n_q=SMALL_TEST_LM["n_q"], options=CopyEpisodeOptions(seq_len=160))


def test_episode_says_its_latest_oracle_word_by_word(episodes, spm):
    for seed in range(20):
        ep = episodes.episode(random.Random(seed))
        # What the text stream says, in order, word by word (EPAD marks a word's first frame).
        said, frames = [], np.flatnonzero(ep.text == TEXT_END_OF_PADDING)
        for start in frames:
            pieces = []
            for t in range(start + 1, len(ep.text)):
                if ep.text[t] in (TEXT_PAD, TEXT_END_OF_PADDING):
                    break
                pieces.append(int(ep.text[t]))
            said.append(pieces)
        expected = [spm.encode(w) for index, words in ep.spoken for w in words]
        assert said == expected
        # Each spoken reply is an oracle of its own, given as its pieces; a superseded one is
        # replaced by the next, before anything of it is said.
        spoken_events = {index for index, _ in ep.spoken}
        for index, words in ep.spoken:
            if words:  # the reply the words come from (the replies differ in their first word)
                reply = next(r for r in REPLIES if r.split()[: len(words)] == words)
                assert list(ep.events[index].tokens) == spm.encode(reply)
        for i, event in enumerate(ep.events):
            if i not in spoken_events:
                assert i + 1 in spoken_events and ep.events[i + 1].frame > event.frame


def test_sample_is_text_only_deterministic_and_laid_out_as_streaming(episodes):
    a, b, c = episodes.sample(3, epoch=1), episodes.sample(3, epoch=1), episodes.sample(4, epoch=1)
    assert torch.equal(a["codes"], b["codes"]) and torch.equal(a["oracle"], b["oracle"])
    assert not torch.equal(a["codes"], c["codes"])
    assert a["codes"].shape == (1 + SMALL_TEST_LM["n_q"], 160)
    assert (a["codes"][1:] == NO_AUDIO).all()
    oracle = a["oracle"]
    assert (oracle == IDS.start).sum() >= 1  # at least one oracle starts, as in streaming
    words = int((a["codes"][0] == TEXT_END_OF_PADDING).sum())
    assert words >= 8  # dense: several replies' words in one sample


def test_replies_file_errors_name_the_problem(tmp_path):
    empty = tmp_path / "empty.txt"
    empty.write_text("\n  \n", encoding="utf-8")
    with pytest.raises(InputError, match="no replies"):
        read_replies(empty)
    with pytest.raises(InputError, match="cannot read"):
        read_replies(tmp_path / "missing.txt")
    good = tmp_path / "r.txt"
    good.write_text("\n".join(REPLIES) + "\n", encoding="utf-8")
    assert read_replies(good) == REPLIES


def test_text_only_forward_matches_the_full_pass():
    torch.manual_seed(0)
    model = small_lm()
    B, T = 2, 12
    codes = torch.randint(0, SMALL_TEST_LM["card"], (B, 1 + SMALL_TEST_LM["n_q"], T))
    codes[:, 0] = torch.randint(0, SMALL_TEST_LM["text_card"], (B, T))
    codes[1, :, 9:] = -1
    oracle = torch.randint(0, SMALL_TEST_LM["text_card"], (B, T))
    with torch.no_grad():
        full = model(codes, oracle=oracle)
        text = model(codes, oracle=oracle, text_only=True)
    assert torch.equal(full.text_mask, text.text_mask)
    valid = full.text_mask[:, 0]  # [B, T]
    assert torch.allclose(full.text_logits[:, 0][valid], text.text_logits[:, 0][valid])
    assert text.logits.shape == full.logits.shape and not text.mask.any()


def test_copy_schedule_and_its_checks():
    from kamevoice.errors import ConfigError

    def config(**data):
        raw = {"model": {"checkpoint": "ckpt"}, "data": {"train": ["x"], **data}, "run": {"out_dir": "o"}}
        return parse_train_config(raw, "t")

    schedule = config(copy_replies="r.txt", copy_warmup_steps=2, copy_every=3).data
    kinds = [schedule.is_copy_step(s) for s in range(8)]
    assert kinds == [True, True, False, False, True, False, False, True]
    assert not any(config().data.is_copy_step(s) for s in range(4))
    with pytest.raises(ConfigError, match="copy_replies"):
        config(copy_every=3)
    with pytest.raises(ConfigError, match="copy_every = 1"):
        config(copy_replies="r.txt", copy_every=1)


def test_training_with_copy_steps_keeps_the_shard_position(tmp_path, shards, spm_path):
    replies = tmp_path / "replies.txt"
    replies.write_text("\n".join(REPLIES) + "\n", encoding="utf-8")
    train_dir, valid_dir = shards
    data = {"copy_replies": str(replies), "copy_warmup_steps": 2, "copy_every": 2, "copy_seq_len": 48}
    config = tiny_config(tmp_path / "run", train_dir, spm_path, valid_dir, data=data, run={"save_every": 6})
    result = train(config)
    batches = [r["batch"] for r in read_log(tmp_path / "run") if r.get("kind") == "train"]
    assert batches == ["copy", "copy", "dialogues", "copy", "dialogues", "copy"]
    state, _ = read_trainer_state(result.last_checkpoint)
    assert (state.epoch, state.index) == (0, 8)  # 2 dialogue steps x 4 samples: the epoch of 8 taken
    records = [r for r in read_log(tmp_path / "run") if r.get("kind") == "train"]
    for r in records:
        if r["batch"] == "copy":  # text targets only
            assert r["loss/text_non_pad"] > 0 and r["loss/semantic"] is None
        else:
            assert r["loss/semantic"] > 0
