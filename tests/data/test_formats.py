"""The published kame_finetune layout: reading the shared samples, validation messages, round trips."""

from __future__ import annotations

import json

import numpy as np
import pytest

from kamevoice.data.formats import (
    FormatError,
    OracleEvent,
    Word,
    hint_level,
    read_oracle_events,
    read_stereo_wav,
    read_words,
    speaker_channel,
    write_oracle_events,
    write_stereo_wav,
    write_words,
)
from kamevoice.data.oracles import OracleOptions, oracle_slots

from .helpers import SAMPLE_DIR

SAMPLE_IDS = sorted(p.stem for p in (SAMPLE_DIR / "text").glob("*.json"))


def test_all_ten_shared_samples_read():
    assert len(SAMPLE_IDS) == 10
    for sample_id in SAMPLE_IDS:
        words = read_words(SAMPLE_DIR / "text" / f"{sample_id}.json")
        events = read_oracle_events(SAMPLE_DIR / "oracle_raw" / f"{sample_id}.json")
        assert len(words) > 100 and {w.speaker for w in words} == {"A", "B"}
        assert all(0 <= w.start <= w.end for w in words)
        assert events and all(e.channel in (0, 1) for e in events)
        # The sample's hint text is empty exactly at level 0 (r <= 0.5), as docs/kame.md section 5 describes.
        assert all((e.hint == "") == (e.hint_level == 0) for e in events), sample_id


def test_our_event_slots_reproduce_the_published_events():
    """Context, word count and replying channel of each published event follow from the word timings."""
    compared = trigger_same = 0
    for sample_id in SAMPLE_IDS:
        words = read_words(SAMPLE_DIR / "text" / f"{sample_id}.json")
        published = read_oracle_events(SAMPLE_DIR / "oracle_raw" / f"{sample_id}.json")
        ours = {s.timestamp_ms: s for s in oracle_slots(sample_id, words, OracleOptions(interval_s=5.0))}
        for event in published:
            slot = ours[event.timestamp_ms]
            assert slot.context == event.conversation_context
            assert slot.total_word_count == event.total_word_count
            assert speaker_channel(slot.respondent) == event.channel
            compared += 1
            trigger_same += slot.trigger_word == event.trigger_word
    assert compared == 253
    assert trigger_same / compared >= 0.95


@pytest.mark.parametrize(
    ("ratio", "level"),
    [(0.0, 0), (0.5, 0), (0.51, 1), (0.65, 1), (0.7, 2), (0.8, 2), (0.9, 3), (0.95, 3), (0.97, 4), (0.99, 4),
     (0.995, 5), (1.0, 5)],
)  # fmt: skip
def test_hint_levels_follow_the_ratio(ratio, level):
    assert hint_level(ratio) == level


def _bad(tmp_path, payload):
    path = tmp_path / "bad.json"
    path.write_text(payload if isinstance(payload, str) else json.dumps(payload))
    return path


@pytest.mark.parametrize(
    ("payload", "expected"),
    [
        ([{"speaker": "C", "word": "hi", "start": 0, "end": 1}], "bad.json[0].speaker"),
        ([{"speaker": "A", "word": "hi", "start": 0, "end": 1}, {"speaker": "A", "word": "x", "start": 0.5}],
         "bad.json[1].end: missing"),
        ([{"speaker": "A", "word": "hi", "start": "0", "end": 1}], "bad.json[0].start: expected int or float"),  # noqa: E501
        ([{"speaker": "A", "word": "hi", "start": 2, "end": 1}], "bad.json[0].end"),
        ([{"speaker": "A", "word": "hi", "start": 2, "end": 3}, {"speaker": "A", "word": "x", "start": 1, "end": 1.5}],  # noqa: E501
         "bad.json[1].start: speaker A's words go back in time"),
        ({"speaker": "A"}, "expected a list"),
        ("[{", "not valid JSON"),
    ],
)  # fmt: skip
def test_word_file_errors_name_file_index_and_field(tmp_path, payload, expected):
    with pytest.raises(FormatError) as info:
        read_words(_bad(tmp_path, payload))
    assert expected in str(info.value)


def test_event_file_errors_name_file_index_and_field(tmp_path):
    good = json.loads((SAMPLE_DIR / "oracle_raw" / f"{SAMPLE_IDS[0]}.json").read_text())[:3]
    broken = [dict(good[0]), dict(good[1]), dict(good[2])]
    broken[2]["channel"] = 2
    with pytest.raises(FormatError, match=r"bad.json\[2\].channel: must be 0 or 1"):
        read_oracle_events(_bad(tmp_path, broken))
    broken = [dict(e) for e in good]
    del broken[1]["prediction"]
    with pytest.raises(FormatError, match=r"bad.json\[1\].prediction: missing"):
        read_oracle_events(_bad(tmp_path, broken))
    broken = [dict(e) for e in good]
    broken[0]["total_word_count"] = True
    with pytest.raises(FormatError, match=r"bad.json\[0\].total_word_count: expected int, got bool"):
        read_oracle_events(_bad(tmp_path, broken))
    with pytest.raises(FormatError, match="does not exist"):
        read_oracle_events(tmp_path / "missing.json")


def test_round_trips(tmp_path):
    words = [Word("A", "hello", 0.5, 0.8), Word("B", "hi.", 0.9, 1.2345)]
    write_words(tmp_path / "t.json", words)
    assert read_words(tmp_path / "t.json") == [Word("A", "hello", 0.5, 0.8), Word("B", "hi.", 0.9, 1.234)]
    event = OracleEvent(500, "A: hello", "hi there", 1, "hello", "hello", 0.5, 1, "")
    write_oracle_events(tmp_path / "o.json", [event])
    assert read_oracle_events(tmp_path / "o.json") == [event]
    assert list(json.loads((tmp_path / "o.json").read_text())[0]) == [
        "timestamp_ms", "conversation_context", "prediction", "total_word_count", "trigger_word",
        "recent_words", "current_spoken_ratio", "channel", "hint",
    ]  # fmt: skip
    a = np.sin(np.linspace(0, 100, 2400)).astype(np.float32) * 0.5
    write_stereo_wav(tmp_path / "s.wav", a, np.zeros(1200, np.float32), 24000)
    audio, rate = read_stereo_wav(tmp_path / "s.wav")
    assert rate == 24000 and audio.shape == (2400, 2)
    assert np.abs(audio[:, 0] - a).max() < 1e-4 and not audio[:, 1].any()
    assert not list(tmp_path.glob(".*.tmp"))  # atomic writes leave no temporary files
