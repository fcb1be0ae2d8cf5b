"""Knowledge injection into KAME-tiny: held-out spoken questions, answered with and without the oracle.

    kamevoice eval tiny                                   # the embedded model, KB and held-out questions
    kamevoice eval tiny --checkpoint DIR --kb KB.jsonl --questions QA.jsonl --limit 10 --json

Each held-out question (a fact never asked in a training dialogue, so only the
back-end can know the answer) is synthesised with espeak-ng (voice and rate
picked from the question id), followed by a fixed reply window of silence, and
played through file mode on the virtual clock once per *condition*:

- `live`: the knowledge-base back-end over the KB, as served (STT -> scheduler -> oracle);
- `no-oracle`: the front-end alone (no STT, no LLM: the oracle stream stays PAD);
- `live-no-follow`: `live` with the oracle-following decoding policy off
  (`kamevoice.frontend.policies.oracle_follow`; KAME-tiny's checkpoint turns it on): what the
  network alone makes of its oracle;
- `delay-D`: the live back-end with its time to first token D seconds longer, so
  its oracle reaches the front-end about D s later than live (the report shows the
  measured median of the first oracle piece per condition). This is the KB
  provider's own `first_token_delay_s` setting plus D: the eval's back-end is the
  KB provider by definition, the change is one setting (recorded in the config and
  in each session's fingerprint, no wrapper to maintain), and it delays the stream
  as a slower LLM would: a request superseded while waiting for its first token
  brings nothing, as in serving.

Scoring (`kamevoice.eval.keywords`): the fact's key words against (a) the front-end's
inner-monologue text from the question's first word on and (b) an STT transcript of
its audio over the same span (`kamevoice.eval.transcribe`). A question is *answered*
when every key word is found; the primary figure per condition is the share of
answered questions, the secondary one the share of key words found. The back-end's
own final oracle is scored the same way (did the right fact reach the front-end at all).

Results are resumable: one record per (condition, question) under
`OUT/sessions/COND/ID/record.json`, fingerprinted with everything it depends on;
the report (`kamevoice.tiny.eval_report`) and `OUT/config.json` are rewritten each run.
"""

from __future__ import annotations

import re
import zlib
from collections.abc import Sequence
from dataclasses import asdict, dataclass, field, replace
from functools import partial
from pathlib import Path

from kamevoice.errors import ConfigError
from kamevoice.eval.harness import Engines, RecordStore, Tally, finish_run, progress_bar, slug, start_run
from kamevoice.eval.keywords import score_keywords
from kamevoice.eval.metrics import latency_summary
from kamevoice.eval.store import fingerprint

# Bump when the record layout changes, so stored sessions are recomputed.
RECORD_VERSION = 2
DEFAULT_CONDITIONS = "live,no-oracle,live-no-follow,delay-0.5,delay-1,delay-2"
DEFAULT_LIMIT = 40
# Targets of the issue (text-stream accuracy with the live oracle, and without any).
TARGET_ORACLE = 0.6
TARGET_NO_ORACLE = 0.1
# Speaking rates the questions are synthesised at (one per question, from its id).
RATES = (0.9, 1.0, 1.1)
# Silence after each question for the reply. The longest replies (a price with cents after
# "Sure, let me look.") end 6.0 s after the question at KAME-tiny's pace: a 6 s window cut 8 of
# 60 replies mid-sentence; 9 s holds them with a margin.
REPLY_WINDOW_S = 9.0


@dataclass(frozen=True)
class Condition:
    """How the back-end takes part: not at all, live, or live with the oracle `delay_s` later;
    `follow`: the front-end's oracle-following policy as the checkpoint and settings ask (True)
    or off (False)."""

    name: str
    oracle: bool
    delay_s: float = 0.0
    follow: bool = True


