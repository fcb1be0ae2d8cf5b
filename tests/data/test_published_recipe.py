"""The training data of the published recipe, on the published sample (kame_finetune_sample).

For every dialogue and both speakers, the text and oracle frames kamevoice lays out with its
defaults are compared with layouts computed here, by hand, from the published rules
(kame_finetune `tools/tokenize_text.py` `tokenize_and_pad_text`, `tools/tokenize_oracle.py`
`build_oracle_events_for_channel`, `utils/data.py` `DataCollator._events_to_oracle_1d` without
augmentation), restated in a few lines each:

- text: the speaker's words sorted by start, the first stripped, the others given one leading
  space, joined and tokenised at once; each word's span split evenly over its characters; a
  piece starts with its first character (the first piece's word-boundary mark is no character);
  its frame is `int(start // (1 / 12.5))`, moved on to the next PAD frame; the frame before it
  becomes end-of-padding if PAD; the stream holds `int((last end + 1) * 12.5)` frames;
- oracle: an event at frame `int(timestamp_ms / 1000 * 12.5)` writes the start id there and its
  tokens after it (the hint's when `current_spoken_ratio >= 1` and it has one, else the
  prediction's; no tokens: no event), on a stream of PAD, in the model's input timeline
  (position = frame + 1; position 0 is PAD).

The one difference kamevoice makes on purpose (docs/kame.md section 9): a newer event clears what
an older, longer one would have left after its own tokens; the published layout keeps that stale
tail. The test checks that this is the only difference, frame by frame.
"""

from __future__ import annotations

import json

import numpy as np
import pytest

from kamevoice.data.align import AlignSettings, align_text, tokenize_oracles
from kamevoice.data.formats import read_oracle_events, read_words
from kamevoice.oracle.ids import TextIds
from kamevoice.oracle.layouts import KAME
from kamevoice.oracle.timeline import OracleEvent, layout_oracle
from tests.data.helpers import SAMPLE_DIR

FRAME_RATE = 12.5
IDS = TextIds(pad=3, end_of_padding=0, start=1024)  # start id = text_card of the tiny tokenizer


@pytest.fixture(scope="module")
def tokenizer():
    import sentencepiece

    from kamevoice.tiny.defaults import tiny_checkpoint

    return sentencepiece.SentencePieceProcessor(model_file=str(next(tiny_checkpoint().glob("*.model"))))


def _dialogues():
    return sorted(p.stem for p in (SAMPLE_DIR / "text").glob("*.json"))


