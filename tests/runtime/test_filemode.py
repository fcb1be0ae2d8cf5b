"""File mode and the back-end alone, end to end on real parts (espeak speech, PocketSphinx, the FAQ)."""

from __future__ import annotations

import itertools
import json
import wave

import numpy as np

from kamevoice.audio import read_audio
from kamevoice.backend.factory import backend_from_settings
from kamevoice.cli import main
from kamevoice.config import load_settings
from kamevoice.frontend.loading import load_frontend
from kamevoice.runtime.events import read_events
from kamevoice.runtime.filemode import run_file
from kamevoice.runtime.messages import EventKind


def _run(checkpoint, wav, events_path=None, seed=1):
    settings = load_settings()
    frontend = load_frontend(checkpoint, device="cpu")
    audio, rate = read_audio(wav)
    return run_file(
        frontend,
        audio,
        rate,
        backend=backend_from_settings(settings),
        events_path=events_path,
        tail_s=2.0,
        seed=seed,
    )


def _kinds(events, kind, keys):
    return [tuple(e.get(k) for k in keys) for e in events if e["kind"] == kind]


def test_file_run_wires_stt_oracle_and_frontend_deterministically(tiny_checkpoint, question_wav, tmp_path):
    first = _run(tiny_checkpoint, question_wav, tmp_path / "events.jsonl")
    events = first.events
    # The STT heard the user, the scheduler asked the knowledge base, the answer entered the model.
    assert first.transcript["user"] and "saturday" in first.transcript["user"][-1]["text"].lower()
    begins = [e for e in events if e["kind"] == EventKind.ORACLE_BEGIN]
    pieces = [e for e in events if e["kind"] == EventKind.ORACLE_PIECE]
    assert begins and pieces
    assert any("10" in text or "ten" in text.lower() for text in first.transcript["oracles"])
    # Every oracle piece entered at or after the frame of an oracle start (start id first, then tokens).
    starts = [e["frame"] for e in pieces if e.get("start")]
    assert starts and all(e["frame"] > starts[0] for e in pieces if not e.get("start"))
    # Reply onsets are logged live: each is the first piece after a pause, at a text piece's frame.
    onsets = [e["frame"] for e in events if e["kind"] == EventKind.REPLY_ONSET]
    text_frames = [e["frame"] for e in events if e["kind"] == EventKind.FRONTEND_TEXT]
    assert onsets and onsets[0] == text_frames[0] and set(onsets) <= set(text_frames)
    # Events were written as JSONL as they happened.
    logged = [json.loads(line) for line in (tmp_path / "events.jsonl").read_text().splitlines()]
    assert [e["kind"] for e in logged] == [e["kind"] for e in events]
    # The output is aligned with the input: same length, user on the left.
    assert len(first.model) == len(first.user)
    # Same seed, same everything that the model and the back-end decided.
    second = _run(tiny_checkpoint, question_wav)
    for kind, keys in [
        (EventKind.FRONTEND_TEXT, ("frame", "id")),
        (EventKind.ORACLE_PIECE, ("frame", "id", "start")),
        (EventKind.STT_FINAL, ("t", "text")),
        (EventKind.LLM_REQUEST, ("t", "gen")),
    ]:
        assert _kinds(first.events, kind, keys) == _kinds(second.events, kind, keys), kind
    np.testing.assert_array_equal(first.model, second.model)


def test_run_command_writes_stereo_events_and_transcript(tiny_checkpoint, question_wav, tmp_path, capsys):
    out, ev, tr = tmp_path / "reply.wav", tmp_path / "ev.jsonl", tmp_path / "tr.json"
    code = main(
        [
            "run",
            str(question_wav),
            "--checkpoint",
            str(tiny_checkpoint),
            "--out",
            str(out),
            "--events",
            str(ev),
            "--transcript",
            str(tr),
            "--tail",
            "1",
            "--device",
            "cpu",
        ]
    )
    assert code == 0
    with wave.open(str(out)) as w:
        assert w.getnchannels() == 2 and w.getframerate() == 24000
    transcript = json.loads(tr.read_text())
    assert {"user", "assistant", "oracles", "latency"} <= set(transcript)
    assert "clipping" in transcript["latency"]
    assert [e["kind"] for e in read_events(ev)].count(EventKind.SESSION_END) == 1


def test_oracle_command_prints_partials_and_a_growing_oracle(question_wav, capsys, tmp_path, monkeypatch):
    from kamevoice.knowledge.settings import EXAMPLE_KB_PATH

    # The question is the example FAQ's; the paired STT gives partials (KAME-tiny's default
    # back-end listens with Whisper finals only).
    monkeypatch.setenv("KAMEVOICE_STT__PROVIDER", "paired")
    events = tmp_path / "oracle.jsonl"
    assert main(["oracle", str(question_wav), "--kb", str(EXAMPLE_KB_PATH), "--json", str(events)]) == 0
    out = capsys.readouterr().out
    assert "partial:" in out and "oracle #" in out
    logged = [json.loads(line) for line in events.read_text().splitlines()]
    kinds = {e["kind"] for e in logged}
    assert {
        EventKind.STT_PARTIAL,
        EventKind.STT_FINAL,
        EventKind.LLM_REQUEST,
        EventKind.LLM_FIRST_TOKEN,
        EventKind.ORACLE_BEGIN,
        EventKind.ORACLE_END,
    } <= kinds
    # The oracle's text as it grows, in the JSON events too (not only the printed lines).
    by_gen: dict[int, list[str]] = {}
    for e in logged:
        if e["kind"] == EventKind.ORACLE_TEXT:
            by_gen.setdefault(e["gen"], []).append(e["text"])
    longest = max(by_gen.values(), key=len)
    assert len(longest) >= 3 and all(b.startswith(a) for a, b in itertools.pairwise(longest))
    done = [e for e in logged if e["kind"] == EventKind.ORACLE_END and not e["cancelled"]]
    assert done and done[-1]["text"] == by_gen[done[-1]["gen"]][-1]


def test_demo_asks_the_embedded_kame_tiny_a_held_out_question(capsys, monkeypatch, tmp_path):
    import soundfile as sf

    from kamevoice.tiny.defaults import tiny_held_out_questions

    monkeypatch.delenv("KAMEVOICE_FRONTEND__CHECKPOINT", raising=False)
    monkeypatch.delenv("KAMEVOICE_CONFIG", raising=False)
    first = json.loads(tiny_held_out_questions().read_text().splitlines()[0])
    out_wav = tmp_path / "demo.wav"
    assert main(["demo", "--out", str(out_wav)]) == 0
    out = capsys.readouterr().out
    assert first["question"] in out and " ".join(first["key_words"]) in out
    assert "final  :" in out and "oracle #" in out
    # The back-end found the held-out fact in the embedded catalogue from what the STT heard.
    fact_sentence = first["answer"].split(". ", 1)[1]
    assert fact_sentence in out
    assert "assistant:" in out and sf.info(str(out_wav)).channels == 2
