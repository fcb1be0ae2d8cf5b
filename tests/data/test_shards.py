"""Frame alignment, oracle tokenisation of the published samples, augmentation, and shards end to end."""

from __future__ import annotations

import json
import random

import numpy as np
import pytest
import torch

from kamevoice.data.align import AlignSettings, align_text, tokenize_oracles
from kamevoice.data.augment import NO_AUGMENT, AugmentOptions, augment_oracles
from kamevoice.data.formats import Word, read_oracle_events, read_words
from kamevoice.data.shard_build import build_shards
from kamevoice.data.shards import SampleOptions, ShardDataset, read_example
from kamevoice.frontend.model import text_ids_for
from kamevoice.oracle.ids import TextIds
from kamevoice.oracle.timeline import OracleEvent, layout_oracle
from tests.data.helpers import SAMPLE_DIR, write_finetune_item
from tests.frontend.helpers import SMALL_TEST_LM, save_codec_checkpoint


class WordTokenizer:
    """One token per whitespace word (id = word length + 10): token counts are word counts, by hand."""

    def encode(self, text: str) -> list[int]:
        return [10 + len(w) for w in text.split()]


IDS = TextIds(pad=3, end_of_padding=0, start=999)


def test_text_alignment_rules():
    words = [
        Word("B", "hi", 1.82, 2.04),
        Word("A", "yes", 1.9, 2.0),
        Word("B", "two words", 2.04, 2.6),
        Word("B", "late", 2.05, 2.3),
    ]
    ids, dropped = align_text(words, WordTokenizer(), 40, "B", IDS, timing="word_start")
    assert ids[22] == 12  # floor(1.82 / 0.08) = 22
    assert ids[25] == 13 and ids[26] == 15  # 2.04 s -> frame 25; second piece on the next free frame
    assert ids[27] == 14  # "late" starts at frame 25, taken: next free frame
    assert ids[21] == 0 and ids[24] == 0  # end-of-padding on the frame before a piece
    assert ids[23] == 3 and ids[0] == 3 and dropped == 0
    _, dropped = align_text(words, WordTokenizer(), 26, "B", IDS, timing="word_start")
    assert dropped == 2


