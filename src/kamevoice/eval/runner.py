"""Spoken MT-Bench, end to end: sessions for every system, scores, and the report.

Everything a run computes is stored under the output folder, one atomic JSON
file per unit of work, with a fingerprint of what it was computed from:

    OUT/config.json                    the full configuration of the latest run
    OUT/runs.jsonl                     one line per run (configuration and what was done)
    OUT/sessions/SYSTEM/QID/record.json   replies, latencies, oracles (+ events.jsonl, session.wav)
    OUT/judgements/JUDGE/SYSTEM/VIEW/QID-tTURN-rRUN.json   raw judge output and rating
    OUT/results.json, OUT/table.md, OUT/latency_quality.png

A rerun skips every session and judgement whose file exists with the same
fingerprint (change the checkpoint, a setting or the answer and it is redone);
judge calls that failed at the provider are retried.
"""

from __future__ import annotations

import asyncio
import logging
from dataclasses import asdict, dataclass, field
from functools import partial
from pathlib import Path

from kamevoice.eval.harness import Engines, RecordStore, Tally, finish_run, progress_bar, slug, start_run
from kamevoice.eval.metrics import describe, knowledge_word_score, latency_summary
from kamevoice.eval.mtbench import LayoutOptions, Question, speak_session
from kamevoice.eval.store import fingerprint, write_json
from kamevoice.eval.systems import RunOptions, SystemSpec, backend_text_record

log = logging.getLogger(__name__)

# Bump when the record layout changes, so old stored sessions are recomputed.
RECORD_VERSION = 1


@dataclass(frozen=True)
class JudgeOptions:
    """The judge: a provider of the back-end, N runs each."""

    provider: str = "openai"
    base_url: str | None = None
    model: str | None = None
    api_key_env: str | None = None
    runs: int = 6
    # The six runs are averaged (docs/kame.md section 7): sample, so they can differ.
    temperature: float = 0.7
    # FastChat's judges write an explanation before the rating; 2048 tokens is its limit.
    max_tokens: int = 2048
    concurrency: int = 4


@dataclass(frozen=True)
class EvalOptions:
    """Everything `kamevoice eval mtbench` needs besides the settings."""

    out: Path
    systems: tuple[SystemSpec, ...]
    checkpoint: str | None = None
    device: str = "auto"
    layout: LayoutOptions = LayoutOptions()
    run: RunOptions = RunOptions()
    judge: JudgeOptions | None = None
    progress: bool = True
    extra: dict = field(default_factory=dict)  # recorded in the config (question file, categories...)


@dataclass
class Work:
    """What a run did: its sessions and its judgements (printed, and logged in runs.jsonl)."""

    sessions: Tally = field(default_factory=Tally)
    judgements: Tally = field(default_factory=Tally)

    def log(self) -> dict:
        """The `work` entry of a line in runs.jsonl."""
        return {
            "sessions_run": self.sessions.run,
            "sessions_skipped": self.sessions.reused,
            "judgements_run": self.judgements.run,
            "judgements_skipped": self.judgements.reused,
            "seconds_per_session": self.sessions.wall_s,
        }


def run_mtbench(questions: list[Question], options: EvalOptions, settings) -> tuple[dict, Work]:
    """Run (or resume) the evaluation; returns the results dict and what was done."""
    from kamevoice.eval.report import write_report

    config = start_run(options.out, full_config(questions, options, settings))
    work = Work()
    records = run_sessions(questions, options, settings, work)
    judgements = run_judge(questions, records, options, settings, work) if options.judge else None
    # The knowledge base's "I don't know" reply carries no knowledge: never a knowledge-word target.
    empty = {settings.llm.knowledge.fallback_reply} if settings.llm.provider == "knowledge" else set()
    results = aggregate(questions, records, judgements, options, empty)
    finish_run(options.out, config, results, write_report, work.log())
    return results, work


def full_config(questions, options: EvalOptions, settings) -> dict:
    """The whole configuration of a run, JSON-able (secrets masked by pydantic)."""
    return {
        "questions": [q.question_id for q in questions],
        "systems": [asdict(s) for s in options.systems],
        "checkpoint": options.checkpoint,
        "device": options.device,
        "layout": asdict(options.layout),
        "run": asdict(options.run),
        "judge": None if options.judge is None else asdict(options.judge),
        "settings": settings.model_dump(mode="json"),
        **options.extra,
    }


# -- sessions ---------------------------------------------------------------------------------------


def _session_key(spec: SystemSpec, question: Question, options: EvalOptions, settings) -> str:
    parts: dict = {
        "v": RECORD_VERSION,
        "spec": asdict(spec),
        "turns": question.turns,
        "layout": asdict(options.layout),
        "run": asdict(options.run),
        "stt": settings.stt.model_dump(mode="json"),
    }
    if spec.kind == "frontend":
        fs = settings.frontend.model_dump(mode="json")
        parts.update(checkpoint=options.checkpoint, sampling=fs)
    if spec.oracle or spec.kind == "cascade":
        parts.update(
            llm=settings.llm.model_dump(mode="json"), scheduler=settings.scheduler.model_dump(mode="json")
        )
    return fingerprint(parts)


