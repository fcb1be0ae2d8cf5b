"""`kamevoice kb` on the command line."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

from kamevoice.cli import main

DATA = Path(__file__).parent / "data"


def test_kb_ask_prints_the_answer_and_score(capsys):
    assert main(["kb", "ask", "is there a discount for students", "--top", "2"]) == 0
    out = capsys.readouterr().out
    assert out.startswith("score ") and ": match" in out.splitlines()[0]
    assert "Students get 10 percent off" in out
    assert "Do you offer a student discount?" in out


def test_kb_ask_without_a_match_prints_the_holding_reply(capsys):
    assert main(["kb", "ask", "tell me a joke", "--top", "0"]) == 0
    out = capsys.readouterr().out
    assert "no match" in out and "Let me check that for you" in out


def test_kb_eval_reports_accuracy(capsys):
    assert main(["kb", "eval", str(DATA / "faq_paraphrases.jsonl")]) == 0
    line = capsys.readouterr().out.strip().splitlines()[-1]
    hits, total = line.split()[2].split("/")
    assert int(total) == 55 and int(hits) >= 38


def test_kb_errors_are_reported_not_raised(tmp_path, capsys):
    bad = tmp_path / "bad.jsonl"
    bad.write_text('{"question": "x"}\n')
    assert main(["kb", "ask", "anything", "--kb", str(bad)]) == 1
    assert "bad.jsonl:1: missing or empty text field 'answer'" in capsys.readouterr().err


def test_kb_ask_streams(tmp_path, capsys):
    kb = tmp_path / "kb.jsonl"
    kb.write_text(
        json.dumps({"question": "Do you sell bread?", "answer": "Yes, fresh every morning."}) + "\n"
    )
    assert (
        main(
            ["kb", "ask", "do you sell bread", "--kb", str(kb), "--stream", "--top", "0", "--min-score", "0"]
        )
        == 0
    )
    out = capsys.readouterr().out
    assert "Yes, fresh every morning." in out and "first token" in out


def test_registering_the_kb_command_stays_cheap():
    code = "import sys, kamevoice.knowledge.commands; print('httpx' in sys.modules, 'torch' in sys.modules)"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout
    assert out.split() == ["False", "False"]
