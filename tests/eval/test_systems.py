"""Baselines and the forced delay on real parts: espeak speech, the STT, the knowledge base, file mode."""

from __future__ import annotations

import pytest

from kamevoice.config import load_settings
from kamevoice.errors import ConfigError
from kamevoice.eval.cascade import cascade_record, first_chunk
from kamevoice.eval.mtbench import LayoutOptions, load_questions, speak_session
from kamevoice.eval.systems import (
    PAPER_DELAYS_S,
    RunOptions,
    SystemSpec,
    backend_text_record,
    parse_systems,
    run_frontend_session,
)
from kamevoice.runtime.messages import EventKind

FAST = RunOptions(transcribe=False, save_audio=False)


@pytest.fixture(scope="module")
def spoken(short_questions):
    question = load_questions(short_questions[0], categories=None)[0]
    return speak_session(question, LayoutOptions(reply_window_s=2.0))


def test_parse_systems():
    names = [s.name for s in parse_systems("kame,cascade", "paper")]
    assert names == ["kame", "cascade"] + [f"kame-delay-{d:g}s" for d in PAPER_DELAYS_S]
    assert parse_systems("frontend")[0].oracle is False
    assert parse_systems("backend-text")[0].views == ("text",)
    with pytest.raises(ConfigError):
        parse_systems("moshi")


def test_first_chunk_waits_for_a_sentence_or_enough_words():
    assert first_chunk("Our shops open", final=False) is None
    assert first_chunk("Our shops open at ten. Then", final=False) == "Our shops open at ten."
    assert first_chunk("Our shops open", final=True) == "Our shops open"
    assert len(first_chunk("word " * 20, final=False).split()) == 12


def test_cascade_answers_each_turn_after_its_end(spoken, tmp_path):
    from kamevoice.tts import get_engine

    settings = load_settings()
    record = cascade_record(
        SystemSpec("cascade", "cascade"), spoken, settings, get_engine("espeak"), FAST, tmp_path
    )
    first, second = record["replies"]["text"]
    assert "Saturday from 10" in first and second  # the knowledge base answers each turn
    for turn in record["per_turn"]:
        # End of turn (STT endpoint silence) + the simulated LLM's first words + TTS: after the user stopped.
        assert 0.5 < turn["latency_s"] < 3.0
    assert (tmp_path / "events.jsonl").read_text().count(EventKind.CASCADE_FIRST_AUDIO) == 2
    text_only = backend_text_record(
        SystemSpec("backend-text", "backend-text"), {**record, "final_oracles": [first, second]}
    )
    assert text_only["replies"]["text"] == [first, second]


def test_forced_delay_shifts_the_measured_latency_by_the_delay(tiny_checkpoint, spoken, tmp_path):
    from kamevoice.frontend.loading import load_frontend
    from kamevoice.frontend.sampling import SamplingOptions

    settings = load_settings()
    frontend = load_frontend(tiny_checkpoint, device="cpu")
    latencies = {}
    for delay in (0.0, 1.0):
        spec = SystemSpec(f"d{delay}", "frontend", oracle=False, delay_s=delay)
        out = tmp_path / spec.name
        out.mkdir()
        record = run_frontend_session(spec, frontend, spoken, settings, SamplingOptions(), FAST, out)
        assert record["forced"]["text_frames"] > 0
        latencies[delay] = [t["latency_s"] for t in record["per_turn"]]
        # Silent while the user speaks and for the delay after: no reply starts earlier.
        assert all(lat is not None and lat >= delay - 0.08 for lat in latencies[delay])
    for d0, d1 in zip(latencies[0.0], latencies[1.0], strict=True):
        assert d1 - d0 == pytest.approx(1.0, abs=0.25)
