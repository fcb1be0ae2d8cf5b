"""`kamevoice eval tiny`: key-word scoring on hand-made replies, and the command end to end on an untrained
KAME-tiny (random weights, its own invented-facts KB): result files, JSON figures, resume."""

from __future__ import annotations

import json

import pytest

from kamevoice.cli import main
from kamevoice.errors import ConfigError
from kamevoice.eval.keywords import score_keywords
from kamevoice.tiny.eval import load_held_out, parse_conditions, voice_of

PRICE = ["three", "hundred", "fifty", "seven", "dollars", "and", "seventy", "five", "cents"]
CODE = ["B", "M", "five", "five", "seven"]


@pytest.mark.parametrize(
    ("reply", "keys", "found"),
    [
        ("▁three ▁hundred ▁fifty ▁seven ▁dollars ▁and ▁seventy ▁five ▁cents", PRICE, 9),
        ("It's three hundred fifty seven dollars.", PRICE, 5),
        ("$357.75", PRICE, 9),  # Whisper writes money in digits
        ("357 dollars and 75 cents", PRICE, 9),
        ("B M five five seven", CODE, 5),
        ("The code is BM557.", CODE, 5),  # a code read digit by digit, letters run together
        ("B.M. 5 5 7", CODE, 5),
        ("b m five seven", CODE, 4),  # multiplicity: two fives are needed
        ("five five seven", CODE, 3),
        ("", CODE, 0),
        ("I don't know", ["eighty", "seven", "dollars"], 0),
    ],
)
def test_key_word_scoring(reply, keys, found):
    score = score_keywords(reply, keys)
    assert (score.found, score.total) == (found, len(keys))
    assert score.answered == (found == len(keys))


def test_conditions_and_voices():
    names = [c.name for c in parse_conditions("live,no-oracle,delay-0.5,delay-1,delay-2.0")]
    assert names == ["live", "no-oracle", "delay-0.5", "delay-1", "delay-2"]
    live, off, late, unfollowed = parse_conditions("live,no-oracle,delay-1,live-no-follow")
    assert live.oracle and not off.oracle and late.oracle and late.delay_s == 1.0
    assert live.follow and late.follow and unfollowed.oracle and not unfollowed.follow
    for bad in ("delay-x", "delay-0", "oracle", ""):
        with pytest.raises(ConfigError):
            parse_conditions(bad)
    assert voice_of("q1", ["a", "b", "c"]) == voice_of("q1", ["a", "b", "c"])


@pytest.fixture(scope="module")
def toy(tmp_path_factory):
    """An untrained KAME-tiny (codec2) with its knowledge files: the build's first stages only."""
    pytest.importorskip("pycodec2")
    pytest.importorskip("espeakng_loader")
    from kamevoice.tiny.build import STAGES, BuildOptions, TinyBuild

    build = TinyBuild(tmp_path_factory.mktemp("toy") / "build", BuildOptions(facts=20, dialogues=2), say=str)
    for stage in STAGES[: STAGES.index("init") + 1]:
        if stage not in ("synth", "oracles"):  # audio and oracles are for training, not needed here
            getattr(build, f"stage_{stage}")()
    return build.init, build.knowledge / "kb.jsonl", build.knowledge / "qa_held_out.jsonl"


def _args(toy, out, *extra):
    checkpoint, kb, questions = toy
    return ["eval", "tiny", "--checkpoint", str(checkpoint), "--kb", str(kb), "--questions", str(questions),
            "--limit", "1", "--conditions", "live,no-oracle", "--reply-window", "2", "--device", "cpu",
            "--out", str(out), "--no-progress", *extra]  # fmt: skip


def test_eval_tiny_end_to_end_and_resumable(toy, tmp_path, capsys):
    out = tmp_path / "run"
    assert main(_args(toy, out, "--json")) == 0
    captured = capsys.readouterr()
    figures = json.loads(captured.out)  # --json: stdout is the figures alone
    assert "sessions: 2 run, 0 reused" in captured.err
    for name in ("text_reply_word_share_oracle", "text_reply_word_share_no_oracle"):
        assert 0.0 <= figures[name] <= 1.0
    for name in ("text_keyword_accuracy_oracle", "text_keyword_accuracy_no_oracle"):
        assert 0.0 <= figures[name] <= 1.0 and isinstance(figures["targets"][name]["met"], bool)
    assert figures["questions"] == 1 and list(figures["conditions"]) == ["live", "no-oracle"]
    live, off = figures["conditions"]["live"], figures["conditions"]["no-oracle"]
    for cell in (live, off):
        assert cell["text"]["questions"] == cell["audio"]["questions"] == 1
        assert cell["reply_latency"]["turns"] == 1
    assert live["oracle"] and not off["oracle"] and off["backend_oracle"] is None
    # The back-end answered from the KB: the held-out fact's oracle holds its key words.
    assert live["backend_oracle"]["questions"] == 1 and live["first_oracle_piece"]["replied"] == 1

    for name in ("config.json", "results.json", "table.md", "accuracy.png", "runs.jsonl"):
        assert (out / name).is_file(), name
    assert (out / "accuracy.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    config = json.loads((out / "config.json").read_text())
    assert config["knowledge_base"] == str(toy[1]) and config["settings"]["llm"]["provider"] == "knowledge"
    assert "| live |" in (out / "table.md").read_text()
    question = load_held_out(toy[2], 1)[0]
    record = json.loads((out / "sessions" / "live" / question.id / "record.json").read_text())
    assert record["key_words"] == list(question.key_words) and record["final_oracle"]
    assert record["scores"]["oracle"] == score_keywords(record["final_oracle"], question.key_words).as_dict()
    assert record["scores"]["text"] == score_keywords(record["monologue"], question.key_words).as_dict()

    # A rerun reuses both sessions; a new condition runs only its own.
    assert main(_args(toy, out, "--conditions", "live,no-oracle,delay-1,live-no-follow")) == 0
    text = capsys.readouterr().out
    assert "sessions: 2 run, 2 reused" in text and "| delay-1 |" in text and "| live-no-follow |" in text
    results = json.loads((out / "results.json").read_text())
    assert results["conditions"]["delay-1"]["oracle_delay_s"] == 1.0
    assert results["text_keyword_accuracy_oracle_no_follow"] is not None
    assert len(results["per_question"]) == 4


def test_reply_words_are_the_expected_reply_after_its_opener():
    from kamevoice.tiny.eval import reply_words, score_record

    answer = "Let me check. The amber falcon kettle costs six dollars."
    assert reply_words(answer) == ["The", "amber", "falcon", "kettle", "costs", "six", "dollars."]
    heard = "One moment. The amber owl kettle costs six dollars."
    record = {"key_words": ["six", "dollars"], "answer": answer, "stt": None, "oracle": False,
              "final_oracle": "", "monologue": heard}  # fmt: skip
    scores = score_record(record)
    assert scores["text"]["answered"] and scores["reply"] == {"found": 6, "total": 7, "answered": False}


def test_reply_kind_tells_the_four_fact_forms_apart():
    from kamevoice.tiny.eval import reply_kind

    assert reply_kind("Let me check. The amber owl kettle costs six dollars.") == "price"
    assert reply_kind("One moment. The product code of the amber owl kettle is B D one two three.") == "code"
    assert reply_kind("Let me see. There are four in stock of the amber owl kettle.") == "stock"
    assert (
        reply_kind("Sure, let me look. Quiet Harbor Market is open from nine in the morning to six.")
        == "hours"
    )
    assert reply_kind("Anytime!") is None