def run_sessions(questions, options: EvalOptions, settings, work: Work) -> dict[str, dict[int, dict]]:
    """Every (system, question) session record, run now or read back; keyed by system name."""
    specs = list(options.systems)
    wanted = {s.name for s in specs}
    if "backend-text" in wanted and "kame" not in wanted:
        specs.insert(0, SystemSpec("kame", "frontend"))  # the back-end's text is taken from KAME sessions
    specs.sort(key=lambda s: s.kind == "backend-text")  # derived systems last
    records: dict[str, dict[int, dict]] = {}
    store, engines = RecordStore(work.sessions), Engines(settings)
    todo = [(s, q) for s in specs for q in questions]
    with progress_bar(len(todo), "sessions", options.progress) as bar:
        for spec, question in todo:
            path = options.out / "sessions" / spec.name / str(question.question_id) / "record.json"
            if spec.kind == "backend-text":
                record = _backend_text_session(spec, question, records["kame"][question.question_id], path)
            else:
                key = _session_key(spec, question, options, settings)
                run = partial(_run_session, spec, question, options, settings, engines, path.parent)
                record = store.get(path, key, run, group=spec.name)
            records.setdefault(spec.name, {})[question.question_id] = record
            bar.update(1)
    return records


def _backend_text_session(spec: SystemSpec, question: Question, kame: dict, path: Path) -> dict:
    """The back-end's text, taken from the KAME session: written each run, never computed."""
    record = backend_text_record(spec, kame)
    record.update(question_id=question.question_id, category=question.category, key=kame["key"])
    write_json(path, record)
    return record


def _run_session(spec, question, options: EvalOptions, settings, engines: Engines, folder: Path) -> dict:
    """Play one question's session through one system now; its files go to `folder`."""
    tts = engines.tts(options.layout.tts)
    spoken = speak_session(question, options.layout, engine=tts)
    if spec.kind == "cascade":
        from kamevoice.eval.cascade import cascade_record

        record = cascade_record(spec, spoken, settings, tts, options.run, folder)
    else:
        from kamevoice.eval.systems import run_frontend_session

        frontend, sampling = engines.frontend(options.checkpoint, options.device)
        record = run_frontend_session(spec, frontend, spoken, settings, sampling, options.run, folder)
    record.update(question_id=question.question_id, category=question.category)
    return record


# -- judge ------------------------------------------------------------------------------------------


def _judge_slug(judge: JudgeOptions) -> str:
    return slug(f"{judge.provider}-{judge.model or 'default'}")


def _answered(entry: dict) -> bool:
    """A stored judgement counts unless the call failed at the provider (then it is retried)."""
    return entry.get("error") is None


def run_judge(questions, records, options: EvalOptions, settings, work: Work) -> dict:
    """Judgements keyed (system, view, question_id, turn) -> list of per-run dicts."""
    from kamevoice.eval.judge import build_judge_messages, judge_many, load_judge_prompts, make_judge

    judge = options.judge
    assert judge is not None
    llm, judge_config = make_judge(
        judge.provider,
        judge.base_url,
        judge.model,
        judge.api_key_env,
        judge.temperature,
        judge.max_tokens,
        settings,
    )
    # What a rating depends on (not the endpoint's address or timeouts: moving the judge keeps its work).
    judged_by = {k: judge_config.get(k) for k in ("provider", "model", "temperature", "max_tokens")}
    prompts = load_judge_prompts()
    root = options.out / "judgements" / _judge_slug(judge)
    store = RecordStore(work.judgements)
    by_id = {q.question_id: q for q in questions}
    results: dict[tuple, list] = {}
    jobs, places = [], []
    for spec in options.systems:
        for qid, record in records[spec.name].items():
            question = by_id[qid]
            for view in spec.views:
                answers = record["replies"].get(view)
                if answers is None:
                    continue
                for turn in range(len(question.turns)):
                    name, system, user = build_judge_messages(prompts, question, turn, answers)
                    key = fingerprint({"judge": judged_by, "system": system, "user": user})
                    slot = results.setdefault((spec.name, view, qid, turn), [None] * judge.runs)
                    for r in range(judge.runs):
                        path = root / spec.name / view / f"{qid}-t{turn + 1}-r{r + 1}.json"
                        slot[r] = store.load(path, key, accept=_answered)
                        if slot[r] is not None:
                            continue
                        jobs.append((name, system, user))
                        places.append((path, key, slot, r, spec.name, view, qid, turn))
    if jobs:
        bar = progress_bar(len(jobs), "judge", options.progress)

        def done(i: int, j) -> None:
            path, key, slot, r, system_name, view, qid, turn = places[i]
            entry = {
                "key": key,
                "system": system_name,
                "view": view,
                "question_id": qid,
                "turn": turn + 1,
                "run": r + 1,
                "prompt": j.prompt,
                "rating": j.rating,
                "raw": j.raw,
                "error": j.error,
            }
            store.save(path, entry)
            slot[r] = entry
            bar.update(1)

        async def go():
            try:
                return await judge_many(llm, jobs, judge.concurrency, on_done=done)
            finally:
                await llm.aclose()

        asyncio.run(go())
        bar.close()
    return {"config": judge_config, "slug": _judge_slug(judge), "items": results}


