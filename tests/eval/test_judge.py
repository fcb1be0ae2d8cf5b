"""The judge: FastChat prompts, rating parsing, and a real local OpenAI-compatible streaming server."""

from __future__ import annotations

import asyncio

from kamevoice.config import load_settings
from kamevoice.eval.judge import (
    build_judge_messages,
    judge_many,
    load_judge_prompts,
    make_judge,
    parse_rating,
)
from kamevoice.eval.mtbench import load_questions
from kamevoice.eval.runner import _judge_cell

from .judge_server import HTTP_500, JudgeServer


def test_parse_rating_follows_fastchat_and_rejects_malformed():
    assert parse_rating("Good answer.\n\nRating: [[7]]") == 7.0
    assert parse_rating("Rating: [[8.5]]") == 8.5
    assert parse_rating("I would say [6]") == 6.0  # FastChat's fallback
    assert parse_rating("Rating: seven out of ten") is None
    assert parse_rating("Rating: [[11]]") is None  # off the 1-10 scale
    assert parse_rating("") is None


def test_prompts_are_reference_guided_for_reasoning_and_multi_turn_for_turn_two():
    prompts = load_judge_prompts()
    questions = {q.question_id: q for q in load_questions()}
    reasoning, stem = questions[101], questions[141]
    name, system, user = build_judge_messages(prompts, reasoning, 0, ["second place", "x"])
    assert name == "single-math-v1" and "[The Start of Reference Answer]" in user
    assert reasoning.reference[0] in user and reasoning.turns[0] in user and "second place" in user
    name, system, user = build_judge_messages(prompts, reasoning, 1, ["a1", "a2"])
    assert (
        name == "single-math-v1-multi-turn" and reasoning.reference[1] in user and "second question" in system
    )
    name, _, user = build_judge_messages(prompts, stem, 0, ["a1", "a2"])
    assert name == "single-v1" and "Reference" not in user
    name, _, user = build_judge_messages(prompts, stem, 1, ["a1", "a2"])
    assert name == "single-v1-multi-turn" and stem.turns[1] in user and "a2" in user


def test_judge_against_a_local_openai_compatible_server():
    replies = ["The answer is right. Rating: [[7]]", "Hard to say, no rating.", "Rating: [[4]]", HTTP_500]
    with JudgeServer(replies) as server:
        llm, config = make_judge("openai", server.base_url, "judge-test", None, 0.7, 256, load_settings())
        jobs = [("single-v1", "You are a helpful assistant.", f"question {i}") for i in range(4)]

        async def go():
            try:
                return await judge_many(llm, jobs, concurrency=1)
            finally:
                await llm.aclose()

        results = asyncio.run(go())
    assert [r.rating for r in results] == [7.0, None, 4.0, None]
    assert results[1].raw == "Hard to say, no rating." and results[1].error is None  # malformed: kept
    assert results[3].error and "server" in results[3].error  # provider failure: recorded, no rating
    body = server.requests[0]["body"]
    assert body["model"] == "judge-test" and body["stream"] is True
    assert body["messages"][0] == {"role": "system", "content": "You are a helpful assistant."}
    assert config["model"] == "judge-test"


def test_runs_are_aggregated_per_category_with_spread():
    q = load_questions(ids=(101, 102))
    by_id = {x.question_id: x for x in q}
    items = {
        ("s", "text", 101, 0): [{"rating": 6}, {"rating": 8}],
        ("s", "text", 101, 1): [{"rating": 4}, {"rating": None, "raw": "?"}],
        ("s", "text", 102, 0): [{"rating": 8}, {"error": "timeout", "rating": None}],
    }
    cell = _judge_cell(items, "s", "text", "reasoning", by_id, runs=2)
    assert cell["run_means"] == [6.0, 8.0]
    assert cell["mean"] == 7.0 and cell["std"] == 1.0 and cell["unparsed"] == 1 and cell["errors"] == 1
