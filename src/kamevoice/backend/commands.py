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


def _kb_options(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--kb", metavar="FILE", help="knowledge base file (default: the shipped example FAQ)")
    parser.add_argument("--format", choices=["auto", "markdown", "jsonl"], default="auto")
    parser.add_argument("--question-field", default="question", help="JSONL field of the question")
    parser.add_argument("--answer-field", default="answer", help="JSONL field of the answer")
    parser.add_argument("--retriever", choices=["auto", "bm25", "embedding"], default="auto")
    parser.add_argument("--min-score", type=float, default=None, help="BM25 score needed to answer")
    parser.add_argument("--min-similarity", type=float, default=None, help="cosine needed (embedding)")


def _settings(args: argparse.Namespace):
    from kamevoice.backend.llm.settings import KnowledgeSettings

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

    from kamevoice.backend.llm.knowledge import KnowledgeBase
    from kamevoice.errors import InputError

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