def parse_conditions(text: str = DEFAULT_CONDITIONS) -> tuple[Condition, ...]:
    """'live,no-oracle,delay-0.5' -> conditions, in the given order (duplicates dropped)."""
    out: dict[str, Condition] = {}
    for name in (c.strip() for c in text.split(",") if c.strip()):
        if name == "live":
            out[name] = Condition(name, True)
        elif name == "live-no-follow":
            out[name] = Condition(name, True, follow=False)
        elif name == "no-oracle":
            out[name] = Condition(name, False)
        elif name.startswith("delay-"):
            try:
                delay = float(name.removeprefix("delay-"))
            except ValueError:
                raise ConfigError(f"--conditions: {name!r} is not delay-SECONDS") from None
            if delay <= 0:
                raise ConfigError(f"--conditions: {name!r}: the delay must be positive")
            out[f"delay-{delay:g}"] = Condition(f"delay-{delay:g}", True, delay)
        else:
            raise ConfigError(
                f"--conditions: unknown condition {name!r} (live, no-oracle, live-no-follow, delay-SECONDS)"
            )
    if not out:
        raise ConfigError("--conditions: give at least one condition")
    return tuple(out.values())


@dataclass(frozen=True)
class HeldOutQuestion:
    """One line of `qa_held_out.jsonl`."""

    id: str
    question: str
    answer: str
    key_words: tuple[str, ...]
    fact: str | None = None


def load_held_out(path: str | Path, limit: int | None = DEFAULT_LIMIT) -> list[HeldOutQuestion]:
    """The first `limit` questions of a held-out QA file (all when `limit` is None)."""
    from kamevoice.eval.mtbench import read_jsonl

    out: list[HeldOutQuestion] = []
    for number, item in read_jsonl(Path(path)):
        try:
            keys = item["key_words"]
            q = HeldOutQuestion(str(item["id"]), str(item["question"]), str(item["answer"]),
                                tuple(str(k) for k in keys), item.get("fact"))  # fmt: skip
        except (KeyError, TypeError) as exc:
            raise ConfigError(
                f"{path}:{number}: not a held-out QA line (id, question, answer, key_words): {exc}"
            ) from None
        if not q.key_words or not isinstance(keys, list):
            raise ConfigError(f"{path}:{number}: 'key_words' must be a non-empty list")
        out.append(q)
        if limit is not None and len(out) >= limit:
            break
    if not out:
        raise ConfigError(f"{path}: no questions")
    return out


# -- sessions ---------------------------------------------------------------------------------------


@dataclass(frozen=True)
class TinyEvalOptions:
    """Everything `kamevoice eval tiny` needs besides the settings."""

    out: Path
    checkpoint: str
    kb: Path
    questions_file: Path
    conditions: tuple[Condition, ...] = parse_conditions()
    device: str = "auto"
    seed: int = 42
    reply_window_s: float = REPLY_WINDOW_S
    transcribe: bool = True  # the audio view: STT over the front-end's audio
    save_audio: bool = False  # a stereo WAV per session
    progress: bool = True
    extra: dict = field(default_factory=dict)


def condition_settings(settings, kb: Path, condition: Condition):
    """The settings of one condition: the KB provider over `kb`, its first token `delay_s` later."""
    from kamevoice.tiny.defaults import tiny_back_end

    return tiny_back_end(settings, kb, extra_delay_s=condition.delay_s, use_knowledge=True)