def published_text(words: list[dict], sp, num_frames: int) -> list[int]:
    """`tokenize_and_pad_text`, restated (then padded or cut to `num_frames`, as `merge_text_audio`)."""
    words = sorted(words, key=lambda w: w["start"])
    texts = [w["word"].strip() if i == 0 else " " + w["word"].strip() for i, w in enumerate(words)]
    chars = []
    for w, t in zip(words, texts, strict=True):
        chars += [w["start"] + i * (w["end"] - w["start"]) / len(t) for i in range(len(t))]
    pieces = sp.encode_as_pieces("".join(texts))
    timed, position = [], 0
    for i, piece in enumerate(pieces):
        if i == 0 and piece == "\u2581":
            continue
        n = len(piece) - 1 if i == 0 and piece.startswith("\u2581") else len(piece)
        timed.append((chars[position], sp.piece_to_id(piece)))
        position += n
    frames = int((words[-1]["end"] + 1) * FRAME_RATE)
    ids = [IDS.pad] * frames
    for start, piece_id in timed:
        frame = int(start // (1 / FRAME_RATE))
        while frame < frames and ids[frame] != IDS.pad:
            frame += 1
        if frame >= frames:
            break
        ids[frame] = piece_id
        if frame > 0 and ids[frame - 1] == IDS.pad:
            ids[frame - 1] = IDS.end_of_padding
    return (ids + [IDS.pad] * num_frames)[:num_frames]


def published_oracle(raw: list[dict], channel: int, sp, num_frames: int) -> tuple[list[int], set[int]]:
    """The collator's oracle stream (no augmentation) in the model's input timeline, and the
    positions holding a stale tail (a token of an event that a later event began after)."""
    out = [IDS.pad] * num_frames
    owner = [-1] * num_frames  # the event that wrote each position
    events = []
    for entry in raw:
        if entry["channel"] != channel:
            continue
        frame = int(entry["timestamp_ms"] / 1000.0 * FRAME_RATE)
        pred, hint = entry["prediction"].strip(), entry["hint"].strip()
        use_hint = entry["current_spoken_ratio"] >= 1.0 and hint
        tokens = sp.encode(hint if use_hint else pred)
        if tokens and 0 <= frame < num_frames:
            events.append((frame + 1, tokens))  # the input timeline: an initial position first
    stale = set()
    for index, (position, tokens) in sorted(enumerate(events), key=lambda e: e[1][0]):
        if position >= num_frames:
            continue
        out[position], owner[position] = IDS.start, index
        for k, token in enumerate(tokens[: num_frames - position - 1]):
            out[position + 1 + k], owner[position + 1 + k] = token, index
        # Positions after this event's own tokens still written by an older event: its stale tail.
        end = position + 1 + len(tokens)
        stale -= set(range(position, end))
        stale |= {p for p in range(end, num_frames) if owner[p] not in (-1, index) and owner[p] < index}
    return out, stale


@pytest.mark.parametrize("item", _dialogues())
def test_text_and_oracle_frames_follow_the_published_rules(item, tokenizer):
    words = read_words(SAMPLE_DIR / "text" / f"{item}.json")
    raw = json.loads((SAMPLE_DIR / "oracle_raw" / f"{item}.json").read_text())
    events = read_oracle_events(SAMPLE_DIR / "oracle_raw" / f"{item}.json")
    num_frames = int((max(w.end for w in words) + 1) * FRAME_RATE)  # no audio in the sample
    defaults = AlignSettings()
    assert (defaults.speaker, defaults.text_timing, defaults.oracle_text) == (
        "A",
        "per_character",
        "hint_when_heard",
    )
    for speaker, channel in (("A", 0), ("B", 1)):
        ours, _ = align_text(words, tokenizer, num_frames, speaker, IDS)
        mine = [{"word": w.word, "start": w.start, "end": w.end} for w in words if w.speaker == speaker]
        assert ours.tolist() == published_text(mine, tokenizer, num_frames), (item, speaker)

        oracles = tokenize_oracles(events, tokenizer, words, channel, speaker)
        frames = layout_oracle([OracleEvent(o.frame, o.tokens) for o in oracles], num_frames, IDS)
        inputs = [KAME.initial_input(IDS), *frames[:-1].tolist()]  # what the model reads, step by step
        published, stale = published_oracle(raw, channel, tokenizer, num_frames)
        differ = {p for p in range(num_frames) if inputs[p] != published[p]}
        assert differ == stale, (item, speaker, sorted(differ ^ stale)[:10])
        assert all(inputs[p] == IDS.pad for p in stale)  # kamevoice: PAD where the old tail was
        assert inputs[0] == published[0] == IDS.pad


def test_the_sample_exercises_every_rule(tokenizer):
    """The sample holds events heard in full (the hint is used), pieces that split a word, and
    piece times that differ from word starts, so the test above checks each rule."""
    hinted = pieces_in_words = later = 0
    for item in _dialogues():
        raw = json.loads((SAMPLE_DIR / "oracle_raw" / f"{item}.json").read_text())
        hinted += sum(e["current_spoken_ratio"] >= 1 and bool(e["hint"].strip()) for e in raw)
        words = read_words(SAMPLE_DIR / "text" / f"{item}.json")
        for w in words:
            n = len(tokenizer.encode(w.word))
            pieces_in_words += n > 1
        per_char, _ = align_text(words, tokenizer, 5000, "A", IDS)
        word_start, _ = align_text(words, tokenizer, 5000, "A", IDS, timing="word_start")
        later += int(np.sum(per_char != word_start))
    assert hinted >= 10 and pieces_in_words >= 10 and later > 0


def test_a_newer_shorter_oracle_leaves_no_stale_tail_unlike_the_published_layout(tokenizer):
    """The sample's events lie 5 s apart, longer than any of their oracles: no tail to go stale.
    Two events 0.4 s apart show the one difference: kamevoice drops the older one's tail."""
    from kamevoice.data.formats import OracleEvent as RawEvent

    def event(ms, prediction):
        fields = dict(conversation_context="", total_word_count=1, trigger_word="", recent_words="")
        return dict(
            fields, timestamp_ms=ms, prediction=prediction, current_spoken_ratio=0.5, channel=1, hint=""
        )

    raw = [event(800, "the store opens at nine in the morning on weekdays"), event(1200, "yes")]
    published, stale = published_oracle(raw, 1, tokenizer, 60)
    oracles = tokenize_oracles([RawEvent(**e) for e in raw], tokenizer, [], 1, "B")
    frames = layout_oracle([OracleEvent(o.frame, o.tokens) for o in oracles], 60, IDS)
    inputs = [KAME.initial_input(IDS), *frames[:-1].tolist()]
    assert stale and {p for p in range(60) if inputs[p] != published[p]} == stale
    assert all(inputs[p] == IDS.pad for p in stale)
    assert inputs[11] == published[11] == IDS.start  # 800 ms -> frame 10 -> the input at step 11
    assert inputs[16] == published[16] == IDS.start  # 1200 ms -> frame 15 -> step 16
