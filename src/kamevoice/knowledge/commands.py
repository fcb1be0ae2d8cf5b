"""`kamevoice kb ...`: query and evaluate the offline knowledge base from the command line.

Registration imports nothing heavy; handlers import what they need when they run.
"""

from __future__ import annotations

import argparse
import sys
from typing import Any

from kamevoice.cli import add_group


def register(sub: argparse._SubParsersAction) -> None:
    """Add the `kb` command group."""
    kb = add_group(sub, "kb", "query the offline knowledge-base back-end")

    ask = kb.add_parser("ask", help="answer a (partial) question and show the best matches with scores")
    ask.add_argument("question", help="what the user said (partial questions work too)")
    ask.add_argument("--top", type=int, default=3, metavar="N", help="matches to list (default 3)")
    ask.add_argument("--stream", action="store_true", help="stream the reply with the provider's timing")
    _kb_options(ask)
    ask.set_defaults(handler=_ask)

    ev = kb.add_parser("eval", help="retrieval accuracy over a JSONL file of {query, question} pairs")
    ev.add_argument("pairs", help="JSONL: 'query' (what a user says) and 'question' (the expected entry)")
    ev.add_argument("--show-misses", action="store_true")
    _kb_options(ev)
    ev.set_defaults(handler=_eval)

    sp = kb.add_parser(
        "eval-spoken",
        help="retrieval accuracy on what the STT hears: questions spoken by espeak-ng, transcribed",
        description="Speak N questions with espeak-ng, transcribe them with the paired STT (PocketSphinx "
        "partials, Whisper final) and report each retriever's top-1 accuracy on the question text, the "
        "final transcript and the partials at shares of the speech; off-topic lines should fall back.",
    )
    sp.add_argument("questions", help="JSONL: 'question' and 'fact' (the KB line's id) or 'expected'")
    sp.add_argument("-n", type=int, default=50, help="questions to speak (default 50)")
    sp.add_argument("--retrievers", default="bm25,chargram", help="bm25, chargram, embedding (commas)")
    sp.add_argument("--fractions", default="0.5,0.75,1", help="shares of the speech heard for partials")
    sp.add_argument("--transcripts", metavar="FILE", help="reuse this JSONL of transcripts, or write it")
    sp.add_argument("--no-off-topic", action="store_true", help="speak no off-topic lines")
    sp.add_argument("--seed", type=int, default=0, help="which questions are drawn")
    sp.add_argument("--json", metavar="FILE", nargs="?", const="-", help="write JSON (to FILE or stdout)")
    _kb_options(sp)
    sp.set_defaults(handler=_eval_spoken)


