"""QA items -> spoken dialogue scripts: presets, spoken style, determinism, bad input."""

from __future__ import annotations

import json

import pytest

from kamevoice.data.dialogues import (
    PRESETS,
    DialogueOptions,
    OfflineScriptWriter,
    fields_for,
    parse_item,
    read_qa_items,
)
from kamevoice.data.jobs import BadInput
from kamevoice.data.spoken import cardinal, ordinal, spoken
from kamevoice.errors import ConfigError

from .helpers import GSM8K_ITEMS, write_jsonl


@pytest.mark.parametrize(
    ("written", "said"),
    [
        ("$1,250 (about 12.5%)", "one thousand two hundred fifty dollars about twelve point five percent"),
        ("16 - 3 - 4 = <<16-3-4=9>>9 eggs", "sixteen minus three minus four equals nine eggs"),
        ("x^2 + 3x = -4", "x squared plus three x equals minus four"),
        ("the 21st century, 3/4 of 1,000,000.", "the twenty first century, three over four of one million."),
        ("\\frac{1}{2} of 10", "one over two of ten"),
        ("a well - known fact", "a well known fact"),
    ],
)
def test_spoken_style(written, said):
    assert spoken(written) == said
    assert not any(ch.isdigit() for ch in spoken(written))


def test_number_words():
    assert cardinal(0) == "zero" and cardinal(105) == "one hundred five"
    assert cardinal(2_000_017) == "two million seventeen"
    assert ordinal(12) == "twelfth" and ordinal(40) == "fortieth"


def test_mmlu_pro_item_reads_its_options_and_answers_with_the_letter():
    row = {
        "question_id": 70, "question": "Which planet is known as the Red Planet?",
        "options": ["Venus", "Mars", "Jupiter", "Saturn"], "answer": "B", "answer_index": 1,
        "cot_content": "A: Let's think step by step. Mars looks red because of iron oxide on its surface.",
        "category": "physics",
    }  # fmt: skip
    item = parse_item(row, PRESETS["mmlu_pro"], "x")
    assert item.id == "70" and item.answer == "Mars" and item.answer_index == 1
    script = OfflineScriptWriter().write(item, "mmlu_pro")
    user, assistant = script.turns[0], script.turns[1]
    assert user.speaker == "user" and "Red Planet?" in user.text
    assert "A, Venus; B, Mars; C, Jupiter; or D, Saturn?" in user.text
    assert assistant.speaker == "assistant" and "B" in assistant.text and "Mars" in assistant.text
    # The explanation becomes a follow-up exchange (multi-turn where the source allows it).
    assert script.turns[3].text == "Mars looks red because of iron oxide on its surface."
    assert [t.speaker for t in script.turns[:4]] == ["user", "assistant", "user", "assistant"]


def test_gsm8k_item_answers_then_explains_in_words():
    item = parse_item(GSM8K_ITEMS[0], PRESETS["gsm8k"], "gsm8k-000001")
    assert item.answer == "72"
    script = OfflineScriptWriter().write(item)
    assert "seventy two" in script.turns[1].text
    explanation = script.turns[3].text
    assert "forty eight plus twenty four equals seventy two" in explanation
    assert not any(ch.isdigit() or ch in "<>=$" for t in script.turns for ch in t.text)


def test_hssbench_shape_with_options_as_lines():
    row = {"id": "hss-1", "question": "Who wrote The Republic?", "options": "A. Aristotle\nB. Plato\nC. Homer",  # noqa: E501
           "answer": "B", "explanation": "Plato wrote it around 375 BC."}  # fmt: skip
    script = OfflineScriptWriter().write(parse_item(row, PRESETS["hssbench"], "x"))
    assert script.id == "hss-1" and "Plato" in script.turns[1].text
    assert "three hundred seventy five" in script.turns[3].text


def test_scripts_are_deterministic_for_a_seed():
    item = parse_item(GSM8K_ITEMS[1], PRESETS["gsm8k"], "g2")
    assert OfflineScriptWriter().write(item) == OfflineScriptWriter().write(item)


def test_bad_lines_are_reported_not_dropped(tmp_path):
    path = write_jsonl(tmp_path / "qa.jsonl", [GSM8K_ITEMS[0], "{not json", {"question": "no answer"},
                                               {"question": "q", "answer": "no final"}])  # fmt: skip
    entries = list(read_qa_items(path, PRESETS["gsm8k"]))
    assert [type(e).__name__ for e in entries] == ["Item", "BadInput", "BadInput", "BadInput"]
    assert entries[0].id == "qa-000001"
    bad = [e for e in entries if isinstance(e, BadInput)]
    assert bad[0].locator.endswith("qa.jsonl:2")
    assert "missing field 'answer'" in bad[1].reason and "####" in bad[2].reason
    with pytest.raises(ConfigError):
        fields_for("nope")
    assert json.loads(path.read_text().splitlines()[0])["question"].startswith("Natalia")


def test_reply_style_speaks_the_answer_as_the_whole_reply():
    fields = fields_for("plain", answer_style="reply")
    row = {"question": "How much is the kettle?", "answer": "Let me see. It costs 12 dollars."}
    script = OfflineScriptWriter(DialogueOptions(thanks_probability=0.0)).write(parse_item(row, fields, "r1"))
    assert len(script.turns) == 2 and script.turns[0].text.endswith("How much is the kettle?")
    assert script.turns[1].text == "Let me see. It costs twelve dollars."  # no template around it
