"""The invented-facts generator: counts, uniqueness, determinism, retrieval, dialogue input."""

from __future__ import annotations

import itertools
import json

import pytest

from kamevoice.backend.llm.knowledge import KnowledgeProvider
from kamevoice.data.dialogues import DialogueOptions, fields_for, make_script, read_qa_items
from kamevoice.data.jobs import Item
from kamevoice.knowledge.settings import KnowledgeSettings
from kamevoice.tiny.knowledge import (
    NAME_FIRST,
    NAME_SECOND,
    NAMES_PER_SHOP,
    QUESTIONS,
    REPLY_OPENERS,
    KnowledgeOptions,
    catalogue_names,
    fact_replies,
    generate_facts,
    novel_fact_replies,
    reply_text,
    write_knowledge,
)

NUMERALS = set("0123456789")


def test_counts_and_uniqueness():
    facts = generate_facts(KnowledgeOptions(facts=3000, seed=1))
    assert len(facts) == 3000
    assert len({f.id for f in facts}) == 3000
    assert len({f.question(0) for f in facts}) == 3000
    assert len({(f.kind, f.subject) for f in facts}) == 3000
    assert {f.kind for f in facts} == set(QUESTIONS)
    assert 250 <= sum(f.held_out for f in facts) <= 350
    for f in facts:
        assert not NUMERALS & set(f.sentence + f.short), f  # numbers as words, for speech
        assert all(w in f.sentence.replace(",", "") for w in f.key_words)


def test_deterministic_for_a_seed():
    a = generate_facts(KnowledgeOptions(facts=200, seed=3))
    assert a == generate_facts(KnowledgeOptions(facts=200, seed=3))
    assert a != generate_facts(KnowledgeOptions(facts=200, seed=4))


def test_files(tmp_path):
    files = write_knowledge(tmp_path, KnowledgeOptions(facts=64, seed=0), dialogues=100)
    kb = [json.loads(line) for line in files.kb.read_text().splitlines()]
    train = [json.loads(line) for line in files.qa_train.read_text().splitlines()]
    held = [json.loads(line) for line in files.qa_held_out.read_text().splitlines()]
    assert (len(kb), len(train), files.facts, files.train_dialogues) == (64, 100, 64, 100)
    held_facts = {r["id"] for r in kb if r["held_out"]}
    assert len(held) == len(held_facts) > 0
    assert {r["fact"] for r in held} == held_facts
    assert not {r["fact"] for r in train} & held_facts  # held-out facts are never trained on
    assert len({r["id"] for r in train}) == 100
    # Every training fact is asked before any is asked twice.
    assert len({r["fact"] for r in train}) == 64 - len(held_facts)
    again = tmp_path / "again"
    write_knowledge(again, KnowledgeOptions(facts=64, seed=0), dialogues=100)
    assert (again / "qa_train.jsonl").read_bytes() == files.qa_train.read_bytes()


def test_fact_replies_split_held_out_from_training_facts(tmp_path):
    files = write_knowledge(tmp_path, KnowledgeOptions(facts=64, seed=0), dialogues=10)
    kb = [json.loads(line) for line in files.kb.read_text().splitlines()]
    held, trained = fact_replies(files.kb, held_out=True), fact_replies(files.kb, held_out=False)
    assert len(held) + len(trained) == len(REPLY_OPENERS) * len(kb)
    for record in kb:
        replies = held if record["held_out"] else trained
        assert [f"{o} {record['sentence']}" in replies for o in REPLY_OPENERS] == [True] * len(REPLY_OPENERS)
    assert not set(held) & set(trained)  # copy episodes for training never say a held-out fact


def test_novel_fact_replies_never_name_a_catalogue_subject(tmp_path):
    # 3000 facts use ~1100 of the 6400 names; 16000 novel facts (16 facts to 6 names) need more
    # than the ~5300 left, so the free names are dealt twice, still never one of the catalogue's.
    files = write_knowledge(tmp_path, KnowledgeOptions(facts=3000, seed=0), dialogues=10)
    taken = catalogue_names(files.kb)
    assert 1000 < len(taken) < 1200
    replies = novel_fact_replies(files.kb, facts=16000, seed=0)
    assert len(replies) == 16000 and len(set(replies)) > 15900
    assert replies == novel_fact_replies(files.kb, facts=16000, seed=0)
    assert replies[:100] != novel_fact_replies(files.kb, facts=100, seed=1)
    pairs = set()
    for reply in replies:
        opener = next(o for o in REPLY_OPENERS if reply.startswith(o + " "))
        words = reply.removeprefix(opener).lower().replace(".", "").split()
        pairs |= {f"{a} {b}" for a, b in itertools.pairwise(words) if a in NAME_FIRST and b in NAME_SECOND}
    assert len(pairs) > len(NAME_FIRST) * len(NAME_SECOND) - len(taken) - NAMES_PER_SHOP  # every free one
    assert not pairs & taken


@pytest.mark.parametrize("seed", [0, 1])
def test_provider_retrieves_the_fact_for_every_paraphrase(tmp_path, seed):
    facts = generate_facts(KnowledgeOptions(facts=48, seed=seed))
    files = write_knowledge(tmp_path, KnowledgeOptions(facts=48, seed=seed), dialogues=10)
    provider = KnowledgeProvider(KnowledgeSettings(path=files.kb, retriever="bm25"))
    for fact in facts:
        for template in range(1, len(QUESTIONS[fact.kind])):
            match = provider.lookup(fact.question(template))
            assert match.entry.question == fact.question(0), fact.question(template)
            assert match.reply == reply_text(fact)


def test_qa_file_is_accepted_by_the_dialogue_stage(tmp_path):
    files = write_knowledge(tmp_path, KnowledgeOptions(facts=30), dialogues=12)
    items = list(read_qa_items(files.qa_train, fields_for("plain", id="id", answer_style="reply")))
    assert len(items) == 12 and all(isinstance(i, Item) for i in items)
    outcome = make_script(items[0], DialogueOptions(), "plain")
    assert outcome.error is None
    turns = outcome.result["turns"]
    assert turns[0]["speaker"] == "user" and items[0].payload.question in turns[0]["text"]
    assert turns[1]["text"] == items[0].payload.answer  # the reply verbatim: opener + the fact
    assert turns[1]["text"].split(".")[0] + "." in REPLY_OPENERS
