"""The data stages as Python functions: QA -> dialogue scripts -> speech -> simulated oracles.

Each stage reads a folder (or file), writes its results into `out` (created; a rerun
resumes: finished items are skipped), writes `summary-STAGE.json` there and returns
the `Summary`. The `kamevoice data ...` commands parse flags into these calls; the
KAME-tiny build calls them directly. Shards are `kamevoice.data.shard_build.build_shards`.
"""

from __future__ import annotations

import asyncio
import functools
import itertools
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from kamevoice.data.dialogues import DialogueOptions
from kamevoice.data.jobs import RunOptions, Summary
from kamevoice.data.oracles import OracleOptions
from kamevoice.data.synth import SynthOptions


@dataclass(frozen=True)
class LLMCallOptions:
    """An OpenAI-compatible chat endpoint for the stages that ask an LLM (paraphrase, simulator)."""

    base_url: str = "https://api.openai.com/v1"
    model: str = "gpt-4.1-nano"
    api_key_env: str = "OPENAI_API_KEY"
    concurrency: int = 8
    attempts: int = 5
    backoff_s: float = 0.5  # first retry delay, doubled each retry
    seed: int = 0


def _chat(llm: LLMCallOptions):
    from kamevoice.backend.llm.openai_compat import OpenAICompatProvider
    from kamevoice.backend.llm.settings import OpenAICompatSettings
    from kamevoice.data.llm_calls import RetryingChat, RetryPolicy

    provider = OpenAICompatProvider(
        OpenAICompatSettings(base_url=llm.base_url, model=llm.model, api_key_env=llm.api_key_env)
    )
    policy = RetryPolicy(
        max_concurrency=max(1, llm.concurrency), max_attempts=max(1, llm.attempts),
        backoff_base_s=llm.backoff_s, seed=llm.seed,
    )  # fmt: skip
    return provider, RetryingChat(provider, policy)


def _with_chat(llm: LLMCallOptions, stage: Callable[[Any], Awaitable[Summary]]) -> Summary:
    """Run an async stage with an LLM chat of `llm`: the provider closed afterwards, the chat's
    call figures added to the stage's summary."""

    async def go() -> Summary:
        provider, chat = _chat(llm)
        try:
            summary = await stage(chat)
        finally:
            await provider.aclose()
        summary.totals.update(chat.stats.totals())
        return summary

    return asyncio.run(go())


def _finish(summary: Summary, out: Path) -> Summary:
    summary.write(out / f"summary-{summary.stage}.json")
    return summary


def make_dialogues(
    inputs: Sequence[str | Path],
    out: str | Path,
    fields: Any,
    options: DialogueOptions = DialogueOptions(),
    run: RunOptions = RunOptions(),
    source: str = "plain",
    paraphrase: LLMCallOptions | None = None,
) -> Summary:
    """Question/answer JSONL files -> two-party dialogue scripts (`out/dialogues.jsonl`).

    `fields`: which JSON fields hold what (`kamevoice.data.dialogues.fields_for`); with
    `paraphrase`, an LLM rephrases each question for speech.
    """
    from kamevoice.data.dialogues import make_script, read_qa_items
    from kamevoice.data.jobs import repair_jsonl, run_stage, run_stage_async, write_jsonl_line

    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    out_path = out / "dialogues.jsonl"
    finished = repair_jsonl(out_path)
    items = itertools.chain.from_iterable(read_qa_items(Path(p), fields) for p in inputs)
    with open(out_path, "a", encoding="utf-8") as f:

        def append(outcome) -> None:
            write_jsonl_line(f, outcome.result)

        if paraphrase is None:
            work = functools.partial(make_script, options=options, source=source)
            return _finish(
                run_stage("dialogues", items, work, finished.__contains__, run, on_outcome=append), out
            )

        from kamevoice.data.dialogue_llm import LLMScriptWriter, make_script_llm

        def stage(chat) -> Awaitable[Summary]:
            writer = LLMScriptWriter(chat, options)
            return run_stage_async(
                "dialogues", items, functools.partial(make_script_llm, writer=writer, source=source),
                finished.__contains__, run, concurrency=paraphrase.concurrency, on_outcome=append,
            )  # fmt: skip

        return _finish(_with_chat(paraphrase, stage), out)


def synthesize(
    scripts: str | Path, out: str | Path, options: SynthOptions, run: RunOptions = RunOptions()
) -> Summary:
    """Dialogue scripts (a JSONL file, or a folder with `dialogues.jsonl`) -> stereo 24 kHz WAV
    (`out/audio/`) and word timings (`out/text/`) in the published layout."""
    from kamevoice.data.dialogues import read_scripts
    from kamevoice.data.jobs import run_stage
    from kamevoice.data.synth import synth_done, synth_item
    from kamevoice.tts import get_engine

    scripts, out = Path(scripts), Path(out)
    path = scripts / "dialogues.jsonl" if scripts.is_dir() else scripts
    # Fail fast on a missing engine or bad settings, before any worker starts.
    probe = get_engine(options.engine, **options.engine_settings)
    if callable(getattr(probe, "close", None)):
        probe.close()
    out.mkdir(parents=True, exist_ok=True)
    summary = run_stage(
        "synth", read_scripts(path), functools.partial(synth_item, options=options, out_dir=out),
        functools.partial(synth_done, out), run,
    )  # fmt: skip
    return _finish(summary, out)


def simulate_oracles(
    in_dir: str | Path,
    out: str | Path,
    options: OracleOptions = OracleOptions(),
    run: RunOptions = RunOptions(),
    simulator: LLMCallOptions | None = None,
    seed: int = 0,
) -> Summary:
    """Word timings (`in_dir/text/`) -> simulated oracle events at hint levels 0-5
    (`out/oracle_raw/`): by the offline simulator, or by an LLM with `simulator`."""
    from kamevoice.data.jobs import run_stage, run_stage_async
    from kamevoice.data.oracles import (
        OfflineSimulatorOptions,
        oracle_item_async,
        oracle_item_offline,
        oracles_done,
        read_dialogue_words,
    )

    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    done = functools.partial(oracles_done, out)
    inputs = read_dialogue_words(Path(in_dir))
    if simulator is None:
        work = functools.partial(
            oracle_item_offline,
            options=options,
            simulator_options=OfflineSimulatorOptions(seed=seed),
            out_dir=out,
        )
        return _finish(run_stage("oracles", inputs, work, done, run), out)

    from kamevoice.data.oracle_llm import LLMSimulator

    def stage(chat) -> Awaitable[Summary]:
        llm = LLMSimulator.from_chat(chat)
        return run_stage_async(
            "oracles", inputs,
            functools.partial(oracle_item_async, options=options, simulator=llm, out_dir=out),
            done, run, concurrency=simulator.concurrency,
        )  # fmt: skip

    return _finish(_with_chat(simulator, stage), out)