def voice_of(question_id: str, voices: Sequence[str]) -> tuple[str | None, float]:
    """A voice and speaking rate for a question, the same for the same id (on every machine)."""
    h = zlib.crc32(question_id.encode("utf-8"))
    return (voices[h % len(voices)] if voices else None), RATES[(h // max(1, len(voices))) % len(RATES)]


def _checkpoint_signature(checkpoint: str) -> object:
    """A local checkpoint's files (name, size, mtime): a rebuilt model at the same path is new."""
    path = Path(checkpoint)
    if not path.is_dir():
        return checkpoint
    return [(p.name, p.stat().st_size, p.stat().st_mtime_ns) for p in sorted(path.iterdir()) if p.is_file()]


@dataclass
class Work:
    """What a run did: its sessions (printed, and logged in runs.jsonl)."""

    sessions: Tally = field(default_factory=Tally)

    def log(self) -> dict:
        """The `work` entry of a line in runs.jsonl: the computed sessions' wall seconds in run order
        (the groups, conditions, run one after the other)."""
        walls = [s for group in self.sessions.wall_s.values() for s in group]
        return {"sessions_run": self.sessions.run, "sessions_reused": self.sessions.reused, "wall_s": walls}


def run_tiny_eval(questions: list[HeldOutQuestion], options: TinyEvalOptions, settings) -> tuple[dict, Work]:
    """Run (or resume) every (condition, question) session; write the report; return results and work."""
    from kamevoice.tiny.eval_report import write_report

    config = start_run(options.out, full_config(questions, options, settings))
    work, engines = Work(), Engines(settings)
    store = RecordStore(work.sessions)
    records: dict[str, list[dict]] = {}
    todo = [(c, q) for c in options.conditions for q in questions]
    with progress_bar(len(todo), "eval tiny", options.progress, unit="session", leave=True) as bar:
        for condition, question in todo:
            bar.set_postfix_str(f"{condition.name} {question.id}", refresh=False)
            record = _one_session(condition, question, options, settings, store, engines)
            records.setdefault(condition.name, []).append(record)
            bar.update(1)
    results = aggregate(questions, records, options)
    finish_run(options.out, config, results, write_report, work.log())
    return results, work


def full_config(questions, options: TinyEvalOptions, settings) -> dict:
    """The whole configuration of a run, JSON-able (the live condition's settings)."""
    return {
        "checkpoint": options.checkpoint,
        "knowledge_base": str(options.kb),
        "questions_file": str(options.questions_file),
        "questions": [q.id for q in questions],
        "conditions": [asdict(c) for c in options.conditions],
        "device": options.device,
        "seed": options.seed,
        "reply_window_s": options.reply_window_s,
        "transcribe": options.transcribe,
        "save_audio": options.save_audio,
        "settings": condition_settings(settings, options.kb, Condition("live", True)).model_dump(mode="json"),
        **options.extra,
    }


def _session_key(condition, question, options: TinyEvalOptions, settings, voice) -> str:
    parts: dict = {
        "v": RECORD_VERSION,
        "condition": asdict(condition),
        "question": asdict(question),
        "voice": voice,
        "reply_window_s": options.reply_window_s,
        "seed": options.seed,
        "transcribe": options.transcribe,
        "checkpoint": _checkpoint_signature(options.checkpoint),
        "device": options.device,
        "frontend": settings.frontend.model_dump(mode="json", exclude={"checkpoint"}),
        "stt": settings.stt.model_dump(mode="json"),
    }
    if condition.oracle:
        parts.update(
            llm=settings.llm.model_dump(mode="json"),
            scheduler=settings.scheduler.model_dump(mode="json"),
            kb=fingerprint(Path(options.kb).read_text(encoding="utf-8")),
        )
    return fingerprint(parts)


def _one_session(
    condition, question, options: TinyEvalOptions, settings, store: RecordStore, engines: Engines
) -> dict:
    """One (condition, question) record, read back or run now; scored either way."""
    voice, rate = voice_of(question.id, engines.tts("espeak").voices())
    csettings = condition_settings(settings, options.kb, condition)
    path = options.out / "sessions" / condition.name / slug(question.id) / "record.json"
    key = _session_key(condition, question, options, csettings, [voice, rate])
    folder = path.parent
    run = partial(_run_session, condition, question, options, csettings, engines, voice, rate, key, folder)
    record = store.get(path, key, run, group=condition.name)
    record["scores"] = score_record(record)  # scored again: a scoring fix needs no new sessions
    return record


def _run_session(condition, question, options, csettings, engines: Engines, voice, rate, key, folder) -> dict:
    """Play one question through file mode under one condition now (`csettings`: the condition's
    settings); the record, scored and with its fingerprint `key`; the session's files go to `folder`."""
    from kamevoice.eval.mtbench import LayoutOptions, Question, speak_session
    from kamevoice.eval.systems import RunOptions, SystemSpec, run_frontend_session

    layout = LayoutOptions(voice=voice, rate=rate, reply_window_s=options.reply_window_s)
    spoken = speak_session(Question(0, "tiny", (question.question,)), layout, engine=engines.tts("espeak"))
    frontend, sampling = engines.frontend(options.checkpoint, options.device)
    if not condition.follow:
        sampling = replace(sampling, oracle_follow_bias=0.0)
    spec = SystemSpec(condition.name, "frontend", oracle=condition.oracle)
    run = RunOptions(seed=options.seed, transcribe=options.transcribe, save_audio=options.save_audio)
    session = run_frontend_session(spec, frontend, spoken, csettings, sampling, run, folder)
    monologue = session["replies"]["monologue"][0]
    stt = session["replies"]["stt"][0] if options.transcribe else None
    oracle = session["final_oracles"][0]
    record = {
        "key": key,
        "condition": condition.name,
        "question_id": question.id,
        "question": question.question,
        "answer": question.answer,
        "key_words": list(question.key_words),
        "voice": voice,
        "rate": rate,
        "turn": session["turns"][0],
        "monologue": monologue,
        "stt": stt,
        "final_oracle": oracle,
        "oracle": condition.oracle,
        **session["per_turn"][0],
        "wall_s": session["wall_s"],
        "audio_s": session["audio_s"],
    }
    record["scores"] = score_record(record)
    return record


# The four reply forms of the tiny catalogue (`kamevoice.tiny.knowledge`), told apart by fixed words.
REPLY_KINDS: dict[str, re.Pattern] = {
    "price": re.compile(r"\bcosts\b"),
    "code": re.compile(r"\bproduct code of\b"),
    "stock": re.compile(r"\bin stock of\b"),
    "hours": re.compile(r"\bis open from\b"),
}


def reply_kind(text: str) -> str | None:
    """Which kind of fact a reply states (price, code, stock, hours), by the first form found."""
    found = [(m.start(), kind) for kind, pattern in REPLY_KINDS.items() if (m := pattern.search(text))]
    return min(found)[1] if found else None


def reply_words(answer: str) -> list[str]:
    """The words of the expected reply after its opener ("Let me check. The amber ... costs six
    dollars." -> "The amber ... costs six dollars."): kind, name and value, what the oracle brings."""
    opener, sep, rest = answer.partition(". ")
    return (rest if sep else opener).split()


def score_record(record: dict) -> dict:
    """Key-word scores of a session's monologue, audio transcript and final oracle.

    `reply`: the same count over every word of the expected reply (after its opener), a finer
    measure of how much of the right answer reached the monologue than all-or-nothing key words.
    """
    keys = record["key_words"]
    return {
        "text": score_keywords(record["monologue"], keys).as_dict(),
        "reply": score_keywords(record["monologue"], reply_words(record["answer"])).as_dict(),
        "kind": {"expected": reply_kind(record["answer"]), "said": reply_kind(record["monologue"])},
        "audio": None if record["stt"] is None else score_keywords(record["stt"], keys).as_dict(),
        "oracle": score_keywords(record["final_oracle"], keys).as_dict() if record["oracle"] else None,
    }


# -- aggregation ------------------------------------------------------------------------------------


def _view_summary(scores: list[dict | None]) -> dict | None:
    scores = [s for s in scores if s is not None]
    if not scores:
        return None
    total = sum(s["total"] for s in scores)
    answered = sum(s["answered"] for s in scores)
    return {
        "accuracy": answered / len(scores),
        "answered": answered,
        "keyword_share": sum(s["found"] for s in scores) / total if total else None,
        "questions": len(scores),
    }


def aggregate(questions, records: dict[str, list[dict]], options: TinyEvalOptions) -> dict:
    """Per condition: accuracy and key-word share for text, audio and the oracle; latencies."""
    conditions = {}
    for condition in options.conditions:
        recs = records.get(condition.name, [])
        conditions[condition.name] = {
            "oracle": condition.oracle,
            "oracle_delay_s": condition.delay_s if condition.oracle else None,
            "text": _view_summary([r["scores"]["text"] for r in recs]),
            "text_reply_words": _view_summary([r["scores"]["reply"] for r in recs]),
            "text_reply_kind": sum(
                r["scores"]["kind"]["said"] == r["scores"]["kind"]["expected"] for r in recs
            )
            / max(1, len(recs)),
            "audio": _view_summary([r["scores"]["audio"] for r in recs]),
            "backend_oracle": _view_summary([r["scores"]["oracle"] for r in recs]),
            # The front-end's own part: its text where the back-end's final oracle held the fact.
            "text_given_right_oracle": _view_summary(
                [r["scores"]["text"] for r in recs if (r["scores"]["oracle"] or {}).get("answered")]
            ),
            "reply_latency": latency_summary([r.get("latency_s") for r in recs]),
            "first_oracle_piece": latency_summary([r.get("first_oracle_piece_s") for r in recs]),
            "final_oracle_arrival": latency_summary([r.get("first_content_word_s") for r in recs]),
            "seconds_per_session": sum(r["wall_s"] for r in recs) / len(recs) if recs else None,
        }

    def figure(name: str, view: str):
        cell = conditions.get(name, {}).get(view)
        return None if cell is None else cell["accuracy"]

    def share(name: str):
        cell = conditions.get(name, {}).get("text_reply_words")
        return None if cell is None else cell["keyword_share"]

    oracle, no_oracle = figure("live", "text"), figure("no-oracle", "text")
    return {
        "metric": "key-word accuracy: share of questions whose reply holds every key word of the answer",
        "questions": len(questions),
        "text_keyword_accuracy_oracle": oracle,
        "text_keyword_accuracy_no_oracle": no_oracle,
        "audio_keyword_accuracy_oracle": figure("live", "audio"),
        "audio_keyword_accuracy_no_oracle": figure("no-oracle", "audio"),
        # The same live back-end, the oracle-following decoding policy off: the network alone.
        "text_keyword_accuracy_oracle_no_follow": figure("live-no-follow", "text"),
        # Finer than all-or-nothing: share of the expected reply's words (kind, name, value) found.
        "text_reply_word_share_oracle": share("live"),
        "text_reply_word_share_no_oracle": share("no-oracle"),
        # Coarser still: the reply states the right kind of fact (a price, a code, a stock, hours).
        "text_reply_kind_accuracy_oracle": conditions.get("live", {}).get("text_reply_kind"),
        "text_reply_kind_accuracy_no_oracle": conditions.get("no-oracle", {}).get("text_reply_kind"),
        "targets": {
            "text_keyword_accuracy_oracle": {
                "at_least": TARGET_ORACLE,
                "met": None if oracle is None else oracle >= TARGET_ORACLE,
            },
            "text_keyword_accuracy_no_oracle": {
                "at_most": TARGET_NO_ORACLE,
                "met": None if no_oracle is None else no_oracle <= TARGET_NO_ORACLE,
            },
        },
        "conditions": conditions,
        "per_question": [
            {
                "condition": r["condition"],
                "id": r["question_id"],
                "text": r["scores"]["text"]["answered"],
                "audio": None if r["scores"]["audio"] is None else r["scores"]["audio"]["answered"],
                "oracle": None if r["scores"]["oracle"] is None else r["scores"]["oracle"]["answered"],
                "latency_s": r.get("latency_s"),
            }
            for recs in records.values()
            for r in recs
        ],
    }
