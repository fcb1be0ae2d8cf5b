"""The vendored MT-Bench files, question selection, and the spoken two-turn layout."""

from __future__ import annotations

import pytest

from kamevoice.errors import ConfigError
from kamevoice.eval.mtbench import (
    KAME_CATEGORIES,
    LayoutOptions,
    load_questions,
    packaged,
    parse_categories,
    speak_session,
)


def test_vendored_files_give_kames_thirty_questions_with_references_for_reasoning():
    questions = load_questions()
    assert [q.question_id for q in questions] == [*range(101, 111), *range(141, 151), *range(151, 161)]
    assert {q.category for q in questions} == set(KAME_CATEGORIES)
    assert all(len(q.turns) == 2 for q in questions)
    reasoning = [q for q in questions if q.category == "reasoning"]
    assert all(q.needs_reference and len(q.reference) == 2 for q in reasoning)
    assert not any(q.needs_reference for q in questions if q.category != "reasoning")
    assert "Apache" in packaged("SOURCE.md").read_text()


def test_any_category_subset_ids_and_limit():
    assert parse_categories(None) == KAME_CATEGORIES
    assert parse_categories("all") is None
    assert len(load_questions(categories=None)) == 80
    stem = load_questions(categories=parse_categories("stem"), limit=3)
    assert [q.question_id for q in stem] == [141, 142, 143]
    assert [q.question_id for q in load_questions(categories=None, ids=(81, 160))] == [81, 160]
    with pytest.raises(ConfigError):
        load_questions(categories=("no-such-category",))


def test_custom_question_file_and_errors(short_questions, tmp_path):
    qfile, rfile = short_questions
    qs = load_questions(qfile, categories=None, references=rfile)
    assert qs[0].reference and qs[0].needs_reference and qs[1].reference is None
    bad = tmp_path / "bad.jsonl"
    bad.write_text('{"question_id": 1, "category": "x"}\n')
    with pytest.raises(ConfigError, match=r"bad\.jsonl:1"):
        load_questions(bad, categories=None)


def test_spoken_session_lays_turns_out_with_the_reply_window(short_questions):
    q = load_questions(short_questions[0], categories=None)[0]
    spoken = speak_session(q, LayoutOptions(reply_window_s=2.0))
    first, second = spoken.turns
    assert first.start >= 0.5 and first.end > first.start
    assert first.window_end == second.start
    # Between the two turns: the reply window, plus the TTS's own silent margins.
    assert 2.0 <= second.start - first.end < 2.6
    assert second.window_end == pytest.approx(spoken.duration_s, abs=1e-3)
    assert spoken.duration_s - second.end >= 2.0
