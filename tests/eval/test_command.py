"""`kamevoice eval mtbench` end to end: test checkpoint (random weights: scores mean nothing), knowledge-base
back-end, a judge on a local OpenAI-compatible server; structure, resumability and the report files."""

from __future__ import annotations

import json

import pytest

from kamevoice.cli import main

from .judge_server import JudgeServer

JUDGE_REPLIES = ["Fine. Rating: [[7]]", "Rating: [[5]]", "I cannot rate this."]


def _args(checkpoint, questions, out, *extra):
    qfile, rfile = questions
    return [
        "eval", "mtbench", "--questions", str(qfile), "--references", str(rfile), "--categories", "reasoning",
        "--checkpoint", str(checkpoint), "--device", "cpu", "--out", str(out), "--reply-window", "2",
        "--no-progress", *extra,
    ]  # fmt: skip


def test_mtbench_command_end_to_end_and_resumable(tiny_checkpoint, short_questions, tmp_path, capsys):
    out = tmp_path / "run"
    with JudgeServer(JUDGE_REPLIES) as judge:
        judge_flags = ["--judge-base-url", judge.base_url, "--judge-model", "judge-test", "--judge-runs", "2"]
        assert main(_args(tiny_checkpoint, short_questions, out, *judge_flags)) == 0
        first = capsys.readouterr().out
        # kame, frontend, cascade ran (backend-text is read from kame's); 7 views x 2 turns x 2 runs.
        assert "sessions: 3 run, 0 reused; judgements: 28 run, 0 reused" in first
        assert len(judge.requests) == 28
        # A rerun does no new work: every session and judgement is found with the same fingerprint.
        assert main(_args(tiny_checkpoint, short_questions, out, *judge_flags)) == 0
        assert "sessions: 0 run, 3 reused; judgements: 0 run, 28 reused" in capsys.readouterr().out
        assert len(judge.requests) == 28

    for name in ("config.json", "results.json", "table.md", "latency_quality.png", "runs.jsonl"):
        assert (out / name).is_file(), name
    assert (out / "latency_quality.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    config = json.loads((out / "config.json").read_text())
    assert config["checkpoint"] == str(tiny_checkpoint) and config["judge"]["runs"] == 2
    assert {"stt", "llm", "scheduler", "frontend"} <= set(config["settings"])

    results = json.loads((out / "results.json").read_text())
    assert results["metric"] == "judge" and results["categories"] == ["reasoning"]
    systems = {s["name"]: s for s in results["systems"]}
    assert list(systems) == ["kame", "frontend", "cascade", "backend-text"]
    assert set(systems["kame"]["views"]) == {"monologue", "stt"}
    for name in ("kame", "frontend", "cascade"):
        lat = systems[name]["latency"]
        assert lat["turns"] == 2 and lat["median_s"] is not None and "clipped" in lat["clipping"]
    assert systems["kame"]["latency"]["first_oracle_piece"]["replied"] >= 1
    assert systems["cascade"]["latency"]["median_s"] > 0
    assert "latency" not in systems["backend-text"]
    cell = systems["kame"]["views"]["monologue"]["categories"]["reasoning"]["judge"]
    # The script cycles 7, 5, unparseable: both runs have ratings, some answers are unparsed and counted.
    assert cell["unparsed"] >= 1 and all(5 <= m <= 7 for m in cell["run_means"] if m is not None)
    raw = sorted((out / "judgements").rglob("*.json"))
    assert len(raw) == 28 and all("raw" in json.loads(p.read_text()) for p in raw)
    table = (out / "table.md").read_text()
    assert "| kame (monologue) |" in table and "median latency" in table and "paper" in table.lower()
    record = json.loads((out / "sessions" / "kame" / "901" / "record.json").read_text())
    assert len(record["replies"]["monologue"]) == len(record["replies"]["stt"]) == 2
    assert (out / "sessions" / "kame" / "901" / "session.wav").is_file()
    assert record["final_oracles"][0]  # the knowledge base's answer reached the session

    # Without a judge: it says so, reuses the sessions, and reports the knowledge-word metric.
    assert main(_args(tiny_checkpoint, short_questions, out)) == 0
    captured = capsys.readouterr()
    assert "no judge configured" in captured.err and "sessions: 0 run, 3 reused" in captured.out
    results = json.loads((out / "results.json").read_text())
    assert results["metric"] == "knowledge_words"
    backend = next(s for s in results["systems"] if s["name"] == "backend-text")
    kw = backend["views"]["text"]["categories"]["reasoning"]
    assert kw["knowledge_words_target"] == ["reference"] and kw["knowledge_words"]["mean"] > 0


@pytest.mark.slow
def test_mtbench_command_on_the_wall_clock(tiny_checkpoint, short_questions, tmp_path, capsys):
    """--realtime: paced engine, real STT and TTS time; ~20 s of wall clock."""
    out = tmp_path / "rt"
    args = _args(tiny_checkpoint, short_questions, out, "--realtime", "--systems", "frontend,cascade")
    assert main(args) == 0
    results = json.loads((out / "results.json").read_text())
    assert all(s["latency"]["replied"] == 2 for s in results["systems"])
    assert json.loads((out / "config.json").read_text())["run"]["realtime"] is True


def test_mtbench_command_explains_bad_requests(short_questions, tmp_path, capsys, monkeypatch):
    monkeypatch.delenv("KAMEVOICE_FRONTEND__CHECKPOINT", raising=False)
    qfile, _ = short_questions
    base = ["eval", "mtbench", "--questions", str(qfile), "--out", str(tmp_path), "--no-progress"]
    assert main([*base, "--systems", "kame", "--delays", "3", "--reply-window", "2"]) == 1
    assert "--reply-window" in capsys.readouterr().err
    assert main([*base, "--systems", "moshi"]) == 1
    assert main([*base, "--categories", "nothing"]) == 1