def test_published_samples_tokenise_with_hand_checked_frames_and_counts():
    tok = WordTokenizer()
    per_file = {}
    for text_file in sorted((SAMPLE_DIR / "text").glob("*.json")):
        item = text_file.stem
        words = read_words(text_file)
        raw = json.loads((SAMPLE_DIR / "oracle_raw" / f"{item}.json").read_text())
        events = tokenize_oracles(
            read_oracle_events(SAMPLE_DIR / "oracle_raw" / f"{item}.json"),
            tok,
            words,
            1,
            "B",
            text="prediction",
        )
        # Independent check on the raw JSON: every channel-1 event is kept, in time order, 80 ms frames.
        raw1 = [e for e in raw if e["channel"] == 1]
        assert [e.frame for e in events] == [e["timestamp_ms"] * 10 // 800 for e in raw1]
        assert [len(e.tokens) for e in events] == [len(e["prediction"].split()) for e in raw1]
        per_file[item] = events
    assert len(per_file) == 10
    # Checked by hand in SNG0072.json: 5000 ms -> frame 62, 25 words ("Hello, I'm here ... product."),
    # before B's second turn (B speaks at 1.82 s and 12.69 s); 10000 ms -> frame 125, 14 words, same turn.
    first = [(e.frame, len(e.tokens), e.turn) for e in per_file["SNG0072"][:3]]
    assert first == [(62, 25, 1), (125, 14, 1), (250, 15, 2)]
    assert len(per_file["SNG0072"]) == 12 and len(per_file["SNG1263"]) == 6
    # Laid out with the streaming rule: start id at each event's frame, the words right after.
    ev = per_file["SNG0072"]
    ids = layout_oracle([OracleEvent(e.frame, e.tokens) for e in ev], 700, IDS)
    assert ids[62] == IDS.start and list(ids[63 : 63 + 25]) == list(ev[0].tokens[:25])
    assert ids[125] == IDS.start and list(ids[126:140]) == list(ev[1].tokens)


def test_augmentation_skips_but_keeps_the_last_event_of_each_turn_and_shifts():
    from kamevoice.data.align import TokenizedOracle

    events = [TokenizedOracle(f, (5, 6), turn) for f, turn in [(10, 0), (16, 0), (22, 0), (40, 1), (46, 1)]]
    assert [e.frame for e in augment_oracles(events, random.Random(0), NO_AUGMENT)] == [10, 16, 22, 40, 46]
    options = AugmentOptions(
        shift_probability=0.0, skip_min=1.0, skip_max=1.0
    )  # skip all that may be skipped
    kept = augment_oracles(events, random.Random(0), options)
    assert [e.frame for e in kept] == [22, 46]
    shifts = set()
    for seed in range(300):
        out = augment_oracles(events, random.Random(seed), AugmentOptions(skip_min=0.0, skip_max=0.0))
        shifts.add(out[-1].frame - 46)
    assert shifts == set(range(-15, 0)) | set(range(1, 11))
    a = augment_oracles(events, random.Random(3))
    b = augment_oracles(events, random.Random(3))
    assert a == b  # seeded


@pytest.fixture(scope="module")
def codec_checkpoint(tmp_path_factory):
    """A checkpoint with a reduced, random-weight Mimi (2 codebooks) and the test SentencePiece model."""
    from tests.conftest import train_spm

    root = tmp_path_factory.mktemp("codec_ckpt")
    return save_codec_checkpoint(root, train_spm(root / "tok.model"))


def test_shards_end_to_end_with_resume_and_a_corrupt_item(tmp_path, codec_checkpoint):
    rng = np.random.default_rng(0)
    data = tmp_path / "data"
    for i, rate in enumerate([24000, 16000, 24000]):  # a 16 kHz file is resampled to the codec's rate
        write_finetune_item(data, f"item{i}", 3.0, rate, rng)
    (data / "audio" / "item2.wav").write_bytes(b"RIFF....garbage")
    out = tmp_path / "shards"
    # The test dialogues' oracle events are for speaker B (channel 1).
    b = AlignSettings(speaker="B")
    summary = build_shards(data, out, str(codec_checkpoint), align=b, per_shard=1, progress=False)
    assert summary.items == 2 and list(summary.failures) == ["item2"]
    assert "item2.wav" in summary.failures["item2"]
    assert json.loads((out / "summary.json").read_text())["items"] == 2

    ex = read_example(out / "shard-00000.safetensors", "item0")
    assert ex.audio_model.shape == (2, 38) and ex.audio_user.shape == (2, 38)  # 3 s -> 37.5 frames, padded
    assert [o.frame for o in ex.oracles] == [6, 12] and ex.oracles[0].tokens == ex.oracles[1].tokens
    # "the" at 1.2 s: frame 1.2 // 0.08 = 14 (in floating point, as the published code computes it),
    # end-of-padding before it.
    assert ex.text[14] != 3 and ex.text[13] == 0

    # Resume: a second run redoes nothing and leaves finished shards untouched.
    stamp = (out / "shard-00000.safetensors").stat().st_mtime_ns
    (data / "audio" / "item2.wav").unlink()
    write_finetune_item(data, "item2", 2.0, 24000, rng)
    again = build_shards(data, out, str(codec_checkpoint), align=b, per_shard=1, progress=False)
    assert again.skipped_done == 2 and again.items == 1 and not again.failures
    assert (out / "shard-00000.safetensors").stat().st_mtime_ns == stamp
    index = [json.loads(line) for line in (out / "index.jsonl").read_text().splitlines()]
    assert sorted(i for e in index for i in e["ids"]) == ["item0", "item1", "item2"]

    ids = text_ids_for(SMALL_TEST_LM)
    ds = ShardDataset(out, ids, SampleOptions(seq_len=20, audio_codebooks=2, augment=NO_AUGMENT))
    sample = ds.sample(ds.entries.index(next(e for e in ds.entries if e[1] == "item0")))
    assert sample["codes"].shape == (5, 20) and sample["oracle"].shape == (20,)
    full = ShardDataset(out, ids, SampleOptions(seq_len=None, audio_codebooks=2, augment=NO_AUGMENT))
    s = full.sample([e[1] for e in full.entries].index("item0"))
    expected = layout_oracle([OracleEvent(o.frame, o.tokens) for o in ex.oracles], 38, ids)
    assert s["oracle"].tolist() == expected.tolist()
    assert torch.equal(s["codes"][0], torch.from_numpy(ex.text.astype(np.int64)))
    # Augmented samples are a pure function of (seed, epoch, index).
    aug = ShardDataset(out, ids, SampleOptions(seq_len=None, audio_codebooks=2, seed=4))
    assert torch.equal(aug.sample(0, epoch=1)["oracle"], aug.sample(0, epoch=1)["oracle"])


def test_shards_command(tmp_path, codec_checkpoint):
    from tests.data.helpers import cli

    data = tmp_path / "data"
    write_finetune_item(data, "one", 2.0, 24000, np.random.default_rng(1))
    out = tmp_path / "shards"
    argv = ("data", "shards", data, "--out", out, "--checkpoint", codec_checkpoint, "--no-progress")
    assert cli(*argv, "--speaker", "B") == 0
    summary = json.loads((out / "summary.json").read_text())
    assert summary["items"] == 1 and summary["oracle_events"] == 2
    assert cli("data", "shards", data, "--out", out, "--checkpoint", codec_checkpoint, "--no-progress") == 0
    assert json.loads((out / "summary.json").read_text())["skipped_done"] == 1
