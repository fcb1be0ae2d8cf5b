"""Resume: an interrupted stage, rerun, redoes only what is missing and never touches finished files."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time

from kamevoice.data.formats import read_stereo_wav, read_words

from .helpers import GSM8K_ITEMS, cli, file_digests, write_jsonl


def _summary(folder, stage):
    return json.loads((folder / f"summary-{stage}.json").read_text())


def test_dialogues_resume_after_a_torn_line(tmp_path):
    qa = write_jsonl(tmp_path / "qa.jsonl", GSM8K_ITEMS)
    out = tmp_path / "scripts"
    assert (
        cli("data", "dialogues", qa, "--preset", "gsm8k", "--out", out, "--limit", "2", "--no-progress") == 0
    )
    first = (out / "dialogues.jsonl").read_bytes()
    assert first.count(b"\n") == 2
    with open(out / "dialogues.jsonl", "ab") as f:  # a crash in the middle of writing the third line
        f.write(b'{"id": "qa-000003", "turns": [{"spea')
    assert cli("data", "dialogues", qa, "--preset", "gsm8k", "--out", out, "--no-progress") == 0
    data = (out / "dialogues.jsonl").read_bytes()
    assert data.startswith(first)
    ids = [json.loads(line)["id"] for line in data.decode().splitlines()]
    assert ids == [f"qa-{i:06d}" for i in range(1, 5)]  # no duplicates, nothing lost
    assert _summary(out, "dialogues")["items_skipped_already_done"] == 2


def test_synth_and_oracles_resume_without_touching_finished_files(tmp_path):
    qa = write_jsonl(tmp_path / "qa.jsonl", GSM8K_ITEMS)
    assert cli("data", "dialogues", qa, "--preset", "gsm8k", "--out", tmp_path / "s", "--no-progress") == 0
    data = tmp_path / "data"
    assert cli("data", "synth", tmp_path / "s", "--out", data, "--limit", "2", "--no-progress") == 0
    assert cli("data", "oracles", data, "--out", data, "--limit", "1", "--no-progress") == 0
    before = file_digests(data)
    finished = {k: v for k, v in before.items() if not k.startswith("summary")}
    assert len(finished) == 5  # 2 texts, 2 wavs, 1 oracle file
    # A crash between the WAV and its transcript: that item must be made again.
    (data / "audio" / "qa-000003.wav").write_bytes(b"RIFF-partial")
    time.sleep(0.01)
    assert cli("data", "synth", tmp_path / "s", "--out", data, "--no-progress") == 0
    assert cli("data", "oracles", data, "--out", data, "--no-progress") == 0
    after = file_digests(data)
    for name, digest in finished.items():
        assert after[name] == digest, f"{name} was rewritten"
    assert read_stereo_wav(data / "audio" / "qa-000003.wav")[0].shape[1] == 2
    assert len(list((data / "text").glob("*.json"))) == len(list((data / "oracle_raw").glob("*.json"))) == 4
    assert _summary(data, "synth")["items_skipped_already_done"] == 2
    assert _summary(data, "synth")["items_done"] == 2
    assert _summary(data, "oracles")["items_skipped_already_done"] == 1


def test_synth_killed_mid_run_resumes_cleanly(tmp_path):
    rows = [{"question": f"What is {i} plus {i}?", "answer": f"{2 * i}"} for i in range(60)]
    assert cli("data", "dialogues", write_jsonl(tmp_path / "qa.jsonl", rows), "--out", tmp_path / "s",
               "--thanks-probability", "0", "--no-progress") == 0  # fmt: skip
    data = tmp_path / "data"
    env = dict(os.environ, OMP_WAIT_POLICY="PASSIVE")
    proc = subprocess.Popen(
        [sys.executable, "-m", "kamevoice.cli", "data", "synth", str(tmp_path / "s"), "--out", str(data),
         "--no-progress"],
        env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
    )  # fmt: skip
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline and len(list((data / "text").glob("*.json"))) < 5:
        time.sleep(0.005)
    proc.send_signal(signal.SIGKILL)
    proc.wait()
    done_before = sorted(p.name for p in (data / "text").glob("*.json"))
    assert 5 <= len(done_before) < 60, "the run should have been killed part-way"
    before = {k: v for k, v in file_digests(data).items() if k.startswith("text/")}
    assert cli("data", "synth", tmp_path / "s", "--out", data, "--no-progress") == 0
    after = file_digests(data)
    for name, digest in before.items():
        assert after[name] == digest
    texts = sorted((data / "text").glob("*.json"))
    assert len(texts) == 60 and len(list((data / "audio").glob("*.wav"))) == 60
    for path in texts:  # every file complete and readable
        read_words(path)
        read_stereo_wav(data / "audio" / f"{path.stem}.wav")
    summary = _summary(data, "synth")
    assert summary["items_skipped_already_done"] >= len(done_before)
    assert summary["items_done"] + summary["items_skipped_already_done"] == 60
