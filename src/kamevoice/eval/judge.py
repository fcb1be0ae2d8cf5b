"""LLM-as-judge single-answer grading with FastChat's MT-Bench prompts.

Prompts come from the vendored `judge_prompts.jsonl` (FastChat, Apache-2.0):
turn 1 uses `single-v1`, turn 2 `single-v1-multi-turn`; questions of
reference categories (reasoning, math, coding) that have a reference use the
`single-math-v1` variants (reference-guided grading), as FastChat does. The
judge is any back-end LLM provider (`make_llm`); its whole output is kept,
and the rating is read from the `[[rating]]` it was asked to write.
"""

from __future__ import annotations

import asyncio
import json
import re
from dataclasses import dataclass
from pathlib import Path

from kamevoice.backend.llm.base import ChatMessage, ProviderError
from kamevoice.errors import ConfigError
from kamevoice.eval.mtbench import Question, packaged

# FastChat's parse: "[[7]]" first, then a lone "[7]" as a fallback.
_RATING = re.compile(r"\[\[(\d+\.?\d*)\]\]")
_RATING_FALLBACK = re.compile(r"\[(\d+\.?\d*)\]")
# The scale the prompts ask for; anything outside it is a malformed answer.
RATING_MIN, RATING_MAX = 1.0, 10.0


@dataclass(frozen=True)
class JudgePrompt:
    """One FastChat judge prompt."""

    name: str
    system_prompt: str
    prompt_template: str


def load_judge_prompts(path: str | Path | None = None) -> dict[str, JudgePrompt]:
    """Name -> prompt, from a FastChat `judge_prompts.jsonl` (default: the vendored one)."""
    p = Path(path) if path else packaged("judge_prompts.jsonl")
    prompts = {}
    for line in p.read_text(encoding="utf-8").splitlines():
        if line.strip():
            d = json.loads(line)
            prompts[d["name"]] = JudgePrompt(d["name"], d["system_prompt"], d["prompt_template"])
    for needed in ("single-v1", "single-v1-multi-turn", "single-math-v1", "single-math-v1-multi-turn"):
        if needed not in prompts:
            raise ConfigError(f"{p}: judge prompt {needed!r} is missing")
    return prompts


def build_judge_messages(
    prompts: dict[str, JudgePrompt], question: Question, turn: int, answers: list[str]
) -> tuple[str, str, str]:
    """(prompt name, system prompt, user message) grading `answers[turn]` (0-based turn)."""
    ref = question.needs_reference
    if turn == 0:
        prompt = prompts["single-math-v1" if ref else "single-v1"]
        fields = {"question": question.turns[0], "answer": answers[0]}
    else:
        prompt = prompts["single-math-v1-multi-turn" if ref else "single-v1-multi-turn"]
        fields = {
            "question_1": question.turns[turn - 1],
            "answer_1": answers[turn - 1],
            "question_2": question.turns[turn],
            "answer_2": answers[turn],
        }
    if ref:
        assert question.reference is not None
        fields["ref_answer_1"] = question.reference[0]
        if turn > 0:
            fields["ref_answer_1"] = question.reference[turn - 1]
            fields["ref_answer_2"] = question.reference[turn] if turn < len(question.reference) else ""
    return prompt.name, prompt.system_prompt, prompt.prompt_template.format(**fields)


def parse_rating(text: str) -> float | None:
    """The rating in a judge's output, or None when there is none on the 1-10 scale."""
    match = _RATING.search(text) or _RATING_FALLBACK.search(text)
    if not match:
        return None
    try:
        value = float(match.group(1))
    except ValueError:
        return None
    return value if RATING_MIN <= value <= RATING_MAX else None


@dataclass(frozen=True)
class Judgement:
    """One judge call: the raw output is always kept, the rating only when it parsed."""

    prompt: str
    raw: str
    rating: float | None
    error: str | None = None  # the provider failed: no output (retried on the next run)


async def judge_once(llm, system: str, user: str, prompt_name: str) -> Judgement:
    """Ask the judge once and parse its answer."""
    try:
        parts = [delta async for delta in llm.stream([ChatMessage("user", user)], system=system)]
    except ProviderError as exc:
        return Judgement(prompt_name, "", None, error=f"{exc.kind}: {exc}")
    raw = "".join(parts)
    return Judgement(prompt_name, raw, parse_rating(raw))


async def judge_many(
    llm, jobs: list[tuple[str, str, str]], concurrency: int = 4, on_done=None
) -> list[Judgement]:
    """Run (prompt name, system, user) jobs with at most `concurrency` requests in flight, in order."""
    gate = asyncio.Semaphore(max(1, concurrency))

    async def one(i: int, job: tuple[str, str, str]) -> Judgement:
        name, system, user = job
        async with gate:
            result = await judge_once(llm, system, user, name)
        if on_done is not None:
            on_done(i, result)
        return result

    return list(await asyncio.gather(*(one(i, j) for i, j in enumerate(jobs))))


def make_judge(
    provider: str,
    base_url: str | None,
    model: str | None,
    api_key_env: str | None,
    temperature: float,
    max_tokens: int,
    settings,
):
    """A judge LLM provider from flags, on top of the settings' section of that provider."""
    from kamevoice.backend.llm.factory import make_llm

    section = getattr(settings.llm, provider)
    overrides: dict = {
        "temperature": temperature,
        "max_tokens": max_tokens,
        # A judge writes an explanation first: allow it time.
        "first_token_timeout_s": max(section.first_token_timeout_s, 120.0),
        "stall_timeout_s": max(section.stall_timeout_s, 60.0),
    }
    if base_url:
        overrides["base_url"] = base_url
    if model:
        overrides["model"] = model
    if api_key_env:
        overrides["api_key_env"] = api_key_env
    llm_settings = settings.llm.model_copy(
        update={"provider": provider, provider: section.model_copy(update=overrides)}
    )
    return make_llm(llm_settings), {
        "provider": provider,
        **section.model_copy(update=overrides).model_dump(mode="json"),
    }
