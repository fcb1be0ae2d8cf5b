"""Corrupt or missing inputs are reported (summary, exit code) and skipped, never silently dropped."""

from __future__ import annotations

import json
import shutil

from kamevoice.data.commands import EXIT_SOME_FAILED

from .helpers import SAMPLE_DIR, cli, write_jsonl


def _summary(folder, stage):
    return json.loads((folder / f"summary-{stage}.json").read_text())


def test_oracles_report_bad_word_files(tmp_path):
    text = tmp_path / "in" / "text"
    text.mkdir(parents=True)
    for name in ("SNG0072.json", "SNG1640.json"):
        shutil.copy(SAMPLE_DIR / "text" / name, text / name)
    (text / "broken.json").write_text('[{"speaker": "A", "word": "hi", "start": 0.1')
    (text / "badfield.json").write_text(
        json.dumps([{"speaker": "Z", "word": "hi", "start": 0.1, "end": 0.2}])
    )
    out = tmp_path / "out"
    assert cli("data", "oracles", tmp_path / "in", "--out", out, "--no-progress") == EXIT_SOME_FAILED
    summary = _summary(out, "oracles")
    assert summary["items_done"] == 2 and summary["items_failed"] == 2
    reasons = {f["id"].rsplit("/", 1)[-1]: f["reason"] for f in summary["failures"]}
    assert "not valid JSON" in reasons["broken.json"]
    assert "badfield.json[0].speaker" in reasons["badfield.json"]
    assert sorted(p.name for p in (out / "oracle_raw").iterdir()) == ["SNG0072.json", "SNG1640.json"]


def test_synth_reports_bad_scripts_and_missing_input(tmp_path):
    scripts = write_jsonl(tmp_path / "scripts.jsonl", [
        {"id": "ok", "turns": [{"speaker": "user", "text": "Hi there."}, {"speaker": "assistant", "text": "Hello!"}]},  # noqa: E501
        "{broken",
        {"id": "nobody", "turns": [{"speaker": "robot", "text": "Beep."}]},
        {"id": "silent", "turns": [{"speaker": "user", "text": "..."}]},
        {"id": "ok", "turns": [{"speaker": "user", "text": "Again."}]},
        {"id": "../escape", "turns": [{"speaker": "user", "text": "Out."}]},
    ])  # fmt: skip
    out = tmp_path / "out"
    assert cli("data", "synth", scripts, "--out", out, "--no-progress") == EXIT_SOME_FAILED
    summary = _summary(out, "synth")
    assert summary["items_done"] == 1
    failures = {f["id"]: f["reason"] for f in summary["failures"]}
    assert len(failures) == 5
    assert any("cannot name a file" in v for v in failures.values())
    assert not (tmp_path / "escape.json").exists() and not (out / "escape.json").exists()
    assert any(k.endswith("scripts.jsonl:2") for k in failures)
    assert any("speaker must be 'user' or 'assistant'" in v for v in failures.values())
    assert "produced no words" in failures["silent"]
    assert "duplicate id" in failures["ok"]
    assert cli("data", "synth", tmp_path / "missing.jsonl", "--out", out, "--no-progress") == EXIT_SOME_FAILED
    assert "cannot open" in _summary(out, "synth")["failures"][0]["reason"]
