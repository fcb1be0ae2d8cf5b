"""Fixtures of the evaluation tests: the runtime tests' random-weight checkpoint, short questions."""

from __future__ import annotations

import json

import pytest

from tests.runtime.conftest import tiny_checkpoint  # noqa: F401 - a fixture, shared

# Short two-turn questions the offline knowledge base (the shop FAQ) can answer.
SHORT_QUESTIONS = [
    {
        "question_id": 901,
        "category": "reasoning",
        "turns": ["What time does the store open on Saturday?", "And on Sunday?"],
    },
    {"question_id": 902, "category": "stem", "turns": ["How much is the blue kettle?", "Is shipping free?"]},
]
SHORT_REFERENCES = [
    {
        "question_id": 901,
        "choices": [
            {"index": 0, "turns": ["On Saturdays the store opens at ten.", "It is closed on Sundays."]}
        ],
    },
]


@pytest.fixture(scope="session")
def short_questions(tmp_path_factory):
    """(questions file, references file) in FastChat's format."""
    root = tmp_path_factory.mktemp("questions")
    q, r = root / "question.jsonl", root / "reference.jsonl"
    q.write_text("".join(json.dumps(x) + "\n" for x in SHORT_QUESTIONS))
    r.write_text("".join(json.dumps(x) + "\n" for x in SHORT_REFERENCES))
    return q, r
