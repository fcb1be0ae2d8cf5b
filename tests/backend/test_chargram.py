"""The character n-gram retriever: invented names the STT misspelled still find their entry."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from kamevoice.eval.retrieval import OFF_TOPIC, Transcript, score
from kamevoice.knowledge.base import KnowledgeBase, out_of_vocabulary_share, resolve_retriever
from kamevoice.knowledge.chargram import CharGramIndex, chargrams, sound_words
from kamevoice.knowledge.settings import KnowledgeSettings
from kamevoice.tiny.knowledge import (
    QUESTIONS,
    Fact,
    KnowledgeOptions,
    generate_facts,
    kb_records,
    write_jsonl,
)

DATA = Path(__file__).parent / "data"
PARAPHRASES = [json.loads(line) for line in (DATA / "faq_paraphrases.jsonl").read_text().splitlines() if line]
OFF_TOPIC_TYPED = [line for line in (DATA / "off_topic.txt").read_text().splitlines() if line.strip()]

# Products and a shop with names of our own, among 1200 generated facts (~375 other products).
NAMED = {
    "tasko kettle": "forty two dollars",
    "rufugi jacket": "nine dollars",
    "vepofi candle": "twelve dollars",
    "nikufu kettle": "three dollars",
    "sofi candle": "ten dollars",
}
SHOP = "Velmora Market"

# (what the recogniser wrote, the subject, the kind asked): the kinds of error Whisper tiny.en made on
# espeak-ng speech of such names (respelt, split, run into English words).
MISHEARD = [
    ("How much does the tasco kettle cost?", "tasko kettle", "price"),
    ("What's the code for the task o kettle?", "tasko kettle", "code"),
    ("How many of the tasko cattle are in stock?", "tasko kettle", "stock"),
    ("Can you tell me the price of the roof you gi jacket?", "rufugi jacket", "price"),
    ("What is the product code of the vepophy candle?", "vepofi candle", "code"),
    ("How much does the nicku foo kettle cost?", "nikufu kettle", "price"),
    ("What is the product called on the Sophie candle?", "sofi candle", "code"),
    ("When is Velmorra Market open?", SHOP, "hours"),
    ("What are the opening hours of Bell Mora market?", SHOP, "hours"),
]


def _facts() -> list[Fact]:
    facts = generate_facts(KnowledgeOptions(facts=1200, seed=3))
    for i, (product, price) in enumerate(NAMED.items()):
        facts += [
            Fact(f"n{i}-price", "price", product, price, "", False),
            Fact(f"n{i}-code", "code", product, "B D one two three", "", False),
            Fact(f"n{i}-stock", "stock", product, "seven in stock", "", False),
        ]
    facts.append(Fact("n-hours", "hours", SHOP, "from nine in the morning to five in the evening", "", False))
    return facts


@pytest.fixture(scope="module")
def tiny_kb_path(tmp_path_factory) -> Path:
    path = tmp_path_factory.mktemp("kb") / "kb.jsonl"
    write_jsonl(path, kb_records(_facts()))
    return path


@pytest.fixture(scope="module")
def tiny_kb(tiny_kb_path) -> KnowledgeBase:
    return KnowledgeBase.load(KnowledgeSettings(path=tiny_kb_path))  # auto: chargram for invented names


def expected_question(subject: str, kind: str) -> str:
    return QUESTIONS[kind][0].format(p=subject, s=subject)


def test_auto_picks_chargram_for_invented_names_or_a_catalogue_and_not_for_the_faq(tiny_kb):
    assert tiny_kb.retriever == "chargram"  # 1200 + facts: a catalogue
    named = tiny_kb.entries[-len(NAMED) * 3 - 1 :]  # only the syllable-named products and shop
    assert out_of_vocabulary_share(named) > 0.9
    assert resolve_retriever(KnowledgeSettings(), named) == "chargram"
    faq = KnowledgeBase.load(KnowledgeSettings(retriever="bm25"))
    assert out_of_vocabulary_share(faq.entries) < 0.1
    assert resolve_retriever(KnowledgeSettings(), faq.entries) in ("embedding", "bm25")


@pytest.mark.parametrize(("heard", "subject", "kind"), MISHEARD)
def test_misheard_names_find_their_fact(tiny_kb, heard, subject, kind):
    match = tiny_kb.answer(heard)
    assert match.entry is not None, f"fell back (score {match.score:.3f})"
    assert match.entry.question == expected_question(subject, kind)


def test_whole_word_bm25_misses_what_chargram_finds(tiny_kb_path):
    bm25 = KnowledgeBase.load(KnowledgeSettings(path=tiny_kb_path, retriever="bm25"))
    hits = sum(bm25.search(heard, 1)[0][0].question == expected_question(s, k) for heard, s, k in MISHEARD)
    assert hits <= len(MISHEARD) - 3  # chargram finds all of them (test above)


def test_off_topic_talk_gets_the_fallback_reply(tiny_kb):
    for line in [*OFF_TOPIC, *OFF_TOPIC_TYPED, "", "um"]:
        match = tiny_kb.answer(line)
        assert match.entry is None and match.reply == tiny_kb.settings.fallback_reply, (line, match.score)


def test_chargram_on_the_shipped_faq():
    kb = KnowledgeBase.load(KnowledgeSettings(retriever="chargram"))
    hits = [kb.search(p["query"], top_k=1)[0][0].question == p["question"] for p in PARAPHRASES]
    assert sum(hits) / len(hits) >= 0.85  # measured 48/55 = 0.873 (BM25 0.727, MiniLM 0.927)
    assert all(kb.answer(q).entry is None for q in OFF_TOPIC_TYPED)
    assert kb.answer("do you repair electric bikes").entry.question == "Do you repair electric bikes?"


def test_grams_survive_split_words_and_respellings():
    assert sound_words("Sophie PHONED, tasco!") == ["sofi", "foned", "tasko"]
    assert sound_words("Niccu") == sound_words("niku")
    joined = {g for g in chargrams("task o") if g.startswith("#")}
    assert joined == {g for g in chargrams("tasko") if g.startswith("#")}
    index = CharGramIndex(["the tasko kettle", "the tesla kettle", "the fumo lamp"])
    assert index.search("task o kettle", 1)[0].index == 0
    assert index.search("12345", 1)[0].score == 0.0
    assert [h.index for h in index.search("kettle", 3)][:2] in ([0, 1], [1, 0])


# Whisper tiny.en finals of espeak-ng questions about products with English-word names: the words
# are respelt as other English words that sound alike, which letters barely match.
SOUND_ALIKE = [
    ("What do you charge for the plane Sam and Lamp?", "plain salmon lamp", "price"),
    ("What is the product called on the brand wheel toaster?", "grand willow toaster", "code"),
    ("What is the price of the ocean manager care?", "ocean badger chair", "price"),
    ("How much does the mystery be conduct cost?", "misty beacon clock", "price"),
    ("What is the stock level of the nasty handle toaster?", "zesty hazel toaster", "stock"),
]


def test_pronunciations_match_words_respelt_as_sound_alikes():
    facts = generate_facts(KnowledgeOptions(facts=3000, seed=5))
    known = {f.subject for f in facts}
    for subject in {s for _, s, _ in SOUND_ALIKE} - known:
        facts += [Fact(f"{subject}-{k}", k, subject, "two", "", False) for k in ("price", "code", "stock")]
    entries = [r["question"] for r in kb_records(facts)]
    by_sound, by_letters = CharGramIndex(entries), CharGramIndex(entries, phones=False)

    def found(index: CharGramIndex) -> int:
        return sum(entries[index.search(q, 1)[0].index] == expected_question(s, k) for q, s, k in SOUND_ALIKE)

    assert found(by_sound) == len(SOUND_ALIKE)
    assert found(by_letters) <= len(SOUND_ALIKE) - 2  # measured: 3 of 5
    plain = {g for g in chargrams("plain salmon") if g.startswith("%")}
    assert plain and plain <= set(chargrams("plane sam and"))  # the runs of phones are the same
    assert not [g for g in chargrams("tasko vepofi") if g[0] in "%&"]  # no pronunciation, letters only


def test_spoken_eval_scores_each_transcript_source(tiny_kb):
    subject, kind = "tasko kettle", "price"
    question = expected_question(subject, kind)
    transcripts = [
        Transcript("q1", "How much does the tasko kettle cost?", question, 0.3, 2.3,
                   final="How much does the tasco kettle cost?",
                   partials=[(0.8, "ha watch"), (1.6, "ha watch gaza task o"),
                             (2.3, "how much the task o kettle cost")]),
        Transcript("off", "Can you tell me a joke?", None, 0.3, 1.5, final="Can you tell me a joke?"),
    ]  # fmt: skip
    assert transcripts[0].partial_at(0.5) == "ha watch"
    assert transcripts[0].partial_at(1.0) == "how much the task o kettle cost"
    figures = score(tiny_kb, transcripts, ["text", "final", "partial@0.5", "partial@1"])
    assert figures["text"] == figures["final"] == {
        "top1": 1.0, "answered_right": 1.0, "answered_wrong": 0.0, "off_topic_answered": 0.0,
    }  # fmt: skip
    assert figures["partial@0.5"]["answered_right"] == 0.0
    assert figures["partial@1"]["top1"] == 1.0


def test_kb_eval_spoken_command_speaks_transcribes_and_scores(tiny_kb_path, tmp_path, capsys):
    """Two questions through espeak-ng and the paired STT, then the cached transcripts reused."""
    from kamevoice.cli import main

    questions = tmp_path / "questions.jsonl"
    lines = [
        {"id": "a", "question": "How much does the tasko kettle cost?",
         "expected": expected_question("tasko kettle", "price")},
        {"id": "b", "question": "When is Velmora Market open?", "expected": expected_question(SHOP, "hours")},
    ]  # fmt: skip
    questions.write_text("".join(json.dumps(x) + "\n" for x in lines))
    cache, out = tmp_path / "transcripts.jsonl", tmp_path / "figures.json"
    argv = ["kb", "eval-spoken", str(questions), "--kb", str(tiny_kb_path), "-n", "2", "--no-off-topic",
            "--retrievers", "bm25,chargram", "--transcripts", str(cache), "--json", str(out)]  # fmt: skip
    assert main(argv) == 0
    assert "2 questions + 0 off-topic lines" in capsys.readouterr().out
    figures = json.loads(out.read_text())
    assert figures["sources"] == ["text", "final", "partial@0.5", "partial@0.75", "partial@1"]
    assert figures["retrievers"]["chargram"]["sources"]["text"]["top1"] == 1.0
    assert figures["retrievers"]["bm25"]["threshold"] == 3.0
    transcripts = [json.loads(line) for line in cache.read_text().splitlines()]
    assert [t["id"] for t in transcripts] and all(t["final"] for t in transcripts)
    misheard = "how much does the tasco kettle cost"
    cache.write_text(cache.read_text().replace(transcripts[0]["final"], misheard))
    assert main(argv) == 0  # reads the cache: no speech this time
    figures = json.loads(out.read_text())
    assert figures["retrievers"]["chargram"]["sources"]["final"]["top1"] >= 0.5