def _kb_options(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--kb", metavar="FILE", help="knowledge base file (default: the shipped example FAQ)")
    parser.add_argument("--format", choices=["auto", "markdown", "jsonl"], default="auto")
    parser.add_argument("--question-field", default="question", help="JSONL field of the question")
    parser.add_argument("--answer-field", default="answer", help="JSONL field of the answer")
    parser.add_argument("--retriever", choices=["auto", "bm25", "chargram", "embedding"], default="auto")
    parser.add_argument("--min-score", type=float, default=None, help="BM25 score needed to answer")
    parser.add_argument("--min-similarity", type=float, default=None, help="cosine needed (embedding)")
    parser.add_argument("--min-chargram", type=float, default=None, help="cosine needed (chargram)")


def _settings(args: argparse.Namespace):
    from kamevoice.knowledge.settings import KnowledgeSettings

    fields: dict[str, Any] = {
        "format": args.format,
        "question_field": args.question_field,
        "answer_field": args.answer_field,
        "retriever": args.retriever,
    }
    if args.kb:
        fields["path"] = args.kb
    if args.min_score is not None:
        fields["min_score"] = args.min_score
    if args.min_similarity is not None:
        fields["min_similarity"] = args.min_similarity
    if args.min_chargram is not None:
        fields["min_chargram"] = args.min_chargram
    return KnowledgeSettings(**fields)


def _ask(args: argparse.Namespace) -> int:
    from kamevoice.backend.llm.knowledge import KnowledgeProvider

    provider = KnowledgeProvider(_settings(args))
    match = provider.lookup(args.question)
    kb = provider.kb
    status = "match" if match.entry is not None else f"no match (below {kb.threshold:g})"
    print(f"score {match.score:.2f}: {status} [{kb.retriever}]")
    if args.stream:
        _stream(provider, args.question)
    else:
        print(match.reply)
    if args.top > 0:
        print("\ncandidates:")
        for entry, score in provider.kb.search(args.question, top_k=args.top):
            print(f"  {score:6.2f}  {entry.question}  (line {entry.line})")
    return 0


def _stream(provider, question: str) -> None:
    import asyncio
    import time

    from kamevoice.backend.llm.base import ChatMessage

    async def run() -> None:
        start = time.monotonic()
        first = None
        async for delta in provider.stream([ChatMessage("user", question)], system=""):
            first = first if first is not None else time.monotonic() - start
            sys.stdout.write(delta)
            sys.stdout.flush()
        print(f"\n(first token {first or 0.0:.2f} s, total {time.monotonic() - start:.2f} s)")

    asyncio.run(run())


def _eval(args: argparse.Namespace) -> int:
    import json
    from pathlib import Path

    from kamevoice.errors import InputError
    from kamevoice.knowledge.base import KnowledgeBase

    kb = KnowledgeBase.load(_settings(args))
    pairs = []
    for number, line in enumerate(Path(args.pairs).read_text(encoding="utf-8").splitlines(), start=1):
        if line.strip():
            try:
                record = json.loads(line)
                pairs.append((str(record["query"]), str(record["question"])))
            except (json.JSONDecodeError, KeyError, TypeError) as exc:
                raise InputError(f"{args.pairs}:{number}: expected {{'query', 'question'}}: {exc}") from None
    if not pairs:
        raise InputError(f"{args.pairs} holds no pairs")
    hits = 0
    for query, expected in pairs:
        entry, score = kb.search(query, top_k=1)[0]
        if entry.question == expected:
            hits += 1
        elif args.show_misses:
            print(f"miss ({score:.2f}): {query!r} -> {entry.question!r}, expected {expected!r}")
    print(f"top-1 accuracy {hits}/{len(pairs)} = {hits / len(pairs):.3f} [{kb.retriever}]")
    return 0


def _eval_spoken(args: argparse.Namespace) -> int:
    from pathlib import Path

    from kamevoice.errors import InputError
    from kamevoice.eval.retrieval import evaluate

    retrievers = [r.strip() for r in args.retrievers.split(",") if r.strip()]
    unknown = set(retrievers) - {"bm25", "chargram", "embedding", "auto"}
    if not retrievers or unknown:
        raise InputError(f"--retrievers: unknown {sorted(unknown)}; choose from bm25, chargram, embedding")
    fractions = [float(f) for f in args.fractions.split(",") if f.strip()]
    if args.n < 1 or any(not 0 < f <= 1 for f in fractions):
        raise InputError("-n must be positive and --fractions in (0, 1]")
    if not Path(args.questions).is_file():
        raise InputError(f"questions file {args.questions} does not exist")

    def progress(done: int, total: int) -> None:
        print(f"\rtranscribed {done}/{total}", end="" if done < total else "\n", file=sys.stderr, flush=True)

    payload = evaluate(
        _settings(args), Path(args.questions), args.n, retrievers, fractions=fractions,
        transcripts_path=Path(args.transcripts) if args.transcripts else None,
        off_topic=not args.no_off_topic, seed=args.seed, progress=progress,
    )  # fmt: skip
    print(
        f"{payload['questions']} questions + {payload['off_topic']} off-topic lines, "
        f"{payload['entries']} entries in {payload['kb']}"
    )
    print("top-1 right / answered right / answered wrong / off-topic answered")
    print(f"{'retriever':10} {'threshold':>9} " + " ".join(f"{s:>24}" for s in payload["sources"]))
    for name, r in payload["retrievers"].items():
        cells = []
        for s in payload["sources"]:
            f = r["sources"][s]
            off = "-" if f["off_topic_answered"] is None else f"{f['off_topic_answered']:.2f}"
            cells.append(
                f"{f['top1']:.2f}/{f['answered_right']:.2f}/{f['answered_wrong']:.2f}/{off}".rjust(24)
            )
        print(f"{name:10} {r['threshold']:9.3g} " + " ".join(cells))
    if args.json:
        from kamevoice.bench.report import write_json

        write_json(payload, args.json)
    return 0
