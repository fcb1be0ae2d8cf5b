"""The whole offline pipeline through the command line: dialogues -> synth -> oracles -> show."""

from __future__ import annotations

import itertools
import json

import numpy as np
import pytest

from kamevoice.data.formats import hint_level, read_oracle_events, read_stereo_wav, read_words
from kamevoice.data.oracles import split_turns

from .helpers import FRAME_S, GSM8K_ITEMS, SPEECH_RMS, cli, frame_rms, write_jsonl


@pytest.fixture(scope="module")
def built(tmp_path_factory):
    root = tmp_path_factory.mktemp("pipeline")
    qa = write_jsonl(root / "qa.jsonl", GSM8K_ITEMS)
    assert cli("data", "dialogues", qa, "--preset", "gsm8k", "--out", root / "scripts", "--no-progress") == 0
    assert cli("data", "synth", root / "scripts", "--out", root / "data", "--workers", "2",
               "--overlap-probability", "0.5", "--no-progress") == 0  # fmt: skip
    assert cli("data", "oracles", root / "data", "--out", root / "data", "--no-progress") == 0
    return root


def _scripts(root):
    return {
        s["id"]: s for s in map(json.loads, (root / "scripts" / "dialogues.jsonl").read_text().splitlines())
    }


def test_files_and_summaries(built):
    scripts = _scripts(built)
    assert len(scripts) == len(GSM8K_ITEMS)
    for sid in scripts:
        for sub, ext in (("text", "json"), ("audio", "wav"), ("oracle_raw", "json")):
            assert (built / "data" / sub / f"{sid}.{ext}").is_file()
    synth = json.loads((built / "data" / "summary-synth.json").read_text())
    assert synth["items_done"] == len(GSM8K_ITEMS) and synth["items_failed"] == 0
    assert synth["totals"]["audio_hours"] * 3600 == pytest.approx(synth["totals"]["audio_seconds"], rel=1e-3)
    oracles = json.loads((built / "data" / "summary-oracles.json").read_text())
    levels = {k: v for k, v in oracles["totals"].items() if k.startswith("events_level_")}
    assert sum(levels.values()) == oracles["totals"]["events"] > 0
    assert set(levels) == {f"events_level_{i}" for i in range(6)}


def test_words_follow_the_script_and_channels_hold_their_speaker(built):
    overlaps = 0
    for sid, script in _scripts(built).items():
        words = read_words(built / "data" / "text" / f"{sid}.json")
        turns = split_turns(words)
        assert len(turns) == len(script["turns"])
        for indices, turn in zip(turns, script["turns"], strict=True):
            assert words[indices[0]].speaker == ("A" if turn["speaker"] == "user" else "B")
            assert " ".join(words[i].word for i in indices) == turn["text"]
        audio, rate = read_stereo_wav(built / "data" / "audio" / f"{sid}.wav")
        assert rate == 24000 and audio.shape[1] == 2
        assert audio.shape[0] / rate >= max(w.end for w in words)
        speech = [frame_rms(audio[:, ch], rate) > SPEECH_RMS for ch in (0, 1)]
        for speaker, channel in (("A", 0), ("B", 1)):
            mine = [w for w in words if w.speaker == speaker]
            spans = np.zeros(len(speech[0]), bool)
            for w in mine:
                spans[int(w.start / FRAME_S) : int(np.ceil(w.end / FRAME_S))] = True
            # Each speaker's words are heard on that speaker's channel, and the channel is quiet elsewhere.
            assert speech[channel][spans].mean() > 0.7
            assert speech[channel][~spans].mean() < 0.05
        # Turn gaps: the reply starts 0.2-0.9 s after the previous turn, or overlaps it by at most 0.3 s.
        for a, b in itertools.pairwise(turns):
            gap = words[b[0]].start - words[a[-1]].end
            assert -0.3 - 1e-3 <= gap <= 0.9 + 1e-3
            overlaps += gap < 0
    assert overlaps >= 1  # with --overlap-probability 0.5 some replies start early


def test_events_hint_levels_and_true_replies(built):
    seen_levels = set()
    for sid, script in _scripts(built).items():
        events = read_oracle_events(built / "data" / "oracle_raw" / f"{sid}.json")
        turn_texts = [t["text"] for t in script["turns"]]
        assert [e.timestamp_ms for e in events] == sorted(e.timestamp_ms for e in events)
        assert all(e.timestamp_ms % 500 == 0 for e in events)
        for e in events:
            level = e.hint_level
            seen_levels.add(level)
            r = e.current_spoken_ratio
            expected = (
                0
                if r <= 0.5
                else 1
                if r <= 0.65
                else 2
                if r <= 0.8
                else 3
                if r <= 0.95
                else 4
                if r <= 0.99
                else 5
            )
            assert level == expected == hint_level(r)
            # The reply that follows the turn in progress, by the speaker on `channel`.
            heard = e.conversation_context.split("\n")
            reply_turn = len(heard)
            assert script["turns"][reply_turn]["speaker"] == ("user" if e.channel == 0 else "assistant")
            assert e.hint == ("" if level == 0 else turn_texts[reply_turn])
            if r >= 1.0 or level == 5:
                assert e.prediction == turn_texts[reply_turn]
            elif level == 0:
                assert e.prediction and e.prediction != turn_texts[reply_turn]
            assert e.total_word_count == sum(len(line.split(": ", 1)[1].split()) for line in heard)
        # Nobody replies to the last turn: no event once it has begun.
        assert all(len(e.conversation_context.split("\n")) < len(turn_texts) for e in events)
    assert seen_levels == set(range(6))


def test_synth_agrees_whatever_the_worker_count(built, tmp_path):
    """Same voices, gaps and words with one worker as with two. espeak-ng itself is not bit-exact from
    call to call (a few ms per utterance, measured up to 10 ms, and it accumulates over a dialogue's turns:
    22 ms seen), so times are compared within 100 ms, well below the 200 ms+ a different gap choice makes."""
    assert cli("data", "synth", built / "scripts", "--out", tmp_path, "--workers", "1",
               "--overlap-probability", "0.5", "--no-progress") == 0  # fmt: skip
    for path in (built / "data" / "text").iterdir():
        ours, theirs = read_words(tmp_path / "text" / path.name), read_words(path)
        assert [(w.speaker, w.word) for w in ours] == [(w.speaker, w.word) for w in theirs]
        assert (
            max(max(abs(a.start - b.start), abs(a.end - b.end)) for a, b in zip(ours, theirs, strict=True))
            < 0.1
        )
        a, _ = read_stereo_wav(tmp_path / "audio" / f"{path.stem}.wav")
        b, _ = read_stereo_wav(built / "data" / "audio" / f"{path.stem}.wav")
        assert abs(len(a) - len(b)) < 0.05 * 24000


def test_offline_oracles_are_deterministic(built, tmp_path):
    assert cli("data", "oracles", built / "data", "--out", tmp_path, "--no-progress") == 0
    for path in (built / "data" / "oracle_raw").glob("*.json"):
        assert (tmp_path / "oracle_raw" / path.name).read_bytes() == path.read_bytes()


def test_show_prints_and_plots(built, capsys):
    sid = sorted(_scripts(built))[0]
    png = built / "timeline.png"
    assert cli("data", "show", sid, "--data", built / "data", "--plot", png) == 0
    out = capsys.readouterr().out
    assert "Natalia[" in out and "oracle events" in out and " L5: " in out
    assert png.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n" and png.stat().st_size > 10_000