# -- aggregation ------------------------------------------------------------------------------------

CLIPPING_NOTE = (
    "latency = reply onset - end of the user's last word (true word timings); negative values are kept; "
    "a reply cannot start before the turn's first word (the window starts there), so values are clipped "
    "at minus the turn's duration; turns with no reply are counted in 'turns' but not in the median"
)


def aggregate(questions, records, judgements, options: EvalOptions, empty_oracles=frozenset()) -> dict:
    """Per system and view: judge scores (mean and spread over runs) and the knowledge-word metric per
    category, the average over categories, and latency distributions."""
    categories = list(dict.fromkeys(q.category for q in questions))
    by_id = {q.question_id: q for q in questions}
    kame = records.get("kame", {})
    systems = []
    for spec in options.systems:
        recs = records[spec.name]
        entry: dict = {"name": spec.name, "kind": spec.kind, "delay_s": spec.delay_s, "views": {}}
        for view in spec.views:
            per_cat: dict = {}
            for cat in categories:
                kw, kw_target = [], []
                for qid, rec in recs.items():
                    q = by_id[qid]
                    if q.category != cat or view not in rec["replies"]:
                        continue
                    for turn, reply in enumerate(rec["replies"][view]):
                        target, source = _kw_target(q, turn, kame.get(qid), empty_oracles)
                        kw.append(None if target is None else knowledge_word_score(reply, target))
                        kw_target.append(source)
                cell: dict = {
                    "knowledge_words": describe(kw),
                    "knowledge_words_target": sorted(set(kw_target)),
                }
                if judgements is not None:
                    cell["judge"] = _judge_cell(
                        judgements["items"], spec.name, view, cat, by_id, options.judge.runs
                    )
                per_cat[cat] = cell
            entry["views"][view] = {
                "categories": per_cat,
                "average": _average(per_cat, judgements is not None),
            }
        if spec.has_latency:
            per_turn = [t for rec in recs.values() for t in rec["per_turn"]]
            entry["latency"] = {
                **latency_summary([t.get("latency_s") for t in per_turn]),
                "clipping": CLIPPING_NOTE,
                "first_oracle_piece": latency_summary([t.get("first_oracle_piece_s") for t in per_turn]),
                "first_content_word": latency_summary([t.get("first_content_word_s") for t in per_turn]),
            }
        walls = [rec.get("wall_s") for rec in recs.values() if rec.get("wall_s") is not None]
        entry["seconds_per_session"] = describe(walls)
        systems.append(entry)
    return {
        "metric": "judge" if judgements is not None else "knowledge_words",
        "categories": categories,
        "questions": [q.question_id for q in questions],
        "judge": None if judgements is None else {"config": judgements["config"], "runs": options.judge.runs},
        "systems": systems,
    }


def _kw_target(question: Question, turn: int, kame_record: dict | None, empty=frozenset()):
    """(target text or None, where it came from) of the knowledge-word metric for one turn."""
    if question.reference is not None and turn < len(question.reference):
        return question.reference[turn], "reference"
    oracles = kame_record["final_oracles"] if kame_record is not None else []
    oracle = oracles[turn] if turn < len(oracles) else ""
    if oracle and oracle not in empty:
        return oracle, "kame_final_oracle"
    return None, "none"


def _judge_cell(items: dict, system: str, view: str, category: str, by_id: dict, runs: int) -> dict:
    per_run: list[list[float]] = [[] for _ in range(runs)]
    unparsed = errors = 0
    for (s, v, qid, _turn), entries in items.items():
        if s != system or v != view or by_id[qid].category != category:
            continue
        for r, e in enumerate(entries):
            if e is None or e.get("error"):
                errors += 1
            elif e.get("rating") is None:
                unparsed += 1
            else:
                per_run[r].append(e["rating"])
    run_means = [sum(v) / len(v) if v else None for v in per_run]
    stats = describe(run_means)
    return {**stats, "run_means": run_means, "unparsed": unparsed, "errors": errors}


def _average(per_cat: dict, judged: bool) -> float | None:
    """Mean of the category scores (the paper's 'average' column)."""
    key = "judge" if judged else "knowledge_words"
    vals = [c[key]["mean"] for c in per_cat.values() if c[key]["mean"] is not None]
    return sum(vals) / len(vals) if vals else None
